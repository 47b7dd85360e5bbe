"""The release team's rules in a real promotion: soak time, freeze windows, verification after
deploy (issue 12), on a real Prefect server, the sandbox and its per-environment web endpoints."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from deployments.local import LocalPrefect
from deployments.runs import read_artifact
from flows.promote import promote_release
from pipeline.conftest import BackgroundRun
from pipeline.helpers import INITIATOR, PROD, STAGING, argo, decide, pulls, tags
from promotion.config import DEFAULT_CONFIG
from sandbox.launcher import Sandbox

STAGING_BLOCK = "    argocd_app: staging-microservices-demo\n"
PROD_BLOCK = "    argocd_app: prod-microservices-demo\n"


def _setup(tmp_path: Path, staging_extra: str = "", prod_extra: str = "") -> str:
    text = DEFAULT_CONFIG.read_text()
    assert STAGING_BLOCK in text and PROD_BLOCK in text
    text = text.replace(STAGING_BLOCK, STAGING_BLOCK + staging_extra)
    text = text.replace(PROD_BLOCK, PROD_BLOCK + prod_extra)
    path = tmp_path / "promotion.yaml"
    path.write_text(text)
    return str(path)


def _merged_at(box: Sandbox, env: str) -> datetime:
    (pr,) = [p for p in pulls(box) if str(p["head"]["ref"]).startswith(f"promote/{env}/")]
    assert pr["merged_at"], pr
    return datetime.fromisoformat(str(pr["merged_at"]).replace("Z", "+00:00"))


def test_prod_merges_only_after_the_soak_time_in_staging(
    sandbox: Sandbox,
    tmp_path: Path,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
) -> None:
    api = prefect_server.api_url
    setup = _setup(tmp_path, staging_extra="    soak_minutes: 0.25\n")  # 15 s
    run = run_in_background(
        promote_release, version="v1.0.1", initiator=INITIATOR, config_file=setup
    )
    decide(api, run, "qa", "qa-alice")
    decide(api, run, "pm", "pm-carol")  # at once: the soak is not over yet
    final = run.join(timeout=300)
    assert final.state_type == "COMPLETED", final.message
    with argo(sandbox) as client:
        history = client.get_app("staging-microservices-demo").status.history
    live_since = max(h.deployed_at for h in history if h.deployed_at is not None)
    assert _merged_at(sandbox, "prod") >= live_since + timedelta(seconds=15)
    summary = read_artifact(api, run.run_id, "promotion-summary")
    assert summary is not None and "has run in staging for" in summary
    assert "soak time 0.2 min" in summary, summary


def test_a_freeze_window_holds_the_merge_until_it_ends(
    sandbox: Sandbox,
    tmp_path: Path,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
) -> None:
    api = prefect_server.api_url
    now = datetime.now(UTC)
    end = now + timedelta(seconds=60)
    window = (
        "    freeze:\n      on_freeze: wait\n      windows:\n"
        f'        - start: "{(now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")}"\n'
        f'          end: "{end.strftime("%Y-%m-%dT%H:%M:%S")}"\n'
        "          timezone: UTC\n          reason: release freeze\n"
    )
    setup = _setup(tmp_path, prod_extra=window)
    run = run_in_background(
        promote_release, version="v1.0.1", initiator=INITIATOR, config_file=setup
    )
    decide(api, run, "qa", "qa-alice")
    decide(api, run, "pm", "pm-carol")
    final = run.join(timeout=300)
    assert final.state_type == "COMPLETED", final.message
    assert _merged_at(sandbox, "prod") >= end.replace(microsecond=0)
    summary = read_artifact(api, run.run_id, "promotion-summary")
    assert summary is not None and "release freeze" in summary


def test_a_failed_verification_fails_the_environment_and_rolls_it_back(
    sandbox: Sandbox,
    tmp_path: Path,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
) -> None:
    api = prefect_server.api_url
    staging_url = sandbox.info.web_urls["staging"]
    probe = (
        "    verify:\n      probes:\n"
        f"        - url: {staging_url}/version\n"
        "          json_field: version\n          retries: 2\n          interval_seconds: 0.5\n"
    )
    setup = _setup(tmp_path, staging_extra=probe)
    # The release deploys, but the application serves another build.
    knob = httpx.post(f"{staging_url}/_sandbox/version", json={"version": "v0.9.9"}, timeout=10)
    assert knob.status_code == 200, knob.text
    seed = sandbox.github.head("main")
    run = run_in_background(
        promote_release,
        version="v1.0.1",
        initiator=INITIATOR,
        config_file=setup,
        auto_rollback="revert",
    )
    final = run.join(timeout=300)
    assert final.state_type == "FAILED"
    assert "verification of v1.0.1 in staging failed" in final.message, final.message
    assert "rolled back" in final.message
    assert tags(sandbox, STAGING) == {"v1.0.0"} and tags(sandbox, PROD) == {"v1.0.0"}
    assert sandbox.github.head("main") != seed, "the merge and its revert are both in Git"
    summary = read_artifact(api, run.run_id, "promotion-summary")
    assert summary is not None and "## Verification in staging" in summary
    assert "v0.9.9" in summary


def test_a_dry_run_shows_the_plan_and_changes_nothing(
    sandbox: Sandbox,
    tmp_path: Path,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
) -> None:
    api = prefect_server.api_url
    window = (
        "    freeze:\n      windows:\n"
        '        - cron: "0 18 * * FRI"\n          duration: 3840\n'
        "          timezone: Europe/Paris\n          reason: weekend freeze\n"
    )
    setup = _setup(tmp_path, staging_extra="    soak_minutes: 30\n", prod_extra=window)
    head, branches = sandbox.github.head("main"), sandbox.github.branches()
    with argo(sandbox) as client:
        before = {
            a: client.get_app(a).status.history
            for a in ("staging-microservices-demo", "prod-microservices-demo")
        }
    run = run_in_background(
        promote_release, version="v1.0.1", initiator=INITIATOR, config_file=setup, dry_run=True
    )
    final = run.join()
    assert final.state_type == "COMPLETED", final.message
    assert sandbox.github.head("main") == head and sandbox.github.branches() == branches
    assert pulls(sandbox) == []
    with argo(sandbox) as client:
        after = {a: client.get_app(a).status.history for a in before}
    assert after == before, "no Argo CD change"
    plan = read_artifact(api, run.run_id, "promotion-dry-run")
    assert plan is not None
    assert plan.count("+    newTag: v1.0.1") == 18 and plan.count("-    newTag: v1.0.0") == 18
    assert "Gate **qa** (after_deploy): qa-alice, qa-bob" in plan
    assert "Gate **pm** (before_merge): pm-carol" in plan
    assert "Soak: 30 min Healthy in staging first." in plan
    assert "weekend freeze" in plan and "Kustomize validation" in plan
