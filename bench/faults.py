"""Benchmark: a fault matrix. For each step of a promotion and each fault that applies to it,
run a promotion of v1.0.1 with that fault injected and report whether it completed, what the
fault cost, and whether anything happened twice.

Steps: the registry check, opening the PR, waiting for its checks, the merge, Argo CD
confirming the deployment, and an Argo CD rollback (a bad image turns staging Degraded, the run
has ``auto_rollback="argocd"``). Faults: GitHub 502, 429 with Retry-After, a secondary rate limit,
a primary rate limit with its reset, a connection reset mid-response (after GitHub did the call);
Argo CD 503, an answer later than the client's read timeout (after Argo CD did the call),
"another operation is already in progress"; the registry refusing connections; the worker
SIGKILLed during the step, restarted, and the run retried as the UI's Retry does. Two faults
cannot be survived (a primary rate limit resetting in 2 hours, a registry down for the whole
run): the run must stop with a message naming the cause, leave nothing half-done (no open PR,
nothing merged, Argo CD as before), and a re-run once the fault is gone must complete.

Every cell runs in a fresh sandbox (real git, kustomize, registry, the GitHub and Argo CD
emulators); the promotion runs in this process (approvals pause the run and are answered at
once through the UI's REST resume call), except the SIGKILL cells, which need a deployment and
a process worker (approvals suspend the run). Duplicates are counted in the emulators: pull
requests per environment branch (one per run that reached it), merged PRs per environment,
commits on the base branch (one squash commit per merged PR), comments repeated on a PR, Argo
CD rollbacks. "unclear failures" are stops that did not name their cause, left something
half-done, or whose re-run did not complete.

Run: ``.venv/bin/python -m bench.faults [--quick] [--only STEP] [--fault NAME] [--api-url URL]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.runs import (
    INITIATOR,
    answer_until_finished,
    promote_in_thread,
    run_id_named,
)
from deployments.runs import RunView, read_run, request_with_retry, start_run

VERSION = "v1.0.1"
SEED = "v1.0.0"
POLL_INTERVAL = 0.1
HEALTH_DELAY = 0.2
# A dead holder's environment lock frees when its lease ends (Settings.lock_lease_seconds,
# Prefect's default 300 s); the bench shortens it, and its server looks for expired leases
# every 2 s instead of 15.
LOCK_LEASE = 60  # the least Prefect's server accepts
STALL = 3.0  # seconds a call hangs while the worker is killed
RUN_TIMEOUT = 300.0

STEPS = {
    "registry": "registry check",
    "open-pr": "open PR",
    "checks": "wait for checks",
    "merge": "merge",
    "confirm": "confirm deployed",
    "rollback": "rollback",
}
FAULTS = {
    "none": "no fault (baseline)",
    "github-502": "GitHub 502, twice",
    "github-429": "GitHub 429, Retry-After: 1",
    "github-secondary": "GitHub secondary rate limit, Retry-After: 1",
    "github-primary": "GitHub primary rate limit, reset in 2 s",
    "github-reset": "connection reset mid-response (the call was done)",
    "github-exhausted": "GitHub primary rate limit, reset in 2 h",
    "argocd-503": "Argo CD 503, twice",
    "argocd-timeout": "Argo CD answers after the read timeout (the call was done)",
    "argocd-busy": '"another operation is already in progress", twice',
    "registry-down": "registry refuses connections for 3 s",
    "registry-outage": "registry refuses connections for the whole run",
    "sigkill": "worker SIGKILLed in the step, restarted, run retried",
}
# The call of each step that GitHub faults hit (path regex, method): the first such call of
# a promotion is staging's.
GITHUB_CALLS = {
    "open-pr": ("/pulls$", "POST"),
    "checks": ("/check-runs$", "GET"),
    "merge": ("/merge$", "PUT"),
}


@dataclass(frozen=True)
class Cell:
    """One fault in one step; ``expect`` "stop": it cannot be survived, the run must stop
    clearly (its message names each of ``words``), nothing half-done, and a re-run completes."""

    step: str
    fault: str
    expect: str = "survive"
    words: tuple[str, ...] = ()

    @property
    def rollback(self) -> bool:
        return self.step == "rollback"

    @property
    def label(self) -> str:
        return f"{self.step} x {self.fault}"


def matrix() -> list[Cell]:
    github = ["github-502", "github-429", "github-secondary", "github-primary", "github-reset"]
    cells = [
        Cell("registry", "registry-down"),
        Cell("registry", "registry-outage", "stop", ("registry", "cannot reach")),
    ]
    for step in ("open-pr", "checks", "merge"):
        cells += [Cell(step, fault) for fault in github]
    cells.append(Cell("open-pr", "github-exhausted", "stop", ("rate limit", "resets at")))
    cells += [Cell("confirm", "argocd-503"), Cell("confirm", "argocd-timeout")]
    cells += [Cell("rollback", f) for f in ("argocd-503", "argocd-timeout", "argocd-busy")]
    cells += [Cell(step, "sigkill") for step in STEPS]
    return cells


QUICK = [
    Cell("open-pr", "github-reset"),
    Cell("merge", "github-502"),
    Cell("confirm", "argocd-503"),
]


# -- what the emulators hold -------------------------------------------------------------------


@dataclass
class Observed:
    """The sandbox's state after a run: what the duplicate count and the verdicts read."""

    prs: dict[str, list[dict[str, Any]]]  # environment -> PRs of promote/<env>/v1.0.1
    comments: dict[int, list[str]]
    main_commits: int
    rollbacks: int
    apps: dict[str, tuple[str, str, set[str]]]  # environment -> (sync, health, release tags)

    def merged(self, env: str) -> int:
        return sum(1 for p in self.prs[env] if p["merged_at"])

    def open_prs(self) -> list[int]:
        return [p["number"] for ps in self.prs.values() for p in ps if p["state"] == "open"]


