"""Two applications promote to prod at once; one application's promotions into prod wait for its
own prod lock (promotion.names.environment_lock is per application and environment)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prefect.concurrency.sync import concurrency

from deployments.local import LocalPrefect, ensure_concurrency_limit
from deployments.runs import read_artifact, read_run
from flows.promote import promote_release
from pipeline.conftest import BackgroundRun, clear_holds
from pipeline.helpers import INITIATOR, PROD, decide
from promotion.kustomize import read_image_tags
from promotion.names import environment_lock
from sandbox.launcher import Sandbox, start_sandbox


@pytest.fixture
def two_apps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: LocalPrefect
) -> Iterator[Sandbox]:
    clear_holds(prefect_server.api_url)
    with start_sandbox(
        tmp_path / "sandbox", applications=2, reconcile_interval=180.0, health_delay=0.2
    ) as box:
        for name, value in box.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("RELEASE_PROMOTION_POLL_INTERVAL", "0.2")
        ensure_concurrency_limit(prefect_server.api_url, config_file=box.info.config_file)
        yield box


def prod_tags(box: Sandbox, application: str) -> set[str]:
    text = box.applications[application].github.read_file("main", PROD)
    return set(read_image_tags(text).values())


def test_two_applications_promote_to_prod_while_one_waits_for_its_own_lock(
    two_apps: Sandbox,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
) -> None:
    api = prefect_server.api_url
    # Someone (another app-1 promotion, a rollback) holds app-1's prod lock.
    with concurrency(environment_lock("app-1", "prod"), occupy=1, strict=True, timeout_seconds=30):
        first = run_in_background(
            promote_release, version="v1.0.1", initiator=INITIATOR, application="app-1"
        )
        second = run_in_background(
            promote_release, version="v1.0.1", initiator=INITIATOR, application="app-2"
        )
        for run in (first, second):
            decide(api, run, "qa", "qa-alice")
            decide(api, run, "pm", "pm-carol")
        # app-2 merges into its prod and completes while app-1's prod lock is held ...
        done = second.join()
        assert done.state_type == "COMPLETED", done.message
        assert prod_tags(two_apps, "app-2") == {"v1.0.1"}
        # ... and app-1 waits for its own lock: nothing merged into app-1's prod.
        time.sleep(2.0)
        assert read_run(api, first.run_id).state_type == "RUNNING"
        assert prod_tags(two_apps, "app-1") == {"v1.0.0"}
    waited = first.join()
    assert waited.state_type == "COMPLETED", waited.message
    assert prod_tags(two_apps, "app-1") == {"v1.0.1"}
    summary = read_artifact(api, first.run_id, "promotion-summary")
    assert summary is not None and "Promotion of v1.0.1 (app-1)" in summary


def test_a_setup_of_several_applications_needs_the_application(
    two_apps: Sandbox, prefect_server: LocalPrefect
) -> None:
    state = promote_release(version="v1.0.1", initiator=INITIATOR, return_state=True)
    assert state.is_failed()
    assert "say which one (application: app-1, app-2)" in str(state.message)


def test_the_drift_audit_covers_every_application_each_against_its_own_setup(
    two_apps: Sandbox, prefect_server: LocalPrefect
) -> None:
    from prefect.artifacts import Artifact

    from flows.drift import REPORT_KEY, TABLE_KEY, audit_drift
    from promotion.argocd import ArgoCDClient

    staging_2 = two_apps.applications["app-2"].config.environment("staging").argocd_app
    with ArgoCDClient(two_apps.info.argocd_url, two_apps.info.argocd_token) as argo_api:
        argo_api.disable_autosync(staging_2)

    drifting = audit_drift(behind_release_is_drift=False, emit_events=False)
    assert drifting == 1
    table = Artifact.get(TABLE_KEY)
    assert table is not None and isinstance(table.data, str)
    rows = json.loads(table.data)
    owners = {(r["owner"], r["application"]) for r in rows}
    apps = {
        (name, box.config.environment("staging").argocd_app)
        for name, box in two_apps.applications.items()
    }
    assert owners == apps  # every application's staging app, audited under its own name
    assert {r["drift"] for r in rows if r["application"] == staging_2} == {"auto-sync disabled"}
    assert {r["drift"] for r in rows if r["owner"] == "app-1"} == {"in sync"}
    report = Artifact.get(REPORT_KEY)
    assert report is not None and isinstance(report.data, str)
    assert "(2 applications of promotion.yaml)" in report.data
    assert "# app-1" in report.data and "# app-2" in report.data

    # one application only: app-1's applications, none drifting
    assert audit_drift(behind_release_is_drift=False, emit_events=False, application="app-1") == 0
    table = Artifact.get(TABLE_KEY)
    assert table is not None and isinstance(table.data, str)
    assert {r["owner"] for r in json.loads(table.data)} == {"app-1"}
