"""The one-command demo: a newly published v1.0.1 goes through staging and prod on this machine.

``python -m deployments.demo`` (``make demo``) starts a local Prefect server (SQLite), the
sandbox (GitHub, Argo CD and registry stand-ins over a seeded GitOps repository; the registry
holds v1.0.0 only), writes the demo's setup (the project's ``promotion.yaml`` plus release
detection every minute and an HTTP probe per environment against the sandbox's application
endpoints), creates the work pool, the concurrency limits and a worker, deploys ``prefect.yaml``
with the ``watch-releases`` schedule on, then *publishes* v1.0.1 to the registry: the release
watcher's next scheduled run starts ``promote-release`` for it by itself (once: its idempotency
key). The demo finds that run, prints its link in the Prefect UI and which approval waits,
follows it to its end and prints the summary. With ``--auto-approve`` it gives the approvals
itself through the same API the UI's Resume form uses and exits 0 only when prod is confirmed at
the version. Ctrl-C stops everything it started; every run starts clean under ``.sandbox/demo``.
With ``--auth-string-file FILE`` (or ``PREFECT_SERVER_API_AUTH_STRING`` in its environment) the
server is protected by that ``user:password`` and every client the demo starts gets it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from deployments.local import (
    PROJECT_ROOT,
    SERVER_AUTH_STRING_ENV,
    LocalPrefect,
    PortInUse,
    PrefectCommandFailed,
    PrefectStartFailed,
    Worker,
    deploy,
    deployable_names,
    ensure_concurrency_limit,
    ensure_work_pool,
)
from deployments.runs import (
    AUTH_STRING_ENV,
    ResumeResult,
    RunApiError,
    RunView,
    api_client,
    keyset_description,
    list_runs,
    read_artifact,
    read_run,
    request_with_retry,
    resume_run,
    wait_for_run,
)
from deployments.watch import apply_watch_schedule
from promotion.config import DEFAULT_CONFIG, ConfigError, PromotionConfig, load_config
from promotion.drift import version_key
from promotion.names import PROMOTE_DEPLOYMENT, gate_of_pause_key, watch_idempotency_key
from sandbox.launcher import Sandbox, SandboxError, SandboxInfo, start_sandbox

DEFAULT_STATE = PROJECT_ROOT / ".sandbox" / "demo"
SUMMARY_KEY = "promotion-summary"
SEED_VERSION = "v1.0.0"
WATCH_CRON = "* * * * *"  # the demo's watcher looks every minute (promotion.yaml's default: 5)
CONFIG_FILE_ENV = "RELEASE_PROMOTION_CONFIG_FILE"


class DemoFailed(RuntimeError):
    """The demo could not reach its goal; the message says what happened and where to look."""


def _say(message: str) -> None:
    print(message, flush=True)


@contextlib.contextmanager
def _step(what: str) -> Iterator[None]:
    started = time.monotonic()
    print(f"- {what} ...", end="", flush=True)
    try:
        yield
    except BaseException:
        print(" failed", flush=True)
        raise
    print(f" done ({time.monotonic() - started:.1f}s)", flush=True)


def _gate(pause_key: str | None) -> str:
    """``qa-approval-0123456789ab-0`` (or the older ``qa-approval-0``) -> ``qa``."""
    return gate_of_pause_key(pause_key or "") or "unknown"


def _approver_for(gate: str, config: PromotionConfig, initiator: str) -> str:
    listed = _listed(gate, config)
    for login in listed:
        if login != initiator:
            return login
    raise DemoFailed(f"no {gate} approver other than the initiator {initiator!r} is configured")


def prod_at(sandbox: Sandbox, config: PromotionConfig, version: str) -> tuple[bool, str]:
    """Whether Argo CD reports the prod application Synced, Healthy and running ``version``."""
    prod = config.environments[-1]
    info = sandbox.info
    response = httpx.get(
        f"{info.argocd_url}/api/v1/applications/{prod.argocd_app}",
        params={"refresh": "normal"},
        headers={"Authorization": f"Bearer {info.argocd_token}"},
        timeout=30,
    )
    status = response.json().get("status", {})
    images = status.get("summary", {}).get("images", [])
    sync = status.get("sync", {}).get("status")
    health = status.get("health", {}).get("status")
    on_version = bool(images) and all(str(i).endswith(f":{version}") for i in images)
    tags = sorted({str(i).rsplit(":", 1)[-1] for i in images})
    detail = f"{prod.argocd_app}: {sync}/{health}, {len(images)} images at {', '.join(tags) or '-'}"
    return (on_version and sync == "Synced" and health == "Healthy"), detail


def _prepare(state: Path) -> None:
    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True)


def write_demo_setup(
    info: SandboxInfo,
    target: Path,
    *,
    initiator: str,
    source: Path = DEFAULT_CONFIG,
    watch_cron: str = WATCH_CRON,
    settings: Mapping[str, Any] | None = None,
    per_environment: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write the demo's promotion setup to ``target`` and return it.

    It is ``source`` (the project's promotion.yaml, comments kept) with release detection on
    (``watch``: ``watch_cron``, started as ``initiator``) and, per environment, an HTTP probe of
    the sandbox's application endpoint (``GET /version``: its ``version`` must be the release),
    so that a release the watcher finds is promoted by itself and verified for real.

    Args:
        info: The running sandbox (its ``web_urls`` are probed).
        target: Where to write the setup.
        initiator: Who the release watcher starts promotions as.
        source: The setup to start from.
        watch_cron: When the release watcher looks.
        settings: More top-level settings (``notifications``: ...).
        per_environment: More settings per environment name (``soak_minutes``, ``freeze``).
    """
    from ruamel.yaml import YAML

    yaml = YAML()  # round trip: the comments of promotion.yaml stay
    yaml.width = 100
    data: Any = yaml.load(source.read_text(encoding="utf-8"))
    for env in data["environments"]:
        url = info.web_urls.get(str(env["name"]))
        if url is None:
            raise DemoFailed(f"the sandbox serves no application endpoint for {env['name']}")
        env["verify"] = {
            "probes": [
                {
                    "url": f"{url}/version",
                    "json_field": "version",
                    "retries": 5,
                    "interval_seconds": 2,
                }
            ]
        }
        env.update((per_environment or {}).get(str(env["name"]), {}))
    data["watch"] = {"enabled": True, "cron": watch_cron, "initiator": initiator}
    data.update(settings or {})
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as out:
        out.write(
            "# The demo's setup: promotion.yaml + release detection + probes (deployments/demo.py)\n"
        )
        yaml.dump(data, out)
    load_config(target)  # refuse here, not in the worker, a setup that does not load
    return target


