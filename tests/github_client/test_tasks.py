"""The Prefect tasks under a real Prefect test server: transient-only retries, no duplicates."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prefect import flow
from prefect.blocks.system import Secret
from pydantic import SecretStr

from promotion.config import Environment
from promotion.github import MergeRefused, MergeResult, NothingToPromote, PullRequestInfo
from tasks import github as gh_tasks
from tasks.github import GitHubTarget

from .conftest import BOT_TOKEN, Sandbox

CHECK = "Kustomize validation"

pytestmark = pytest.mark.usefixtures("prefect_server")


@flow(name="test-promote-environment")
def promote(
    target: GitHubTarget, env: Environment, version: str, images: dict[str, str]
) -> tuple[PullRequestInfo, MergeResult]:
    pr = gh_tasks.open_promotion_pr(target, env, version, images)
    gh_tasks.wait_for_checks(
        target, pr.number, [CHECK], timeout=60, poll_interval=0.2, head_sha=pr.head_sha
    )
    merged = gh_tasks.merge(target, pr.number, "squash", expected_head_sha=pr.head_sha)
    return pr, merged


def _target(github: Sandbox, **extra: Any) -> GitHubTarget:
    return GitHubTarget(base_url=github.emu.api_url, repository=github.repository, **extra)


def _unreachable_commits(github: Sandbox) -> list[str]:
    out = github.git("fsck", "--unreachable", "--no-reflogs", "--no-progress")
    return [line for line in out.splitlines() if line.startswith("unreachable commit")]


def test_promotion_survives_three_502s_and_a_429(github: Sandbox) -> None:
    Secret(value=BOT_TOKEN).save("test-github-token", overwrite=True)
    target = _target(github, token_block="test-github-token")
    # the PR creation fails three times after the branch was pushed; the merge is rate limited
    github.fault(kind="error", status=502, path=r"/pulls$", method="POST", count=3)
    github.fault(kind="rate_limit", path=r"/merge$", method="PUT", count=1, retry_after=1)
    env = github.config.environment("staging")

    pr, merged = promote(target, env, "v1.0.1", github.config.images())

    stats = github.stats()
    assert stats["faulted"] == {
        "POST /repos/{owner}/{repo}/pulls": 3,
        "PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge": 1,
    }
    assert stats["routes"]["POST /repos/{owner}/{repo}/pulls"] == 1
    assert stats["routes"]["POST /repos/{owner}/{repo}/git/commits"] == 1
    assert stats["routes"]["POST /repos/{owner}/{repo}/git/refs"] == 1
    assert github.client.get_pr(pr.number).merged
    assert github.client.find_pr(pr.head_branch, state="all") == github.client.get_pr(pr.number)
    assert [
        p for p in github.git("for-each-ref", "--format=%(refname)").split() if "promote/" in p
    ] in ([], [f"refs/heads/{pr.head_branch}"])
    assert _unreachable_commits(github) == []
    assert merged.sha == github.git("rev-parse", "main")


def test_a_logic_error_is_not_retried(github: Sandbox) -> None:
    target = _target(github, token=SecretStr(BOT_TOKEN))
    env = github.config.environment("staging")

    @flow(name="test-nothing-to-promote")
    def nothing() -> None:
        gh_tasks.open_promotion_pr(target, env, "v1.0.0", github.config.images())

    github.reset_stats()
    with pytest.raises(NothingToPromote):
        nothing()
    assert github.stats()["routes"]["GET /repos/{owner}/{repo}/contents/{path}"] == 1


def test_read_tasks(github: Sandbox) -> None:
    target = _target(github, token=SecretStr(BOT_TOKEN))
    overlay = github.config.environment("prod").overlay

    @flow(name="test-github-reads")
    def reads() -> tuple[str, str, PullRequestInfo | None]:
        return (
            gh_tasks.read_file(target, overlay),
            gh_tasks.branch_head(target),
            gh_tasks.find_promotion_pr(target, "prod", "v1.0.1"),
        )

    text, head, found = reads()
    assert "newTag: v1.0.0" in text
    assert head == github.git("rev-parse", "main")
    assert found is None


def test_rate_limits_are_waited_out_and_a_merge_race_is_retried(github: Sandbox) -> None:
    """A primary limit waits for its reset, a secondary one without Retry-After for the
    configured minimum (lowered here from GitHub's 60 s), and 405 "Base branch was modified"
    is retried; each once."""
    target = _target(github, token=SecretStr(BOT_TOKEN), secondary_rate_limit_wait=1.0)
    github.fault(kind="primary_rate_limit", path=r"/contents/", count=1, reset_in=1)
    github.fault(
        kind="secondary_rate_limit", path=r"/pulls$", method="POST", count=1, retry_after=None
    )
    github.fault(kind="base_modified", path=r"/merge$", method="PUT", count=1)
    env = github.config.environment("staging")

    started = time.monotonic()
    pr, merged = promote(target, env, "v1.0.1", github.config.images())
    elapsed = time.monotonic() - started

    assert github.stats()["faulted"] == {
        "GET /repos/{owner}/{repo}/contents/{path}": 1,
        "POST /repos/{owner}/{repo}/pulls": 1,
        "PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge": 1,
    }
    assert merged.sha == github.git("rev-parse", "main") and github.client.get_pr(pr.number).merged
    assert elapsed >= 2.0  # the reset (>= 1 s) and the secondary wait (1 s) were waited out


def test_a_merge_refused_for_a_missing_check_is_final_and_says_so(github: Sandbox) -> None:
    target = _target(github, token=SecretStr(BOT_TOKEN))
    github.admin.put(
        "/_sandbox/protection", json={"required_checks": ["Kustomize validation", "e2e"]}
    ).raise_for_status()
    env = github.config.environment("staging")

    @flow(name="test-merge-refused")
    def merge_now() -> MergeResult:
        pr = gh_tasks.open_promotion_pr(target, env, "v1.0.1", github.config.images())
        return gh_tasks.merge(target, pr.number, "squash", expected_head_sha=pr.head_sha)

    with pytest.raises(MergeRefused) as caught:
        merge_now()
    assert caught.value.kind == "checks"
    assert "Required status check" in str(caught.value) and "is expected" in str(caught.value)
    assert github.stats()["routes"]["PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge"] == 1
