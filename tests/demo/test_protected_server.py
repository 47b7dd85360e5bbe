"""A Prefect server protected by ``PREFECT_SERVER_API_AUTH_STRING``: refused without the auth
string, and the CLI, ``prefect deploy`` and a worker running a deployment all work with it.

The server is this module's own (not the session's open one); this process talks to it only over
REST (``deployments.runs``), never through Prefect's client, so no log or event worker of this
process is left pointing at it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from deployments.cli import app
from deployments.local import (
    LocalPrefect,
    Worker,
    deploy,
    ensure_concurrency_limit,
    ensure_work_pool,
)
from deployments.runs import AUTH_STRING_ENV, RunApiError, read_run, start_run, wait_for_run
from promotion.names import PROMOTE_DEPLOYMENT

TOY_PROJECT = Path(__file__).resolve().parent / "toy"
runner = CliRunner()


@pytest.fixture(scope="module")
def auth_string() -> str:
    return f"release-bot:{secrets.token_urlsafe(16)}"


@pytest.fixture(scope="module")
def protected(
    auth_string: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalPrefect, Worker]]:
    with LocalPrefect(
        home=tmp_path_factory.mktemp("protected-home"), auth_string=auth_string
    ) as server:
        env = server.env()
        ensure_work_pool(server.api_url, auth_string=auth_string)
        ensure_concurrency_limit(server.api_url, name="promotion-prod", auth_string=auth_string)
        deploy(env, project_root=TOY_PROJECT)
        deploy(env, names=["promote-release"])
        log = tmp_path_factory.mktemp("protected-worker") / "worker.log"
        with Worker(env, log_path=log) as worker:
            yield server, worker


def test_unauthenticated_calls_are_refused(
    protected: tuple[LocalPrefect, Worker], auth_string: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = protected
    api = server.api_url
    # health stays open (probes); everything else needs the auth string
    assert httpx.get(f"{api}/health").status_code == 200
    assert httpx.post(f"{api}/flow_runs/filter", json={}).status_code == 401
    wrong = httpx.post(f"{api}/flow_runs/filter", json={}, auth=("release-bot", "wrong"))
    assert wrong.status_code == 401
    with server.client() as http:
        assert http.post("flow_runs/filter", json={}).status_code == 200

    monkeypatch.delenv(AUTH_STRING_ENV, raising=False)
    with pytest.raises(RunApiError, match=r"HTTP 401.*set PREFECT_API_AUTH_STRING"):
        start_run(api, "toy-release/toy-release", {"version": "v9.9.9"})
    refused = runner.invoke(app, ["status", "--api-url", api], env={AUTH_STRING_ENV: ""})
    assert refused.exit_code == 1
    assert "401" in refused.output
    assert auth_string.split(":", 1)[1] not in refused.output


def test_cli_and_worker_work_with_the_auth_string(
    protected: tuple[LocalPrefect, Worker], auth_string: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, worker = protected
    api = server.api_url
    monkeypatch.setenv(AUTH_STRING_ENV, auth_string)
    run = start_run(api, "toy-release/toy-release", {"version": "v9.9.9"})
    paused = wait_for_run(api, run.id, timeout=120)
    assert paused.paused, worker.log_tail()

    env = {AUTH_STRING_ENV: auth_string}
    status = runner.invoke(app, ["status", "--api-url", api], env=env)
    assert status.exit_code == 0, status.output
    assert "No approval is waiting." in status.output  # none of promote-release

    answer = runner.invoke(
        app, ["approve", run.id, "--approver", "qa-bob", "--api-url", api], env=env
    )
    assert answer.exit_code == 0, answer.output
    assert "ACCEPT: qa gate approved by qa-bob" in answer.output

    done = wait_for_run(api, run.id, until=lambda r: r.finished, timeout=120)
    assert done.state_type == "COMPLETED", worker.log_tail()
    assert read_run(api, run.id).state_type == "COMPLETED"
    assert auth_string not in worker.log_tail(400)
    # the deployment the CLI would start exists on the protected server
    with server.client() as http:
        assert http.get(f"deployments/name/{PROMOTE_DEPLOYMENT}").status_code == 200
