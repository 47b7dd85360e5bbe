"""Reading what happened: the previous promotion, a PR's own diff, comments and reviews,
and the revert of exactly one promotion."""

from __future__ import annotations

import time

from promotion.github import PullRequestInfo

from .conftest import Sandbox

CHECK = "Kustomize validation"


def _promote(github: Sandbox, version: str, env: str = "staging") -> PullRequestInfo:
    pr = github.client.open_promotion_pr(
        github.config.environment(env), version, github.config.images()
    )
    github.client.wait_for_checks(pr.number, [CHECK], timeout=30, poll_interval=0.1)
    github.client.merge(pr.number, expected_head_sha=pr.head_sha)
    return github.client.get_pr(pr.number)


def test_the_previous_promotion_is_the_one_merged_last_not_updated_last(github: Sandbox) -> None:
    first = _promote(github, "v1.0.1")
    time.sleep(1.1)  # GitHub's timestamps have whole seconds
    second = _promote(github, "v1.0.2")
    time.sleep(1.1)
    github.client.comment(first.number, "post-merge note")  # moves the first one's updated_at
    latest = github.client.latest_merged_pr("promote/staging/")
    assert latest is not None and latest.number == second.number
    assert github.client.latest_merged_pr("promote/prod/") is None
