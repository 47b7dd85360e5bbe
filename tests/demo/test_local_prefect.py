"""The local Prefect machinery against a real server: pool, limit, deploy, worker, resume."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from deployments.local import (
    PROJECT_ROOT,
    WORK_POOL,
    LocalPrefect,
    PortInUse,
    Worker,
    deployable_names,
    ensure_concurrency_limit,
    ensure_work_pool,
)
from deployments.runs import read_artifact, resume_run, start_run, wait_for_run
from promotion.config import load_config
from promotion.names import RESUME_AUTOSYNC_FLOW, environment_lock


def test_work_pool_is_a_process_pool_and_ensure_is_idempotent(local_prefect: LocalPrefect) -> None:
    ensure_work_pool(local_prefect.api_url)
    ensure_work_pool(local_prefect.api_url)
    pool = httpx.get(f"{local_prefect.api_url}/work_pools/{WORK_POOL}").json()
    assert pool["type"] == "process"
    assert "command" in pool["base_job_template"]["job_configuration"]


def test_a_lock_per_environment_is_created_then_updated(local_prefect: LocalPrefect) -> None:
    api = local_prefect.api_url
    config = load_config()
    wanted = [environment_lock(config.application, env.name) for env in config.environments]
    assert wanted[:2] == [
        "promotion-microservices-demo-gitops-staging",
        "promotion-microservices-demo-gitops-prod",
    ]
    ensured = ensure_concurrency_limit(api, limit=2)
    assert set(wanted) <= set(ensured)
    for name in wanted:
        assert httpx.get(f"{api}/v2/concurrency_limits/{name}").json()["limit"] == 2
    ensure_concurrency_limit(api)
    ensure_concurrency_limit(api)  # idempotent
    for name in wanted:
        limit = httpx.get(f"{api}/v2/concurrency_limits/{name}").json()
        assert (limit["limit"], limit["active"]) == (1, True), name
    listed = httpx.post(f"{api}/v2/concurrency_limits/filter", json={}).json()
    assert sorted(n for n in (x["name"] for x in listed) if n in wanted) == sorted(wanted)


def test_the_locks_follow_the_promotion_setup(local_prefect: LocalPrefect, tmp_path: Path) -> None:
    setup = (PROJECT_ROOT / "promotion.yaml").read_text()
    setup = setup.replace("name: staging", "name: qa-east")
    assert "name: qa-east" in setup
    custom = tmp_path / "promotion.yaml"
    custom.write_text(setup)
    ensured = ensure_concurrency_limit(local_prefect.api_url, config_file=custom)
    lock = "promotion-microservices-demo-gitops-qa-east"
    assert lock in ensured
    url = f"{local_prefect.api_url}/v2/concurrency_limits/{lock}"
    assert httpx.get(url).json()["active"] is True


def test_a_busy_port_is_reported_plainly(local_prefect: LocalPrefect) -> None:
    with pytest.raises(PortInUse, match=rf"port {local_prefect.port} .* already in use"):
        LocalPrefect(port=local_prefect.port).start()


def test_deployed_run_pauses_and_resume_verdicts_come_from_the_body(
    local_prefect: LocalPrefect, worker: Worker
) -> None:
    api = local_prefect.api_url
    run = start_run(api, "toy-release/toy-release", {"version": "v9.9.9"})
    paused = wait_for_run(api, run.id, timeout=90)
    assert paused.paused, worker.log_tail()
    assert paused.pause_key == "qa-approval-0"

    rejected = resume_run(api, run.id, {"approved": True, "comment": "no approver given"})
    assert (rejected.status, rejected.http_status) == ("REJECT", 200)
    assert "approver" in rejected.reason

    accepted = resume_run(api, run.id, {"approved": True, "approver": "qa-bob", "comment": "ok"})
    assert accepted.accepted, accepted

    again = resume_run(api, run.id, {"approved": True, "approver": "qa-bob"})
    assert again.status == "ABORT"

    done = wait_for_run(api, run.id, until=lambda r: r.finished, timeout=90)
    assert done.state_type == "COMPLETED", worker.log_tail()
    summary = read_artifact(api, run.id, "promotion-summary")
    assert summary is not None and "qa-bob" in summary


def test_prefect_yaml_deploys_the_three_deployments_on_the_process_pool(
    local_prefect: LocalPrefect, worker: Worker
) -> None:
    # the `worker` fixture ran `deploy(env)` from the project root, as `make demo` does
    found = httpx.post(f"{local_prefect.api_url}/deployments/filter", json={}).json()
    by_name = {d["name"]: d for d in found}
    expected = {
        "promote-release": "flows/promote.py:promote_release",
        "rollback-release": "flows/rollback.py:rollback_release",
        "audit-staging-drift": "flows/drift.py:audit_drift",
    }
    for name, entrypoint in expected.items():
        dep = by_name[name]
        assert dep["entrypoint"] == entrypoint
        assert dep["work_pool_name"] == WORK_POOL
        step = dep["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]
        assert step["directory"] == str(PROJECT_ROOT)
    schedules = by_name["audit-staging-drift"]["schedules"]
    assert [(s["schedule"]["cron"], s["schedule"]["timezone"], s["active"]) for s in schedules] == [
        ("*/30 * * * *", "UTC", True)
    ]
    promote_params = by_name["promote-release"]["parameter_openapi_schema"]["properties"]
    assert {"version", "initiator"} <= set(promote_params)


def test_resume_autosync_is_deployed_when_its_flow_exists(
    local_prefect: LocalPrefect, worker: Worker
) -> None:
    deployable, missing = deployable_names()
    if RESUME_AUTOSYNC_FLOW in missing:
        pytest.skip("flows/rollback.py:resume_autosync is not in this checkout yet")
    assert RESUME_AUTOSYNC_FLOW in deployable
    found = httpx.post(f"{local_prefect.api_url}/deployments/filter", json={}).json()
    dep = {d["name"]: d for d in found}[RESUME_AUTOSYNC_FLOW]
    assert dep["entrypoint"] == "flows/rollback.py:resume_autosync"
    assert dep["work_pool_name"] == WORK_POOL
    params = dep["parameter_openapi_schema"]
    assert set(params["properties"]) == {"env", "application", "config_file"}
    assert params.get("required") == ["env"]


def test_deployable_names_leave_out_a_missing_flow(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "here.py").write_text("def present():\n    pass\n")
    (tmp_path / "prefect.yaml").write_text(
        "deployments:\n"
        "  - {name: a, entrypoint: flows/here.py:present}\n"
        "  - {name: b, entrypoint: flows/here.py:absent}\n"
        "  - {name: c, entrypoint: flows/nowhere.py:present}\n"
    )
    assert deployable_names(tmp_path) == (["a"], ["b", "c"])