def _github(box: Any, path: str, **params: Any) -> Any:
    response = httpx.get(
        f"{box.info.github_url}/repos/{box.info.repo}{path}",
        params={"per_page": 100, **params},
        headers={"Authorization": f"token {box.info.github_token}"},
        timeout=15,
    )
    response.raise_for_status()
    return response.json()


def observe(box: Any) -> Observed:
    from promotion.argocd import ArgoCDClient, image_tags
    from sandbox.seed import git

    envs = [e.name for e in box.config.environments]
    pulls = _github(box, "/pulls", state="all")
    prs = {
        env: [p for p in pulls if p["head"]["ref"] == f"promote/{env}/{VERSION}"] for env in envs
    }
    comments = {
        p["number"]: [str(c["body"]) for c in _github(box, f"/issues/{p['number']}/comments")]
        for p in pulls
    }
    commits = int(git("rev-list", "--count", "main", cwd=box.state_dir / "repo.git").strip())
    images = set(box.config.images().values())
    apps = {}
    with ArgoCDClient(box.info.argocd_url, box.info.argocd_token) as argo:
        for env in box.config.environments:
            app = argo.get_app(env.argocd_app)
            tags = {
                t
                for name, ts in image_tags(app.status.summary.images).items()
                if name in images
                for t in ts
            }
            apps[env.name] = (app.status.sync.status, app.status.health.status, tags)
    rollbacks = int(box.argocd.state.counters.get("rollbacks", 0))
    return Observed(prs, comments, commits, rollbacks, apps)


def duplicates(
    seed_commits: int, end: Observed, stopped: Observed | None, rollbacks: int
) -> dict[str, int]:
    """What happened more often than the runs of the cell explain (``rollbacks``: how many
    Argo CD rollbacks there should be)."""
    dups = {"PR": 0, "commit": 0, "merge": 0, "comment": 0, "rollback": 0}
    for env, prs in end.prs.items():
        if stopped is None:
            dups["PR"] += max(0, len(prs) - 1)
        else:  # the stopped run and the re-run may each open one
            before = len(stopped.prs[env])
            dups["PR"] += max(0, before - 1) + max(0, len(prs) - before - 1)
        dups["merge"] += max(0, end.merged(env) - 1)
    merged = sum(end.merged(env) for env in end.prs)
    dups["commit"] = max(0, end.main_commits - seed_commits - merged)
    dups["comment"] = sum(len(c) - len(set(c)) for c in end.comments.values())
    dups["rollback"] = max(0, end.rollbacks - rollbacks)
    return dups


