"""A real Prefect server, the sandbox, the work pool and one worker, shared by these tests.

Two projects are deployed to the same pool: the real one (``prefect.yaml``: promote-release,
rollback-release, audit-staging-drift) and a toy (``toy/``: one approval gate, same form shape) for the machinery
tests that must not depend on the pipeline. Their pull steps pin each project's directory, so
one worker runs both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments.local import (
    LocalPrefect,
    Worker,
    deploy,
    ensure_concurrency_limit,
    ensure_work_pool,
)
from sandbox.launcher import Sandbox, start_sandbox

TOY_PROJECT = Path(__file__).resolve().parent / "toy"


@pytest.fixture(scope="session")
def local_prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrefect]:
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with LocalPrefect(home=tmp_path_factory.mktemp("prefect-home")) as prefect:
        yield prefect


@pytest.fixture(scope="session")
def demo_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with start_sandbox(tmp_path_factory.mktemp("sandbox")) as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def worker(
    local_prefect: LocalPrefect, demo_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    ensure_work_pool(local_prefect.api_url)
    ensure_concurrency_limit(local_prefect.api_url)
    env = local_prefect.env(demo_sandbox.env())
    deploy(env, project_root=TOY_PROJECT)
    deploy(env)  # the real prefect.yaml, every deployment
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with Worker(env, log_path=log) as running:
        yield running
