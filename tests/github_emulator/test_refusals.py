"""What GitHub refuses, the emulator refuses the same way: check failures, 405, 409, 422, 401."""

from __future__ import annotations

import httpx
import pytest
from github import BadCredentialsException, Github, GithubException

from sandbox.github import GitHubEmulator
from tests.github_emulator.conftest import DEV_TOKEN, PM_TOKEN, REPO, Sandbox, start
from tests.github_emulator.helpers import IMAGE, OVERLAY, QUICK, open_change_pr, wait_check

BROKEN = f"""apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: prod
resources:
  - ../base
  - missing-service.yaml
images:
  - name: {IMAGE}
    newTag: v1.0.1
"""


def test_broken_overlay_fails_the_check_with_kustomize_message(
    sandbox: Sandbox, gh: Github
) -> None:
    repo = gh.get_repo(REPO)
    pr = open_change_pr(repo, "broken", content=BROKEN)
    run = wait_check(repo, pr.head.sha)
    assert run["conclusion"] == "failure"
    summary = run["output"]["summary"]  # type: ignore[index]
    assert "kustomize/prod" in summary
    assert "missing-service.yaml" in summary
    assert "kustomize build" in summary
    assert repo.get_pull(pr.number).mergeable_state == "blocked"
    with pytest.raises(GithubException) as refused:
        pr.merge(merge_method="squash")
    assert refused.value.status == 405
    assert "Kustomize validation" in refused.value.data["message"]
    assert "failing" in refused.value.data["message"]


def test_invalid_manifest_fails_validation(sandbox: Sandbox, gh: Github) -> None:
    repo = gh.get_repo(REPO)
    current = sandbox.emu.read_file("main", "kustomize/base/frontend.yaml")
    broken = current.replace("replicas: 1", "replicas: many")
    pr = open_change_pr(repo, "bad-base", content=broken, path="kustomize/base/frontend.yaml")
    run = wait_check(repo, pr.head.sha)
    assert run["conclusion"] == "failure"
    summary = run["output"]["summary"]  # type: ignore[index]
    # a base change validates every overlay
    assert "kustomize/prod" in summary and "kustomize/staging" in summary
    assert "replicas" in summary


@pytest.fixture
def slow_sandbox(bare_repo: tuple[object, str]):  # type: ignore[no-untyped-def]
    yield from start(*bare_repo, check_duration=1.5)  # type: ignore[arg-type]


def test_merge_refused_while_check_pending_then_stale_sha(slow_sandbox: Sandbox) -> None:
    gh = slow_sandbox.client()
    repo = gh.get_repo(REPO)
    pr = open_change_pr(repo, "promote/prod/v1.0.1", **QUICK)
    runs = [r.status for r in repo.get_commit(pr.head.sha).get_check_runs()]
    assert runs and runs[0] in {"queued", "in_progress"}
    assert repo.get_pull(pr.number).mergeable_state == "blocked"
    with pytest.raises(GithubException) as refused:
        pr.merge(merge_method="squash")
    assert refused.value.status == 405
    assert (
        refused.value.data["message"] == 'Required status check "Kustomize validation" is expected.'
    )
    first_head = pr.head.sha
    assert wait_check(repo, first_head)["conclusion"] == "success"

    # the head moves: the old sha no longer merges (409) and the new head gets its own check
    parent = repo.get_git_commit(first_head)
    commit = repo.create_git_commit("Touch up", parent.tree, [parent])
    repo.get_git_ref("heads/promote/prod/v1.0.1").edit(commit.sha)
    with pytest.raises(GithubException) as stale:
        pr.merge(merge_method="squash", sha=first_head)
    assert stale.value.status == 409
    assert stale.value.data["message"].startswith("Head branch was modified")
    assert repo.get_pull(pr.number).head.sha == commit.sha
    assert wait_check(repo, commit.sha)["conclusion"] == "success"
    assert pr.merge(merge_method="squash", sha=commit.sha).merged


def test_missing_review_and_status_requirements(sandbox: Sandbox, gh: Github) -> None:
    emu = sandbox.emu
    emu.set_protection(
        required_checks=["Kustomize validation", "ci/lint"], required_approving_reviews=1
    )
    repo = gh.get_repo(REPO)
    pr = open_change_pr(repo, "promote/prod/v1.0.1", **QUICK)
    wait_check(repo, pr.head.sha)
    with pytest.raises(GithubException) as refused:
        pr.merge()
    assert refused.value.status == 405
    assert refused.value.data["message"] == 'Required status check "ci/lint" is expected.'
    emu.add_status(pr.head.sha, "ci/lint", "success")
    with pytest.raises(GithubException) as refused:
        pr.merge()
    assert refused.value.status == 405
    assert "approving review" in refused.value.data["message"]
    protection = repo.get_branch("main").get_protection()
    assert protection.required_pull_request_reviews.required_approving_review_count == 1
    assert set(protection.required_status_checks.contexts) == {"Kustomize validation", "ci/lint"}


def test_conflicting_pr_is_dirty(sandbox: Sandbox, gh: Github) -> None:
    repo = gh.get_repo(REPO)
    first = open_change_pr(repo, "one", content="one\n", path="README.md")
    second = open_change_pr(repo, "two", content="two\n", path="README.md")
    sandbox.emu.wait_for_checks()
    first.merge()
    pull = repo.get_pull(second.number)
    assert pull.mergeable is False
    assert pull.mergeable_state == "dirty"
    with pytest.raises(GithubException) as refused:
        second.merge()
    assert refused.value.status == 405
    assert refused.value.data["message"] == "Pull Request is not mergeable"


