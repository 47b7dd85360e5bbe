"""Benchmark: many promotions at once on production-shaped Prefect (PostgreSQL, several workers).

Starts a throwaway PostgreSQL cluster, a Prefect server on it, the work pool, every
application's environment locks, the ``promote-release`` and ``finish-promotion`` deployments
and ``--workers`` process workers, over one sandbox of ``--apps`` applications (one GitHub and
one Argo CD emulator). Then:

1. ``--promotions`` promotions are started together, spread round-robin over the
   applications, and every approval is answered the moment its run suspends (through the UI's
   REST call). The choice: every promotion promotes the same release, v1.0.1, so each
   application is promoted twice at once (a double start, as when two people start the same
   release). Two *different* releases of one application started together cannot both complete
   by design: releases only move forward, and QA's approval of the older one in staging is void
   once the newer one runs there, so the older one would stop. With one release, the second run
   of an application must wait for the first on the application's environment locks and find
   its PRs merged by the other run: it completes without merging, and the GitHub emulator must
   show every PR, commit and merge once.
2. ``--suspended`` more promotions of v1.0.1 are started (they reach QA's gate in staging and
   suspend); once all are Suspended, the worker's flow processes still alive are counted and the
   Prefect server's resident memory is read from ``/proc``.

Prints per phase: outcomes, throughput (completed promotions per minute, from the first start
to the last end), orchestration overhead per promotion (p50/p95) = wall time - human waits
(each Suspended state until its resume call) - lock waits (from the run's "Waiting for the ...
lock" log to its "Took the ... lock after N s") - time inside task runs (the external calls, including the
emulators' work and configured latencies); of which worker pick-up and flow process (re)starts
(time in Scheduled and Pending states); GitHub calls per promoted environment (304s not
counted); the most slots seen held at once on any environment lock (sampled); duplicates (per
application: promotion PRs, commits on ``main``, commits on each PR branch and PR comments
beyond one PR, one merge and one branch commit per environment and no comment); and, for the
suspended runs, the processes they hold (goal 0) and the server's RSS. The last line is
``scale: N/N promotions completed, D duplicates, X promotions/min``.

Figures, not assertions. Run: ``.venv/bin/python -m bench.scale`` (10 applications, 20
promotions, 100 suspended, 2 workers); short: ``--apps 2 --promotions 4 --suspended 3``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from deployments.local import (
    WORK_POOL,
    LocalPrefect,
    Worker,
    deploy,
    ensure_concurrency_limit,
    ensure_finish_automation,
    ensure_work_pool,
)
from deployments.postgres.local_cluster import LocalPostgres
from deployments.runs import RunView, api_client, request_with_retry, resume_run, start_run
from promotion.kustomize import read_image_tags
from sandbox.launcher import Sandbox, start_sandbox
from sandbox.seed import git

VERSION = "v1.0.1"
INITIATOR = "bench-runner"
HEALTH_DELAY = 0.2
POLL_INTERVAL = 0.2
TICK = 0.25
LOCK_TAKEN = re.compile(r"Took the \S+ lock after ([0-9.]+)s")


@dataclass
class Promotion:
    """One started run and what the driver did for it."""

    application: str
    run_id: str
    started: float  # epoch seconds of the start call
    resumes: list[float] = field(default_factory=list)  # epoch seconds of each resume call
    gates: set[str] = field(default_factory=set)  # pause keys answered
    final: RunView | None = None


@dataclass
class Timing:
    wall: float
    human: float
    locks: float
    in_tasks: float
    starts: float

    @property
    def overhead(self) -> float:
        return self.wall - self.human - self.locks - self.in_tasks


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _read_runs(http: httpx.Client, ids: Sequence[str]) -> dict[str, RunView]:
    views: dict[str, RunView] = {}
    for start in range(0, len(ids), 200):
        body = {"flow_runs": {"id": {"any_": list(ids[start : start + 200])}}, "limit": 200}
        response = request_with_retry(http, "POST", "flow_runs/filter", json=body)
        response.raise_for_status()
        views.update({str(r["id"]): RunView.from_api(r) for r in response.json()})
    return views


def _lock_slots(http: httpx.Client) -> dict[str, int]:
    response = request_with_retry(http, "POST", "v2/concurrency_limits/filter", json={})
    response.raise_for_status()
    return {str(c["name"]): int(c["active_slots"]) for c in response.json()}


def _approvers(box: Sandbox) -> dict[str, str]:
    """Gate -> the first listed approver (never the initiator)."""
    return {a.gate: a.approvers[0] for _, a in box.config.approvals()}


def _start_all(api: str, plan: Sequence[str]) -> list[Promotion]:
    started = []
    for application in plan:
        at = time.time()
        run = start_run(
            api,
            "promote-release",
            {"version": VERSION, "initiator": INITIATOR, "application": application},
        )
        started.append(Promotion(application, run.id, at))
    return started


def _drive(
    api: str,
    promotions: list[Promotion],
    approvers: dict[str, str],
    timeout: float,
    max_slots: dict[str, int],
    answer: bool = True,
) -> None:
    """Answer every approval at once (``answer``) until all runs end, or (not ``answer``)
    until all are suspended. Samples the locks' active slots meanwhile."""
    by_id = {p.run_id: p for p in promotions}
    deadline = time.monotonic() + timeout
    with api_client(api) as http:
        while True:
            views = _read_runs(http, list(by_id))
            for name, slots in _lock_slots(http).items():
                max_slots[name] = max(max_slots.get(name, 0), slots)
            waiting = 0
            for run_id, view in views.items():
                promotion = by_id[run_id]
                if view.finished:
                    promotion.final = view
                    continue
                if not view.paused:
                    waiting += 1
                    continue
                key = view.pause_key or ""
                if not answer or key in promotion.gates:
                    if answer:
                        waiting += 1  # resumed already; the server has not moved it yet
                    continue
                gate = key.split("-", 1)[0]
                result = resume_run(
                    api, run_id, {"approved": True, "approver": approvers[gate], "comment": "ok"}
                )
                if result.accepted:
                    promotion.gates.add(key)
                    promotion.resumes.append(time.time())
                waiting += 1
            if not waiting:
                return
            if time.monotonic() > deadline:
                going = "; ".join(
                    f"{by_id[i].application} {i}: {v.state_name} {v.pause_key or ''}"
                    for i, v in views.items()
                    if not v.finished
                )
                raise SystemExit(f"scale: {waiting} runs still going after {timeout:.0f}s: {going}")
            time.sleep(TICK)


