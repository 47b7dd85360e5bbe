"""Verification after deploy against the real sandbox: its /version endpoints, probes, smoke test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prefect import flow

from promotion.operations import Probe, Verification
from promotion.verify import VerificationFailed, run_probes
from sandbox.http import free_port
from sandbox.launcher import Sandbox, read_info
from sandbox.webapp import tags_of
from tasks.verify import verify_environment
from tests.ops.conftest import CONFIG, push_release, reconcile, wait_for
from tests.ops.smoke_flow import SMOKE_DEPLOYMENT, WAIT_DEPLOYMENT

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def version_of(box: Sandbox, env: str) -> object:
    return httpx.get(f"{box.info.web_urls[env]}/version", timeout=10).json()["version"]


def test_each_environment_reports_what_argo_cd_runs(box: Sandbox) -> None:
    assert set(box.info.web_urls) == {"staging", "prod"}
    assert read_info(box.state_dir).web_urls == box.info.web_urls  # in the JSON line / file
    body = httpx.get(f"{box.info.web_urls['prod']}/version", timeout=10).json()
    assert body["version"] == "v1.0.0"
    assert body["application"] == "prod-microservices-demo"
    assert set(body["images"]) == set(CONFIG.services)


def test_probes_pass_for_the_running_version_and_say_why_they_fail(box: Sandbox) -> None:
    url = f"{box.info.web_urls['staging']}/version"
    slept: list[float] = []
    probes = [
        Probe(url=url, json_field="version", retries=0),
        Probe(url=url, body_pattern=r'"version":\s*"{version}"', retries=0),
    ]
    passed = run_probes(probes, "v1.0.0", env="staging", sleep=slept.append)
    assert passed.ok, passed.describe()
    assert passed.describe() == "verification of v1.0.0 in staging passed (2 check(s))"
    assert [p.attempts for p in passed.probes] == [1, 1]

    failed = run_probes(
        [Probe(url=url, json_field="version", retries=2, interval_seconds=0.5)],
        "v1.0.1",
        env="staging",
        sleep=slept.append,
    )
    assert not failed.ok
    (probe,) = failed.probes
    assert probe.attempts == 3 and slept == [0.5, 0.5]
    assert probe.message == "JSON field version is 'v1.0.0', expected 'v1.0.1'"
    with pytest.raises(VerificationFailed, match=r"expected 'v1\.0\.1'"):
        failed.raise_for_failure()

    wrong_status = run_probes(
        [Probe(url=url.replace("/version", "/healthz"), expected_status=204, retries=0)], "v1"
    )
    assert wrong_status.probes[0].message.startswith("HTTP 200, expected 204")
    closed = f"http://127.0.0.1:{free_port()}/version"
    refused = run_probes([Probe(url=closed, retries=1, interval_seconds=0)], "v1")
    assert refused.probes[0].status_code is None
    assert refused.probes[0].message.startswith("ConnectError")


def test_the_endpoint_follows_argo_cd_and_the_wrong_version_knob(box: Sandbox) -> None:
    push_release(box, "staging", "v1.0.1")
    reconcile(box)
    wait_for(lambda: version_of(box, "staging") == "v1.0.1", what="staging to serve v1.0.1")
    probe = Probe(url=f"{box.info.web_urls['staging']}/version", json_field="version", retries=0)
    assert run_probes([probe], "v1.0.1").ok
    assert version_of(box, "prod") == "v1.0.0"  # prod untouched

    knob = f"{box.info.web_urls['staging']}/_sandbox/version"
    assert httpx.post(knob, json={"version": "v6.6.6"}).json() == {"wrong_version": "v6.6.6"}
    bad = run_probes([probe], "v1.0.1")
    assert bad.probes[0].message == "JSON field version is 'v6.6.6', expected 'v1.0.1'"
    httpx.post(knob, json={"version": None}).raise_for_status()
    assert run_probes([probe], "v1.0.1").ok


def test_tags_of_reads_image_references() -> None:
    services = {"frontend": "r.example/app/frontend", "cart": "r.example/app/cart"}
    images = [
        "r.example/app/frontend:v2@sha256:" + "0" * 64,
        "r.example/app/cart:v1",
        "r.example/other/db:15",
        "r.example:5000/no-tag",
    ]
    assert tags_of(images, services) == {"frontend": "v2", "cart": "v1"}


# -- the Prefect side: the task wrapper and a smoke-test deployment ----------------------------


@pytest.fixture(scope="module")
def smoke_deployment(prefect_server: object) -> Iterator[str]:
    """The smoke flow served (``flow.serve``) by a real runner process."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    log = PROJECT_ROOT / ".sandbox" / "ops-smoke-runner.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.ops.smoke_flow"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = os.environ["PREFECT_API_URL"]

    def deployed() -> bool:
        return all(
            httpx.get(f"{api}/deployments/name/{d}").status_code == 200
            for d in (SMOKE_DEPLOYMENT, WAIT_DEPLOYMENT)
        )

    try:
        wait_for(deployed, 90, "the smoke deployment to be served")
        yield SMOKE_DEPLOYMENT
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@flow(name="ops-verify-environment")
def verify_flow(verification: Verification, version: str, env: str) -> dict[str, object]:
    result = verify_environment(verification, version, env)
    smoke = result.smoke_test
    return {
        "ok": result.ok,
        "describe": result.describe(),
        "probes": [p.ok for p in result.probes],
        "smoke_state": smoke.state if smoke else None,
        "smoke_message": smoke.message if smoke else None,
    }