def wait_for_promotion(api_url: str, repository: str, version: str, timeout: float) -> RunView:
    """The ``promote-release`` run the release watcher started for ``version``: the one created
    under release detection's idempotency key (a run started by hand does not count)."""
    key = watch_idempotency_key(repository, version)
    deadline = time.monotonic() + timeout
    while True:
        found = [
            run for run in list_runs(api_url, PROMOTE_DEPLOYMENT) if run.idempotency_key == key
        ]
        if found:
            return found[0]  # the key makes it the only one
        if time.monotonic() > deadline:
            raise DemoFailed(
                f"the release watcher did not start promote-release for {version} in "
                f"{timeout:.0f}s; see the watch-releases runs in the UI"
            )
        time.sleep(1.0)


def watcher_run(api_url: str, version: str) -> RunView:
    """The ``watch-releases`` run whose ``start-promotion-<version>`` task started the run."""
    body = {
        "task_runs": {"name": {"any_": [f"start-promotion-{version}"]}},
        "sort": "EXPECTED_START_TIME_ASC",
        "limit": 1,
    }
    with api_client(api_url) as http:
        response = request_with_retry(http, "POST", "task_runs/filter", json=body)
    if response.status_code >= 400 or not response.json():
        raise DemoFailed(
            f"no start-promotion-{version} task run of watch-releases was found "
            f"(HTTP {response.status_code})"
        )
    return read_run(api_url, str(response.json()[0]["flow_run_id"]))


