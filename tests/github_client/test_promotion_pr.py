"""The GitHub client against the emulator over real HTTP: promotion PRs, checks, merge, revert."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from github import Auth, Github
from pydantic import SecretStr

from promotion.config import ConfigError, Settings
from promotion.github import (
    ChecksFailed,
    ChecksTimedOut,
    GitHubClient,
    HeadMoved,
    MergeRefused,
    NothingToPromote,
    OverlayNotEditable,
    PullRequestNotFound,
    PullRequestNotMerged,
    ReviewTimedOut,
    is_transient,
)
from promotion.kustomize import read_image_tags, set_image_tags
from sandbox.seed import git

from .conftest import BOT_TOKEN, Sandbox

CHECK = "Kustomize validation"
MAX_CALLS = 12


def _tags(github: Sandbox, env: str, ref: str = "main") -> set[str]:
    overlay = github.config.environment(env).overlay
    text, _ = github.client.read_file(overlay, ref)
    return set(read_image_tags(text).values())


def _open(github: Sandbox, version: str = "v1.0.1", env: str = "staging"):  # type: ignore[no-untyped-def]
    return github.client.open_promotion_pr(
        github.config.environment(env), version, github.config.images()
    )


def _hotfix(github: Sandbox, env: str = "staging") -> str:
    """A change of the environment's overlay on main (not of its tags); returns main's head."""
    overlay = github.config.environment(env).overlay
    text, _ = github.client.read_file(overlay)
    return github.push_change("main", overlay, text.replace("kind:", "# hotfix\nkind:", 1))


def _all_pulls(github: Sandbox) -> list[int]:
    gh = Github(auth=Auth.Token(BOT_TOKEN), base_url=github.emu.api_url, retry=None)
    try:
        return [p.number for p in gh.get_repo(github.repository).get_pulls(state="all")]
    finally:
        gh.close()


def test_one_environment_promotion_and_its_rest_call_count(github: Sandbox) -> None:
    github.reset_stats()
    pr = _open(github)
    summary = github.client.wait_for_checks(
        pr.number, [CHECK], head_sha=pr.head_sha, poll_interval=0.5
    )
    merged = github.client.merge(pr.number, "squash", expected_head_sha=pr.head_sha)
    stats = github.stats()

    print(
        f"\nREST calls for one environment promotion: {stats['total']} (304s: "
        f"{stats['not_modified_total']})"
    )
    for route, count in stats["routes"].items():
        print(f"  {count:3d}  {route}")
    assert stats["total"] <= MAX_CALLS, stats
    assert stats["faulted_total"] == 0

    assert pr.created and pr.head_branch == "promote/staging/v1.0.1"
    assert pr.title == "Promote v1.0.1 to staging"
    assert [c.name for c in summary.checks] == [CHECK]
    assert summary.checks[0].conclusion == "success"
    assert not merged.already_merged
    assert github.git("rev-parse", "main") == merged.sha
    assert _tags(github, "staging") == {"v1.0.1"}
    assert _tags(github, "prod") == {"v1.0.0"}
    # one commit that changed the 9 tags at once
    changed = github.git("diff", "--name-only", f"{merged.sha}~1", merged.sha).split()
    assert changed == ["kustomize/staging/kustomization.yaml"]
    after = github.client.get_pr(pr.number)
    assert after.merged and after.merge_commit_sha == merged.sha


def test_pr_body_lists_every_service_old_and_new_tag(github: Sandbox) -> None:
    pr = _open(github)
    gh = Github(auth=Auth.Token(BOT_TOKEN), base_url=github.emu.api_url, retry=None)
    body = gh.get_repo(github.repository).get_pull(pr.number).body
    gh.close()
    for service in github.config.services:
        assert f"| {service} |" in body
    assert body.count("`v1.0.0` | `v1.0.1`") == 9
    assert "<!-- release-promotion: promote staging v1.0.1 -->" in body
    assert BOT_TOKEN not in body


def test_rerun_returns_the_same_pr_without_new_commits(github: Sandbox) -> None:
    first = _open(github)
    second = _open(github)
    assert second.number == first.number
    assert second.head_sha == first.head_sha
    assert not second.created
    assert _all_pulls(github) == [first.number]
    assert github.commits_ahead(first.head_branch) == [first.head_sha]


def test_an_unrelated_commit_on_the_base_leaves_the_pr_head_alone(github: Sandbox) -> None:
    """A README commit on main does not change what merging the PR does: the head (and so
    its checks and the approval bound to it) stays."""
    first = _open(github)
    github.push_change("main", "README.md", "# moved on\n")
    second = _open(github)
    assert second.number == first.number and not second.created
    assert second.head_sha == first.head_sha
    assert _all_pulls(github) == [first.number]


def test_a_change_of_the_overlay_on_the_base_rebuilds_the_branch_on_it(github: Sandbox) -> None:
    first = _open(github)
    overlay = github.config.environment("staging").overlay
    new_main = _hotfix(github)
    second = _open(github)
    assert second.number == first.number and not second.created
    assert second.head_sha != first.head_sha
    assert github.git("rev-parse", f"{second.head_sha}^") == new_main
    assert github.commits_ahead(second.head_branch) == [second.head_sha]
    assert _all_pulls(github) == [first.number]
    assert _tags(github, "staging", second.head_sha) == {"v1.0.1"}
    assert "# hotfix" in github.client.read_file(overlay, second.head_sha)[0]


def test_a_tag_change_on_the_base_rebuilds_the_head_that_no_longer_merges(
    github: Sandbox,
) -> None:
    """Another release merged into the same overlay: the head sets every tag the base's new
    overlay would get, but its parent's overlay is not the base's, so it conflicts (GitHub:
    405 "not mergeable"). Kept, the merge was refused and the run stopped (found on
    PostgreSQL by the concurrent-promotions test); it must be rebuilt on the base instead."""
    first = _open(github, "v1.0.2")
    overlay = github.config.environment("staging").overlay
    text, _ = github.client.read_file(overlay)
    other = set_image_tags(text, {i: "v1.0.1" for i in github.config.images().values()})
    new_main = github.push_change("main", overlay, other)
    second = _open(github, "v1.0.2")
    assert second.number == first.number and not second.created
    assert second.head_sha != first.head_sha
    assert github.git("rev-parse", f"{second.head_sha}^") == new_main
    github.client.wait_for_checks(second.number, [CHECK], timeout=60, poll_interval=0.2)
    merged = github.client.merge(second.number, "squash", expected_head_sha=second.head_sha)
    assert not merged.already_merged
    assert _tags(github, "staging") == {"v1.0.2"}


def test_wrong_content_on_the_branch_is_corrected(github: Sandbox) -> None:
    first = _open(github)
    overlay = github.config.environment("staging").overlay
    github.push_change(first.head_branch, overlay, "garbage: true\n")
    second = _open(github)
    assert second.number == first.number
    assert github.commits_ahead(second.head_branch) == [second.head_sha]
    assert _tags(github, "staging", second.head_sha) == {"v1.0.1"}


def test_leftover_branch_without_pr_gets_its_pr(github: Sandbox) -> None:
    github.push_change("promote/staging/v1.0.1", "README.md", "leftover\n")
    pr = _open(github)
    assert pr.created
    assert github.commits_ahead(pr.head_branch) == [pr.head_sha]
    assert _tags(github, "staging", pr.head_sha) == {"v1.0.1"}
    readme, _ = github.client.read_file("README.md", pr.head_sha)
    assert readme != "leftover\n"


def test_nothing_to_promote_opens_nothing(github: Sandbox) -> None:
    with pytest.raises(NothingToPromote, match=r"already at v1\.0\.0") as caught:
        _open(github, "v1.0.0")
    assert caught.value.repository == github.repository
    assert caught.value.branch == "promote/staging/v1.0.0"
    assert _all_pulls(github) == []
    assert "promote/staging/v1.0.0" not in github.git("for-each-ref", "--format=%(refname)")


def test_a_pr_merged_by_another_run_meanwhile_is_not_opened_again(github: Sandbox) -> None:
    """Two promotions of one release: the second looks for the open PR just as the first merges
    it. It must not open a second PR on the merged head (found by bench/scale.py)."""
    pr = _open(github)
    github.client.wait_for_checks(pr.number, [CHECK], head_sha=pr.head_sha, poll_interval=0.2)
    # the second run's lookup of the open PR is served only after the merge below
    github.fault(kind="stall", method="GET", path=r"/pulls$", count=1, seconds=1.5)
    outcome: list[object] = []

    def second() -> None:
        try:
            outcome.append(_open(github))
        except NothingToPromote as exc:
            outcome.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.7)
    github.client.merge(pr.number, "squash", expected_head_sha=pr.head_sha)
    thread.join(30)
    assert _all_pulls(github) == [pr.number], outcome
    assert len(outcome) == 1 and isinstance(outcome[0], NothingToPromote), outcome
    assert "v1.0.1" in str(outcome[0])


def test_broken_overlay_fails_the_check_with_kustomize_message(github: Sandbox) -> None:
    overlay = github.config.environment("staging").overlay
    text, _ = github.client.read_file(overlay)
    github.push_change("main", overlay, text.replace("  - ../base\n", "  - ../no-such-dir\n"))
    pr = _open(github)
    with pytest.raises(ChecksFailed) as caught:
        github.client.wait_for_checks(pr.number, [CHECK], timeout=60, poll_interval=0.2)
    assert caught.value.pr_number == pr.number
    assert "no-such-dir" in str(caught.value)
    assert caught.value.failed[0].name == CHECK
    assert caught.value.failed[0].conclusion == "failure"


def test_checks_time_out_listing_what_is_pending(github: Sandbox) -> None:
    github.emu.check_duration = 30.0
    pr = _open(github)
    with pytest.raises(ChecksTimedOut, match="Kustomize validation") as caught:
        github.client.wait_for_checks(
            pr.number, [CHECK, "ci/extra"], timeout=0.5, poll_interval=0.2
        )
    assert set(caught.value.pending) == {CHECK, "ci/extra"}
    assert "ci/extra (not reported)" in str(caught.value)


def test_commit_statuses_count_as_checks(github: Sandbox) -> None:
    pr = _open(github)
    github.admin.post(
        "/_sandbox/statuses",
        json={"sha": pr.head_sha, "context": "ci/extra", "state": "success"},
    ).raise_for_status()
    summary = github.client.wait_for_checks(
        pr.number, [CHECK, "ci/extra"], timeout=30, poll_interval=0.2
    )
    assert {c.name: c.kind for c in summary.checks} == {CHECK: "check_run", "ci/extra": "status"}
    github.admin.post(
        "/_sandbox/statuses",
        json={
            "sha": pr.head_sha,
            "context": "ci/extra",
            "state": "failure",
            "description": "smoke test failed",
        },
    ).raise_for_status()
    with pytest.raises(ChecksFailed, match="smoke test failed"):
        github.client.wait_for_checks(pr.number, [CHECK, "ci/extra"], timeout=30, poll_interval=0.2)


def test_merge_is_idempotent(github: Sandbox) -> None:
    pr = _open(github)
    github.client.wait_for_checks(pr.number, [CHECK], timeout=60, poll_interval=0.2)
    first = github.client.merge(pr.number)
    again = github.client.merge(pr.number, expected_head_sha=pr.head_sha)
    assert again.already_merged and again.sha == first.sha
    latest = github.client.latest_merged_pr("promote/staging/")
    assert latest is not None and latest.number == pr.number
    assert latest.merge_commit_sha == first.sha
    assert github.client.latest_merged_pr("promote/prod/") is None
    found = github.client.find_pr(pr.head_branch, state="all")
    assert found is not None and found.merged
    assert github.client.find_pr(pr.head_branch) is None  # no open one any more


def test_merge_refused_405_carries_github_reason(github: Sandbox) -> None:
    github.emu.set_protection(required_approving_reviews=1)
    pr = _open(github)
    github.client.wait_for_checks(pr.number, [CHECK], timeout=60, poll_interval=0.2)
    with pytest.raises(MergeRefused) as caught:
        github.client.merge(pr.number, expected_head_sha=pr.head_sha)
    assert caught.value.status == 405
    assert caught.value.reason
    assert caught.value.reason in str(caught.value)
    assert caught.value.kind == "review" and not is_transient(caught.value)
    assert caught.value.branch == pr.head_branch
    assert not github.client.get_pr(pr.number).merged


def test_a_merge_queue_refusal_is_final_and_named(github: Sandbox) -> None:
    github.admin.put(
        "/_sandbox/rulesets", json={"rulesets": [{"name": "queue", "merge_queue": True}]}
    ).raise_for_status()
    pr = _open(github)
    github.client.wait_for_checks(pr.number, [CHECK], timeout=60, poll_interval=0.2)
    with pytest.raises(MergeRefused) as caught:
        github.client.merge(pr.number, expected_head_sha=pr.head_sha)
    assert caught.value.status == 405 and caught.value.kind == "merge_queue"
    assert "merge queue" in str(caught.value) and not is_transient(caught.value)
    assert not github.client.get_pr(pr.number).merged


def test_merge_with_a_moved_head_is_409(github: Sandbox) -> None:
    pr = _open(github)
    github.client.wait_for_checks(pr.number, [CHECK], timeout=60, poll_interval=0.2)
    with pytest.raises(HeadMoved) as caught:
        github.client.merge(pr.number, expected_head_sha="0" * 40)
    assert caught.value.status == 409
    assert not github.client.get_pr(pr.number).merged


def test_unknown_pr_is_not_found(github: Sandbox) -> None:
    with pytest.raises(PullRequestNotFound):
        github.client.get_pr(999)


def test_reviews_latest_per_user_on_the_current_head(github: Sandbox) -> None:
    pr = _open(github)
    client = github.client
    assert client.find_approving_review(pr.number, ["pm-carol"]) is None

    def review(token: str, event: str, commit: str | None = None) -> None:
        gh = Github(auth=Auth.Token(token), base_url=github.emu.api_url, retry=None)
        pull = gh.get_repo(github.repository).get_pull(pr.number)
        if commit is None:
            pull.create_review(event=event, body=event)
        else:
            pull.create_review(
                commit=gh.get_repo(github.repository).get_commit(commit), event=event, body=event
            )
        gh.close()

    review("ghp_other_token", "APPROVE")
    assert client.find_approving_review(pr.number, ["pm-carol"]) is None
    review("ghp_pm_token", "APPROVE")
    found = client.find_approving_review(pr.number, ["pm-carol"])
    assert found is not None and found.login == "pm-carol" and found.commit_id == pr.head_sha
    assert client.wait_for_approving_review(pr.number, ["pm-carol"], timeout=5).id == found.id
    review("ghp_pm_token", "REQUEST_CHANGES")
    assert client.find_approving_review(pr.number, ["pm-carol"]) is None
    review("ghp_pm_token", "APPROVE")
    assert client.find_approving_review(pr.number, ["pm-carol"]) is not None
    # the head moves: an approval of the old head no longer counts
    _hotfix(github)
    moved = _open(github)
    assert moved.head_sha != pr.head_sha
    assert client.find_approving_review(pr.number, ["pm-carol"]) is None
    with pytest.raises(ReviewTimedOut, match="pm-carol"):
        client.wait_for_approving_review(pr.number, ["pm-carol"], timeout=0.3, poll_interval=0.1)


def test_comment_with_key_is_not_repeated_and_close_is_idempotent(github: Sandbox) -> None:
    pr = _open(github)
    first = github.client.comment(pr.number, "waiting for approval", key="status")
    # the emulator has no PATCH /issues/comments/{id}: re-send the same text (no edit needed)
    second = github.client.comment(pr.number, "waiting for approval", key="status")
    assert first.created and not second.created and first.id == second.id
    other = github.client.comment(pr.number, "plain")
    assert other.created and other.id != first.id
    closed = github.client.close(pr.number)
    assert closed.state == "closed" and not closed.merged
    assert github.client.close(pr.number).state == "closed"


def test_revert_pr_restores_the_previous_overlay(github: Sandbox) -> None:
    overlay = github.config.environment("staging").overlay
    before, _ = github.client.read_file(overlay)
    pr = _open(github)
    github.client.wait_for_checks(pr.number, [CHECK], timeout=60, poll_interval=0.2)
    merged = github.client.merge(pr.number)

    with pytest.raises(PullRequestNotMerged):
        other = _open(github, "v1.0.1", "prod")
        github.client.open_revert_pr(other.number)

    revert = github.client.open_revert_pr(pr.number)
    assert revert.created
    assert revert.head_branch == "revert/promote/staging/v1.0.1"
    assert revert.title == 'Revert "Promote v1.0.1 to staging"'
    assert github.client.read_file(overlay, revert.head_sha)[0] == before
    assert github.commits_ahead(revert.head_branch) == [revert.head_sha]
    gh = Github(auth=Auth.Token(BOT_TOKEN), base_url=github.emu.api_url, retry=None)
    body = gh.get_repo(github.repository).get_pull(revert.number).body
    gh.close()
    assert f"#{pr.number}" in body and merged.sha in body

    again = github.client.open_revert_pr(pr.number)
    assert again.number == revert.number and not again.created
    assert again.head_sha == revert.head_sha

    github.client.wait_for_checks(revert.number, [CHECK], timeout=60, poll_interval=0.2)
    github.client.merge(revert.number)
    assert github.client.read_file(overlay)[0] == before
    # A rollback run again finds the merged revert instead of failing or reverting twice.
    done = github.client.open_revert_pr(pr.number)
    assert done.number == revert.number and done.merged


def test_polling_is_conditional_so_unchanged_answers_are_304s(github: Sandbox) -> None:
    github.emu.check_duration = 3.0
    pr = _open(github)
    github.reset_stats()
    summary = github.client.wait_for_checks(
        pr.number, [CHECK], timeout=30, poll_interval=0.1, head_sha=pr.head_sha
    )
    assert summary.checks[0].conclusion == "success"
    stats = github.stats()
    route = "GET /repos/{owner}/{repo}/commits/{ref}/check-runs"
    # one answer per state the check went through (queued/in progress, completed) at most three
    assert stats["routes"][route] <= 3, stats
    assert stats["not_modified"].get(route, 0) >= 2, stats


def test_an_overlay_without_the_image_is_not_editable(github: Sandbox) -> None:
    images = {**github.config.images(), "newservice": "registry.example/newservice"}
    with pytest.raises(OverlayNotEditable, match="newservice"):
        github.client.open_promotion_pr(github.config.environment("staging"), "v1.0.1", images)
    assert _all_pulls(github) == []


def test_client_from_settings(github: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELEASE_PROMOTION_GITHUB_TOKEN", raising=False)
    settings = Settings(github_url=github.emu.api_url, github_token=SecretStr(BOT_TOKEN))
    with GitHubClient.from_settings(settings, github.config) as client:
        assert client.base_head_sha() == github.git("rev-parse", "main")
    with pytest.raises(ConfigError, match="RELEASE_PROMOTION_GITHUB_TOKEN"):
        GitHubClient.from_settings(Settings(github_url=github.emu.api_url), github.config)


def test_contains_follows_the_branch_history(github: Sandbox, tmp_path: Path) -> None:
    before = github.emu.head("main")
    work = tmp_path / "work"
    git("clone", "--quiet", str(github.bare), str(work))
    (work / "NOTES.md").write_text("another merge\n")
    git("add", "NOTES.md", cwd=work)
    git("commit", "--quiet", "-m", "another merge", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    after = github.emu.head("main")
    assert after != before
    assert github.client.contains(after, before)
    assert github.client.contains(before, before)
    assert not github.client.contains(before, after)


def _open_fresh(github: Sandbox, version: str = "v1.0.1", env: str = "staging"):  # type: ignore[no-untyped-def]
    return github.client.open_promotion_pr(
        github.config.environment(env), version, github.config.images(), fresh=True
    )


def test_a_fresh_open_creates_the_branch_without_reading_it_first(github: Sandbox) -> None:
    github.reset_stats()
    pr = _open_fresh(github)
    routes = github.stats()["routes"]
    assert pr.created and github.commits_ahead(pr.head_branch) == [pr.head_sha]
    assert "GET /repos/{owner}/{repo}/git/ref/{ref}" not in routes, routes
    overlay = github.config.environment("staging").overlay
    # The text it carries is the head's overlay, as GitHub serves it.
    assert pr.content[overlay] == github.client.read_file(overlay, pr.head_sha)[0]


@pytest.mark.parametrize("left", ["an open PR on a stale branch", "a branch without a PR"])
def test_a_fresh_open_on_an_existing_branch_still_ends_with_one_commit_and_one_pr(
    github: Sandbox, left: str
) -> None:
    if left == "a branch without a PR":
        github.push_change("promote/staging/v1.0.1", "README.md", "leftover\n")
        first_number = None
    else:
        first_number = _open(github).number
        _hotfix(github)
    pr = _open_fresh(github)  # GitHub answers 422 "Reference already exists"; it goes on
    assert pr.created is (first_number is None)
    if first_number is not None:
        assert pr.number == first_number
    assert github.commits_ahead(pr.head_branch) == [pr.head_sha]
    assert github.git("rev-parse", f"{pr.head_sha}^") == github.git("rev-parse", "main")
    assert len(_all_pulls(github)) == 1
    assert _tags(github, "staging", pr.head_sha) == {"v1.0.1"}


def test_a_downgrade_is_refused_on_the_overlay_it_would_edit(github: Sandbox) -> None:
    from promotion.models import DowngradeRefused

    merged = _open(github, "v1.0.2")
    github.client.wait_for_checks(merged.number, [CHECK], head_sha=merged.head_sha)
    github.client.merge(merged.number, "squash", expected_head_sha=merged.head_sha)
    env = github.config.environment("staging")
    with pytest.raises(DowngradeRefused, match=r"v1\.0\.2"):
        github.client.open_promotion_pr(
            env, "v1.0.1", github.config.images(), allow_downgrade=False
        )
    assert "promote/staging/v1.0.1" not in github.git("for-each-ref", "--format=%(refname)")
    allowed = github.client.open_promotion_pr(
        env, "v1.0.1", github.config.images(), allow_downgrade=True
    )
    assert allowed.created