def promoted(end: Observed) -> str | None:
    """Why the promotion's end state is not "every environment runs v1.0.1", or None."""
    for env, (sync, health, tags) in end.apps.items():
        if (sync, health, tags) != ("Synced", "Healthy", {VERSION}):
            return f"{env}: Argo CD {sync}/{health} running {sorted(tags)}"
        if end.merged(env) != 1:
            return f"{env}: {end.merged(env)} merged PRs"
    if end.open_prs():
        return f"open PRs left: {end.open_prs()}"
    return None


def rolled_back(end: Observed) -> str | None:
    """Why the end state is not "staging rolled back to v1.0.0 by one Argo CD rollback"."""
    sync, health, tags = end.apps["staging"]
    if health != "Healthy" or tags != {SEED}:
        return f"staging: Argo CD {sync}/{health} running {sorted(tags)}"
    if end.rollbacks != 1:
        return f"{end.rollbacks} Argo CD rollbacks"
    if end.open_prs():
        return f"open PRs left: {end.open_prs()}"
    return None


def untouched(end: Observed, seed_commits: int) -> str | None:
    """Why a stopped run is half-done: an open PR, a merge, Argo CD not as before."""
    if end.open_prs():
        return f"open PRs left: {end.open_prs()}"
    if end.main_commits != seed_commits:
        return f"{end.main_commits - seed_commits} commits on main"
    for env, (sync, health, tags) in end.apps.items():
        if (sync, health, tags) != ("Synced", "Healthy", {SEED}):
            return f"{env}: Argo CD {sync}/{health} running {sorted(tags)}"
    return None


# -- one cell ----------------------------------------------------------------------------------


@dataclass
class Row:
    cell: Cell
    outcome: str = ""
    survived: bool = False
    unclear: bool = False
    hit: bool = False
    seconds: float = 0.0
    dups: dict[str, int] = field(default_factory=dict)
    note: str = ""
    stopped: Observed | None = None  # the sandbox after the stopped run of a "stop" cell

    @property
    def duplicate_count(self) -> int:
        return sum(self.dups.values())


