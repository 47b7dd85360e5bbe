"""Which checks ``wait_for_checks`` waits for, and how it reads them from a busy commit."""

from __future__ import annotations

import httpx
import pytest

from promotion.github import (
    ChecksTimedOut,
    GitHubClient,
    NoRequiredChecks,
    PullRequestInfo,
)
from sandbox.github.models import SANDBOX_APP_ID

from .conftest import BOT_TOKEN, Sandbox

CHECK = "Kustomize validation"


def _open(github: Sandbox) -> PullRequestInfo:
    return github.client.open_promotion_pr(
        github.config.environment("staging"), "v1.0.1", github.config.images()
    )


def _rulesets(github: Sandbox, *rulesets: dict[str, object]) -> None:
    github.admin.put("/_sandbox/rulesets", json={"rulesets": list(rulesets)}).raise_for_status()


def _status(github: Sandbox, sha: str, context: str, state: str = "success") -> None:
    github.admin.post(
        "/_sandbox/statuses", json={"sha": sha, "context": context, "state": state}
    ).raise_for_status()


def _check_run(token: str, github: Sandbox, sha: str, name: str, conclusion: str) -> None:
    httpx.post(
        f"{github.emu.api_url}/repos/{github.repository}/check-runs",
        headers={"Authorization": f"token {token}"},
        json={"name": name, "head_sha": sha, "conclusion": conclusion},
    ).raise_for_status()


def test_required_checks_are_the_union_of_protection_and_rulesets(github: Sandbox) -> None:
    github.admin.put(
        "/_sandbox/protection", json={"required_checks": [CHECK, "ci/lint"]}
    ).raise_for_status()
    _rulesets(
        github,
        {"name": "release gate", "required_checks": [{"context": "e2e", "integration_id": 77}]},
        {"name": "other branches", "branches": ["release/*"], "required_checks": ["nightly"]},
        {"name": "trial", "enforcement": "evaluate", "required_checks": ["not-enforced"]},
    )
    assert github.client.required_checks() == {CHECK: None, "ci/lint": None, "e2e": 77}
    rules = httpx.get(
        f"{github.emu.api_url}/repos/{github.repository}/rules/branches/release/1.0",
        headers={"Authorization": f"token {BOT_TOKEN}"},
    ).json()  # the branch need not exist
    assert [r["parameters"]["required_status_checks"] for r in rules] == [[{"context": "nightly"}]]


def test_a_ruleset_check_is_waited_for_even_when_not_configured(github: Sandbox) -> None:
    _rulesets(github, {"name": "gate", "required_checks": ["security/scan"]})
    pr = _open(github)
    # The sandbox CI posts CHECK within seconds (longer on a busy machine); the ruleset's
    # check is posted by nobody, so it alone is still pending at the timeout.
    with pytest.raises(ChecksTimedOut) as caught:
        github.client.wait_for_checks(
            pr.number, [CHECK], timeout=8.0, poll_interval=0.2, head_sha=pr.head_sha
        )
    assert caught.value.pending == ("security/scan",)
    _status(github, pr.head_sha, "security/scan")
    summary = github.client.wait_for_checks(
        pr.number, [CHECK], timeout=10, poll_interval=0.2, head_sha=pr.head_sha
    )
    assert [c.name for c in summary.checks] == [CHECK, "security/scan"]


def test_no_required_check_anywhere_is_refused(github: Sandbox) -> None:
    github.admin.put("/_sandbox/protection", json={"required_checks": []}).raise_for_status()
    pr = _open(github)
    with pytest.raises(NoRequiredChecks, match="no check is required on main"):
        github.client.wait_for_checks(pr.number, [], timeout=5, poll_interval=0.2)


def test_checks_are_read_by_name_on_a_commit_with_more_than_100_runs(github: Sandbox) -> None:
    pr = _open(github)
    github.emu.wait_for_checks()
    for number in range(120):  # newer than the required run: it is on page 2 of an unfiltered list
        _check_run(BOT_TOKEN, github, pr.head_sha, f"lint/{number:03d}", "success")
    github.reset_stats()
    summary = github.client.wait_for_checks(
        pr.number, [CHECK], timeout=5, poll_interval=0.2, head_sha=pr.head_sha
    )
    assert summary.checks[0].conclusion == "success" and summary.checks[0].app_id == SANDBOX_APP_ID
    assert github.stats()["routes"]["GET /repos/{owner}/{repo}/commits/{ref}/check-runs"] == 1


def test_a_pinned_check_needs_its_app(github: Sandbox) -> None:
    pr = _open(github)
    github.emu.wait_for_checks()
    # anyone with write access can post a status, and another app can post a run by that name
    _status(github, pr.head_sha, "deploy/verified")
    _check_run("ghp_other_token", github, pr.head_sha, "deploy/verified", "success")
    with pytest.raises(ChecksTimedOut, match=f"not reported by app {SANDBOX_APP_ID}"):
        github.client.wait_for_checks(
            pr.number,
            [CHECK],
            timeout=0.6,
            poll_interval=0.2,
            head_sha=pr.head_sha,
            check_apps={"deploy/verified": SANDBOX_APP_ID},
        )
    # unpinned, the status (or the other app's run) counts
    summary = github.client.wait_for_checks(
        pr.number, [CHECK, "deploy/verified"], timeout=5, poll_interval=0.2
    )
    assert {c.name for c in summary.checks} == {CHECK, "deploy/verified"}
    # pinned to the app that really posts it, it passes
    pinned = github.client.wait_for_checks(
        pr.number, [], timeout=5, poll_interval=0.2, check_apps={CHECK: SANDBOX_APP_ID}
    )
    assert pinned.checks[0].app_id == SANDBOX_APP_ID


def test_a_protection_app_pin_is_honoured(github: Sandbox) -> None:
    github.admin.put(
        "/_sandbox/protection", json={"required_checks": [{"context": CHECK, "app_id": 4242}]}
    ).raise_for_status()
    pr = _open(github)
    github.emu.wait_for_checks()
    client = GitHubClient(github.emu.api_url, BOT_TOKEN, github.repository)
    with client, pytest.raises(ChecksTimedOut, match="not reported by app 4242"):
        client.wait_for_checks(pr.number, [], timeout=0.5, poll_interval=0.2)


def test_the_protection_read_with_the_base_head_is_what_the_checks_wait_for(
    github: Sandbox,
) -> None:
    github.admin.put(
        "/_sandbox/protection", json={"required_checks": [CHECK, "ci/lint"]}
    ).raise_for_status()
    pr = _open(github)
    assert pr.base_checks == {CHECK: None, "ci/lint": None}
    _status(github, pr.head_sha, "ci/lint")
    github.reset_stats()
    summary = github.client.wait_for_checks(
        pr.number, [], poll_interval=0.2, head_sha=pr.head_sha, protected=pr.base_checks
    )
    assert {c.name for c in summary.checks} == {CHECK, "ci/lint"}
    assert "GET /repos/{owner}/{repo}/branches/{branch}" not in github.stats()["routes"]