def test_ref_and_pr_validation_errors(sandbox: Sandbox, gh: Github) -> None:
    repo = gh.get_repo(REPO)
    main = sandbox.emu.head("main")
    with pytest.raises(GithubException) as exists:
        repo.create_git_ref("refs/heads/main", main)
    assert exists.value.status == 422
    assert exists.value.data["message"] == "Reference already exists"
    with pytest.raises(GithubException) as empty:
        repo.create_git_ref("refs/heads/empty", main)
        repo.create_pull(base="main", head="empty", title="nothing")
    assert empty.value.status == 422
    assert "No commits between main and empty" in str(empty.value.data)
    pr = open_change_pr(repo, "promote/prod/v1.0.1", **QUICK)
    with pytest.raises(GithubException) as duplicate:
        repo.create_pull(base="main", head="acme:promote/prod/v1.0.1", title="again")
    assert "A pull request already exists" in str(duplicate.value.data)
    found = list(repo.get_pulls(state="open", head="acme:promote/prod/v1.0.1", base="main"))
    assert [p.number for p in found] == [pr.number]
    assert list(repo.get_pulls(state="closed")) == []
    # a non-fast-forward ref update needs force
    ref = repo.get_git_ref("heads/promote/prod/v1.0.1")
    with pytest.raises(GithubException) as not_ff:
        ref.edit(main)
    assert not_ff.value.status == 422
    assert not_ff.value.data["message"] == "Update is not a fast forward"
    ref.edit(main, force=True)
    assert sandbox.emu.head("promote/prod/v1.0.1") == main
    ref.delete()
    with pytest.raises(GithubException) as gone:
        repo.get_git_ref("heads/promote/prod/v1.0.1")
    assert gone.value.status == 404


def test_bad_credentials(sandbox: Sandbox) -> None:
    with pytest.raises(BadCredentialsException) as denied:
        sandbox.client("ghp_wrong").get_repo(REPO)
    assert denied.value.status == 401
    assert denied.value.data["message"] == "Bad credentials"
    assert "documentation_url" in denied.value.data
    response = httpx.get(f"{sandbox.emu.api_url}/repos/{REPO}")
    assert response.status_code == 401


def test_user_and_close(sandbox: Sandbox, gh: Github) -> None:
    assert gh.get_user().login == "release-bot"
    repo = gh.get_repo(REPO)
    pr = open_change_pr(repo, "promote/prod/v1.0.1", **QUICK)
    pr.create_issue_comment("Superseded")
    pr.edit(state="closed", title="Promote frontend (superseded)")
    closed = repo.get_pull(pr.number)
    assert closed.state == "closed" and closed.merged is False
    assert closed.title == "Promote frontend (superseded)"
    assert [c.body for c in closed.get_issue_comments()] == ["Superseded"]
    assert [c.user.login for c in closed.get_issue_comments()] == ["release-bot"]


def test_unbound_emulator_says_so(bare_repo: tuple[object, str]) -> None:
    emu = GitHubEmulator(bare_repo[0], REPO, {DEV_TOKEN: "x"})  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="bind"):
        _ = emu.api_url
    assert "kind: Kustomization" in emu.read_file("main", OVERLAY)


def test_strict_protection_blocks_a_behind_branch(sandbox: Sandbox, gh: Github) -> None:
    sandbox.emu.set_protection(strict=True)
    repo = gh.get_repo(REPO)
    first = open_change_pr(repo, "first", content="first\n", path="FIRST.md")
    second = open_change_pr(repo, "second", content="second\n", path="SECOND.md")
    sandbox.emu.wait_for_checks()
    first.merge()
    pull = repo.get_pull(second.number)
    assert pull.mergeable is True
    assert pull.mergeable_state == "behind"
    with pytest.raises(GithubException) as refused:
        second.merge()
    assert refused.value.status == 405
    assert refused.value.data["message"] == "Head branch is out of date."


def test_stale_approvals_dismissed_when_protection_says_so(sandbox: Sandbox, gh: Github) -> None:
    sandbox.emu.set_protection(required_approving_reviews=1, dismiss_stale_reviews=True)
    repo = gh.get_repo(REPO)
    pr = open_change_pr(repo, "promote/prod/v1.0.1", **QUICK)
    sandbox.client(PM_TOKEN).get_repo(REPO).get_pull(pr.number).create_review(event="APPROVE")
    sandbox.emu.wait_for_checks()
    assert repo.get_pull(pr.number).mergeable_state == "clean"
    parent = repo.get_git_commit(pr.head.sha)
    moved = repo.create_git_commit("More", parent.tree, [parent])
    repo.get_git_ref("heads/promote/prod/v1.0.1").edit(moved.sha)
    assert [r.state for r in pr.get_reviews()] == ["DISMISSED"]
    sandbox.emu.wait_for_checks()
    assert repo.get_pull(pr.number).mergeable_state == "blocked"


def test_draft_pull_request_does_not_merge(sandbox: Sandbox, gh: Github) -> None:
    repo = gh.get_repo(REPO)
    main = sandbox.emu.head("main")
    pr = open_change_pr(repo, "draft-base", content="draft\n", path="DRAFT.md")
    pr.edit(state="closed")
    draft = repo.create_pull(base="main", head="draft-base", title="WIP", draft=True)
    sandbox.emu.wait_for_checks()
    assert draft.draft is True
    assert repo.get_pull(draft.number).mergeable_state == "draft"
    with pytest.raises(GithubException) as refused:
        draft.merge()
    assert refused.value.status == 405
    assert refused.value.data["message"] == "Pull Request is still a draft"
    assert sandbox.emu.head("main") == main