class Bench:
    """The Prefect server, the temporary directory and, for SIGKILL cells, the deployment."""

    def __init__(self, api: str, tmp: Path, env: dict[str, str]) -> None:
        self.api = api
        self.tmp = tmp
        self.env = env  # the Prefect client environment of worker processes
        self.deployed = False

    @contextlib.contextmanager
    def sandbox(self, cell: Cell) -> Iterator[Any]:
        from sandbox.launcher import start_sandbox

        _clear_holds(self.api)
        with start_sandbox(
            self.tmp / f"{cell.step}-{cell.fault}-{uuid.uuid4().hex[:6]}",
            health_delay=HEALTH_DELAY,
        ) as box:
            os.environ.update(box.env())
            if cell.rollback:
                # v1.0.1's frontend never gets Healthy: Degraded 1 s after the sync.
                box.argocd.set_bad_image_patterns([f"*/frontend:{VERSION}"])
                box.argocd.state.progress_deadline = 1.0
            yield box

    def run(self, cell: Cell) -> Row:
        row = Row(cell)
        with self.sandbox(cell) as box:
            seed = observe(box)
            started = time.perf_counter()
            try:
                if cell.fault == "sigkill":
                    view = self._killed(cell, box, row)
                else:
                    view = self._in_process(cell, box, row, seed)
            except Exception as exc:  # a broken cell is reported, the matrix goes on
                row.seconds = time.perf_counter() - started
                row.outcome, row.unclear = "BENCH ERROR", True
                row.note = f"{type(exc).__name__}: {exc}"[:200]
                return row
            row.seconds = time.perf_counter() - started
            end = observe(box)
        rollbacks = seed.rollbacks + (1 if cell.rollback else 0)
        row.dups = duplicates(seed.main_commits, end, row.stopped, rollbacks)
        if cell.expect == "stop":
            return row  # judged in _in_process (stop, then re-run)
        wrong = rolled_back(end) if cell.rollback else promoted(end)
        expected_state = "FAILED" if cell.rollback else "COMPLETED"
        if view.state_type == expected_state and wrong is None:
            row.outcome, row.survived = ("rolled back" if cell.rollback else "completed"), True
        else:
            row.outcome = "NOT SURVIVED"
            stopped = view.state_type != expected_state
            row.note = (f"{view.state_name}: {view.message}" if stopped else str(wrong))[:200]
        if row.survived and cell.rollback and "rolled back" not in view.message:
            row.survived, row.outcome = False, "NOT SURVIVED"
            row.note = f"{view.state_name}: {view.message}"[:200]
        return row

    # -- promotions in this process ---------------------------------------------------------

    def _promote(
        self, cell: Cell, during: Callable[[str], None] | None = None
    ) -> tuple[str, RunView]:
        """Run the promotion, approving at once; ``during(run_id)`` runs beside it."""
        params: dict[str, Any] = {"version": VERSION}
        if cell.rollback:
            params["auto_rollback"] = "argocd"
        run = promote_in_thread("faults", **params)
        run_id = run_id_named(self.api, run.name)
        beside = threading.Thread(target=during, args=(run_id,)) if during else None
        if beside is not None:
            beside.start()
        final = answer_until_finished(self.api, run_id, timeout=RUN_TIMEOUT).final
        run.join(timeout=60)
        if beside is not None:
            beside.join()
        return run_id, final

    def baseline(self, rollback: bool) -> float:
        """Seconds of a promotion (or of one rolled back) without a fault."""
        cell = Cell("rollback" if rollback else "open-pr", "none")
        with self.sandbox(cell):
            started = time.perf_counter()
            self._promote(cell)
            return time.perf_counter() - started

    def _in_process(self, cell: Cell, box: Any, row: Row, seed: Observed) -> RunView:
        during = None
        if cell.fault.startswith("github-"):
            _arm_github(box, cell)
        elif cell.fault.startswith("argocd-"):
            _arm_argocd(box, cell)
        elif cell.fault in {"registry-down", "registry-outage"}:
            box.registry.stop()
            if cell.fault == "registry-down":

                def during(run_id: str) -> None:
                    # back 3 s after the first refused check (the task then retries)
                    deadline = time.monotonic() + 60
                    while not _check_retried(self.api, run_id) and time.monotonic() < deadline:
                        time.sleep(0.05)
                    time.sleep(3.0)
                    box.registry.start()

        run_id, view = self._promote(cell, during)
        row.hit = _hit(self.api, box, cell, run_id)
        if cell.expect == "stop":
            self._stopped_then_rerun(cell, box, row, view, seed)
        return view

    def _stopped_then_rerun(
        self, cell: Cell, box: Any, row: Row, view: RunView, seed: Observed
    ) -> None:
        box.github.faults.clear()  # the rate limit resets (and the bench may read again)
        row.stopped = observe(box)
        message = view.message.lower()
        half_done = untouched(row.stopped, seed.main_commits)
        clear = all(w.lower() in message for w in cell.words)
        if cell.fault == "registry-outage":
            box.registry.start()
        _, again = self._promote(cell)
        rerun = promoted(observe(box))
        if view.state_type != "FAILED":
            row.outcome, row.unclear = f"NOT STOPPED ({view.state_name})", True
        elif not clear or half_done or again.state_type != "COMPLETED" or rerun:
            row.outcome, row.unclear = "UNCLEAR FAILURE", True
        else:
            row.outcome, row.survived = "stopped, re-run completed", True
        row.note = (
            half_done
            or (None if again.state_type == "COMPLETED" else f"re-run: {again.message}")
            or rerun
            or view.message.split(": ", 1)[-1]
        )[:200]

    # -- a deployment run on a worker that gets SIGKILLed -------------------------------------

    def _deploy(self) -> None:
        from deployments.local import deploy, ensure_work_pool

        if not self.deployed:
            ensure_work_pool(self.api)
            deploy(self.env, names=["promote-release", "finish-promotion"])
            self.deployed = True

    def _killed(self, cell: Cell, box: Any, row: Row) -> RunView:
        from deployments.local import Worker

        self._deploy()
        env = {
            **self.env,
            **box.env(),
            "RELEASE_PROMOTION_POLL_INTERVAL": str(POLL_INTERVAL),
            "RELEASE_PROMOTION_LOCK_LEASE_SECONDS": str(LOCK_LEASE),
            "PREFECT_LOGGING_LEVEL": "INFO",  # the worker logs go to files
        }
        logs = self.tmp / f"workers-{cell.step}-{uuid.uuid4().hex[:6]}"
        logs.mkdir()
        taken = _arm_stall(self.api, box, cell)
        worker = Worker(env, log_path=logs / "worker-1.log").start()
        params: dict[str, Any] = {"version": VERSION, "initiator": INITIATOR}
        if cell.rollback:
            params["auto_rollback"] = "argocd"
        try:
            # every killed call comes before the first approval: nothing to answer until then
            run = start_run(self.api, "promote-release", params)
            deadline = time.monotonic() + RUN_TIMEOUT
            while not taken(run.id):
                if time.monotonic() > deadline or read_run(self.api, run.id).finished:
                    raise TimeoutError(f"the {cell.step} call was never made: {worker.log_tail()}")
                time.sleep(0.01)
            # The machine dies: the worker and the flow process it started (Prefect starts that
            # in a session of its own, so killing the worker's group alone leaves it running).
            assert worker.process is not None
            for pid in _descendants(worker.process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            worker.kill()
            row.hit = True
        finally:
            worker.stop()
        time.sleep(STALL + 0.5)  # the hung call completes on the server, its caller is gone
        if cell.step == "registry":
            box.registry.start()
        dead = read_run(self.api, run.id)
        if dead.state_type == "RUNNING":  # nobody else notices a SIGKILLed flow process
            _set_state(self.api, run.id, "CRASHED", "worker killed")
        _set_state(self.api, run.id, "SCHEDULED", "retried after the worker crash")
        with Worker(env, log_path=logs / "worker-2.log"):
            return answer_until_finished(self.api, run.id, timeout=RUN_TIMEOUT).final


# -- injecting the faults ----------------------------------------------------------------------


def _arm_github(box: Any, cell: Cell) -> None:
    faults = box.github.faults
    if cell.fault == "github-exhausted":  # a primary limit stops every call until its reset
        faults.add("primary_rate_limit", path=".*", count=100_000, reset_in=7200)
        return
    path, method = GITHUB_CALLS[cell.step]
    kind, extra = {
        "github-502": ("error", {"count": 2, "status": 502}),
        "github-429": ("rate_limit", {"retry_after": 1}),
        "github-secondary": ("secondary_rate_limit", {"retry_after": 1}),
        "github-primary": ("primary_rate_limit", {"reset_in": 2}),
        "github-reset": ("reset", {}),
    }[cell.fault]
    faults.add(kind, path=path, method=method, **extra)


def _arm_argocd(box: Any, cell: Cell) -> None:
    # confirm: the first refresh read (confirm_deployed's first call; nothing else refreshes in
    # a promotion); rollback: the rollback call itself.
    where: dict[str, Any] = (
        {"routes": ["get_app"], "query": "refresh="}
        if cell.step == "confirm"
        else {"routes": ["rollback"]}
    )
    # the refresh read waits up to 60 s (it waits for a reconciliation); other calls 10 s
    late = 61.0 if cell.step == "confirm" else 11.0
    if cell.fault == "argocd-503":
        box.argocd.fail_next(2, 503, **where)
    elif cell.fault == "argocd-timeout":
        box.argocd.fail_next(1, kind="timeout", seconds=late, **where)
    elif cell.fault == "argocd-busy":
        box.argocd.fail_next(2, kind="operation_in_progress", **where)


def _arm_stall(api: str, box: Any, cell: Cell) -> Callable[[str], bool]:
    """Make the step's call hang ``STALL`` seconds; returns "has run ``run_id`` made the call".

    The registry check has no call to hold (a real registry): the registry is down, and the
    worker dies while the check waits for its retry (the bench starts the registry again)."""
    if cell.step == "registry":
        box.registry.stop()
        return lambda run_id: _check_retried(api, run_id)
    if cell.step in {"confirm", "rollback"}:
        where: dict[str, Any] = (
            {"routes": ["get_app"], "query": "refresh="}
            if cell.step == "confirm"
            else {"routes": ["rollback"]}
        )
        box.argocd.fail_next(1, kind="timeout", seconds=STALL, **where)
        return lambda run_id: box.argocd.knobs.faults_served > 0
    path, method = GITHUB_CALLS[cell.step]
    box.github.faults.add("stall", path=path, method=method, seconds=STALL)
    return lambda run_id: not box.github.faults.list()


def _hit(api: str, box: Any, cell: Cell, run_id: str) -> bool:
    if cell.fault.startswith("github-"):
        return int(box.github.stats.snapshot()["faulted_total"]) > 0
    if cell.fault.startswith("argocd-"):
        return int(box.argocd.knobs.faults_served) > 0
    return _check_retried(api, run_id) or (
        cell.fault == "registry-outage" and "registry" in read_run(api, run_id).message
    )


def _check_retried(api: str, run_id: str) -> bool:
    """Whether the run's registry check failed once and awaits (or made) a retry."""
    with httpx.Client(timeout=15) as http:
        tasks = request_with_retry(
            http,
            "POST",
            f"{api}/task_runs/filter",
            json={"flow_runs": {"id": {"any_": [run_id]}}, "limit": 200},
        ).json()
    return any(
        t["name"].startswith("check-release-images")
        and (
            int(t.get("run_count") or 0) > 1
            or (t.get("state") or {}).get("name") in {"AwaitingRetry", "Retrying"}
        )
        for t in tasks
    )


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, their children...), from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _set_state(api: str, run_id: str, state_type: str, message: str) -> None:
    with httpx.Client(timeout=15) as http:
        response = request_with_retry(
            http,
            "POST",
            f"{api}/flow_runs/{run_id}/set_state",
            json={"state": {"type": state_type, "message": message}, "force": True},
        )
    response.raise_for_status()


