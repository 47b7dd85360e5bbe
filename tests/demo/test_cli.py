"""The `release-promotion` CLI against a real Prefect server (deploy, promote, rollback, approve)."""

from __future__ import annotations

from typer.testing import CliRunner

from deployments.cli import app
from deployments.local import LocalPrefect, Worker
from deployments.runs import read_run

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
