"""The fault matrix (``bench/faults.py``) in a tiny form: two cells on the session's server.

The bench prints figures; this test only checks that it still runs end to end and that its last
line says what a healthy product earns: every cell survived, nothing done twice, no unclear stop.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments.local import LocalPrefect
from tests.pipeline.conftest import clear_holds


@pytest.fixture
def bench_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The bench sets the sandbox's variables in ``os.environ`` for each cell: put them back."""
    saved = dict(os.environ)
    monkeypatch.setenv("RELEASE_PROMOTION_POLL_INTERVAL", "0.1")
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("bench_environment")
def test_two_cells_of_the_fault_matrix_survive_without_duplicates(
    prefect_server: LocalPrefect, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.faults import Cell, run_matrix

    clear_holds(prefect_server.api_url)
    cells = [Cell("open-pr", "github-reset"), Cell("merge", "github-secondary")]
    code = run_matrix(prefect_server.api_url, prefect_server.env(), cells, False, tmp_path)

    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    figures = re.fullmatch(
        r"faults: (\d+)/(\d+) survived, (\d+) duplicates, (\d+) unclear failures", last
    )
    assert figures is not None, out
    survived, total, dups, unclear = map(int, figures.groups())
    assert (survived, total, dups, unclear) == (2, 2, 0, 0), out
    assert code == 0
