"""One real Prefect server for the whole test session.

Every folder that needs Prefect uses this server (``prefect_server``): a second server in the
same process would leave Prefect's log and event workers talking to a server that is gone.
It runs SQLite under a temporary ``PREFECT_HOME`` on a free 127.0.0.1 port, and this process
(and every worker or flow process the tests start) points at it through ``PREFECT_API_URL``.

``RELEASE_PROMOTION_TEST_DATABASE=postgres`` puts that server on a throwaway PostgreSQL 15
cluster instead (``deployments.postgres.local_cluster``): ``make test-postgres`` runs the
pipeline, demo and drift tests that way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    from deployments.local import LocalPrefect, ensure_concurrency_limit

    previous = os.environ.get("PREFECT_API_URL")
    # the drift tests wait for a cron run: let the scheduler look every 2 s
    extra_env = {"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2"}
    with contextlib.ExitStack() as stack:
        database = os.environ.get("RELEASE_PROMOTION_TEST_DATABASE", "sqlite")
        if database == "postgres":
            from deployments.postgres.local_cluster import LocalPostgres

            pg = stack.enter_context(LocalPostgres())
            extra_env["PREFECT_API_DATABASE_CONNECTION_URL"] = pg.prefect_url
            os.environ["RELEASE_PROMOTION_TEST_DATABASE_URL"] = pg.prefect_url  # test_secrets
        elif database != "sqlite":
            raise pytest.UsageError(
                f"RELEASE_PROMOTION_TEST_DATABASE={database!r}: expected sqlite or postgres"
            )
        server = stack.enter_context(
            LocalPrefect(home=tmp_path_factory.mktemp("prefect-home"), extra_env=extra_env)
        )
        os.environ["PREFECT_API_URL"] = server.api_url
        ensure_concurrency_limit(server.api_url)
        with server.use():
            yield server
            # Send what is still queued while the server listens.
            APILogWorker.drain_all(timeout=5)
            EventsWorker.drain_all(timeout=5)
    if previous is None:
        os.environ.pop("PREFECT_API_URL", None)
    else:
        os.environ["PREFECT_API_URL"] = previous