def _timing(http: httpx.Client, promotion: Promotion) -> Timing:
    response = request_with_retry(
        http, "GET", "flow_run_states/", params={"flow_run_id": promotion.run_id}
    )
    response.raise_for_status()
    states = response.json()
    states.sort(key=lambda s: s["timestamp"])
    stamps = [_epoch(s["timestamp"]) for s in states]
    wall = stamps[-1] - promotion.started
    human = 0.0
    starts = 0.0
    for index, state in enumerate(states[:-1]):
        at, following = stamps[index], stamps[index + 1]
        if state["type"] == "PAUSED":
            # the human wait ends with the resume call (the server's move after it is ours)
            resumed = min((r for r in promotion.resumes if r >= at), default=following)
            human += max(0.0, min(resumed, following) - at)
        elif state["type"] in {"SCHEDULED", "PENDING"}:
            starts += following - at
    response = request_with_retry(
        http,
        "POST",
        "task_runs/filter",
        json={"flow_runs": {"id": {"any_": [promotion.run_id]}}, "limit": 200},
    )
    response.raise_for_status()
    tasks = response.json()
    in_tasks = sum(float(t.get("total_run_time") or 0.0) for t in tasks)
    locks = 0.0
    offset = 0
    while True:
        response = request_with_retry(
            http,
            "POST",
            "logs/filter",
            json={
                "logs": {"flow_run_id": {"any_": [promotion.run_id]}},
                "limit": 200,
                "offset": offset,
            },
        )
        response.raise_for_status()
        page = response.json()
        for log in page:
            found = LOCK_TAKEN.match(str(log.get("message", "")))
            if found:
                locks += float(found.group(1))
        if len(page) < 200:
            break
        offset += 200
    return Timing(wall, human, locks, in_tasks, starts)


@dataclass
class Made:
    """What the GitHub emulator holds for one application."""

    prs: int = 0
    main_commits: int = 0
    branch_commits: int = 0
    comments: int = 0
    running: int = 0  # environments whose overlay on main runs VERSION


def _made(box: Sandbox, application: str, seed_commits: int) -> Made:
    app = box.applications[application]
    repository = app.config.github.repository
    bare = box.state_dir / f"{application}.git"
    if not bare.exists():  # a one-application sandbox
        bare = box.state_dir / "repo.git"
    headers = {"Authorization": f"token {box.info.github_token}"}
    base = f"{box.info.github_url}/repos/{repository}"
    made = Made()
    with httpx.Client(headers=headers, timeout=30) as http:
        prs = http.get(f"{base}/pulls", params={"state": "all", "per_page": 100}).json()
        prs = [p for p in prs if str(p["head"]["ref"]).startswith("promote/")]
        made.prs = len(prs)
        for pr in prs:
            made.comments += len(http.get(f"{base}/issues/{pr['number']}/comments").json())
    main = git("rev-list", "main", cwd=bare).split()
    made.main_commits = len(main) - seed_commits
    for pr in prs:
        branch = git("rev-list", f"refs/heads/{pr['head']['ref']}", "^main", cwd=bare).split()
        made.branch_commits += len(branch)
    for env in app.config.environments:
        tags = set(read_image_tags(app.github.read_file("main", env.overlay)).values())
        made.running += tags == {VERSION}
    return made


