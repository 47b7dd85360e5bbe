"""Benchmark: how soon ``confirm_deployed`` sees what Argo CD reports, watch stream vs polling.

Each round pushes a new release tag to ``kustomize/prod`` (real git, real kustomize in the
emulator, real HTTP) and times ``confirm_deployed`` twice over: once following Argo CD's watch
stream (the client's default) and once polling. Printed per mode:

- **lag**: seconds from the moment the emulator's API first showed the Application Healthy,
  reconciled after its sync (``ArgoCDEmulator.healthy_reported_at``), to ``confirm_deployed``
  returning. The issue's goal is under 0.5 s.
- **total**: seconds from the push to the confirmation.
- **calls**: Argo CD API calls per confirmation (a stream counts as one call).

Argo CD polls git every 180 s here; ``confirm_deployed`` refreshes once at the start, so the
confirmation never waits for the poll.

Run: ``.venv/bin/python -m bench.argocd_confirm [--rounds 5] [--health-delay 0.2]
[--poll-interval 1.0]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from promotion.argocd import ArgoCDClient
from promotion.config import load_config
from promotion.kustomize import set_image_tags
from sandbox.argocd import AppSpec, ArgoCDEmulator
from sandbox.http import serve_in_thread
from sandbox.seed import git, seed_repository

APP = "prod-microservices-demo"
OVERLAY = "kustomize/prod/kustomization.yaml"
TOKEN = "bench-token"
GOAL = 0.5


@dataclass
class Round:
    mode: str
    lag: float
    total: float
    calls: int


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--health-delay", type=float, default=0.2)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    args = parser.parse_args()

    config = load_config()
    results: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="bench-argocd-") as tmp:
        bare = Path(tmp, "gitops.git")
        seed_repository(bare, config)
        work = Path(tmp, "work")
        git("clone", "--quiet", str(bare), str(work))
        emulator = ArgoCDEmulator(
            bare,
            [AppSpec(APP, "kustomize/prod", environment="prod")],
            token=TOKEN,
            reconcile_interval=180.0,
            health_delay=args.health_delay,
        )
        server = serve_in_thread(emulator.app)
        emulator.start()
        try:
            with httpx.Client(timeout=10.0) as http:
                clients = {
                    "stream": ArgoCDClient(server.url, TOKEN, http=http),
                    "polling": ArgoCDClient(server.url, TOKEN, http=http, watch=False),
                }
                for round_ in range(1, args.rounds + 1):
                    for mode, client in clients.items():
                        tag = f"v2.{round_}.{len(results)}"
                        overlay = work / OVERLAY
                        images = {config.image(s): tag for s in config.services}
                        overlay.write_text(set_image_tags(overlay.read_text(), images))
                        git("commit", "--quiet", "-am", f"Promote {tag} to prod", cwd=work)
                        git("push", "--quiet", "origin", "HEAD:main", cwd=work)
                        sha = git("rev-parse", "HEAD", cwd=work).strip()
                        calls_before = emulator.stats()["total"]
                        started = time.monotonic()
                        deployed = client.confirm_deployed(
                            APP,
                            sha,
                            expected_images=images,
                            timeout=60,
                            poll_interval=args.poll_interval,
                        )
                        done = time.monotonic()
                        reported = emulator.healthy_reported_at(APP)
                        assert reported is not None, "the emulator never reported Healthy"
                        result = Round(
                            mode,
                            lag=done - reported,
                            total=done - started,
                            calls=emulator.stats()["total"] - calls_before,
                        )
                        results.append(result)
                        print(
                            f"round {round_} {mode:7}: {tag} {sha[:12]} confirmed "
                            f"{result.lag:.3f} s after Argo CD reported Healthy, "
                            f"{result.total:.3f} s after the push, {result.calls} API calls "
                            f"(history id {deployed.history_id})"
                        )
        finally:
            emulator.stop()
            server.stop()
    print(
        f"confirm_deployed, health_delay={args.health_delay} s, "
        f"poll_interval={args.poll_interval} s, {args.rounds} rounds:"
    )
    for mode in ("stream", "polling"):
        rows = [r for r in results if r.mode == mode]
        lags = [r.lag for r in rows]
        print(
            f"  {mode:7}: lag median {statistics.median(lags):.3f} s, max {max(lags):.3f} s "
            f"(goal < {GOAL} s: {'met' if max(lags) < GOAL else 'NOT met'}); "
            f"total median {statistics.median(r.total for r in rows):.3f} s; "
            f"API calls per confirmation {statistics.mean(r.calls for r in rows):.1f}"
        )


if __name__ == "__main__":
    main()
