"""promote-release on a production-shaped Prefect: PostgreSQL and two process workers.

Self-contained: its own PostgreSQL 15 cluster (``deployments.postgres.local_cluster``, run as an
unprivileged user on 127.0.0.1), its own Prefect server on it (not the session's SQLite one),
the deployments, the environment locks and two workers polling the same pool. One promotion of
v1.0.1 goes through both suspended approvals; whichever worker picks up each (re)start, nothing
may be done twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline.helpers import INITIATOR, PROD, STAGING, argo, pulls, tags

from deployments.local import (
    LocalPrefect,
    Worker,
    deploy,
    ensure_concurrency_limit,
    ensure_finish_automation,
    ensure_work_pool,
)
from deployments.postgres.local_cluster import PG_BIN, LocalPostgres
from deployments.runs import read_artifact, resume_run, start_run, wait_for_run
from sandbox.launcher import Sandbox, start_sandbox
from sandbox.seed import git

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        not (PG_BIN / "initdb").exists(), reason=f"PostgreSQL 15 not installed ({PG_BIN})"
    ),
]


@pytest.fixture(scope="module")
def postgres_prefect(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalPrefect, LocalPostgres]]:
    started = time.monotonic()
    with (
        LocalPostgres() as pg,
        LocalPrefect(
            home=tmp_path_factory.mktemp("prefect-pg-home"),
            extra_env={"PREFECT_API_DATABASE_CONNECTION_URL": pg.prefect_url},
        ) as server,
    ):
        ensure_work_pool(server.api_url)
        ensure_concurrency_limit(server.api_url)
        deploy(server.env(), names=["promote-release", "finish-promotion"])
        ensure_finish_automation(server.api_url)
        print(f"\nPostgreSQL, Prefect on it, deployed: {time.monotonic() - started:.1f}s")
        yield server, pg


def _resume(api: str, run_id: str, gate: str, approver: str, workers: list[Worker]) -> None:
    view = wait_for_run(
        api,
        run_id,
        until=lambda r: r.finished or (r.paused and (r.pause_key or "").startswith(gate)),
        timeout=150,
    )
    assert view.paused, (view, *(w.log_tail() for w in workers))
    print(f"{gate} gate waiting at {time.strftime('%H:%M:%S')}")
    result = resume_run(api, run_id, {"approved": True, "approver": approver, "comment": "ok"})
    assert result.status == "ACCEPT", result


def _flow_run_state(pg: LocalPostgres, run_id: str) -> str | None:
    import asyncpg

    async def query() -> str | None:
        connection = await asyncpg.connect(pg.prefect_url.replace("+asyncpg", ""))
        try:
            value = await connection.fetchval(
                "SELECT state_type FROM flow_run WHERE id = $1", uuid.UUID(run_id)
            )
        finally:
            await connection.close()
        return None if value is None else str(value)

    return asyncio.run(query())


def _commits(box: Sandbox, ref: str) -> list[str]:
    return git("rev-list", ref, cwd=box.state_dir / "repo.git").split()


def test_promotion_on_postgres_with_two_workers(
    postgres_prefect: tuple[LocalPrefect, LocalPostgres], tmp_path: Path
) -> None:
    server, pg = postgres_prefect
    api = server.api_url
    started = time.monotonic()
    with start_sandbox(tmp_path / "sandbox", health_delay=0.2) as box:
        env = server.env({**box.env(), "RELEASE_PROMOTION_POLL_INTERVAL": "0.2"})
        workers = [Worker(env, log_path=tmp_path / f"worker-{n}.log") for n in (1, 2)]
        try:
            # One after the other, from this thread: a worker dies with the thread that started
            # it (deployments.local's parent-death signal), so not from a thread pool.
            for worker in workers:
                worker.start()
            print(f"two workers up: {time.monotonic() - started:.1f}s")
            run = start_run(api, "promote-release", {"version": "v1.0.1", "initiator": INITIATOR})
            _resume(api, run.id, "qa", "qa-alice", workers)
            _resume(api, run.id, "pm", "pm-carol", workers)
            final = wait_for_run(api, run.id, until=lambda r: r.finished, timeout=150)
            assert final.state_type == "COMPLETED", (
                final.message,
                *(w.log_tail() for w in workers),
            )
        finally:
            for worker in workers:
                worker.stop()

        # Three flow processes: the start and one per resumed approval. Both workers poll the
        # same pool; when both try to take a run, the server lets one have it.
        logs = [(tmp_path / f"worker-{n}.log").read_text(errors="replace") for n in (1, 2)]
        starts = sum(log.count(f"Beginning flow run '{final.name}'") for log in logs)
        assert starts == 3, logs
        assert tags(box, PROD) == {"v1.0.1"} and tags(box, STAGING) == {"v1.0.1"}
        prs = pulls(box)
        assert sorted(p["head"]["ref"] for p in prs) == [
            "promote/prod/v1.0.1",
            "promote/staging/v1.0.1",
        ], "one PR per environment"
        assert all(p["merged_at"] for p in prs)
        main = _commits(box, "main")
        assert len(main) == 3, "seed, staging merge, prod merge: nothing twice"
        for branch in ("promote/staging/v1.0.1", "promote/prod/v1.0.1"):
            assert len(set(_commits(box, branch)) - set(main)) == 1, f"one commit on {branch}"
        with argo(box) as client:
            app = client.get_app("prod-microservices-demo")
        assert app.status.sync.revision == box.github.head("main")
        assert app.status.health.status == "Healthy"
        assert {image.rsplit(":", 1)[1] for image in app.status.summary.images} == {"v1.0.1"}
        summary = read_artifact(api, run.id, "promotion-summary")
        assert summary is not None and "pm-carol" in summary and "qa-alice" in summary
    # The server kept the run in PostgreSQL (not in a SQLite file beside it).
    assert _flow_run_state(pg, run.id) == "COMPLETED"
    print(f"promotion on PostgreSQL with two workers: {time.monotonic() - started:.1f}s")