def _clear_holds(api: str) -> None:
    """Lift every hold: the rollback cells put v1.0.1 on hold (in the application's Variable,
    or the one from before applications had names)."""
    from promotion.names import HOLDS_VARIABLE

    with httpx.Client(timeout=15) as http:
        found = request_with_retry(
            http,
            "POST",
            f"{api}/variables/filter",
            json={"variables": {"name": {"like_": HOLDS_VARIABLE}}, "limit": 200},
        ).json()
        for variable in found:
            request_with_retry(http, "DELETE", f"{api}/variables/name/{variable['name']}")


# -- the report --------------------------------------------------------------------------------


def print_table(rows: list[Row], baseline: dict[str, float]) -> None:
    print(
        f"{'step':<16} {'fault':<55} {'outcome':<26} {'hit':<3} {'s':>6} {'+s':>6} "
        f"{'dups':>4}  note"
    )
    for r in rows:
        base = baseline.get("rollback" if r.cell.rollback else "promotion")
        extra = f"{r.seconds - base:+6.1f}" if base is not None else f"{'':>6}"
        dups = ", ".join(f"{n} {k}" for k, n in r.dups.items() if n) or "0"
        note = r.note if r.note else ""
        print(
            f"{STEPS[r.cell.step]:<16} {FAULTS[r.cell.fault]:<55} {r.outcome:<26} "
            f"{'yes' if r.hit else 'NO':<3} {r.seconds:6.1f} {extra} {dups:>4}  {note}"
        )


