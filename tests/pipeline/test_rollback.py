"""Rollbacks: by revert PR, by Argo CD, and automatically when prod turns Degraded."""

from __future__ import annotations

from collections.abc import Callable

from deployments.local import LocalPrefect
from deployments.runs import read_artifact
from flows.promote import promote_release
from flows.rollback import rollback_release
from pipeline.conftest import BackgroundRun
from pipeline.helpers import INITIATOR, PROD, argo, decide, merged_promotion, pulls, tags
from sandbox.launcher import Sandbox

APP = "prod-microservices-demo"


def test_rollback_by_revert_pr(
    sandbox: Sandbox, prefect_server: LocalPrefect, run_in_background: Callable[..., BackgroundRun]
) -> None:
    seed = sandbox.github.head("main")
    promoted = merged_promotion(sandbox, "prod", "v1.0.1")
    assert tags(sandbox, PROD) == {"v1.0.1"}

    run = run_in_background(rollback_release, env="prod", method="revert")
    final = run.join()
    assert final.state_type == "COMPLETED", final.message
    assert tags(sandbox, PROD) == {"v1.0.0"}
    assert sandbox.github.read_file("main", PROD) == sandbox.github.read_file(seed, PROD)
    head = sandbox.github.head("main")
    with argo(sandbox) as client:
        app = client.get_app(APP)
    assert app.status.sync.revision == head
    assert app.status.health.status == "Healthy"
    assert app.autosync_enabled, "a revert keeps Git the truth: auto-sync stays on"
    (revert,) = [p for p in pulls(sandbox) if p["head"]["ref"].startswith("revert/")]
    assert revert["merged_at"] is not None
    assert f"#{promoted.number}" in revert["body"]
    summary = read_artifact(prefect_server.api_url, run.run_id, "rollback-summary")
    assert summary is not None and "revert" in summary and f"#{revert['number']}" in summary


def test_rollback_by_argocd(
    sandbox: Sandbox, prefect_server: LocalPrefect, run_in_background: Callable[..., BackgroundRun]
) -> None:
    seed = sandbox.github.head("main")
    merged_promotion(sandbox, "prod", "v1.0.1")
    run = run_in_background(rollback_release, env="prod", method="argocd")
    final = run.join()
    assert final.state_type == "COMPLETED", final.message
    with argo(sandbox) as client:
        app = client.get_app(APP)
        deployed = client.deployed_revision(APP)
    assert deployed == seed
    assert app.status.sync.status == "OutOfSync", "Git still says v1.0.1: Argo CD reports the drift"
    assert app.status.health.status == "Healthy"
    assert {i.rsplit(":", 1)[1] for i in app.status.summary.images} == {"v1.0.0"}
    assert not app.autosync_enabled, "Argo CD's rollback needs auto-sync off, and leaves it off"
    assert tags(sandbox, PROD) == {"v1.0.1"}, "Git is not changed by an Argo CD rollback"
    summary = read_artifact(prefect_server.api_url, run.run_id, "rollback-summary")
    assert summary is not None and "auto-sync is now OFF" in summary


def test_prod_degraded_after_merge_is_rolled_back_automatically(
    sandbox: Sandbox, prefect_server: LocalPrefect, run_in_background: Callable[..., BackgroundRun]
) -> None:
    api = prefect_server.api_url
    seed = sandbox.github.head("main")
    run = run_in_background(
        promote_release, version="v1.0.1", initiator=INITIATOR, auto_rollback="argocd"
    )
    decide(api, run, "qa", "qa-alice")
    run.wait_paused("pm-approval")
    # v1.0.1 turns out to crash-loop in prod.
    sandbox.argocd.set_bad_image_patterns(["*:v1.0.1"])
    decide(api, run, "pm", "pm-carol")
    final = run.join()
    assert final.state_type == "FAILED"
    assert "Degraded" in final.message and "rolled back" in final.message
    assert tags(sandbox, PROD) == {"v1.0.1"}, "the merge happened; Argo CD rolled it back"
    with argo(sandbox) as client:
        app = client.get_app(APP)
        deployed = client.deployed_revision(APP)
    assert deployed == seed
    assert app.status.health.status == "Healthy"
    assert not app.autosync_enabled
    summary = read_artifact(api, run.run_id, "promotion-summary")
    assert summary is not None
    assert "rolled back" in summary and "argocd" in summary
