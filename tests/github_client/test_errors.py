"""Which failures are transient, what they carry, and that the token never shows."""

from __future__ import annotations

import pickle
import time
from typing import Any

import pytest
import requests
from github import GithubException

from promotion.github import (
    SECONDARY_RATE_LIMIT_WAIT,
    GitHubClient,
    GitHubError,
    GitHubRateLimited,
    GitHubRateLimitExhausted,
    GitHubRequestFailed,
    GitHubUnavailable,
    MergeRaced,
    MergeRefused,
    PullRequestNotFound,
    is_transient,
)
from sandbox.http import free_port
from tasks.retry import MAX_RETRY_AFTER, transient_only

from .conftest import BOT_TOKEN, Sandbox


@pytest.mark.parametrize(
    ("status", "message", "headers", "expected"),
    [
        (500, "Server Error", {}, True),
        (502, "Server Error", {}, True),
        (503, "Service Unavailable", {}, True),
        (429, "API rate limit exceeded", {"retry-after": "1"}, True),
        (403, "You have exceeded a secondary rate limit.", {"retry-after": "30"}, True),
        (403, "You have exceeded a secondary rate limit.", {}, True),
        (403, "Resource not accessible by integration", {}, False),
        # primary: waited out until the reset, unless that is past MAX_RATE_LIMIT_WAIT
        (403, "API rate limit exceeded for user ID 1.", {"x-ratelimit-remaining": "0"}, True),
        (
            403,
            "API rate limit exceeded for user ID 1.",
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 30)},
            True,
        ),
        (
            429,
            "API rate limit exceeded for user ID 1.",
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 3600)},
            False,
        ),
        (401, "Bad credentials", {}, False),
        (404, "Not Found", {}, False),
        (405, "Pull Request is not mergeable", {}, False),
        (429, "Too many requests", {}, True),
        (409, "Head branch was modified", {}, False),
        (422, "Validation Failed", {}, False),
    ],
)
def test_pygithub_exceptions(
    status: int, message: str, headers: dict[str, str], expected: bool
) -> None:
    assert is_transient(GithubException(status, {"message": message}, headers)) is expected


def test_connection_errors_and_logic_errors() -> None:
    assert is_transient(requests.ConnectionError("refused"))
    assert is_transient(requests.Timeout("slow"))
    assert not is_transient(ValueError("bug"))
    assert is_transient(GitHubUnavailable("x"))
    assert is_transient(GitHubRateLimited("x", retry_after=1.0))
    assert not is_transient(GitHubRequestFailed("x"))
    assert not is_transient(MergeRefused("x"))


def test_errors_survive_pickling_with_their_context() -> None:
    error = MergeRefused("[o/r#3] merge refused", repository="o/r", pr_number=3, status=405)
    error.reason = "Required status check is expected"
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is MergeRefused and str(copy) == str(error)
    assert (copy.repository, copy.pr_number, copy.status, copy.reason) == (
        "o/r",
        3,
        405,
        "Required status check is expected",
    )


def test_injected_502_is_transient(github: Sandbox) -> None:
    github.fault(kind="error", status=502, path="/pulls/", method="GET", count=1)
    with pytest.raises(GitHubUnavailable) as caught:
        github.client.get_pr(1)
    assert is_transient(caught.value) and caught.value.status == 502
    assert caught.value.repository == github.repository
    assert isinstance(caught.value.__cause__, GithubException)


def test_injected_429_carries_retry_after(github: Sandbox) -> None:
    github.fault(kind="rate_limit", path="/branches/", count=1, retry_after=7)
    with pytest.raises(GitHubRateLimited) as caught:
        github.client.base_head_sha()
    assert is_transient(caught.value)
    assert caught.value.status == 429 and caught.value.retry_after == 7.0


def test_injected_secondary_rate_limit_is_transient(github: Sandbox) -> None:
    github.fault(kind="secondary_rate_limit", path="/contents/", count=1, retry_after=2)
    with pytest.raises(GitHubRateLimited) as caught:
        github.client.read_file("README.md")
    assert caught.value.status == 403 and caught.value.retry_after == 2.0


def test_logic_errors_are_not_transient(github: Sandbox) -> None:
    with pytest.raises(PullRequestNotFound) as caught:
        github.client.get_pr(404)
    assert not is_transient(caught.value)


