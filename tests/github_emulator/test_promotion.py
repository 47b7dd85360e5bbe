"""PyGithub, unchanged, drives a promotion against the emulator over real HTTP."""

from __future__ import annotations

from github import Github, GithubException

from sandbox.seed import git
from tests.github_emulator.conftest import PM_TOKEN, REPO, Sandbox
from tests.github_emulator.helpers import IMAGE, OVERLAY, QUICK, open_change_pr, wait_check


def test_promotion_check_passes_and_merge_moves_main(sandbox: Sandbox, gh: Github) -> None:
    repo = gh.get_repo(REPO)
    assert repo.default_branch == "main"
    pr = open_change_pr(repo, "promote/prod/v1.0.1")
    assert pr.number == 1
    assert pr.head.ref == "promote/prod/v1.0.1"
    assert [f.filename for f in pr.get_files()] == [OVERLAY]

    run = wait_check(repo, pr.head.sha)
    assert run["conclusion"] == "success", run["output"]
    assert "kustomize/prod" in run["output"]["summary"]  # type: ignore[index]

    pr = repo.get_pull(pr.number)
    assert pr.mergeable is True
    assert pr.mergeable_state == "clean"
    status = pr.merge(merge_method="squash", sha=pr.head.sha)
    assert status.merged is True

    assert sandbox.emu.head("main") == status.sha
    assert "newTag: v1.0.1" in sandbox.emu.read_file("main", OVERLAY).split(IMAGE, 1)[1]
    merged = repo.get_pull(pr.number)
    assert merged.merged is True
    assert merged.state == "closed"
    assert merged.merge_commit_sha == status.sha
    assert repo.get_branch("main").commit.sha == status.sha


def test_merge_methods_merge_and_rebase(sandbox: Sandbox, gh: Github) -> None:
    repo = gh.get_repo(REPO)
    first = open_change_pr(repo, "change-merge", **QUICK)
    wait_check(repo, first.head.sha)
    result = first.merge(merge_method="merge")
    commit = repo.get_git_commit(result.sha)
    assert len(commit.parents) == 2

    readme = repo.get_contents("README.md", ref="main")
    assert not isinstance(readme, list)
    second = open_change_pr(repo, "change-rebase", content="# changed\n", path="README.md")
    sandbox.emu.wait_for_checks()
    result = second.merge(merge_method="rebase")
    rebased = repo.get_git_commit(result.sha)
    assert [p.sha for p in rebased.parents] == [commit.sha]
    assert rebased.message == "Promote frontend to v1.0.1 in prod"
    assert sandbox.emu.read_file("main", "README.md") == "# changed\n"


def test_git_clone_over_http_sees_the_merge(sandbox: Sandbox, gh: Github, tmp_path) -> None:  # type: ignore[no-untyped-def]
    repo = gh.get_repo(REPO)
    pr = open_change_pr(repo, "promote/prod/v1.0.1")
    wait_check(repo, pr.head.sha)
    merged = pr.merge(merge_method="squash")
    clone = tmp_path / "clone"
    git("clone", "--quiet", sandbox.emu.git_url, str(clone))
    assert git("rev-parse", "HEAD", cwd=clone).strip() == merged.sha
    assert "v1.0.1" in (clone / OVERLAY).read_text()

    # a push over HTTP moves a PR head and re-runs the check
    git("checkout", "--quiet", "-b", "from-clone", cwd=clone)
    (clone / "README.md").write_text("# pushed\n")
    git("commit", "--quiet", "-am", "Pushed over HTTP", cwd=clone)
    git("push", "--quiet", "origin", "from-clone", cwd=clone)
    assert sandbox.emu.head("from-clone") == git("rev-parse", "HEAD", cwd=clone).strip()
    opened = repo.create_pull(base="main", head="from-clone", title="Pushed")
    (clone / "README.md").write_text("# pushed again\n")
    git("commit", "--quiet", "-am", "Pushed again", cwd=clone)
    git("push", "--quiet", "origin", "from-clone", cwd=clone)
    new_head = git("rev-parse", "HEAD", cwd=clone).strip()
    assert repo.get_pull(opened.number).head.sha == new_head
    assert wait_check(repo, new_head)["conclusion"] == "success"


def test_pm_review_from_another_login(sandbox: Sandbox, gh: Github) -> None:
    sandbox.emu.set_protection(required_approving_reviews=1)
    repo = gh.get_repo(REPO)
    pr = open_change_pr(repo, "promote/prod/v1.0.1", **QUICK)
    wait_check(repo, pr.head.sha)
    assert repo.get_pull(pr.number).mergeable_state == "blocked"
    try:
        pr.create_review(event="APPROVE")
    except GithubException as exc:
        assert exc.status == 422
        assert "own pull request" in str(exc.data)
    else:
        raise AssertionError("a PR author approved their own PR")
    pm_repo = sandbox.client(PM_TOKEN).get_repo(REPO)
    review = pm_repo.get_pull(pr.number).create_review(body="ship it", event="APPROVE")
    assert review.user.login == "pm-carol"
    assert review.state == "APPROVED"
    reviews = list(repo.get_pull(pr.number).get_reviews())
    assert [(r.user.login, r.state) for r in reviews] == [("pm-carol", "APPROVED")]
    assert repo.get_pull(pr.number).mergeable_state == "clean"
    assert pr.merge(merge_method="squash").merged


def test_commit_written_straight_into_the_bare_repo_is_noticed(
    sandbox: Sandbox, gh: Github
) -> None:
    repo = gh.get_repo(REPO)
    pr = open_change_pr(repo, "promote/prod/v1.0.1", **QUICK)
    wait_check(repo, pr.head.sha)
    bare = sandbox.emu.repo.path
    tree = git("rev-parse", f"{pr.head.sha}^{{tree}}", cwd=bare).strip()
    moved = git("commit-tree", tree, "-p", pr.head.sha, "-m", "Behind the API", cwd=bare).strip()
    git("update-ref", "refs/heads/promote/prod/v1.0.1", moved, cwd=bare)
    assert repo.get_pull(pr.number).head.sha == moved
    assert wait_check(repo, moved)["conclusion"] == "success"


def test_concurrent_writers_do_not_corrupt_state(sandbox: Sandbox, gh: Github) -> None:
    from concurrent.futures import ThreadPoolExecutor

    repo = gh.get_repo(REPO)
    main = sandbox.emu.head("main")

    def create(i: int) -> str:
        return repo.create_git_ref(f"refs/heads/parallel-{i}", main).ref

    with ThreadPoolExecutor(8) as pool:
        refs = list(pool.map(create, range(16)))
    assert sorted(refs) == sorted(f"refs/heads/parallel-{i}" for i in range(16))
    assert len([b for b in sandbox.emu.branches() if b.startswith("parallel-")]) == 16

    def open_pr(i: int) -> int:
        return open_change_pr(repo, f"pr-{i}", content=f"change {i}\n", path=f"file-{i}.txt").number

    with ThreadPoolExecutor(4) as pool:
        numbers = list(pool.map(open_pr, range(6)))
    assert sorted(numbers) == [1, 2, 3, 4, 5, 6]
