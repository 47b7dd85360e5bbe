"""No credential, the registry username included, reaches a message, an artifact, a log, the
pull requests or the Prefect database, after a passing and a failing promotion.

The registry sits behind a real bearer-token front (the DOCR flow) whose username is an API
token, as the README advises for DOCR: it is a secret like the password.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from deployments.local import LocalPrefect
from deployments.postgres.local_cluster import PG_BIN
from flows.promote import promote_release
from pipeline.conftest import BackgroundRun
from pipeline.helpers import INITIATOR, comments, promoted, pulls
from sandbox.http import RunningServer, serve_in_thread
from sandbox.launcher import Sandbox
from sandbox.registry import BearerTokenFront

USERNAME = "dop_v1_user_" + secrets.token_hex(12)
PASSWORD = "dop_v1_pass_" + secrets.token_hex(12)
WRONG_PASSWORD = "dop_v1_wrong_" + secrets.token_hex(12)


@pytest.fixture
def token_registry(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    front = BearerTokenFront(sandbox.registry.url, users={USERNAME: PASSWORD})
    server = serve_in_thread(front.app)
    monkeypatch.setenv("RELEASE_PROMOTION_REGISTRY_URL", server.url)
    monkeypatch.setenv("RELEASE_PROMOTION_REGISTRY_USERNAME", USERNAME)
    monkeypatch.setenv("RELEASE_PROMOTION_REGISTRY_PASSWORD", PASSWORD)
    yield server
    server.stop()
    front.close()


def _all(api: str, path: str, body: dict[str, object]) -> list[dict[str, object]]:
    response = httpx.post(f"{api}{path}", json={**body, "limit": 200}, timeout=30)
    response.raise_for_status()
    return list(response.json())


def prefect_database(server: LocalPrefect) -> bytes:
    """Every byte the Prefect server stored: its SQLite files, or a dump of its PostgreSQL
    database when the session runs on one (``RELEASE_PROMOTION_TEST_DATABASE=postgres``)."""
    url = os.environ.get("RELEASE_PROMOTION_TEST_DATABASE_URL")
    if url:
        dump = [str(PG_BIN / "pg_dump"), "--data-only", url.replace("+asyncpg", "")]
        return subprocess.run(dump, capture_output=True, check=True, timeout=120).stdout
    return b"".join(
        path.read_bytes() for path in Path(server.home).rglob("*.db*") if path.is_file()
    )


def test_no_credential_is_written_anywhere(
    sandbox: Sandbox,
    token_registry: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
) -> None:
    api = prefect_server.api_url
    passing = promoted(api, run_in_background)

    monkeypatch.setenv("RELEASE_PROMOTION_REGISTRY_PASSWORD", WRONG_PASSWORD)
    failing = run_in_background(promote_release, version="v1.0.1", initiator=INITIATOR)
    failed = failing.join()
    assert failed.state_type == "FAILED"
    assert "registry" in failed.message.lower()

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)
    credentials = {
        "registry username": USERNAME,
        "registry password": PASSWORD,
        "wrong registry password": WRONG_PASSWORD,
        "GitHub token": sandbox.info.github_token,
        "Argo CD token": sandbox.info.argocd_token,
    }
    run_ids = [passing.run_id, failing.run_id]
    places: dict[str, str] = {"run messages": passed_messages(api, run_ids)}
    places["artifacts"] = "\n".join(
        str(a.get("data"))
        for a in _all(api, "/artifacts/filter", {"flow_runs": {"id": {"any_": run_ids}}})
    )
    logs = _all(api, "/logs/filter", {"logs": {"flow_run_id": {"any_": run_ids}}})
    assert any("registry" in str(log["message"]).lower() for log in logs), "logs were read"
    places["logs"] = "\n".join(str(log["message"]) for log in logs)
    places["pull requests"] = "\n".join(
        f"{p['title']}\n{p['body']}\n" + "\n".join(comments(sandbox, int(p["number"])))
        for p in pulls(sandbox)
    )
    database = prefect_database(prefect_server)
    assert len(database) > 100_000, "the Prefect database was found"
    assert failing.run_id.encode() in database or failing.run_id.replace("-", "").encode() in (
        database
    )
    for what, value in credentials.items():
        for place, text in places.items():
            assert value not in text, f"the {what} appears in the {place}"
        assert value.encode() not in database, f"the {what} appears in the Prefect database"


def passed_messages(api: str, run_ids: list[str]) -> str:
    runs = _all(api, "/flow_runs/filter", {"flow_runs": {"id": {"any_": run_ids}}})
    tasks = _all(api, "/task_runs/filter", {"flow_runs": {"id": {"any_": run_ids}}})
    return "\n".join(
        f"{r.get('parameters')}\n{(r.get('state') or {}).get('message')}"  # type: ignore[union-attr]
        for r in [*runs, *tasks]
    )
