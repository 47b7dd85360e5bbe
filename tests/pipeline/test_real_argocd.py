"""A promotion against Argo CD as it really behaves (issue 11, "done when").

Unrelated commits land on the base branch while the run waits at each gate and while it
confirms each environment: Argo CD starts no sync for them (the apps stay Synced, their sync
revision moves on, their last operation stays at our merge), and the run still confirms and
completes. (A bad image that turns Degraded only after a long Progressing phase:
tests/pipeline/test_rollback.py.)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deployments.local import LocalPrefect
from flows.promote import promote_release
from pipeline.conftest import BackgroundRun
from pipeline.helpers import INITIATOR, PROD, STAGING, argo, decide, tags
from sandbox.launcher import Sandbox
from sandbox.seed import git


class ReadmePusher:
    """Pushes a README-only commit to main every ``interval`` seconds, in a thread."""

    def __init__(self, box: Sandbox, work: Path, interval: float = 1.0) -> None:
        git("clone", "--quiet", box.info.git_url, str(work))
        self.work, self.interval, self.pushed = work, interval, 0
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the test pushes too, while the thread runs
        self._thread = threading.Thread(target=self._run, daemon=True)

    def push_one(self, attempts: int = 5) -> None:
        """One README commit on top of the current ``main`` (a push that loses a race with a
        merge starts again from the new head)."""
        with self._lock:
            for attempt in range(attempts):
                git("fetch", "--quiet", "origin", "main", cwd=self.work)
                git("reset", "--quiet", "--hard", "origin/main", cwd=self.work)
                (self.work / "README.md").write_text(f"unrelated change {self.pushed}\n")
                git("commit", "--quiet", "-am", f"docs: unrelated {self.pushed}", cwd=self.work)
                try:
                    git("push", "--quiet", "origin", "HEAD:main", cwd=self.work)
                except RuntimeError:
                    if attempt == attempts - 1:
                        raise
                    continue
                self.pushed += 1
                return

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(RuntimeError):  # lost five races in a row: next time
                self.push_one()

    def __enter__(self) -> ReadmePusher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def pusher(sandbox: Sandbox, tmp_path: Path) -> Iterator[ReadmePusher]:
    with ReadmePusher(sandbox, tmp_path / "work") as running:
        yield running


def test_a_promotion_completes_while_unrelated_commits_land(
    sandbox: Sandbox,
    pusher: ReadmePusher,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
) -> None:
    api = prefect_server.api_url
    run = run_in_background(promote_release, version="v1.0.1", initiator=INITIATOR)
    run.wait_paused("qa-approval")
    before_qa = pusher.pushed
    pusher.push_one()
    decide(api, run, "qa", "qa-alice")
    run.wait_paused("pm-approval")
    pusher.push_one()
    decide(api, run, "pm", "pm-carol")
    final = run.join(timeout=300)
    assert final.state_type == "COMPLETED", final.message
    assert pusher.pushed > before_qa + 2, "commits landed while the run waited and confirmed"
    assert tags(sandbox, STAGING) == tags(sandbox, PROD) == {"v1.0.1"}
    with argo(sandbox) as client:
        prod = client.get_app("prod-microservices-demo")
    # Argo CD follows the branch head but ran no operation for the README commits.
    assert {i.rsplit(":", 1)[1] for i in prod.status.summary.images} == {"v1.0.1"}
    assert prod.status.health.status == "Healthy" and prod.status.sync.status == "Synced"