def select(args: argparse.Namespace) -> list[Cell]:
    cells = QUICK if args.quick else matrix()
    if args.only:
        cells = [c for c in cells if c.step in args.only]
    if args.fault:
        cells = [c for c in cells if c.fault in args.fault]
    return cells


def run_matrix(
    api: str,
    env: dict[str, str],
    cells: list[Cell],
    baseline: bool,
    work_dir: Path | None = None,
) -> int:
    """Run ``cells`` (and the fault-free baselines) against the Prefect server at ``api``;
    print the table and the last line; return 0 when every cell survived without duplicates.

    ``work_dir``: keep the sandboxes and worker logs there (default: a temporary directory).
    """
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="faults-")))
        work_dir.mkdir(parents=True, exist_ok=True)
        bench = Bench(api, work_dir, env)
        base: dict[str, float] = {}
        if baseline:
            for rollback in sorted({c.rollback for c in cells}):
                base["rollback" if rollback else "promotion"] = bench.baseline(rollback)
        rows = []
        for cell in cells:
            row = bench.run(cell)
            rows.append(row)
            print(f"  {cell.label}: {row.outcome} in {row.seconds:.1f} s", flush=True)
    if base:
        print(
            "baselines without a fault: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in base.items())
            + " (+s: the fault's cost against them)"
        )
    print_table(rows, base)
    if any(r.cell.fault == "sigkill" for r in rows):
        print(
            f"SIGKILL cells: a deployment run each, retried after the kill; the environment "
            f"lock's lease is {LOCK_LEASE} s here, Prefect's default 300 s."
        )
    survived = sum(r.survived for r in rows)
    dups = sum(r.duplicate_count for r in rows)
    unclear = sum(r.unclear for r in rows)
    missed = [r.cell.label for r in rows if not r.hit]
    if missed:
        print(f"faults never injected (their cells count as not survived): {', '.join(missed)}")
        survived -= sum(r.survived for r in rows if not r.hit)
    print(f"faults: {survived}/{len(rows)} survived, {dups} duplicates, {unclear} unclear failures")
    return 0 if survived == len(rows) and dups == 0 and unclear == 0 else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a handful of cells (smoke run)")
    parser.add_argument("--only", action="append", choices=sorted(STEPS), help="only this step")
    parser.add_argument("--fault", action="append", choices=sorted(FAULTS), help="only this fault")
    parser.add_argument("--no-baseline", action="store_true", help="skip the fault-free runs")
    parser.add_argument("--api-url", help="use this Prefect server instead of starting one")
    parser.add_argument("--verbose", action="store_true", help="keep the flows' warnings")
    parser.add_argument("--work-dir", type=Path, help="keep sandboxes and worker logs here")
    args = parser.parse_args()
    cells = select(args)
    if not cells:
        raise SystemExit("no cell matches --only/--fault")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING" if args.verbose else "CRITICAL"
    os.environ["RELEASE_PROMOTION_POLL_INTERVAL"] = str(POLL_INTERVAL)
    os.environ["RELEASE_PROMOTION_LOCK_LEASE_SECONDS"] = str(LOCK_LEASE)
    baseline = not (args.no_baseline or args.quick)
    if args.api_url:
        os.environ["PREFECT_API_URL"] = args.api_url
        from deployments.local import ensure_concurrency_limit, prefect_env

        ensure_concurrency_limit(args.api_url)
        raise SystemExit(
            run_matrix(args.api_url, prefect_env(args.api_url), cells, baseline, args.work_dir)
        )
    from deployments.local import LocalPrefect, ensure_concurrency_limit

    with LocalPrefect(
        extra_env={"PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "2"},
        startup_timeout=300,  # a shared machine under load starts it slowly
    ) as server:
        os.environ["PREFECT_API_URL"] = server.api_url
        ensure_concurrency_limit(server.api_url)
        code = run_matrix(server.api_url, server.env(), cells, baseline, args.work_dir)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
