"""The audit flow against the sandbox: every drift class injected and reported, none when clean.

Each world is a real GitOps repository served over smart HTTP by the GitHub emulator, the Argo
CD emulator with one Application per overlay (git polled only once an hour, so a new commit
stays unseen until a refresh) and a real ``docker-registry``; the flow runs against a real
Prefect server. Drift is injected the way it happens: through Argo CD's API (auto-sync turned
off, a sync that turns Degraded), commits on the branch, a release published in the registry.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prefect.artifacts import Artifact

from bench.drift import DriftWorld, app_name, publish_release, run_audit
from deployments.drift_automation import AUTOMATION_NAME, ensure_drift_automation
from deployments.local import LocalPrefect
from promotion.argocd import ArgoCDClient

if TYPE_CHECKING:
    from tests.drift.conftest import Receiver

pytestmark = pytest.mark.timeout(180)

BROKEN = "staging-broken"


def table(key: str = "drift-table") -> list[dict[str, str]]:
    artifact = Artifact.get(key)
    assert artifact is not None
    data = artifact.data
    rows = json.loads(data) if isinstance(data, str) else data
    assert isinstance(rows, list)
    return rows


def classes(rows: list[dict[str, str]]) -> dict[str, str]:
    return {row["application"]: row["drift"] for row in rows}


def drift_events(api_url: str, since: datetime) -> list[dict[str, Any]]:
    body = {
        "filter": {
            "occurred": {"since": since.isoformat()},
            "event": {"name": ["release-promotion.drift.detected"]},
        },
        "limit": 50,
    }
    response = httpx.post(f"{api_url}/events/filter", json=body, timeout=10)
    response.raise_for_status()
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def disable_autosync(api: httpx.Client, app: str) -> None:
    """What a user does in the UI: a merge patch turning ``automated.enabled`` off."""
    patch = {"spec": {"syncPolicy": {"automated": {"enabled": False}}}}
    api.patch(
        f"/api/v1/applications/{app}", json={"patch": json.dumps(patch), "patchType": "merge"}
    ).raise_for_status()


def test_clean_sandbox_reports_no_drift(
    drift_prefect: LocalPrefect, make_world: Callable[..., DriftWorld]
) -> None:
    world = make_world(3)
    world.reset_calls()
    state, _ = run_audit(world)
    assert state.is_completed(), state.message
    assert state.result() == 0
    rows = table()
    assert len(rows) == 3 * 9
    assert set(classes(rows).values()) == {"in sync"}
    assert {row["status"] for row in rows} == {"ok"}
    report = Artifact.get("drift-report")
    assert report is not None and "**No drift**" in str(report.data)
    assert world.calls() == {"argocd": 1, "github": 3, "registry": 9}


def test_every_drift_class_is_reported(
    drift_prefect: LocalPrefect, make_world: Callable[..., DriftWorld]
) -> None:
    from sandbox.argocd import AppSpec

    services = [
        "cartservice",
        "checkoutservice",
        "currencyservice",
        "emailservice",
        "frontend",
        "paymentservice",
        "productcatalogservice",
        "recommendationservice",
        "shippingservice",
    ]
    broken_overlay = (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources:\n  - ../../does-not-exist\nimages:\n"
        + "".join(
            f"  - name: registry.digitalocean.com/microservices-demo/{s}\n    newTag: v1.0.1\n"
            for s in services
        )
    )
    world = make_world(
        7,
        tags={6: dict.fromkeys(services, "v1.0.0")},
        extra_apps=[AppSpec(BROKEN, "apps/broken", environment="staging")],
        extra_files={"apps/broken/kustomization.yaml": broken_overlay},
    )
    oos, mismatch, degraded, autosync, behind = (app_name(i) for i in (1, 2, 3, 4, 6))

    with world.argocd_api() as api:
        # OutOfSync: auto-sync off, a change on the branch, Argo CD refreshed (sees, won't sync).
        disable_autosync(api, oos)
        # Auto-sync left off after an Argo CD rollback (our client marks it; the 5351 case).
        ArgoCDClient(world.argocd_url, world.argocd_token).disable_autosync(autosync)
        overlay_oos = world.overlay(1, {})[f"apps/{oos}/kustomization.yaml"]
        world.commit(
            {
                f"apps/{oos}/kustomization.yaml": overlay_oos.replace(
                    "images:", "commonAnnotations:\n  team: shop\nimages:"
                ),
                # Image mismatch: Git moved frontend back, Argo CD has not picked it up yet.
                **world.overlay(2, {"frontend": "v1.0.0"}),
            },
            "staging: annotate one app, move another's frontend",
        )
        api.get(f"/api/v1/applications/{oos}", params={"refresh": "normal"}).raise_for_status()
        # Degraded: an image that cannot run, then a sync of that application.
        bad = {"patterns": ["*/paymentservice:v1.0.1"]}
        httpx.post(f"{world.argocd_url}/_sandbox/bad-images", json=bad).raise_for_status()
        api.post(f"/api/v1/applications/{degraded}/sync", json={}).raise_for_status()
        world.argocd.wait_idle()
        time.sleep(0.2)  # the emulator's health delay

    since = datetime.now(UTC) - timedelta(seconds=1)
    world.reset_calls()
    state, _ = run_audit(world)
    assert state.is_completed(), state.message
    assert state.result() == 6
    assert world.calls() == {"argocd": 1, "github": 3, "registry": 9}

    rows = table()
    assert classes(rows) == {
        app_name(0): "in sync",
        oos: "OutOfSync, auto-sync disabled",
        mismatch: "image mismatch",
        degraded: "Degraded",
        autosync: "auto-sync disabled",
        app_name(5): "in sync",
        behind: "behind newest release",
        BROKEN: "OutOfSync, Missing",
    }
    frontend = next(r for r in rows if r["application"] == mismatch and r["service"] == "frontend")
    assert (frontend["desired"], frontend["live"], frontend["status"]) == (
        "v1.0.0",
        "v1.0.1",
        "mismatch",
    )
    assert {r["status"] for r in rows if r["application"] == behind} == {"behind"}

    report = str(Artifact.get("drift-report").data)  # type: ignore[union-attr]
    assert "**6 of 8 applications drift.**" in report
    assert "frontend: Git wants v1.0.0, Argo CD runs v1.0.1" in report
    assert "paymentservice" in report and "Degraded" in report
    assert "turned off for an Argo CD rollback" in report
    assert "behind the newest release v1.0.1" in report

    expected = {oos, mismatch, degraded, autosync, behind, BROKEN}
    deadline = time.monotonic() + 30  # events reach the server's store asynchronously
    by_app: dict[str, dict[str, Any]] = {}
    while set(by_app) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
        events = drift_events(drift_prefect.api_url, since)
        by_app = {e["resource"]["release-promotion.argocd-app"]: e for e in events}
    assert set(by_app) == expected
    event = by_app[mismatch]
    assert event["resource"]["prefect.resource.id"] == f"release-promotion.argocd-app.{mismatch}"
    assert event["resource"]["release-promotion.environment"] == "staging"
    assert event["payload"]["kinds"] == ["image_mismatch"]
    assert event["payload"]["services"][0]["desired"] == "v1.0.0"

    # A newer release published in the registry: now every application is behind.
    publish_release(world, "v1.0.2")
    state, _ = run_audit(world)
    assert state.result() == 8
    assert all("behind newest release" in c for c in classes(table()).values())


def test_audit_fails_only_when_it_cannot_run(
    drift_prefect: LocalPrefect, make_world: Callable[..., DriftWorld]
) -> None:
    world = make_world(1)
    state, _ = run_audit(world, env={"RELEASE_PROMOTION_ARGOCD_TOKEN": "wrong-token"})
    assert state.is_failed()
    assert "cannot list the Argo CD applications" in str(state.message)
    assert "401" in str(state.message)
    assert "could not run" in str(Artifact.get("drift-report").data)  # type: ignore[union-attr]

    # The registry refuses (401 from a server that is no registry): the Git/Argo CD
    # comparison still runs and the report says the release was not checked.
    state, _ = run_audit(world, env={"RELEASE_PROMOTION_REGISTRY_URL": world.github.api_url})
    assert state.is_completed() and state.result() == 0
    assert "newest release is unknown" in str(Artifact.get("drift-report").data)  # type: ignore[union-attr]


def test_automation_calls_the_webhook_per_drifting_application(
    drift_prefect: LocalPrefect, make_world: Callable[..., DriftWorld], receiver: Receiver
) -> None:
    from prefect.automations import Automation

    world = make_world(3, registry=False)
    automation = ensure_drift_automation(receiver.url)
    try:
        again = ensure_drift_automation(receiver.url)  # idempotent: same automation
        assert again.id == automation.id
        with world.argocd_api() as api:
            disable_autosync(api, app_name(1))
            disable_autosync(api, app_name(2))
        time.sleep(1.0)  # let the server load the automation's trigger
        state, _ = run_audit(world)
        assert state.result() == 2
        wanted = {app_name(1), app_name(2)}
        assert receiver.wait_for(
            lambda calls: wanted <= {c.get("application") for c in calls}, timeout=30
        ), receiver.calls
        call = next(c for c in receiver.calls if c["application"] == app_name(1))
        assert call["environment"] == "staging"
        assert call["kinds"] == ["autosync_disabled"]
        assert call["text"] == f"Drift in staging/{app_name(1)}: auto-sync disabled"
    finally:
        Automation.read(name=AUTOMATION_NAME).delete()


def test_the_launchers_sandbox(drift_prefect: LocalPrefect, tmp_path: Path) -> None:
    """``python -m sandbox up``'s state: staging at v1.0.0 while v1.0.1 is published."""
    from bench.drift import pointed_at
    from flows.drift import audit_drift
    from sandbox.launcher import start_sandbox

    with start_sandbox(tmp_path / "sandbox") as sandbox, pointed_at(sandbox.env()):
        state = audit_drift(return_state=True)
        assert state.result() == 1
        rows = table()
        assert classes(rows) == {"staging-microservices-demo": "behind newest release"}
        assert {(r["live"], r["newest release"]) for r in rows} == {("v1.0.0", "v1.0.1")}
        # Git against Argo CD only: nothing drifts.
        assert audit_drift(behind_release_is_drift=False) == 0


def test_calls_do_not_grow_with_applications(
    drift_prefect: LocalPrefect, make_world: Callable[..., DriftWorld]
) -> None:
    """60 applications: still one Argo CD list, one git fetch, one tag list per image."""
    world = make_world(60, tags={50: {"frontend": "v1.0.0"}})
    world.reset_calls()
    state, _ = run_audit(world)
    assert state.result() == 1
    assert world.calls() == {"argocd": 1, "github": 3, "registry": 9}
    rows = table()
    assert len(rows) == 60 * 9
    assert classes(rows)[app_name(50)] == "behind newest release"
