"""The `release-promotion` CLI against a real Prefect server (deploy, promote, rollback, approve)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from deployments.cli import app
from deployments.demo import _gate as demo_gate
from deployments.local import LocalPrefect, Worker, deployable_names
from deployments.runs import find_deployment, read_run, request_with_retry
from promotion.config import DEFAULT_CONFIG, load_config
from promotion.names import (
    PROMOTE_DEPLOYMENT,
    RESUME_AUTOSYNC_DEPLOYMENT,
    RESUME_AUTOSYNC_FLOW,
    holds_variable,
)
from sandbox.launcher import Sandbox

HOLDS = holds_variable(load_config().application)

runner = CliRunner()


def _run_id(output: str) -> str:
    return output.rsplit("/runs/flow-run/", 1)[1].strip()


def test_promote_and_rollback_start_runs_with_the_given_parameters(
    local_prefect: LocalPrefect, worker: Worker
) -> None:
    api = local_prefect.api_url
    # Harmless runs: a release the registry does not hold, an environment that does not exist.
    promoted = runner.invoke(
        app, ["promote", "v9.9.9", "--initiator", "dev-dave", "--api-url", api]
    )
    assert promoted.exit_code == 0, promoted.output
    assert local_prefect.flow_run_url("") in promoted.output
    run = read_run(api, _run_id(promoted.output))
    assert run.parameters == {"version": "v9.9.9", "initiator": "dev-dave"}

    rolled = runner.invoke(
        app, ["rollback", "nowhere", "--method", "argocd", "--to", "3", "--api-url", api]
    )
    assert rolled.exit_code == 0, rolled.output
    run = read_run(api, _run_id(rolled.output))
    assert run.parameters == {"env": "nowhere", "method": "argocd", "to": "3"}


def test_bad_arguments_are_refused_before_any_run(local_prefect: LocalPrefect) -> None:
    api = local_prefect.api_url
    bad_version = runner.invoke(app, ["promote", "1.0 final", "--api-url", api])
    assert bad_version.exit_code == 2
    assert "invalid version" in bad_version.output
    bad_method = runner.invoke(app, ["rollback", "prod", "--method", "kubectl", "--api-url", api])
    assert bad_method.exit_code == 2
    assert "argocd or revert" in bad_method.output


def test_approving_a_run_that_does_not_wait_says_so(
    local_prefect: LocalPrefect, worker: Worker
) -> None:
    api = local_prefect.api_url
    promoted = runner.invoke(app, ["promote", "v9.9.8", "--api-url", api])
    run_id = _run_id(promoted.output)
    answer = runner.invoke(app, ["approve", run_id, "--approver", "qa-alice", "--api-url", api])
    assert answer.exit_code == 1
    assert "ABORT" in answer.output


def test_status_without_a_server_fails_plainly() -> None:
    result = runner.invoke(app, ["status", "--api-url", "http://127.0.0.1:9/api"])
    assert result.exit_code == 1
    assert "cannot list approvals at http://127.0.0.1:9/api" in result.output


def _schema(api: str, deployment: str) -> dict[str, Any]:
    return dict(find_deployment(api, deployment)["parameter_openapi_schema"]["properties"])


def test_promote_sends_every_option_given(local_prefect: LocalPrefect, worker: Worker) -> None:
    api = local_prefect.api_url
    args = ["promote", "v9.9.7", "--initiator", "dev-dave", "--approval-timeout-seconds", "60"]
    args += ["--auto-rollback", "revert", "--allow-downgrade", "--allow-held"]
    args += ["--freeze-override-by", "pm-carol", "--freeze-override-reason", "hotfix", "--dry-run"]
    args += ["--config-file", "promotion.yaml", "--application", "microservices-demo-gitops"]
    args += ["--api-url", api]
    promoted = runner.invoke(app, args)
    assert promoted.exit_code == 0, promoted.output
    assert read_run(api, _run_id(promoted.output)).parameters == {
        "version": "v9.9.7",
        "initiator": "dev-dave",
        "approval_timeout_seconds": 60,
        "auto_rollback": "revert",
        "allow_downgrade": True,
        "allow_held": True,
        "freeze_override_by": "pm-carol",
        "freeze_override_reason": "hotfix",
        "dry_run": True,
        "config_file": "promotion.yaml",
        "application": "microservices-demo-gitops",
    }
    # Every parameter of the flow has its option: what the UI can set, the CLI can too.
    assert set(_schema(api, PROMOTE_DEPLOYMENT)) == set(
        read_run(api, _run_id(promoted.output)).parameters
    )


def test_promote_refuses_an_unknown_auto_rollback(local_prefect: LocalPrefect) -> None:
    args = ["promote", "v1.0.1", "--auto-rollback", "kubectl", "--api-url", local_prefect.api_url]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "off, argocd or revert" in result.output


def test_resume_autosync_starts_its_deployment(local_prefect: LocalPrefect, worker: Worker) -> None:
    api = local_prefect.api_url
    result = runner.invoke(app, ["resume-autosync", "nowhere", "--api-url", api])
    if RESUME_AUTOSYNC_FLOW in deployable_names()[1]:
        # flows/rollback.py:resume_autosync is not in this checkout: nothing was deployed
        assert result.exit_code == 1
        assert f"no deployment '{RESUME_AUTOSYNC_DEPLOYMENT}'" in result.output
        return
    assert result.exit_code == 0, result.output
    assert local_prefect.flow_run_url("") in result.output
    assert read_run(api, _run_id(result.output)).parameters == {"env": "nowhere"}


def _soak_and_freeze_setup(tmp_path: Path) -> Path:
    """The project's setup with a 30-minute soak in staging and prod frozen until 2099."""
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    text = text.replace(
        "    argocd_app: staging-microservices-demo\n",
        "    argocd_app: staging-microservices-demo\n    soak_minutes: 30\n",
    ).replace(
        "    argocd_app: prod-microservices-demo\n",
        "    argocd_app: prod-microservices-demo\n    freeze:\n      windows:\n"
        '        - {start: "2020-01-01T00:00:00", end: "2099-01-01T00:00:00", reason: audit}\n',
    )
    path = tmp_path / "promotion.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_config(path).environments[0].soak_minutes == 30
    return path


