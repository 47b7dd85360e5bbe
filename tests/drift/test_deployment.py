"""The ``audit-staging-drift`` deployment of ``prefect.yaml``, run on schedule by a real worker.

Deploys with the project's own ``prefect.yaml`` (``prefect --no-prompt deploy``) to a real
Prefect server, checks the cron schedule, waits for the server's scheduler to create the next
scheduled run, brings that run forward to now (waiting half an hour is not a test) and lets a
real process worker pick it up and run the flow against a sandbox world.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.states import Scheduled

from bench.drift import DriftWorld, app_name
from deployments.local import LocalPrefect, Worker, deploy, ensure_work_pool

pytestmark = pytest.mark.timeout(240)

DEPLOYMENT = "audit-drift/audit-staging-drift"


def test_scheduled_audit_runs_on_a_worker(
    drift_prefect: LocalPrefect, make_world: Callable[..., DriftWorld], tmp_path: Path
) -> None:
    world = make_world(2)
    with world.argocd_api() as api:
        import json

        patch = {"spec": {"syncPolicy": {"automated": {"enabled": False}}}}
        api.patch(
            f"/api/v1/applications/{app_name(1)}",
            json={"patch": json.dumps(patch), "patchType": "merge"},
        ).raise_for_status()

    ensure_work_pool(drift_prefect.api_url)
    deploy(drift_prefect.env(), names=["audit-staging-drift"])

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        crons = [getattr(s.schedule, "cron", None) for s in deployment.schedules]
        assert "*/30 * * * *" in crons
        assert all(s.active for s in deployment.schedules)

        only_ours = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        scheduled = FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
        )
        deadline = time.monotonic() + 60
        runs = []
        while not runs and time.monotonic() < deadline:
            runs = client.read_flow_runs(deployment_filter=only_ours, flow_run_filter=scheduled)
            if not runs:
                time.sleep(1)
        assert runs, "the scheduler created no run for the cron schedule"
        run = min(runs, key=lambda r: r.next_scheduled_start_time or r.expected_start_time)
        assert run.auto_scheduled
        client.set_flow_run_state(run.id, Scheduled(scheduled_time=datetime.now(UTC)), force=True)

        worker = Worker(drift_prefect.env(world.env()), log_path=tmp_path / "worker.log")
        with worker:
            deadline = time.monotonic() + 150
            current = client.read_flow_run(run.id)
            while time.monotonic() < deadline:
                current = client.read_flow_run(run.id)
                if current.state is not None and current.state.is_final():
                    break
                time.sleep(1)
            log = worker.log_tail(60)
        assert current.state is not None and current.state.is_completed(), f"{current.state}\n{log}"
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
        report = next(a for a in artifacts if a.key == "drift-report")
        assert "**1 of 2 applications drift.**" in str(report.data)
        assert app_name(1) in str(report.data)