def test_bad_token_is_not_transient_and_never_shown(github: Sandbox) -> None:
    bad = "ghp_wrong_SECRET_value_42"
    client = GitHubClient(github.emu.api_url, bad, github.repository)
    with pytest.raises(GitHubRequestFailed) as caught:
        client.base_head_sha()
    client.close_session()
    assert caught.value.status == 401 and not is_transient(caught.value)
    assert bad not in str(caught.value) and bad not in repr(caught.value)
    assert BOT_TOKEN not in repr(github.client)


def test_connection_refused_is_transient() -> None:
    client = GitHubClient(f"http://127.0.0.1:{free_port()}/api/v3", BOT_TOKEN, "o/r", timeout=2)
    with pytest.raises(GitHubUnavailable) as caught:
        client.base_head_sha()
    client.close_session()
    assert is_transient(caught.value)
    assert BOT_TOKEN not in str(caught.value)
    assert isinstance(caught.value, GitHubError)


@pytest.mark.parametrize("status", [403, 429])
def test_primary_rate_limit_waits_until_the_reset(github: Sandbox, status: int) -> None:
    # GitHub answers an exhausted primary limit with 403 or 429 (docs: "Rate limits for the
    # REST API"); only x-ratelimit-remaining: 0 and the reset tell it apart from other errors.
    github.fault(kind="primary_rate_limit", path="/branches/", count=1, reset_in=30, status=status)
    with pytest.raises(GitHubRateLimited) as caught:
        github.client.base_head_sha()
    error = caught.value
    assert error.status == status and is_transient(error)
    assert error.retry_after is not None and 29 <= error.retry_after <= 32
    assert "primary rate limit; it resets at 20" in str(error)


def test_primary_rate_limit_past_the_max_wait_fails_naming_the_reset(github: Sandbox) -> None:
    github.fault(kind="primary_rate_limit", path="/branches/", count=1, reset_in=5000)
    with pytest.raises(GitHubRateLimitExhausted) as caught:
        github.client.base_head_sha()
    error = caught.value
    assert not is_transient(error) and error.status == 403
    reset = time.strftime("%Y-%m-%dT%H:", time.gmtime(time.time() + 5000))
    assert f"resets at {reset}" in str(error) and "longer than the 900 s" in str(error)


def test_secondary_rate_limit_without_retry_after_waits_a_minute(github: Sandbox) -> None:
    github.fault(kind="secondary_rate_limit", path="/contents/", count=2, retry_after=None)
    with pytest.raises(GitHubRateLimited) as caught:
        github.client.read_file("README.md")
    assert caught.value.retry_after == SECONDARY_RATE_LIMIT_WAIT == 60.0
    quick = GitHubClient(
        github.emu.api_url, BOT_TOKEN, github.repository, secondary_rate_limit_wait=0.2
    )
    with quick, pytest.raises(GitHubRateLimited) as lowered:
        quick.read_file("README.md")
    assert lowered.value.retry_after == 0.2


class _Failed:
    """The part of a Prefect state ``retry_condition_fn`` reads."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def result(self, raise_on_failure: bool = True) -> Any:
        return self.exc


def test_retry_condition_waits_the_computed_time_and_gives_up_past_the_max() -> None:
    waited: list[float] = []
    should_retry = transient_only(is_transient, sleep=waited.append)
    assert should_retry(None, None, _Failed(GitHubRateLimited("x", retry_after=60.0)))
    assert should_retry(None, None, _Failed(GitHubRateLimited("x", retry_after=MAX_RETRY_AFTER)))
    assert not should_retry(None, None, _Failed(GitHubRateLimited("x", retry_after=901.0)))
    assert not should_retry(None, None, _Failed(MergeRefused("x")))
    assert waited == [60.0, 900.0]


def test_base_branch_modified_is_a_transient_race(github: Sandbox) -> None:
    env = github.config.environment("staging")
    pr = github.client.open_promotion_pr(env, "v1.0.1", github.config.images())
    github.client.wait_for_checks(
        pr.number, ["Kustomize validation"], timeout=30, poll_interval=0.1
    )
    github.fault(kind="base_modified", path=r"/merge$", method="PUT", count=1)
    with pytest.raises(MergeRaced) as caught:
        github.client.merge(pr.number, expected_head_sha=pr.head_sha)
    assert is_transient(caught.value) and caught.value.kind == "base_modified"
    assert "Base branch was modified" in str(caught.value)
    assert github.client.merge(pr.number, expected_head_sha=pr.head_sha).sha