def auth_string_of(args: argparse.Namespace) -> str | None:
    """The server's auth string: ``--auth-string-file``, else ``PREFECT_SERVER_API_AUTH_STRING``."""
    if args.auth_string_file is not None:
        try:
            text = Path(args.auth_string_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise DemoFailed(
                f"cannot read --auth-string-file {args.auth_string_file}: {exc}"
            ) from exc
        if not text:
            raise DemoFailed(f"--auth-string-file {args.auth_string_file} is empty")
        return text
    return os.environ.get(SERVER_AUTH_STRING_ENV) or None


def run_demo(args: argparse.Namespace) -> int:
    state = Path(args.state_dir).resolve()
    started = time.monotonic()
    auth_string = auth_string_of(args)
    if auth_string is not None:
        # this process's own REST calls (deployments.runs) read it from here
        os.environ[AUTH_STRING_ENV] = auth_string
    if (version_key(args.version) or ()) <= (version_key(SEED_VERSION) or ()):
        raise DemoFailed(f"--version must be a release newer than {SEED_VERSION}")
    _say(f"release-promotion demo: promote {args.version} (state in {state})")
    _prepare(state)
    with contextlib.ExitStack() as stack:
        protected = " with basic auth" if auth_string is not None else ""
        with _step(f"starting the Prefect server (SQLite{protected}) on 127.0.0.1:{args.port}"):
            prefect = stack.enter_context(
                LocalPrefect(home=state / "prefect", port=args.port, auth_string=auth_string)
            )
        with _step(f"starting the sandbox (GitHub, Argo CD, registry; {SEED_VERSION} everywhere)"):
            sandbox = stack.enter_context(
                start_sandbox(
                    state / "sandbox",
                    releases=(SEED_VERSION,),
                    reconcile_interval=args.reconcile_interval,
                    check_duration=args.check_duration,
                )
            )
        setup = write_demo_setup(sandbox.info, state / "promotion.yaml", initiator=args.initiator)
        config = load_config(setup)
        with _step("creating the work pool and a concurrency limit per environment"):
            ensure_work_pool(prefect.api_url)
            ensure_concurrency_limit(prefect.api_url, config_file=setup)
        env = prefect.env({**sandbox.env(), CONFIG_FILE_ENV: str(setup)})
        names, _ = deployable_names()
        with _step(f"deploying prefect.yaml ({', '.join(names)})"):
            deploy(env, names=names)
            watching = apply_watch_schedule(prefect.api_url, setup)
        _say(f"  {watching}")
        with _step("starting a worker"):
            stack.enter_context(Worker(env, log_path=state / "worker.log"))
        _say(f"  Prefect UI:   {prefect.ui_url}")
        if auth_string is not None:
            _say(
                "                (log in with the auth string; CLI: export PREFECT_API_AUTH_STRING)"
            )
        _say(f"  GitHub:       {sandbox.info.github_url}/repos/{sandbox.info.repo}")
        _say(f"  Argo CD:      {sandbox.info.argocd_url}/api/v1/applications")
        _say(f"  Setup:        {setup} (probes: {', '.join(sandbox.info.web_urls.values())})")
        with _step(f"publishing {args.version} to the registry ({len(config.services)} images)"):
            sandbox.registry.publish(config.registry.path, list(config.services), args.version)
        with _step(f"waiting for the release watcher to start promote-release for {args.version}"):
            run = wait_for_promotion(
                prefect.api_url, config.github.repository, args.version, args.watch_timeout
            )
            watcher = watcher_run(prefect.api_url, args.version)
        _say(
            f"\nThe release watcher (watch-releases run {watcher.name}) started promote-release"
            f" for {args.version}:"
        )
        _say(f"  {prefect.flow_run_url(run.id)}")
        _say(
            f"  initiator {run.parameters.get('initiator')}, tags {', '.join(sorted(set(run.tags)))},"
            f" idempotency key {run.idempotency_key}\n"
        )
        final = follow(prefect, run.id, config, args)
        summary = read_artifact(prefect.api_url, run.id, SUMMARY_KEY)
        _say("\n" + (summary or f"(no {SUMMARY_KEY} artifact was published)"))
        ok, detail = prod_at(sandbox, config, args.version)
        elapsed = time.monotonic() - started
        if final.state_type == "COMPLETED" and ok:
            _say(f"\nOK: prod runs {args.version} ({detail}); {elapsed:.1f}s in all.")
            code = 0
        else:
            _say(
                f"\nFAILED: the run ended {final.state_name}"
                + (f" ({final.message})" if final.message else "")
                + f"; prod: {detail}. Worker log: {state / 'worker.log'}"
            )
            code = 1
        if not args.auto_approve and not args.exit_when_done:
            _say(f"\nThe Prefect UI stays up at {prefect.ui_url}; press Ctrl-C to stop everything.")
            while True:
                time.sleep(1)
        return code


def follow(prefect: LocalPrefect, run_id: str, config: PromotionConfig, args: Any) -> RunView:
    """Follow the run to its end, announcing (or, with --auto-approve, giving) each approval."""
    answered: set[str] = set()
    announced: set[str] = set()

    def on_change(run: RunView) -> None:
        if not run.paused:
            _say(f"  run: {run.state_name}")

    while True:
        run = wait_for_run(
            prefect.api_url,
            run_id,
            until=lambda r: r.finished or (r.paused and (r.pause_key or "") not in answered),
            timeout=args.timeout,
            on_change=on_change,
        )
        if run.finished:
            return run
        key = run.pause_key or ""
        gate = _gate(key)
        if key not in announced:
            announced.add(key)
            _say(f"\n>> Waiting for the {gate.upper()} approval ({key}).")
            description = keyset_description(prefect.api_url, run)
            if description:
                # the heading and the links; the image table is in the UI form
                lines = description.strip().splitlines()
                head = [line for line in lines if not line.startswith("|")][:8]
                _say("   " + "\n   ".join(head).rstrip())
        if args.auto_approve:
            approver = _approver_for(gate, config, args.initiator)
            result = resume_run(
                prefect.api_url,
                run_id,
                {
                    "approved": True,
                    "approver": approver,
                    "comment": f"demo: approved by {approver}",
                },
            )
            _say(f"   auto-approve as {approver}: {result.status} {result.reason}".rstrip())
            if result.status == "ABORT" and read_run(prefect.api_url, run_id).pause_key != key:
                result = ResumeResult("ACCEPT", "(an earlier attempt went through)", 200)
            if not result.accepted:
                raise DemoFailed(f"the {gate} approval was not accepted: {result.reason}")
            answered.add(key)
        else:
            _say(
                f"   Open {prefect.flow_run_url(run_id)} , click Resume, switch 'Approved' on,\n"
                f"   choose an approver ({', '.join(_listed(gate, config))}; not the initiator"
                f" {args.initiator}) and submit.\n"
                f"   Or: PREFECT_API_URL={prefect.api_url} release-promotion approve {run_id}"
                f" --approver {_listed(gate, config)[0]}"
            )
            answered.add(key)  # wait for the state to change before announcing again

            def moved_on(r: RunView, waiting: str = key) -> bool:
                return r.finished or not r.paused or r.pause_key != waiting

            wait_for_run(prefect.api_url, run_id, until=moved_on, timeout=args.timeout)


def _listed(gate: str, config: PromotionConfig) -> tuple[str, ...]:
    """The logins that may answer ``gate`` (none for a gate the setup does not name)."""
    try:
        return config.gate(gate).approvers
    except ConfigError:
        return ()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deployments.demo", description=__doc__)
    parser.add_argument("--auto-approve", action="store_true", help="give both approvals")
    parser.add_argument("--version", default="v1.0.1", help="the release to promote")
    parser.add_argument(
        "--initiator",
        default="release-manager",
        help="who the release watcher starts the promotion as",
    )
    parser.add_argument("--port", type=int, default=4200, help="Prefect server port (4200)")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    parser.add_argument("--timeout", type=float, default=3 * 3600.0, help="seconds to wait")
    parser.add_argument(
        "--watch-timeout",
        type=float,
        default=240.0,
        help="seconds to wait for the release watcher to start the promotion",
    )
    parser.add_argument("--reconcile-interval", type=float, default=180.0)
    parser.add_argument("--check-duration", type=float, default=1.0)
    parser.add_argument(
        "--auth-string-file",
        type=Path,
        default=None,
        help="protect the Prefect server with the user:password in this file (HTTP Basic)",
    )
    parser.add_argument(
        "--exit-when-done", action="store_true", help="exit at the end instead of keeping the UI up"
    )
    return parser


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.auto_approve:
        args.exit_when_done = True
    signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C must stop everything even when started from a shell that ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run_demo(args)
    except KeyboardInterrupt:
        print("\nstopped: everything the demo started is shut down", file=sys.stderr)
        return 130
    except PortInUse as exc:
        print(f"\ndemo: {exc}. Free it or run with --port/ARGS='--port N'.", file=sys.stderr)
        return 2
    except (DemoFailed, SandboxError, PrefectStartFailed, PrefectCommandFailed, RunApiError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
