"""Run the GitHub emulator alone: ``python -m sandbox.github [--state-dir DIR] [--port N]``.

Seeds the GitOps repository into ``DIR/github/repo.git`` unless it exists, serves the emulator
on 127.0.0.1, prints ONE line of JSON (``github_url``, ``github_token``, ``git_url``, ``repo``,
``admin_url``, ``state_dir``) and runs until SIGINT or SIGTERM. Benchmarks and tests in other
processes drive it over HTTP, including the ``/_sandbox/`` admin routes.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from promotion.config import load_config
from sandbox.github.emulator import GitHubEmulator
from sandbox.seed import seed_repository

DEFAULT_TOKEN = "ghp_sandbox_promotion_bot_token"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.github", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--config", type=Path, default=None, help="promotion.yaml to seed from")
    parser.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="TOKEN=LOGIN",
        help="accepted token and its login (repeatable); default: one bot token",
    )
    parser.add_argument("--check-duration", type=float, default=0.0)
    parser.add_argument("--required-approving-reviews", type=int, default=0)
    args = parser.parse_args(argv)

    config = load_config(args.config)
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="sandbox-github-"))
    bare = state / "github" / "repo.git"
    if not bare.exists():
        bare.parent.mkdir(parents=True, exist_ok=True)
        seed_repository(bare, config)
    tokens = dict(t.split("=", 1) for t in args.token) or {DEFAULT_TOKEN: "promotion-bot"}
    emu = GitHubEmulator(
        bare,
        config.github.repository,
        tokens,
        base_branch=config.github.base_branch,
        required_checks=config.github.required_checks,
        required_approving_reviews=args.required_approving_reviews,
        check_duration=args.check_duration,
    )
    server = emu.start(args.port)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    line = {
        "github_url": emu.api_url,
        "github_token": next(iter(tokens)),
        "git_url": emu.git_url,
        "repo": config.github.repository,
        "admin_url": f"{emu.base_url}/_sandbox",
        "state_dir": str(state),
    }
    print(json.dumps(line), flush=True)
    stop.wait()
    emu.close()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
