"""A real Prefect server, the work pool and a worker, shared by the deployment-machinery tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments.local import LocalPrefect, Worker, deploy, ensure_work_pool

TOY_PROJECT = Path(__file__).resolve().parent / "toy"


@pytest.fixture(scope="session")
def local_prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrefect]:
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with LocalPrefect(home=tmp_path_factory.mktemp("prefect-home")) as prefect:
        yield prefect


@pytest.fixture(scope="session")
def toy_worker(
    local_prefect: LocalPrefect, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """The toy project (one approval gate, same form shape as the real one) deployed and served."""
    ensure_work_pool(local_prefect.api_url)
    deploy(local_prefect.env(), project_root=TOY_PROJECT)
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with Worker(local_prefect.env(), cwd=TOY_PROJECT, log_path=log) as worker:
        yield worker
