"""Rulesets, rate-limit and race faults, the check-run filters and the pulls list order."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from github import Github, GithubException

from tests.github_emulator.conftest import DEV_TOKEN, REPO, Sandbox, start
from tests.github_emulator.helpers import QUICK, open_change_pr, wait_check

AUTH = {"Authorization": f"token {DEV_TOKEN}"}


def _get(sandbox: Sandbox, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{sandbox.emu.api_url}/repos/{REPO}{path}", headers=AUTH, params=params)


def test_ruleset_checks_block_the_merge_and_show_only_in_rules(
    bare_repo: tuple[Path, str],
) -> None:
    rulesets = [
        {"name": "gate", "required_checks": [{"context": "e2e", "integration_id": 15368}]},
        {"name": "trial", "enforcement": "evaluate", "required_checks": ["ignored"]},
    ]
    for sandbox in start(*bare_repo, rulesets=rulesets):
        rules = _get(sandbox, "/rules/branches/main").json()
        assert [(r["type"], r["ruleset_source_type"]) for r in rules] == [
            ("required_status_checks", "Repository")
        ]
        assert rules[0]["parameters"]["required_status_checks"] == [
            {"context": "e2e", "integration_id": 15368}
        ]
        protection = _get(sandbox, "/branches/main").json()["protection"]
        assert protection["required_status_checks"]["contexts"] == ["Kustomize validation"]
        repo = sandbox.client().get_repo(REPO)
        pr = open_change_pr(repo, "notes", **QUICK)
        wait_check(repo, pr.head.sha)
        with pytest.raises(GithubException) as refused:
            pr.merge()
        assert refused.value.status == 405
        assert refused.value.data["message"] == 'Required status check "e2e" is expected.'
        repo.get_commit(pr.head.sha).create_status("success", context="e2e")
        assert pr.merge().merged


def test_a_merge_queue_rule_refuses_direct_merges(sandbox: Sandbox, gh: Github) -> None:
    sandbox.emu.set_rulesets([{"name": "queue", "merge_queue": True}])
    repo = gh.get_repo(REPO)
    pr = open_change_pr(repo, "notes", **QUICK)
    wait_check(repo, pr.head.sha)
    with pytest.raises(GithubException) as refused:
        pr.merge()
    assert (refused.value.status, refused.value.data["message"]) == (
        405,
        "Changes must be made through the merge queue",
    )


def test_rate_limit_and_race_faults_look_like_github(sandbox: Sandbox) -> None:
    emu = sandbox.emu
    emu.faults.add("primary_rate_limit", path="/branches", count=1, reset_in=120)
    answer = _get(sandbox, "/branches/main")
    assert answer.status_code == 403 and "retry-after" not in answer.headers
    assert answer.headers["x-ratelimit-remaining"] == "0"
    assert 118 <= int(answer.headers["x-ratelimit-reset"]) - time.time() <= 121
    emu.faults.add("secondary_rate_limit", path="/branches", count=1, retry_after=None)
    answer = _get(sandbox, "/branches/main")
    assert answer.status_code == 403 and "retry-after" not in answer.headers
    assert "secondary rate limit" in answer.json()["message"]
    emu.faults.add("base_modified", path="/merge$", count=1)
    answer = httpx.put(
        f"{emu.api_url}/repos/{REPO}/pulls/1/merge", headers=AUTH, json={"merge_method": "merge"}
    )
    assert answer.status_code == 405
    assert answer.json()["message"] == "Base branch was modified. Review and try the merge again."


def test_check_runs_filter_by_name_and_app_and_paginate(sandbox: Sandbox, gh: Github) -> None:
    repo = gh.get_repo(REPO)
    pr = open_change_pr(repo, "notes", **QUICK)
    wait_check(repo, pr.head.sha)
    for number in range(35):
        repo.create_check_run(f"lint/{number}", pr.head.sha, conclusion="success")
    page = _get(sandbox, f"/commits/{pr.head.sha}/check-runs").json()
    assert page["total_count"] == 36 and len(page["check_runs"]) == 30  # 30 by default
    assert (
        len(_get(sandbox, f"/commits/{pr.head.sha}/check-runs", per_page=500).json()["check_runs"])
        == 36
    )  # at most 100 a page
    named = _get(
        sandbox, f"/commits/{pr.head.sha}/check-runs", check_name="Kustomize validation"
    ).json()
    assert [r["name"] for r in named["check_runs"]] == ["Kustomize validation"]
    ci_app = named["check_runs"][0]["app"]["id"]
    bot_app = _get(sandbox, f"/commits/{pr.head.sha}/check-runs", check_name="lint/0").json()[
        "check_runs"
    ][0]["app"]["id"]
    assert ci_app != bot_app
    only_ci = _get(sandbox, f"/commits/{pr.head.sha}/check-runs", app_id=ci_app).json()
    assert [r["name"] for r in only_ci["check_runs"]] == ["Kustomize validation"]


def test_pulls_list_honours_sort_and_direction(sandbox: Sandbox, gh: Github) -> None:
    repo = gh.get_repo(REPO)
    first = open_change_pr(repo, "one", content="1\n", path="ONE.md")
    time.sleep(1.05)
    second = open_change_pr(repo, "two", content="2\n", path="TWO.md")
    time.sleep(1.05)
    first.create_issue_comment("bump")  # activity moves updated_at

    def order(**params: str) -> list[int]:
        return [p["number"] for p in _get(sandbox, "/pulls", **params).json()]

    assert order() == [second.number, first.number]  # created, desc
    assert order(sort="created", direction="asc") == [first.number, second.number]
    assert order(sort="updated", direction="desc")[0] == first.number
    assert order(sort="updated")[-1] == first.number  # asc by default for other sorts
    assert _get(sandbox, "/pulls", sort="merged").status_code == 422
