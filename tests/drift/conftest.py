"""Fixtures of the drift-audit tests: a real Prefect server, sandbox worlds, a webhook receiver."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.drift import DriftWorld, build_world
from deployments.local import LocalPrefect
from sandbox.http import RunningServer, serve_in_thread


@pytest.fixture(scope="session")
def drift_prefect(prefect_server: LocalPrefect) -> LocalPrefect:
    """The session's one Prefect server (tests/conftest.py; its scheduler looks every 2 s)."""
    return prefect_server


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[..., DriftWorld]]:
    """Build sandbox worlds (``bench.drift.build_world``); all are stopped after the test."""
    worlds: list[DriftWorld] = []

    def make(n: int, **kwargs: Any) -> DriftWorld:
        root = tmp_path / f"world-{len(worlds)}"
        root.mkdir()
        world = build_world(root, n, **kwargs)
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        world.close()


class Receiver:
    """A webhook receiver on loopback that records every POST body."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.arrived = threading.Condition()

        async def hook(request: Request) -> JSONResponse:
            body = await request.json()
            with self.arrived:
                self.calls.append(body)
                self.arrived.notify_all()
            return JSONResponse({"ok": True})

        self.app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
        self.server: RunningServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"{self.server.url}/hook"

    def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: predicate(self.calls), timeout)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    rec.server = serve_in_thread(rec.app)
    yield rec
    rec.server.stop()
