"""The README's screenshots of issue 12: a notification as delivered, and the release status.

``.venv/bin/python docs/screenshots.py`` runs the demo's pipeline on loopback (a Prefect server,
the sandbox with v1.0.0 in its registry, the demo's setup with release detection and probes, a
worker) with two more settings: a staging soak time and a prod freeze window (so the status
shows them), and ``notifications`` through a ``CustomWebhookNotificationBlock`` that posts
``{"subject", "body"}`` to a webhook receiver on 127.0.0.1. It publishes v1.0.1 and lets the
release watcher start the promotion. When the QA approval waits it

- checks that the notification's link opens the run's Resume form (headless Chromium);
- renders what the receiver got (the messages as a chat client shows them, and the raw body)
  and saves ``docs/images/notification.png``;
- runs ``watch-releases`` once more and saves its ``release-status`` artifact's page in the
  Prefect UI as ``docs/images/release-status.png``,

then stops everything it started. Needs Debian's chromium (``make test`` installs it).
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from deployments.demo import SEED_VERSION, wait_for_promotion, write_demo_setup
from deployments.local import (
    PROJECT_ROOT,
    LocalPrefect,
    Worker,
    deploy,
    deployable_names,
    ensure_concurrency_limit,
    ensure_work_pool,
)
from deployments.notifications import ensure_on_deploy
from deployments.runs import find_artifact, start_run, wait_for_run
from deployments.watch import apply_watch_schedule
from promotion.config import load_config
from promotion.names import WATCH_DEPLOYMENT
from sandbox.launcher import start_sandbox

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
IMAGES = PROJECT_ROOT / "docs" / "images"
BLOCK = "release-promotion-notify"
VERSION = "v1.0.1"


class WebhookReceiver:
    """A webhook on 127.0.0.1 that keeps every JSON body posted to it, with when it came."""

    def __init__(self) -> None:
        self.messages: list[tuple[datetime, dict[str, Any]]] = []
        received = self.messages

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append((datetime.now(UTC), json.loads(self.rfile.read(length) or b"{}")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, subject_prefix: str, timeout: float = 120.0) -> dict[str, Any]:
        """The first message whose subject starts with ``subject_prefix``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, body in list(self.messages):
                if str(body.get("subject", "")).startswith(subject_prefix):
                    return body
            time.sleep(0.5)
        raise RuntimeError(f"no notification {subject_prefix!r} in {timeout:.0f}s")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _linked(text: str) -> str:
    """``text`` as HTML with its URLs as links, as a chat client shows them."""
    escaped = html.escape(text)
    return re.sub(r"(https?://[^\s<]+)", r'<a href="\1">\1</a>', escaped).replace("\n", "<br>")


