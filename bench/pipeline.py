"""Benchmark: one full promotion of v1.0.1 in the sandbox, approvals given at once.

Starts a local Prefect server and the sandbox (real git, kustomize, registry, HTTP emulators),
runs ``promote_release`` in this process and resumes each approval the moment the run pauses,
through the same REST call as the UI. Prints:

- wall time of the run, the time it spent paused for approvals (the pause polls once a second),
  the emulators' configured latencies (health delay per sync, check duration per PR), the time
  inside tasks (the external calls, including the emulators' real work: kustomize renders and
  validation), and the orchestration overhead = wall - paused - time inside tasks;
- the issue's figure: wall - paused - configured latencies;
- GitHub REST calls per environment (304 answers not counted), from the emulator's counters.

Figures, not assertions. Run: ``.venv/bin/python -m bench.pipeline [--rounds 3]``
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.runs import approve, promote_in_thread, run_id_named, wait_paused_at
from deployments.local import LocalPrefect, ensure_concurrency_limit

HEALTH_DELAY = 0.2
CHECK_DURATION = 0.0
POLL_INTERVAL = 0.1


def _github_calls(admin: str) -> int:
    return int(httpx.get(f"{admin}/_sandbox/stats").json()["total"])


def _github_routes(admin: str) -> dict[str, int]:
    return {k: int(v) for k, v in httpx.get(f"{admin}/_sandbox/stats").json()["routes"].items()}


def _minus(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in sorted(after.items()) if n - before.get(k, 0)}


def _seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def _timings(api: str, run_id: str) -> tuple[float, float]:
    """(seconds paused, seconds inside task runs) of a finished flow run."""
    with httpx.Client(base_url=api, timeout=15) as http:
        states = http.get("/flow_run_states/", params={"flow_run_id": run_id}).json()
        states.sort(key=lambda s: s["timestamp"])
        paused = 0.0
        for state, following in itertools.pairwise(states):
            if state["type"] == "PAUSED":
                paused += _seconds(state["timestamp"], following["timestamp"])
        tasks = http.post(
            "/task_runs/filter", json={"flow_runs": {"id": {"any_": [run_id]}}, "limit": 200}
        ).json()
    return paused, sum(float(t.get("total_run_time") or 0.0) for t in tasks)


def one_round(api: str, tmp: Path) -> dict[str, Any]:
    from sandbox.launcher import start_sandbox

    with start_sandbox(
        tmp / f"sandbox-{uuid.uuid4().hex[:6]}",
        check_duration=CHECK_DURATION,
        health_delay=HEALTH_DELAY,
    ) as box:
        os.environ.update(box.env())
        admin = box.info.github_url.split("/api/v3")[0]
        calls_before = _github_calls(admin)
        routes = [_github_routes(admin)]
        started = time.perf_counter()
        run = promote_in_thread(version="v1.0.1")
        run_id = run_id_named(api, run.name)
        per_env: dict[str, int] = {}
        for gate, env in (("qa", "staging"), ("pm", "prod")):
            wait_paused_at(api, run_id, gate)
            per_env[env] = _github_calls(admin) - calls_before - sum(per_env.values())
            routes.append(_github_routes(admin))
            approve(api, run_id, gate)
        state = run.join(timeout=None)
        wall = time.perf_counter() - started
        per_env["prod"] += _github_calls(admin) - calls_before - sum(per_env.values())
        routes.append(_github_routes(admin))
        if not state.is_completed():
            raise SystemExit(f"the promotion did not complete: {state.message}")
        paused, in_tasks = _timings(api, run_id)
    configured = 2 * HEALTH_DELAY + 2 * CHECK_DURATION
    return {
        "wall": wall,
        "paused": paused,
        "in_tasks": in_tasks,
        "configured": configured,
        "overhead": wall - paused - in_tasks,
        "issue_figure": wall - paused - configured,
        "github_staging": per_env["staging"],
        "github_prod": per_env["prod"],
        "routes_staging": _minus(routes[1], routes[0]),
        "routes_prod": _minus(routes[3], routes[1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--routes",
        action="store_true",
        help="also print the GitHub calls of the last round by route",
    )
    args = parser.parse_args()
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    os.environ["RELEASE_PROMOTION_POLL_INTERVAL"] = str(POLL_INTERVAL)
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp, LocalPrefect() as server:
        os.environ["PREFECT_API_URL"] = server.api_url
        ensure_concurrency_limit(server.api_url)
        rows = [one_round(server.api_url, Path(tmp)) for _ in range(args.rounds)]
    print(
        f"{'round':>5} {'wall s':>7} {'paused s':>8} {'in tasks s':>10} {'configured s':>12} "
        f"{'overhead s':>10} {'wall-paused-configured s':>24} {'GitHub staging':>14} {'GitHub prod':>11}"
    )
    for i, r in enumerate(rows, 1):
        print(
            f"{i:>5} {r['wall']:>7.2f} {r['paused']:>8.2f} {r['in_tasks']:>10.2f} "
            f"{r['configured']:>12.2f} {r['overhead']:>10.2f} {r['issue_figure']:>24.2f} "
            f"{r['github_staging']:>14.0f} {r['github_prod']:>11.0f}"
        )
    later = rows[1:] or rows  # the first round pays Python imports and Prefect warm-up
    print(
        f"median over rounds 2..: overhead {statistics.median(r['overhead'] for r in later):.2f} s, "
        f"wall - paused - configured {statistics.median(r['issue_figure'] for r in later):.2f} s, "
        f"GitHub calls staging {statistics.median(r['github_staging'] for r in later):.0f}, "
        f"prod {statistics.median(r['github_prod'] for r in later):.0f}"
    )
    if args.routes:
        for env in ("staging", "prod"):
            print(f"GitHub calls into {env} (last round):")
            for route, n in rows[-1][f"routes_{env}"].items():
                print(f"  {n:>3}  {route}")


if __name__ == "__main__":
    main()