@pytest.mark.timeout(400)
def test_verify_environment_runs_probes_then_the_smoke_deployment(
    box: Sandbox, smoke_deployment: str
) -> None:
    url = f"{box.info.web_urls['prod']}/version"
    probe = Probe(url=url, json_field="version", retries=0)
    good = verify_flow(Verification(probes=(probe,), deployment=smoke_deployment), "v1.0.0", "prod")
    assert good["ok"] is True, good
    assert good["probes"] == [True]
    assert good["smoke_state"] == "Completed"

    broken = verify_flow(Verification(deployment=smoke_deployment), "bad-1", "prod")
    assert broken["ok"] is False
    assert broken["smoke_state"] == "Failed"
    assert "checkout page broken for bad-1 in prod" in str(broken["smoke_message"])

    # a failed probe fails the verification before the smoke test runs
    skipped = verify_flow(
        Verification(probes=(probe,), deployment=smoke_deployment), "v1.0.1", "prod"
    )
    assert skipped["ok"] is False
    assert skipped["smoke_state"] is None
    assert "JSON field version is 'v1.0.0', expected 'v1.0.1'" in str(skipped["describe"])

    unknown = verify_flow(Verification(deployment="no-such-flow/nowhere"), "v1.0.0", "prod")
    assert unknown["ok"] is False and unknown["smoke_state"] == "NotStarted"


@pytest.mark.timeout(300)
def test_wait_until_frees_the_process_and_the_run_comes_back(smoke_deployment: str) -> None:
    """tasks.wait.wait_until: the run is rescheduled, its process ends, it runs again later."""
    from datetime import datetime

    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.variables import Variable

    from tasks.wait import WAIT_STATE_NAME

    run = run_deployment(WAIT_DEPLOYMENT, parameters={"seconds": 15}, timeout=240, poll_interval=2)
    assert run.state is not None and run.state.is_completed(), run.state
    name = f"ops-wait-{run.id}"
    until = datetime.fromisoformat(str(Variable.get(name)))
    Variable.unset(name)
    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(run.id)
        result = client.read_flow_run(run.id)
    names = [s.name for s in states]
    waiting = [s for s in states if s.name == WAIT_STATE_NAME]
    assert len(waiting) == 1, names
    assert waiting[0].message == "frozen: test window"
    assert waiting[0].state_details.scheduled_time == until
    # ran twice: once until the wait (then the process ended), once after it
    assert names.count("Running") == 2, names
    assert "Crashed" not in names
    # a worker starts a scheduled run up to PREFECT_WORKER_PREFETCH_SECONDS early: the flow
    # then waits the rest in process, once (one AwaitingWindow above), and ends after ``until``
    completed = next(s for s in states if s.name == "Completed")
    assert completed.timestamp >= until
    assert result.run_count == 2
