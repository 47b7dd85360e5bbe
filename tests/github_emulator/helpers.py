"""Steps the emulator tests share: a promotion-like change made with PyGithub."""

from __future__ import annotations

import time

from github import InputGitTreeElement
from github.PullRequest import PullRequest
from github.Repository import Repository

from promotion.kustomize import set_image_tags

OVERLAY = "kustomize/prod/kustomization.yaml"
IMAGE = "registry.digitalocean.com/microservices-demo/frontend"


def open_change_pr(
    repo: Repository,
    branch: str,
    content: str | None = None,
    path: str = OVERLAY,
    title: str = "Promote frontend to v1.0.1 in prod",
) -> PullRequest:
    """Branch from main, one commit changing ``path`` through the git data API, and a PR."""
    main = repo.get_git_ref("heads/main")
    base_commit = repo.get_git_commit(main.object.sha)
    if content is None:
        current = repo.get_contents(path, ref="main")
        assert not isinstance(current, list)
        content = set_image_tags(current.decoded_content.decode(), {IMAGE: "v1.0.1"})
    blob = repo.create_git_blob(content, "utf-8")
    tree = repo.create_git_tree(
        [InputGitTreeElement(path, "100644", "blob", sha=blob.sha)], base_tree=base_commit.tree
    )
    commit = repo.create_git_commit(title, tree, [base_commit])
    repo.create_git_ref(f"refs/heads/{branch}", commit.sha)
    return repo.create_pull(
        base="main", head=branch, title=title, body="frontend: v1.0.0 -> v1.0.1"
    )


def wait_check(repo: Repository, sha: str, timeout: float = 20.0) -> dict[str, object]:
    """Poll the check runs of ``sha`` until "Kustomize validation" completed; return it raw."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [
            r for r in repo.get_commit(sha).get_check_runs() if r.name == "Kustomize validation"
        ]
        if runs and runs[0].status == "completed":
            return runs[0].raw_data
        time.sleep(0.05)
    raise AssertionError(f"check on {sha} did not complete in {timeout}s")


# A change no overlay sees: its validation check completes at once ("No overlay changed").
QUICK: dict[str, str] = {"content": "release notes\n", "path": "NOTES.md"}
