"""Rollbacks: by revert PR, by Argo CD, and automatically when prod turns Degraded."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from deployments.local import LocalPrefect
from deployments.runs import read_artifact
from flows.promote import promote_release
from flows.rollback import resume_autosync, rollback_release
from pipeline.conftest import BackgroundRun
from pipeline.helpers import INITIATOR, PROD, argo, decide, merged_promotion, pulls, tags
from sandbox.launcher import Sandbox
from sandbox.seed import git

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


@pytest.mark.parametrize(
    "progress_deadline",
    [None, 4.0],
    ids=["degraded-at-once", "degraded-after-progressing"],
)
def test_prod_degraded_after_merge_is_rolled_back_automatically(
    progress_deadline: float | None,
    sandbox: Sandbox,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
) -> None:
    """A bad image turns Degraded at once, or (as a real Deployment does) only at its progress
    deadline after Progressing for a while: either way auto_rollback rolls it back."""
    api = prefect_server.api_url
    if progress_deadline is not None:
        knobs = httpx.post(
            f"{sandbox.info.argocd_url}/_sandbox/knobs",
            json={"progress_deadline": progress_deadline},
            headers={"Authorization": f"Bearer {sandbox.info.argocd_token}"},
            timeout=15,
        )
        assert knobs.status_code < 300, knobs.text
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


@pytest.mark.parametrize("opt_in", [True, False], ids=["rollback-when-stuck", "report-only"])
def test_prod_still_progressing_at_the_deploy_timeout_is_rolled_back_only_when_opted_in(
    opt_in: bool,
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
) -> None:
    """A Deployment's progress deadline can outlast the deploy timeout: the app is still
    Progressing when the run stops waiting. With rollback_when_stuck_progressing (and
    auto_rollback) that is rolled back like a Degraded one; without it, only reported."""
    api = prefect_server.api_url
    knobs = httpx.post(
        f"{sandbox.info.argocd_url}/_sandbox/knobs",
        json={"progress_deadline": 600},
        headers={"Authorization": f"Bearer {sandbox.info.argocd_token}"},
        timeout=15,
    )
    assert knobs.status_code < 300, knobs.text
    monkeypatch.setenv("RELEASE_PROMOTION_DEPLOY_TIMEOUT", "8")
    monkeypatch.setenv("RELEASE_PROMOTION_ROLLBACK_WHEN_STUCK_PROGRESSING", str(opt_in).lower())
    seed = sandbox.github.head("main")
    run = run_in_background(
        promote_release, version="v1.0.1", initiator=INITIATOR, auto_rollback="argocd"
    )
    decide(api, run, "qa", "qa-alice")
    run.wait_paused("pm-approval")
    sandbox.argocd.set_bad_image_patterns(["*:v1.0.1"])
    decide(api, run, "pm", "pm-carol")
    final = run.join()
    assert final.state_type == "FAILED"
    assert "Progressing" in final.message
    with argo(sandbox) as client:
        app = client.get_app(APP)
        deployed = client.deployed_revision(APP)
    if opt_in:
        assert "rolled back" in final.message
        assert deployed == seed and not app.autosync_enabled
    else:
        assert "rolled back" not in final.message
        assert deployed != seed and app.autosync_enabled, "nothing was rolled back"
        assert app.status.health.status == "Progressing"


def test_a_revert_sets_back_exactly_the_tags_of_the_chosen_pr(
    sandbox: Sandbox,
    tmp_path: Path,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
) -> None:
    """A later change to the same overlay (a label) survives; only the PR's tags go back."""
    seed_overlay = sandbox.github.read_file("main", PROD)
    promoted = merged_promotion(sandbox, "prod", "v1.0.1")
    work = tmp_path / "work"
    git("clone", "--quiet", sandbox.info.git_url, str(work))
    (work / PROD).write_text((work / PROD).read_text() + "commonLabels:\n  team: shop\n")
    git("commit", "--quiet", "-am", "Label prod", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    merged_promotion(sandbox, "staging", "v1.0.1")  # a later merge: not what is reverted

    run = run_in_background(rollback_release, env="prod", method="revert", to=str(promoted.number))
    final = run.join()
    assert final.state_type == "COMPLETED", final.message
    assert sandbox.github.read_file("main", PROD) == seed_overlay + "commonLabels:\n  team: shop\n"
    (revert,) = [p for p in pulls(sandbox) if p["head"]["ref"].startswith("revert/")]
    assert f"#{promoted.number}" in revert["body"] and "v1.0.1 -> v1.0.0" in revert["body"]
    # The revert is found, not made twice, when the rollback runs again.
    again = run_in_background(
        rollback_release, env="prod", method="revert", to=str(promoted.number)
    )
    assert again.join().state_type == "COMPLETED"
    assert len([p for p in pulls(sandbox) if p["head"]["ref"].startswith("revert/")]) == 1


def test_after_an_argocd_rollback_promotions_wait_for_resume_autosync_and_the_version_is_held(
    sandbox: Sandbox, prefect_server: LocalPrefect, run_in_background: Callable[..., BackgroundRun]
) -> None:
    api = prefect_server.api_url
    merged_promotion(sandbox, "staging", "v1.0.1")
    merged_promotion(sandbox, "prod", "v1.0.1")
    rolled = run_in_background(rollback_release, env="prod", method="argocd")
    assert rolled.join().state_type == "COMPLETED"
    summary = read_artifact(api, rolled.run_id, "rollback-summary")
    assert summary is not None and "v1.0.1 is on hold" in summary

    # The rolled-back version is on hold: promoting it again needs allow_held.
    held = run_in_background(promote_release, version="v1.0.1", initiator=INITIATOR)
    final = held.join()
    assert final.state_type == "FAILED" and "v1.0.1 is on hold" in final.message
    assert "allow_held" in final.message

    # A newer release may go, but not merge into prod while auto-sync is off there.
    sandbox.registry.publish(sandbox.config.registry.path, list(sandbox.config.services), "v1.0.2")
    newer = run_in_background(promote_release, version="v1.0.2", initiator=INITIATOR)
    decide(api, newer, "qa", "qa-alice")
    decide(api, newer, "pm", "pm-carol")
    stopped = newer.join()
    assert stopped.state_type == "FAILED"
    assert "auto-sync of prod-microservices-demo is off" in stopped.message
    assert "release-promotion resume-autosync prod" in stopped.message
    assert tags(sandbox, PROD) == {"v1.0.1"}, "nothing merged into prod"

    resumed = run_in_background(resume_autosync, env="prod")
    assert resumed.join().state_type == "COMPLETED"
    with argo(sandbox) as client:
        assert client.get_app(APP).autosync_enabled


def test_a_merge_rolled_back_before_this_execution_stops_at_once_and_is_recorded(
    sandbox: Sandbox,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a worker SIGKILLed during an automatic rollback leaves (bench/faults.py, rollback x
    SIGKILL): prod merged at v1.0.1, then rolled back by Argo CD (auto-sync off), and neither
    recorded. The retried run used to wait for a deployment that can never come (the whole
    deploy timeout, 900 s by default) and fail as timed out; it stops at once, says prod was
    rolled back and how to resume auto-sync, and records the rollback and the hold."""
    from flows.holds import read_holds

    monkeypatch.setenv("RELEASE_PROMOTION_DEPLOY_TIMEOUT", "60")
    api = prefect_server.api_url
    merged_promotion(sandbox, "staging", "v1.0.1")
    merged_promotion(sandbox, "prod", "v1.0.1")
    with argo(sandbox) as client:
        client.rollback(APP, "previous", timeout=60, poll_interval=0.2)

    run = run_in_background(
        promote_release, version="v1.0.1", initiator=INITIATOR, auto_rollback="argocd"
    )
    decide(api, run, "qa", "qa-alice")  # QA approves what runs in staging
    approved = time.monotonic()
    final = run.join()
    waited = time.monotonic() - approved
    assert final.state_type == "FAILED"
    assert "auto-sync of prod-microservices-demo is off" in final.message
    assert "the environment was rolled back" in final.message
    assert "release-promotion resume-autosync prod" in final.message
    assert waited < 50, f"it waited {waited:.0f}s: the deploy timeout, not an answer"
    summary = read_artifact(api, run.run_id, "promotion-summary")
    assert summary is not None and "rolled back" in summary
    assert "v1.0.1" in read_holds("microservices-demo-gitops")
