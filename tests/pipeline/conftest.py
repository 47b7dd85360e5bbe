"""Flow tests: a real Prefect server for the session, a fresh sandbox for each test.

Flows run in a thread of the test process (approvals then use ``pause_flow_run``) or, for the
suspend and worker tests, as deployments run by a real worker process.
"""

from __future__ import annotations

import contextvars
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from deployments.local import LocalPrefect
from deployments.runs import RunView, list_runs, read_run, wait_for_run
from sandbox.launcher import Sandbox, start_sandbox


def clear_holds(api_url: str) -> None:
    """Lift every hold: holds live in a server-wide Variable, and each test has its own world."""
    import httpx

    from deployments.runs import request_with_retry
    from promotion.names import HOLDS_VARIABLE

    with httpx.Client(timeout=15) as http:  # a busy SQLite server answers 503 now and then
        found = request_with_retry(
            http, "POST", f"{api_url}/variables/filter", json={"limit": 200}
        ).json()
        for variable in found:
            if str(variable["name"]).startswith(HOLDS_VARIABLE):
                url = f"{api_url}/variables/name/{variable['name']}"
                response = request_with_retry(http, "DELETE", url)
                assert response.status_code in {204, 404}, response.text


@pytest.fixture
def sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: LocalPrefect
) -> Iterator[Sandbox]:
    clear_holds(prefect_server.api_url)
    with start_sandbox(tmp_path / "sandbox", reconcile_interval=180.0, health_delay=0.2) as box:
        for name, value in box.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("RELEASE_PROMOTION_POLL_INTERVAL", "0.2")
        yield box


@dataclass
class BackgroundRun:
    """A flow called in a background thread; ``run_id`` is found by its unique run name."""

    api_url: str
    name: str
    thread: threading.Thread
    outcome: dict[str, Any] = field(default_factory=dict)
    _run_id: str | None = None

    @property
    def run_id(self) -> str:
        if self._run_id is None:
            self._run_id = _wait_for_named_run(self.api_url, self.name)
        return self._run_id

    def wait_paused(self, key_prefix: str, timeout: float = 120.0) -> RunView:
        return wait_for_run(
            self.api_url,
            self.run_id,
            until=lambda r: (r.paused and (r.pause_key or "").startswith(key_prefix)) or r.finished,
            timeout=timeout,
        )

    def join(self, timeout: float = 180.0) -> RunView:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"flow run {self.name} did not end in {timeout}s"
        return read_run(self.api_url, self.run_id)


def _wait_for_named_run(api_url: str, name: str, timeout: float = 60.0) -> str:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in list_runs(api_url, limit=200):
            if run.name == name:
                return run.id
        time.sleep(0.3)
    raise AssertionError(f"no flow run named {name}")


@pytest.fixture
def run_in_background(
    prefect_server: LocalPrefect,
) -> Iterator[Callable[..., BackgroundRun]]:
    started: list[BackgroundRun] = []

    def start(flow: Any, **parameters: Any) -> BackgroundRun:
        name = f"test-{uuid.uuid4().hex[:10]}"
        outcome: dict[str, Any] = {}
        runnable = flow.with_options(flow_run_name=name)

        def target() -> None:
            outcome["state"] = runnable(**parameters, return_state=True)

        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(target,), daemon=True)
        thread.start()
        run = BackgroundRun(prefect_server.api_url, name, thread, outcome)
        started.append(run)
        return run

    yield start
    for run in started:
        run.thread.join(5)
