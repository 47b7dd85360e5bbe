"""Release detection: the selection (pure) and the watcher against the sandbox and Prefect."""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import flow
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.states import Paused
from prefect.variables import Variable

from deployments.watch import set_watch_schedule
from flows.watch import watch_releases
from promotion.config import DEFAULT_CONFIG, load_config
from promotion.names import WATCH_FLOW, holds_variable, watch_idempotency_key
from promotion.watch import (
    complete_releases,
    current_version,
    parse_holds,
    select_releases,
)
from sandbox.launcher import Sandbox

# -- the selection -----------------------------------------------------------------------------

HOLDS = holds_variable(load_config().application)
TAGS = {
    "app/cart": ["v1.0.0", "v1.0.1", "v1.0.2", "v1.1.0", "v2.0.0-rc.1", "latest"],
    "app/frontend": ["v1.0.0", "v1.0.1", "v1.1.0", "v2.0.0-rc.1", "v1.0.10"],
}


def test_complete_releases_are_in_every_repository_in_semver_order() -> None:
    assert complete_releases(TAGS) == ["v1.0.0", "v1.0.1", "v1.1.0"]
    assert complete_releases(TAGS, include_prereleases=True)[-1] == "v2.0.0-rc.1"
    assert complete_releases({}) == []
    assert complete_releases({"a": ["v1.0.9", "v1.0.10", "v1.0.2"]}) == [
        "v1.0.2",
        "v1.0.9",
        "v1.0.10",
    ]


def test_select_the_newest_newer_release_and_say_why_not_the_others() -> None:
    decision = select_releases(TAGS, "v1.0.0", {})
    assert decision.to_start == ("v1.1.0",)
    assert {s.version: s.why for s in decision.skipped} == {
        "v1.0.1": "superseded by v1.1.0",
        "v1.0.2": "incomplete: no image in app/frontend",
        "v1.0.10": "incomplete: no image in app/cart",
    }
    every = select_releases(TAGS, "v1.0.0", {}, newest_only=False)
    assert every.to_start == ("v1.0.1", "v1.1.0")
    assert select_releases(TAGS, "v1.1.0", {}).to_start == ()
    assert select_releases(TAGS, None, {}).to_start == ("v1.1.0",)


def test_held_versions_are_skipped_with_the_reason() -> None:
    holds = {"v1.1.0": {"env": "prod", "reason": "pods crash-looping", "at": "2026-12-02T10:00Z"}}
    decision = select_releases(TAGS, "v1.0.0", holds)
    assert decision.to_start == ("v1.0.1",)
    held = next(s for s in decision.skipped if s.version == "v1.1.0")
    assert held.why == "on hold (rolled back in prod at 2026-12-02T10:00Z): pods crash-looping"
    markdown = decision.to_markdown()
    assert "Promotions to start: **v1.0.1**" in markdown
    assert (
        "| v1.1.0 | on hold (rolled back in prod at 2026-12-02T10:00Z): pods crash-looping |"
        in (markdown)
    )


def test_current_version_and_holds_parsing() -> None:
    assert current_version({"a": "v1.0.1", "b": "v1.0.0", "c": "latest"}) == "v1.0.1"
    assert current_version({"a": "latest"}) is None
    assert parse_holds(None) == {}
    assert parse_holds('{"v1": {"env": "prod"}}') == {"v1": {"env": "prod"}}
    assert parse_holds({"v1": "bad build"}) == {"v1": {"reason": "bad build"}}
    with pytest.raises(ValueError, match="must be a JSON object"):
        parse_holds("[1]")


# -- the watcher against the sandbox and the Prefect server ------------------------------------


@flow(name="ops-fake-promote")
def fake_promote(version: str, initiator: str) -> None:
    """Stands in for promote-release: the watcher only needs a deployment to start."""


FAKE_DEPLOYMENT = "ops-fake-promote/ops-fake"


@pytest.fixture(scope="module")
def fake_deployment(prefect_server: object) -> Iterator[str]:
    deployment_id = fake_promote.to_deployment(name="ops-fake").apply()
    yield FAKE_DEPLOYMENT
    with get_client(sync_client=True) as client:
        client.delete_deployment(deployment_id)