def notification_page(messages: Sequence[tuple[datetime, dict[str, Any]]], hook: str) -> str:
    """The received messages as a chat channel, then the raw body of the last one."""
    items = "".join(
        f"""<div class="msg"><div class="avatar">RP</div><div>
        <div><b>release-promotion</b> <span class="tag">APP</span>
        <span class="when">{at:%H:%M:%S} UTC</span></div>
        <div class="subject">{html.escape(str(body.get("subject", "")))}</div>
        <div class="body">{_linked(str(body.get("body", "")))}</div></div></div>"""
        for at, body in messages
    )
    raw = html.escape(json.dumps(messages[-1][1], indent=2)) if messages else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
    body {{ font: 15px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
           margin: 0; background: #fff; color: #1d1c1d; }}
    header {{ padding: 12px 20px; border-bottom: 1px solid #ddd; font-weight: 700; }}
    header small {{ font-weight: 400; color: #616061; margin-left: 8px; }}
    .msg {{ display: flex; gap: 10px; padding: 10px 20px; }}
    .avatar {{ width: 36px; height: 36px; border-radius: 6px; background: #2d6cdf; color: #fff;
               font-weight: 700; display: flex; align-items: center; justify-content: center;
               flex: none; }}
    .tag {{ background: #e8e8e8; color: #616061; font-size: 10px; padding: 1px 4px;
            border-radius: 3px; }}
    .when {{ color: #616061; font-size: 12px; }}
    .subject {{ font-weight: 700; margin-top: 2px; }}
    a {{ color: #1264a3; }}
    h3 {{ margin: 16px 20px 4px; font-size: 13px; color: #616061; font-weight: 600; }}
    pre {{ margin: 0 20px 16px; padding: 10px; background: #f6f8fa; border: 1px solid #ddd;
           border-radius: 6px; font-size: 12px; white-space: pre-wrap; word-break: break-all; }}
    </style></head><body><div id="shot">
    <header># releases <small>messages the Prefect automations posted to the webhook
    {html.escape(hook)}</small></header>
    {items}
    <h3>The last body as received (CustomWebhookNotificationBlock, POST application/json)</h3>
    <pre>{raw}</pre></div></body></html>"""


def _browser(pw: Any) -> Any:
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def check_link_opens_resume_form(link: str) -> None:
    """Open the notification's link and the Resume form on it, as the approver would."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(link)
            page.get_by_role("button", name="Resume").click()
            page.locator(".p-modal__card").get_by_text("Resume Flow Run").wait_for()
        finally:
            browser.close()


def shoot_html(page_html: str, target: Path) -> None:
    """Render ``page_html`` in Chromium and save its content as a PNG."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 600})
            page.set_content(page_html)
            page.locator("#shot").screenshot(path=str(target))
        finally:
            browser.close()


def shoot_artifact(url: str, wait_text: str, target: Path) -> None:
    """Save the artifact page at ``url`` once it shows ``wait_text``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 800})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_text(wait_text).first.wait_for()
            # the UI keeps table cells on one line and scrolls the table: wrap them instead, so
            # the soak column's sentence shows whole
            page.add_style_tag(content="td, th { white-space: normal !important; }")
            page.wait_for_timeout(1000)  # the markdown's tables finish rendering
            page.screenshot(path=str(target), full_page=True)
        finally:
            browser.close()


def _say(message: str) -> None:
    print(message, flush=True)


@contextlib.contextmanager
def _state(state_dir: Path | None) -> Iterator[Path]:
    if state_dir is not None:
        if state_dir.exists() and any(state_dir.iterdir()):
            raise SystemExit(f"--state-dir {state_dir} is not empty: give a new directory")
        state_dir.mkdir(parents=True, exist_ok=True)
        yield state_dir
        return
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        yield Path(tmp)


def take(out: Path, state_dir: Path | None = None) -> list[Path]:
    """Run the pipeline to the QA approval and take both screenshots into ``out``."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.settings import PREFECT_API_URL, temporary_settings

    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        state = stack.enter_context(_state(state_dir))
        _say("starting the Prefect server, the sandbox and the webhook receiver")
        prefect = stack.enter_context(LocalPrefect(home=state / "prefect"))
        receiver = WebhookReceiver()
        stack.callback(receiver.stop)
        sandbox = stack.enter_context(
            start_sandbox(state / "sandbox", releases=(SEED_VERSION,), check_duration=1.0)
        )
        setup = write_demo_setup(
            sandbox.info,
            state / "promotion.yaml",
            initiator="release-manager",
            settings={"notifications": {"block": BLOCK, "ui_url": prefect.ui_url}},
            per_environment={
                "staging": {"soak_minutes": 30},
                "prod": {
                    "freeze": {
                        "on_freeze": "wait",
                        "override_by": ["pm-carol"],
                        "windows": [
                            {
                                "cron": "0 18 * * FRI",
                                "duration": 3840,
                                "timezone": "Europe/Paris",
                                "reason": "weekend freeze",
                            }
                        ],
                    }
                },
            },
        )
        config = load_config(setup)
        with temporary_settings({PREFECT_API_URL: prefect.api_url}):
            CustomWebhookNotificationBlock(
                name="release-promotion",
                url=receiver.url,
                json_data={"subject": "{{subject}}", "body": "{{body}}"},
            ).save(BLOCK, overwrite=True)
        _say("deploying (notifications and the release watcher from the setup)")
        ensure_work_pool(prefect.api_url)
        ensure_concurrency_limit(prefect.api_url, config_file=setup)
        env = prefect.env({**sandbox.env(), "RELEASE_PROMOTION_CONFIG_FILE": str(setup)})
        deploy(env, names=deployable_names()[0])
        _say("  " + ensure_on_deploy(prefect.api_url, setup, ui_url=prefect.ui_url))
        _say("  " + apply_watch_schedule(prefect.api_url, setup))
        stack.enter_context(Worker(env, log_path=state / "worker.log"))

        _say(f"publishing {VERSION}; waiting for the release watcher to start its promotion")
        sandbox.registry.publish(config.registry.path, list(config.services), VERSION)
        run = wait_for_promotion(prefect.api_url, config.github.repository, VERSION, 240.0)
        waiting = wait_for_run(prefect.api_url, run.id, timeout=300)
        if not (waiting.paused and (waiting.pause_key or "").startswith("qa-")):
            raise RuntimeError(f"the run did not wait for QA: {waiting.state_name}")
        message = receiver.wait_for(f"Approval waiting: qa gate for {VERSION}")
        link = prefect.flow_run_url(run.id)
        if link not in str(message.get("body")):
            raise RuntimeError(f"the notification does not link {link}: {message}")
        check_link_opens_resume_form(link)
        _say(f"  the QA notification arrived; its link {link} opens the Resume form")

        notification = out / "notification.png"
        shoot_html(notification_page(receiver.messages, receiver.url), notification)

        watch = start_run(prefect.api_url, WATCH_DEPLOYMENT, {})
        watched = wait_for_run(prefect.api_url, watch.id, until=lambda r: r.finished, timeout=240)
        artifact = find_artifact(prefect.api_url, watch.id, "release-status")
        if watched.state_type != "COMPLETED" or artifact is None:
            raise RuntimeError(f"watch-releases ended {watched.state_name} without its status")
        status = out / "release-status.png"
        shoot_artifact(
            f"{prefect.ui_url}/artifacts/artifact/{artifact['id']}", "Freeze windows", status
        )
        return [notification, status]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python docs/screenshots.py", description=__doc__)
    parser.add_argument("--out", type=Path, default=IMAGES, help="where the PNGs go")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="keep the state (logs, setup, server database) in this new directory",
    )
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2
    for shot in take(args.out, args.state_dir):
        _say(f"wrote {shot} ({shot.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
