"""promote-release as a deployment run by a real worker: suspended approvals and a crash.

Under a deployment the approvals *suspend* the run (no process waits for people); on resume
the flow runs again from the top in a new process, so every step before a gate must find
what it already did. Here the worker and its flow process are also SIGKILLed while the prod
PR's checks run, then the run is rescheduled (as the UI's Retry does) onto a new worker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deployments.local import LocalPrefect, Worker, deploy, ensure_work_pool
from deployments.runs import read_artifact, read_run, resume_run, start_run, wait_for_run
from pipeline.helpers import INITIATOR, PROD, pulls, tags
from sandbox.launcher import Sandbox, start_sandbox
from sandbox.seed import git


@pytest.fixture(scope="module")
def deployed(prefect_server: LocalPrefect) -> str:
    ensure_work_pool(prefect_server.api_url)
    deploy(prefect_server.env(), names=["promote-release"])
    return prefect_server.api_url


@pytest.fixture
def slow_check_sandbox(tmp_path: Path, prefect_server: LocalPrefect) -> Iterator[Sandbox]:
    # A 3 s validation check leaves time to kill the worker while the prod checks run.
    with start_sandbox(tmp_path / "sandbox", check_duration=3.0, health_delay=0.2) as box:
        yield box


def _set_state(api: str, run_id: str, state_type: str, message: str) -> None:
    response = httpx.post(
        f"{api}/flow_runs/{run_id}/set_state",
        json={"state": {"type": state_type, "message": message}, "force": True},
        timeout=15,
    )
    response.raise_for_status()
    assert response.json()["status"] == "ACCEPT", response.json()


def _resume(api: str, run_id: str, gate: str, approver: str) -> None:
    wait_for_run(
        api, run_id, until=lambda r: r.paused and (r.pause_key or "").startswith(gate), timeout=120
    )
    result = resume_run(api, run_id, {"approved": True, "approver": approver, "comment": "ok"})
    assert result.status == "ACCEPT", result


def _commits(box: Sandbox, ref: str) -> list[str]:
    return git("rev-list", ref, cwd=box.state_dir / "repo.git").split()


def test_suspended_run_survives_a_killed_worker_without_duplicates(
    deployed: str, slow_check_sandbox: Sandbox, prefect_server: LocalPrefect, tmp_path: Path
) -> None:
    api, box = deployed, slow_check_sandbox
    env = prefect_server.env({**box.env(), "RELEASE_PROMOTION_POLL_INTERVAL": "0.2"})
    worker = Worker(env, log_path=tmp_path / "worker-1.log").start()
    try:
        run = start_run(api, "promote-release", {"version": "v1.0.1", "initiator": INITIATOR})
        qa = wait_for_run(api, run.id, until=lambda r: r.paused or r.finished, timeout=120)
        assert qa.paused and qa.state_name == "Suspended", (qa, worker.log_tail())
        _resume(api, run.id, "qa", "qa-alice")

        # Kill the worker and the flow process once the prod PR exists, before any merge.
        deadline = time.monotonic() + 120
        while not [p for p in pulls(box) if p["head"]["ref"].startswith("promote/prod/")]:
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.2)
        worker.kill()
    finally:
        worker.stop()
    time.sleep(4.0)  # longer than the check: a surviving flow process would have merged by now
    dead = read_run(api, run.id)
    assert dead.state_type in {"RUNNING", "CRASHED"}, dead
    assert tags(box, PROD) == {"v1.0.0"}
    assert not [p for p in pulls(box) if p["merged_at"] and "prod" in p["head"]["ref"]]

    # The operator marks the dead run crashed and retries it; a new worker picks it up.
    if dead.state_type == "RUNNING":
        _set_state(api, run.id, "CRASHED", "worker killed")
    _set_state(api, run.id, "SCHEDULED", "retried after the worker crash")
    with Worker(env, log_path=tmp_path / "worker-2.log") as worker2:
        _resume(api, run.id, "pm", "pm-carol")
        final = wait_for_run(api, run.id, until=lambda r: r.finished, timeout=180)
        assert final.state_type == "COMPLETED", (final.message, worker2.log_tail())

    assert tags(box, PROD) == {"v1.0.1"}
    prs = pulls(box)
    assert sorted(p["head"]["ref"] for p in prs) == [
        "promote/prod/v1.0.1",
        "promote/staging/v1.0.1",
    ]
    assert all(p["merged_at"] for p in prs)
    main = _commits(box, "main")
    assert len(main) == 3, "seed, staging merge, prod merge: nothing twice"
    prod_branch = _commits(box, "promote/prod/v1.0.1")
    assert len(set(prod_branch) - set(main)) == 1, "one commit on the prod branch"
    summary = read_artifact(api, run.id, "promotion-summary")
    assert summary is not None and "pm-carol" in summary and "qa-alice" in summary
