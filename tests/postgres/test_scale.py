"""``bench.scale`` in its short form: PostgreSQL, two workers, two applications promoted twice.

The bench prints figures; this only checks what must hold whatever the machine's speed: every
promotion completed and the GitHub emulator shows nothing done twice (one PR, one merge and one
branch commit per application and environment, no comment), and the runs left at a gate
reached Suspended. It starts PostgreSQL and Prefect, deploys, and starts about fifteen flow
processes: 9 min 52 s when measured (2026-12-03) on two cores shared with other jobs (load
average 10 to 16); the flow process starts are most of it.
"""

from __future__ import annotations

import os
import re
import time

import pytest

from bench.scale import main
from deployments.postgres.local_cluster import PG_BIN

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        not (PG_BIN / "initdb").exists(), reason=f"PostgreSQL 15 not installed ({PG_BIN})"
    ),
    # minutes of flow process starts: `make test-postgres` runs it, `make test` (CI) does not
    pytest.mark.skipif(
        os.environ.get("RELEASE_PROMOTION_TEST_DATABASE") != "postgres",
        reason="the scale bench runs under make test-postgres",
    ),
]


def test_short_scale_bench_completes_everything_once() -> None:
    started = time.monotonic()
    lines = main(["--apps", "2", "--promotions", "4", "--suspended", "3", "--workers", "2"])
    print(f"bench.scale short form: {time.monotonic() - started:.0f}s")
    last = re.fullmatch(
        r"scale: (\d+)/(\d+) promotions completed, (\d+) duplicates, [0-9.]+ promotions/min",
        lines[-1],
    )
    assert last is not None, lines
    assert last.group(1) == last.group(2) == "4", lines
    assert last.group(3) == "0", lines
    suspended = next(line for line in lines if line.startswith("suspended:"))
    assert suspended.startswith("suspended: 3/3 runs Suspended"), lines