def _descendants(roots: Iterable[int]) -> list[int]:
    """Every live process below ``roots`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] in {"Z", "X"}:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _set_pool_limit(api: str, limit: int | None) -> None:
    with api_client(api) as http:
        response = request_with_retry(
            http, "PATCH", f"work_pools/{WORK_POOL}", json={"concurrency_limit": limit}
        )
        response.raise_for_status()


def _github_calls(box: Sandbox) -> int:
    return sum(int(a.github.stats.snapshot()["total"]) for a in box.applications.values())


def run(
    apps: int, promotions: int, suspended: int, workers: int, pool_limit: int, tmp: Path
) -> list[str]:
    """Run the bench; return the lines it prints (the last is the summary)."""
    out: list[str] = []

    def say(line: str) -> None:
        out.append(line)
        print(line, flush=True)

    clock = time.monotonic()
    with (
        LocalPostgres() as pg,
        LocalPrefect(
            home=tmp / "prefect-home",
            extra_env={"PREFECT_API_DATABASE_CONNECTION_URL": pg.prefect_url},
        ) as server,
        start_sandbox(tmp / "sandbox", applications=apps, health_delay=HEALTH_DELAY) as box,
    ):
        api = server.api_url
        config_file = box.info.config_file or None
        ensure_work_pool(api)
        ensure_concurrency_limit(api, config_file=config_file)
        env = server.env({**box.env(), "RELEASE_PROMOTION_POLL_INTERVAL": str(POLL_INTERVAL)})
        deploy(env, names=["promote-release", "finish-promotion"])
        ensure_finish_automation(api)
        names = list(box.applications)
        seed_commits = {
            name: len(
                git(
                    "rev-list",
                    "main",
                    cwd=box.state_dir / (f"{name}.git" if config_file else "repo.git"),
                ).split()
            )
            for name in names
        }
        pool = [Worker(env, log_path=tmp / f"worker-{n}.log") for n in range(1, workers + 1)]
        try:
            for worker in pool:  # from this thread: workers die with the thread that started them
                worker.start()
            say(
                f"setup: PostgreSQL, Prefect, {apps} applications, deployments, {workers} "
                f"workers: {time.monotonic() - clock:.0f}s"
            )
            approvers = _approvers(box)
            max_slots: dict[str, int] = {}

            # 1. The promotions, started together, every approval answered at once.
            plan = [names[i % len(names)] for i in range(promotions)]
            calls_before = _github_calls(box)
            first = time.time()
            main_runs = _start_all(api, plan)
            _drive(api, main_runs, approvers, timeout=600 + 60 * promotions, max_slots=max_slots)
            calls = _github_calls(box) - calls_before
            completed = [p for p in main_runs if p.final and p.final.state_type == "COMPLETED"]
            with api_client(api) as http:
                timings = [_timing(http, p) for p in completed]
                last = max(
                    _epoch(s["timestamp"])
                    for p in main_runs
                    for s in request_with_retry(
                        http, "GET", "flow_run_states/", params={"flow_run_id": p.run_id}
                    ).json()
                )
            per_min = len(completed) / max(last - first, 1e-9) * 60
            made = {name: _made(box, name, seed_commits[name]) for name in names}
            envs = len(box.config.environments)
            duplicates = 0
            for name in set(plan):
                m = made[name]
                duplicates += max(0, m.prs - envs) + max(0, m.main_commits - envs)
                duplicates += max(0, m.branch_commits - envs) + m.comments
            outcomes: dict[str, int] = {}
            for p in main_runs:
                state = p.final.state_name if p.final else "unfinished"
                outcomes[state] = outcomes.get(state, 0) + 1
            say(
                f"promotions: {promotions} of {VERSION} over {len(set(plan))} applications, "
                f"started together: {', '.join(f'{n} {s}' for s, n in sorted(outcomes.items()))}; "
                f"{last - first:.0f}s from the first start to the last end"
            )
            for p in main_runs:
                if p.final and p.final.state_type != "COMPLETED":
                    say(f"  {p.application} {p.run_id}: {p.final.state_name}: {p.final.message}")
            overhead = [t.overhead for t in timings]
            in_flow = [t.overhead - t.starts for t in timings]
            say(
                f"orchestration overhead per promotion: p50 {_percentile(overhead, 0.5):.2f}s, "
                f"p95 {_percentile(overhead, 0.95):.2f}s (goal p50 < 0.5s); of which worker "
                f"pick-up and flow process (re)starts p50 "
                f"{_percentile([t.starts for t in timings], 0.5):.2f}s, the rest (Prefect calls "
                f"and bookkeeping inside the flow processes) p50 {_percentile(in_flow, 0.5):.2f}s "
                f"p95 {_percentile(in_flow, 0.95):.2f}s"
            )
            say(
                "per promotion, p50: wall "
                f"{_percentile([t.wall for t in timings], 0.5):.1f}s, human waits "
                f"{_percentile([t.human for t in timings], 0.5):.2f}s, lock waits "
                f"{_percentile([t.locks for t in timings], 0.5):.1f}s, in tasks "
                f"{_percentile([t.in_tasks for t in timings], 0.5):.1f}s; resumes "
                f"{sum(len(p.resumes) for p in main_runs)}"
            )
            say(
                f"GitHub calls per environment: {calls / max(1, len(completed) * envs):.1f} "
                f"({calls} calls for {len(completed)} promotions x {envs} environments)"
            )
            locks = [n for n in max_slots if n.startswith("promotion-")]
            say(
                f"environment locks: most slots held at once (sampled every {TICK}s): "
                f"{max((max_slots[n] for n in locks), default=0)} over {len(locks)} locks"
            )
            totals = Made()
            for name in set(plan):
                for key in ("prs", "main_commits", "branch_commits", "comments", "running"):
                    setattr(totals, key, getattr(totals, key) + getattr(made[name], key))
            n_apps = len(set(plan))
            say(
                f"GitHub emulator, {n_apps} applications x {envs} environments: "
                f"{totals.prs} PRs, {totals.main_commits} merges on main, "
                f"{totals.branch_commits} PR branch commits, {totals.comments} comments "
                f"(expected {n_apps * envs}, {n_apps * envs}, {n_apps * envs}, 0); environments "
                f"running {VERSION}: {totals.running}/{n_apps * envs}"
            )

            # 2. Runs suspended at a gate: what they hold.
            if suspended:
                _set_pool_limit(api, pool_limit)
                gate_plan = [names[i % len(names)] for i in range(suspended)]
                began = time.monotonic()
                gate_runs = _start_all(api, gate_plan)
                _drive(
                    api,
                    gate_runs,
                    approvers,
                    timeout=600 + 30 * suspended,
                    max_slots=max_slots,
                    answer=False,
                )
                reached = time.monotonic() - began
                with api_client(api) as http:
                    views = _read_runs(http, [p.run_id for p in gate_runs])
                paused = sum(1 for v in views.values() if v.state_name == "Suspended")
                roots = [w.process.pid for w in pool if w.process is not None]
                held_now = len(_descendants(roots))
                time.sleep(5)
                held_later = len(_descendants(roots))
                assert server.process is not None
                tree = [server.process.pid, *_descendants([server.process.pid])]
                rss = sum(_rss_mb(pid) for pid in tree)
                say(
                    f"suspended: {paused}/{suspended} runs Suspended at a gate after "
                    f"{reached:.0f}s (work pool limit {pool_limit}); processes they hold: "
                    f"{held_now} when the last suspended, {held_later} 5s later (goal 0); "
                    f"Prefect server RSS {rss:.0f} MB ({len(tree)} processes)"
                )
        finally:
            for worker in pool:
                worker.stop()
    say(
        f"scale: {len(completed)}/{promotions} promotions completed, {duplicates} duplicates, "
        f"{per_min:.1f} promotions/min"
    )
    return out


def main(argv: Sequence[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--apps", type=int, default=10, help="applications in the sandbox")
    parser.add_argument("--promotions", type=int, default=20, help="promotions started together")
    parser.add_argument("--suspended", type=int, default=100, help="runs left at a gate")
    parser.add_argument("--workers", type=int, default=2, help="process workers")
    parser.add_argument(
        "--pool-limit",
        type=int,
        default=10,
        help="work pool concurrency while the suspended runs start (flow processes at once)",
    )
    parser.add_argument(
        "--keep", type=Path, help="keep the logs and state here (default: a temporary directory)"
    )
    args = parser.parse_args(argv)
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        return run(
            args.apps, args.promotions, args.suspended, args.workers, args.pool_limit, args.keep
        )
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        return run(
            args.apps, args.promotions, args.suspended, args.workers, args.pool_limit, Path(tmp)
        )


if __name__ == "__main__":
    main(sys.argv[1:])