@pytest.fixture
def sandbox_env(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    for name, value in box.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RELEASE_PROMOTION_CONFIG_FILE", raising=False)
    return box


@pytest.fixture
def holds() -> Iterator[None]:
    """Put v1.1.0 on hold in the Variable; restore what was there."""
    previous = Variable.get(HOLDS, default=None)
    Variable.set(
        HOLDS,
        {"v1.1.0": {"env": "prod", "reason": "pods crash-looping", "at": "2026-12-02T10:00Z"}},
        overwrite=True,
    )
    yield
    if previous is None:
        Variable.unset(HOLDS)
    else:
        Variable.set(HOLDS, previous, overwrite=True)


def watching_setup(tmp_path: Path) -> str:
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    text = text.replace(
        "    argocd_app: staging-microservices-demo\n",
        "    argocd_app: staging-microservices-demo\n    soak_minutes: 30\n",
    ).replace(
        "    argocd_app: prod-microservices-demo\n",
        "    argocd_app: prod-microservices-demo\n    freeze:\n      windows:\n"
        '        - {start: "2020-01-01T00:00:00", end: "2099-01-01T00:00:00", reason: audit}\n',
    )
    text += "\nwatch:\n  enabled: true\n  initiator: release-watcher\n"
    path = tmp_path / "promotion.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_config(path).watch.enabled
    return str(path)


@pytest.fixture
def waiting_approval(fake_deployment: str) -> Iterator[Any]:
    """A run of the stand-in promotion paused at the QA gate of v0.9.0 (removed afterwards)."""
    with get_client(sync_client=True) as client:
        target = client.read_deployment_by_name(fake_deployment)
        run = client.create_flow_run_from_deployment(
            target.id, parameters={"version": "v0.9.0", "initiator": "dev-dave"}
        )
        paused = Paused(
            pause_expiration_time=datetime.now(UTC) + timedelta(hours=1),
            pause_key="qa-approval-0123456789ab-0",
        )
        client.set_flow_run_state(run.id, paused, force=True)
    yield run
    with get_client(sync_client=True) as client:
        client.delete_flow_run(run.id)


def deployed_at(box: Sandbox, app: str) -> str:
    """The ``deployedAt`` of the newest history entry of ``app``, as the Argo CD API reports it."""
    env = box.env()
    answer = httpx.get(
        f"{env['RELEASE_PROMOTION_ARGOCD_URL']}/api/v1/applications/{app}",
        headers={"Authorization": f"Bearer {env['RELEASE_PROMOTION_ARGOCD_TOKEN']}"},
    )
    answer.raise_for_status()
    history = answer.json()["status"]["history"]
    newest = max(history, key=lambda entry: entry["id"])["deployedAt"]
    return datetime.fromisoformat(newest.replace("Z", "+00:00")).isoformat(timespec="seconds")


def runs_of(deployment: str, version: str) -> list[Any]:
    with get_client(sync_client=True) as client:
        target = client.read_deployment_by_name(deployment)
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[target.id]))
        )
    return [r for r in runs if r.parameters.get("version") == version]


