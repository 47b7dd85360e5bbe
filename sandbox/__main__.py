"""``python -m sandbox up|down|status``: run the local stand-ins from a shell.

``up`` starts everything (see ``sandbox.launcher``), prints ONE line of JSON with the URLs and
tokens once ready (also written to ``STATE_DIR/sandbox.json``) and runs until SIGINT or SIGTERM,
then stops everything it started. ``down`` signals the sandbox recorded in the state directory;
``status`` says whether it runs and whether each endpoint answers.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from sandbox.launcher import (
    DEFAULT_STATE_DIR,
    PortInUse,
    SandboxError,
    sandbox_status,
    start_sandbox,
    stop_recorded_sandbox,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the sandbox and run until SIGINT/SIGTERM")
    down = sub.add_parser("down", help="stop the sandbox recorded in the state directory")
    status = sub.add_parser("status", help="show whether the recorded sandbox runs")
    for p in (up, down, status):
        p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    up.add_argument(
        "--reconcile-interval",
        type=float,
        default=180.0,
        help="seconds between Argo CD polls of the repository (default 180)",
    )
    up.add_argument(
        "--check-duration",
        type=float,
        default=0.0,
        help="seconds the sandbox CI takes per validation check (default 0)",
    )
    up.add_argument(
        "--health-delay",
        type=float,
        default=0.2,
        help="seconds a synced application stays Progressing (default 0.2)",
    )
    up.add_argument(
        "--no-registry",
        action="store_true",
        help="do not start the registry (the release check then cannot pass)",
    )
    up.add_argument("--github-port", type=int, default=None)
    up.add_argument("--argocd-port", type=int, default=None)
    up.add_argument("--registry-port", type=int, default=None)
    return parser


def up(args: argparse.Namespace) -> int:
    stopping = threading.Event()

    def _handle(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)
    try:
        sandbox = start_sandbox(
            args.state_dir,
            reconcile_interval=args.reconcile_interval,
            check_duration=args.check_duration,
            health_delay=args.health_delay,
            github_port=args.github_port,
            argocd_port=args.argocd_port,
            registry_port=args.registry_port,
            registry=not args.no_registry,
        )
    except (PortInUse, SandboxError) as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    with sandbox:
        print(sandbox.info.to_json(), flush=True)
        while not stopping.wait(0.5):
            pass
        print("sandbox: stopping", file=sys.stderr, flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "up":
            return up(args)
        if args.command == "down":
            pid = stop_recorded_sandbox(args.state_dir)
            print(f"sandbox (pid {pid}) stopped")
            return 0
        print(json.dumps(sandbox_status(args.state_dir), indent=2))
        return 0
    except SandboxError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