def _deployed_at(sandbox: Sandbox, app_name: str) -> datetime:
    """The ``deployedAt`` of the newest history entry of ``app_name``, from the Argo CD API."""
    answer = httpx.get(
        f"{sandbox.info.argocd_url}/api/v1/applications/{app_name}",
        headers={"Authorization": f"Bearer {sandbox.info.argocd_token}"},
    )
    answer.raise_for_status()
    newest = max(answer.json()["status"]["history"], key=lambda entry: entry["id"])
    return datetime.fromisoformat(newest["deployedAt"].replace("Z", "+00:00"))


def test_status_shows_the_holds(
    local_prefect: LocalPrefect, worker: Worker, demo_sandbox: Sandbox, tmp_path: Path
) -> None:
    api = local_prefect.api_url
    # per environment: since when it runs its version Healthy, its soak and its freeze
    env = {
        "RELEASE_PROMOTION_ARGOCD_URL": demo_sandbox.info.argocd_url,
        "RELEASE_PROMOTION_ARGOCD_TOKEN": demo_sandbox.info.argocd_token,
        "RELEASE_PROMOTION_CONFIG_FILE": str(_soak_and_freeze_setup(tmp_path)),
    }
    staging_since = _deployed_at(demo_sandbox, "staging-microservices-demo")
    prod_since = _deployed_at(demo_sandbox, "prod-microservices-demo")
    ready_at = (staging_since + timedelta(minutes=30)).isoformat(timespec="seconds")
    text = runner.invoke(app, ["status", "--api-url", api], env=env)
    assert text.exit_code == 0, text.output
    assert (
        f"Healthy since {staging_since.isoformat()}; soak: 30 min required; " in text.output
        and f"to go (until {ready_at}); freeze: none\n" in text.output
    ), text.output
    assert (
        f"Healthy since {prod_since.isoformat()}; soak: no soak time required; "
        "freeze: frozen until 2099-01-01T00:00+00:00\n" in text.output
    ), text.output
    as_json = runner.invoke(app, ["status", "--json", "--api-url", api], env=env)
    staging, prod = json.loads(as_json.output)["environments"]
    assert (staging["since"], staging["soak_minutes"]) == (staging_since.isoformat(), 30)
    assert 0 < staging["soak_remaining_minutes"] <= 30
    assert staging["soak"].startswith("30 min required; ") and staging["freeze"] == "none"
    assert (prod["since"], prod["soak"]) == (prod_since.isoformat(), "no soak time required")
    assert prod["freeze"] == "frozen until 2099-01-01T00:00+00:00"

    holds = {
        "v1.0.2": {
            "env": "prod",
            "reason": "rolled back: pods crash-looping",
            "at": "2026-12-02T10:00:00+00:00",
            "run": "0b3c9d3e-1f0e-4a51-9a3c-8d2f6c1e2a77",
        }
    }
    created = httpx.post(f"{api}/variables/", json={"name": HOLDS, "value": holds})
    assert created.status_code == 201, created.text
    try:
        shown = runner.invoke(app, ["status", "--api-url", api])
        assert shown.exit_code == 0, shown.output
        assert (
            "held: v1.0.2 in prod since 2026-12-02T10:00:00+00:00: rolled back: pods crash-looping"
            f" (run {local_prefect.flow_run_url(holds['v1.0.2']['run'])})" in shown.output
        )
        other = runner.invoke(app, ["status", "v1.0.1", "--json", "--api-url", api])
        assert other.exit_code == 0, other.output
        assert json.loads(other.output)["holds"] == {}
        mine = runner.invoke(app, ["status", "v1.0.2", "--json", "--api-url", api])
        assert json.loads(mine.output)["holds"] == holds
    finally:
        # a busy SQLite server answers 503 now and then: retry as the product's calls do
        with httpx.Client() as http:
            gone = request_with_retry(http, "DELETE", f"{api}/variables/name/{HOLDS}")
        assert gone.status_code in {204, 404}, gone.text
    none = runner.invoke(app, ["status", "--api-url", api])
    assert "No release is on hold." in none.output


def test_the_gate_of_a_pause_key_bound_to_a_digest() -> None:
    assert demo_gate("qa-approval-0123456789ab-0") == "qa"
    assert demo_gate("pm-approval-0") == "pm"
    assert demo_gate(None) == "unknown"