@pytest.mark.timeout(300)
def test_the_watcher_starts_the_new_release_once_and_skips_held_and_incomplete(
    sandbox_env: Sandbox, fake_deployment: str, holds: None, tmp_path: Path, waiting_approval: Any
) -> None:
    box = sandbox_env
    path = box.config.registry.path
    box.registry.publish(path, list(box.config.services)[:3], "v1.0.2")  # half-pushed
    box.registry.publish(path, list(box.config.services), "v1.1.0")  # complete, held
    setup = watching_setup(tmp_path)

    first = watch_releases(config_file=setup, promote_deployment=fake_deployment)
    assert first["current"] == "v1.0.0"
    assert first["complete"] == ["v1.0.0", "v1.0.1", "v1.1.0"]
    assert [(r["version"], r["new"]) for r in first["started"]] == [("v1.0.1", True)]
    assert first["skipped"]["v1.1.0"].startswith("on hold (rolled back in prod")
    assert first["skipped"]["v1.0.2"].startswith("incomplete: no image in microservices-demo/")
    (run,) = runs_of(fake_deployment, "v1.0.1")
    assert run.parameters == {"version": "v1.0.1", "initiator": "release-watcher"}
    assert run.idempotency_key == watch_idempotency_key(box.config.github.repository, "v1.0.1")

    again = watch_releases(config_file=setup, promote_deployment=fake_deployment)
    assert again["started"] == [{"version": "v1.0.1", "flow_run_id": str(run.id), "new": False}]
    assert len(runs_of(fake_deployment, "v1.0.1")) == 1

    watch = Artifact.get("watch-releases")
    assert watch is not None
    assert (
        "| v1.1.0 | on hold (rolled back in prod at 2026-12-02T10:00Z): pods crash-looping |"
        in (str(watch.data))
    )
    assert "v1.0.1: promote-release already started" in str(watch.data)
    status = str(getattr(Artifact.get("release-status"), "data", ""))
    assert "| staging | v1.0.0 | v1.0.0 (Synced/Healthy) | none |" in status
    assert "| prod | v1.0.0 | v1.0.0 (Synced/Healthy) | **frozen** until 2099-01-01" in status
    assert "- prod: IN FORCE until 2099-01-01T00:00:00+00:00" in status
    assert "- v1.1.0: prod since 2026-12-02T10:00Z: pods crash-looping" in status
    # since when each environment runs its version Healthy, and its soak (30 min in staging)
    staging_since = deployed_at(box, "staging-microservices-demo")
    prod_since = deployed_at(box, "prod-microservices-demo")
    assert f"| none | {staging_since} | 30 min required; " in status
    ready_at = datetime.fromisoformat(staging_since) + timedelta(minutes=30)
    assert f"to go (until {ready_at.isoformat(timespec='seconds')}) |" in status
    assert f"| {prod_since} | no soak time required |" in status
    # the approvals that wait, as `release-promotion status` lists them
    assert "## Waiting approvals" in status
    assert (
        f"- QA approval of v0.9.0 (run {waiting_approval.name}): "
        f"{os.environ['PREFECT_API_URL'].removesuffix('/api')}/runs/flow-run/{waiting_approval.id}"
    ) in status


@pytest.mark.timeout(300)
def test_two_watchers_at_once_start_one_run(
    sandbox_env: Sandbox, fake_deployment: str, tmp_path: Path
) -> None:
    box = sandbox_env
    box.registry.publish(box.config.registry.path, list(box.config.services), "v1.2.0")
    setup = watching_setup(tmp_path)

    def watch() -> dict[str, Any]:
        return watch_releases(config_file=setup, promote_deployment=fake_deployment)

    # each thread gets this context (the Prefect settings pointing at the session's server)
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(contextvars.copy_context().run, watch) for _ in range(2)]
        results = [f.result() for f in futures]
    ids = {r["started"][0]["flow_run_id"] for r in results}
    assert [r["started"][0]["version"] for r in results] == ["v1.2.0", "v1.2.0"]
    assert len(ids) == 1
    assert len(runs_of(fake_deployment, "v1.2.0")) == 1


def test_off_by_default_starts_nothing(sandbox_env: Sandbox, fake_deployment: str) -> None:
    result = watch_releases(config_file=str(DEFAULT_CONFIG), promote_deployment=fake_deployment)
    assert result["enabled"] is False and result["started"] == []
    assert "Release detection is **off**" in str(
        getattr(Artifact.get("watch-releases"), "data", "")
    )


def test_deploy_sets_the_watch_schedule_from_the_setup(
    prefect_server: object, tmp_path: Path
) -> None:
    deployment_id = watch_releases.to_deployment(name=WATCH_FLOW, cron="0 0 * * *").apply()
    try:
        on = load_config(watching_setup(tmp_path))
        assert set_watch_schedule(on) == "Release watcher: on, cron '*/5 * * * *' (UTC)."
        set_watch_schedule(on)  # idempotent
        with get_client(sync_client=True) as client:
            (schedule,) = client.read_deployment_schedules(deployment_id)
        assert schedule.active is True
        assert getattr(schedule.schedule, "cron", None) == "*/5 * * * *"
        assert set_watch_schedule(load_config()).startswith("Release watcher: off")
        with get_client(sync_client=True) as client:
            (schedule,) = client.read_deployment_schedules(deployment_id)
        assert schedule.active is False
    finally:
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment_id)
    assert set_watch_schedule(load_config()).endswith("is not deployed.")
