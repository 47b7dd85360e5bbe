"""HTTP behaviour: conditional requests, rate-limit headers, faults, latency, call counting."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from github import Auth, Github, GithubException, RateLimitExceededException

from tests.github_emulator.conftest import DEV_TOKEN, REPO, Sandbox
from tests.github_emulator.helpers import QUICK, open_change_pr, wait_check

AUTH = {"Authorization": f"token {DEV_TOKEN}"}


def test_etag_and_if_none_match_give_304(sandbox: Sandbox, gh: Github) -> None:
    repo = gh.get_repo(REPO)
    pr = open_change_pr(repo, "promote/prod/v1.0.1", **QUICK)
    wait_check(repo, pr.head.sha)
    url = f"{sandbox.emu.api_url}/repos/{REPO}/pulls/{pr.number}"
    first = httpx.get(url, headers={"Authorization": f"Bearer {DEV_TOKEN}"})
    assert first.status_code == 200
    etag = first.headers["ETag"]
    again = httpx.get(url, headers={**AUTH, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["ETag"] == etag

    pull = repo.get_pull(pr.number)
    assert pull.update() is False  # PyGithub's own conditional request
    pull.create_issue_comment("still here")
    assert pull.update() is True  # the comment count changed the body
    stats = httpx.get(f"{sandbox.url}/_sandbox/stats").json()
    assert stats["not_modified"]["GET /repos/{owner}/{repo}/pulls/{pull_number}"] == 2


def test_rate_limit_headers(sandbox: Sandbox) -> None:
    response = httpx.get(f"{sandbox.emu.api_url}/repos/{REPO}", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Limit"] == "5000"
    assert response.headers["X-RateLimit-Resource"] == "core"
    used = int(response.headers["X-RateLimit-Used"])
    later = httpx.get(f"{sandbox.emu.api_url}/repos/{REPO}", headers=AUTH)
    assert int(later.headers["X-RateLimit-Used"]) == used + 1
    assert int(later.headers["X-RateLimit-Remaining"]) == 5000 - used - 1
    assert int(later.headers["X-RateLimit-Reset"]) > time.time()
    missing = httpx.get(f"{sandbox.emu.api_url}/repos/{REPO}/nothing-here", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["message"] == "Not Found"


def test_python_faults_502_429_secondary_and_stall(sandbox: Sandbox, gh: Github) -> None:
    emu = sandbox.emu
    repo = gh.get_repo(REPO)
    emu.faults.add("error", path=r"/pulls$", method="POST", count=2, status=502)
    emu.faults.add("error", path=r"/git/refs$", status=503)
    main = emu.head("main")
    with pytest.raises(GithubException) as unavailable:
        repo.create_git_ref("refs/heads/x", main)
    assert unavailable.value.status == 503
    assert "x" not in emu.branches()  # a faulted call has no effect
    repo.create_git_ref("refs/heads/x", main)  # the fault fired once

    emu.faults.add("rate_limit", path=r"/git/ref/", retry_after=7)
    with pytest.raises(GithubException) as limited:
        repo.get_git_ref("heads/x")
    assert limited.value.status == 429
    assert limited.value.data["message"].startswith("API rate limit exceeded")
    assert limited.value.headers is not None and limited.value.headers["retry-after"] == "7"

    emu.faults.add("secondary_rate_limit", path=r"/git/ref/", retry_after=3)
    with pytest.raises(RateLimitExceededException) as secondary:
        repo.get_git_ref("heads/x")
    assert secondary.value.status == 403
    assert "secondary rate limit" in secondary.value.data["message"]
    assert secondary.value.headers is not None and secondary.value.headers["retry-after"] == "3"

    emu.faults.add("stall", path=r"/git/ref/", seconds=0.3)
    started = time.monotonic()
    assert repo.get_git_ref("heads/x").object.sha == main
    assert time.monotonic() - started >= 0.3

    stats = emu.stats.snapshot()
    assert stats["faulted"]["POST /repos/{owner}/{repo}/git/refs"] == 1
    assert stats["faulted"]["GET /repos/{owner}/{repo}/git/ref/{ref}"] == 2
    assert [f.remaining for f in emu.faults.list()] == [2]  # the POST /pulls fault is still armed


def test_http_admin_faults_latency_and_stats(sandbox: Sandbox, gh: Github) -> None:
    admin = f"{sandbox.url}/_sandbox"
    assert httpx.post(f"{admin}/stats/reset").status_code == 200
    created = httpx.post(
        f"{admin}/faults", json={"kind": "error", "path": "/pulls$", "method": "GET", "count": 1}
    )
    assert created.status_code == 201
    assert created.json()["status"] == 502
    repo = gh.get_repo(REPO)
    with pytest.raises(GithubException) as bad_gateway:
        list(repo.get_pulls())
    assert bad_gateway.value.status == 502
    assert list(repo.get_pulls()) == []
    assert httpx.get(f"{admin}/faults").json()["faults"] == []

    assert httpx.put(f"{admin}/latency", json={"seconds": 0.2}).json() == {"latency": 0.2}
    started = time.monotonic()
    repo.get_branch("main")
    assert time.monotonic() - started >= 0.2
    httpx.put(f"{admin}/latency", json={"seconds": 0})

    httpx.post(f"{admin}/faults", json={"kind": "rate_limit", "path": ".*", "count": 5})
    assert httpx.delete(f"{admin}/faults").status_code == 204
    repo.get_branch("main")

    stats = httpx.get(f"{admin}/stats").json()
    assert stats["routes"] == {
        "GET /repos/{owner}/{repo}": 1,
        "GET /repos/{owner}/{repo}/branches/{branch}": 2,
        "GET /repos/{owner}/{repo}/pulls": 1,
    }
    assert stats["total"] == 4
    assert stats["faulted"] == {"GET /repos/{owner}/{repo}/pulls": 1}
    bad = httpx.post(f"{admin}/faults", json={"kind": "nonsense"})
    assert bad.status_code == 400


def test_http_admin_statuses_and_protection(sandbox: Sandbox, gh: Github) -> None:
    admin = f"{sandbox.url}/_sandbox"
    main = sandbox.emu.head("main")
    posted = httpx.post(
        f"{admin}/statuses", json={"sha": main, "context": "ci/e2e", "state": "failure"}
    )
    assert posted.status_code == 201
    repo = gh.get_repo(REPO)
    commit = repo.get_commit(main)
    assert [(s.context, s.state) for s in commit.get_statuses()] == [("ci/e2e", "failure")]
    combined = commit.get_combined_status()
    assert combined.state == "failure"
    assert combined.total_count == 1
    protection = httpx.put(
        f"{admin}/protection", json={"required_checks": ["ci/e2e"], "required_approving_reviews": 2}
    ).json()
    assert protection["required_status_checks"]["contexts"] == ["ci/e2e"]
    assert protection["required_pull_request_reviews"]["required_approving_review_count"] == 2


def test_pagination_follows_link_headers(sandbox: Sandbox) -> None:
    main = sandbox.emu.head("main")
    paged = Github(
        base_url=sandbox.emu.api_url,
        auth=Auth.Token(DEV_TOKEN),
        per_page=2,
        seconds_between_requests=None,
        seconds_between_writes=None,
        retry=None,
    )
    repo = paged.get_repo(REPO)
    for i in range(4):
        repo.create_git_ref(f"refs/heads/page-{i}", main)
    sandbox.emu.stats.reset()
    names = [b.name for b in repo.get_branches()]
    assert names == ["main", "page-0", "page-1", "page-2", "page-3"]
    assert sandbox.emu.stats.snapshot()["routes"]["GET /repos/{owner}/{repo}/branches"] == 3
    first = httpx.get(f"{sandbox.emu.api_url}/repos/{REPO}/branches?per_page=2", headers=AUTH)
    assert 'rel="next"' in first.headers["Link"]
    assert first.headers["Link"].startswith(f"<{sandbox.emu.api_url}/repos/{REPO}/branches?")


def test_standalone_process_prints_its_endpoints(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.github", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = json.loads(process.stdout.readline())
        assert line["repo"] == REPO
        auth = {"Authorization": f"token {line['github_token']}"}
        repo = httpx.get(f"{line['github_url']}/repos/{REPO}", headers=auth)
        assert repo.status_code == 200
        assert repo.json()["clone_url"] == line["git_url"]
        stats = httpx.get(f"{line['admin_url']}/stats").json()
        assert stats["routes"] == {"GET /repos/{owner}/{repo}": 1}
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def test_http_admin_wait_and_heads(sandbox: Sandbox, gh: Github) -> None:
    repo = gh.get_repo(REPO)
    pr = open_change_pr(repo, "promote/prod/v1.0.1", **QUICK)
    admin = f"{sandbox.url}/_sandbox"
    assert httpx.post(f"{admin}/checks/wait", json={"timeout": 20}).json() == {"idle": True}
    runs = list(repo.get_commit(pr.head.sha).get_check_runs())
    assert [(r.name, r.status, r.conclusion) for r in runs] == [
        ("Kustomize validation", "completed", "success")
    ]
    assert runs[0].output.title == "No overlay changed"
    heads = httpx.get(f"{admin}/heads").json()
    assert heads == {"main": sandbox.seed_sha, "promote/prod/v1.0.1": pr.head.sha}
    assert httpx.get(f"{admin}/nothing").status_code == 404
