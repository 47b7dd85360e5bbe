"""Benchmark: seconds from a push on the prod branch to ``confirm_deployed`` returning.

Argo CD polls git every 180 s (the emulator runs with ``reconcile_interval=180`` and its poller
on); ``confirm_deployed`` refreshes the Application first, so the confirmation must not wait for
the poll. Each round pushes a new release tag to ``kustomize/prod`` (real git, real kustomize
in the emulator, real HTTP), then times ``confirm_deployed``. Prints one line per round and a
summary; the issue's target is under 10 s.

Run: ``.venv/bin/python -m bench.argocd_confirm [--rounds 5] [--health-delay 0.2]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--health-delay", type=float, default=0.2)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    args = parser.parse_args()

    config = load_config()
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
        times: list[float] = []
        try:
            with httpx.Client(timeout=10.0) as http:
                client = ArgoCDClient(server.url, TOKEN, http=http)
                for round_ in range(1, args.rounds + 1):
                    tag = f"v2.0.{round_}"
                    overlay = work / OVERLAY
                    images = {config.image(s): tag for s in config.services}
                    overlay.write_text(set_image_tags(overlay.read_text(), images))
                    git("commit", "--quiet", "-am", f"Promote {tag} to prod", cwd=work)
                    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
                    sha = git("rev-parse", "HEAD", cwd=work).strip()
                    started = time.monotonic()
                    deployed = client.confirm_deployed(
                        APP, sha, timeout=60, poll_interval=args.poll_interval
                    )
                    seconds = time.monotonic() - started
                    times.append(seconds)
                    print(
                        f"round {round_}: {tag} {sha[:12]} confirmed deployed in {seconds:.3f} s "
                        f"(history id {deployed.history_id}, health {deployed.health})"
                    )
        finally:
            emulator.stop()
            server.stop()
    print(
        f"confirm_deployed with reconcile_interval=180 s, health_delay={args.health_delay} s, "
        f"poll_interval={args.poll_interval} s over {len(times)} rounds: "
        f"median {statistics.median(times):.3f} s, max {max(times):.3f} s "
        f"(target < 10 s: {'met' if max(times) < 10 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
