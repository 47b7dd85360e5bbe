"""``release-promotion``: the command line of the project (Typer).

``sandbox up|down|status`` runs the local stand-ins, ``demo`` the one-command demo, ``deploy``
creates the work pool and one concurrency limit per environment and deploys ``prefect.yaml``;
``promote``, ``approve``, ``rollback``, ``resume-autosync`` and ``status`` work against any Prefect
server (``PREFECT_API_URL`` or ``--api-url``; default: the demo's ``http://127.0.0.1:4200/api``;
``PREFECT_API_AUTH_STRING`` for a protected one). ``approve`` posts the same ``run_input`` as the
UI's Resume form and prints the server's verdict.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from deployments import runs
from deployments.local import PROJECT_ROOT
from promotion.names import (
    PROMOTE_DEPLOYMENT,
    RESUME_AUTOSYNC_DEPLOYMENT,
    ROLLBACK_DEPLOYMENT,
    gate_of_pause_key,
    holds_variable,
)

DEFAULT_API = "http://127.0.0.1:4200/api"
AUTO_ROLLBACK = ("off", "argocd", "revert")

app = typer.Typer(
    name="release-promotion",
    help="Promote releases through GitOps environments with Prefect.",
    no_args_is_help=True,
    add_completion=False,
)
sandbox_app = typer.Typer(
    help="The local stand-ins: GitHub, Argo CD, registry.", no_args_is_help=True
)
app.add_typer(sandbox_app, name="sandbox")

ApiUrl = Annotated[
    str,
    typer.Option("--api-url", envvar="PREFECT_API_URL", help="The Prefect API.", show_default=True),
]
Application = Annotated[
    str | None,
    typer.Option(
        "--application",
        "-a",
        help="The application, as named in promotion.yaml (may be left out when it has one).",
    ),
]
StateDir = Annotated[Path | None, typer.Option("--state-dir", help="The sandbox state directory.")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def _start(api_url: str, deployment: str, parameters: dict[str, Any], what: str) -> None:
    """Start a run of ``deployment``; print what it does and its link."""
    try:
        run = runs.start_run(api_url, deployment, parameters)
    except runs.RunApiError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"Started {run.name} ({run.id}): {what}")
    typer.echo(runs.run_url(api_url, run.id))


# -- sandbox -----------------------------------------------------------------------------------


def _sandbox_args(command: str, state_dir: Path | None, extra: list[str] | None = None) -> int:
    from sandbox.__main__ import main

    argv = [command]
    if state_dir is not None:
        argv += ["--state-dir", str(state_dir)]
    return main([*argv, *(extra or [])])


@sandbox_app.command("up")
def sandbox_up(
    state_dir: StateDir = None,
    reconcile_interval: Annotated[float, typer.Option(help="Argo CD poll interval (s).")] = 180.0,
    check_duration: Annotated[float, typer.Option(help="Validation check duration (s).")] = 0.0,
    health_delay: Annotated[float, typer.Option(help="Progressing before Healthy (s).")] = 0.2,
) -> None:
    """Start the sandbox; print one JSON line with URLs and tokens; run until Ctrl-C."""
    extra = [
        "--reconcile-interval",
        str(reconcile_interval),
        "--check-duration",
        str(check_duration),
        "--health-delay",
        str(health_delay),
    ]
    raise typer.Exit(_sandbox_args("up", state_dir, extra))


@sandbox_app.command("down")
def sandbox_down(state_dir: StateDir = None) -> None:
    """Stop the sandbox recorded in the state directory."""
    raise typer.Exit(_sandbox_args("down", state_dir))


@sandbox_app.command("status")
def sandbox_status(state_dir: StateDir = None) -> None:
    """Whether the recorded sandbox runs and its endpoints answer."""
    raise typer.Exit(_sandbox_args("status", state_dir))


# -- demo and deploy ---------------------------------------------------------------------------


@app.command()
def demo(
    auto_approve: Annotated[bool, typer.Option(help="Give both approvals automatically.")] = False,
    version: Annotated[str, typer.Option(help="The release to promote.")] = "v1.0.1",
    port: Annotated[int, typer.Option(help="Prefect server port.")] = 4200,
    auth_string_file: Annotated[
        Path | None,
        typer.Option(help="Protect the Prefect server with the user:password in this file."),
    ] = None,
) -> None:
    """Run the whole pipeline locally (same as `make demo`)."""
    from deployments.demo import main

    argv = ["--version", version, "--port", str(port)]
    if auto_approve:
        argv.append("--auto-approve")
    if auth_string_file is not None:
        argv += ["--auth-string-file", str(auth_string_file)]
    raise typer.Exit(main(argv))


ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config-file",
        envvar="RELEASE_PROMOTION_CONFIG_FILE",
        help="The promotion setup (default: the project's promotion.yaml).",
    ),
]


@app.command()
def deploy(api_url: ApiUrl = DEFAULT_API, config_file: ConfigFile = None) -> None:
    """Create the work pool and a concurrency limit per environment, then deploy prefect.yaml."""
    from deployments.local import (
        PrefectCommandFailed,
        deployable_names,
        ensure_concurrency_limit,
        ensure_work_pool,
        prefect_env,
    )
    from deployments.local import (
        deploy as run_deploy,
    )
    from deployments.notifications import NotificationBlockMissing, ensure_on_deploy
    from deployments.watch import apply_watch_schedule
    from promotion.config import ConfigError

    deployable, missing = deployable_names(PROJECT_ROOT)
    try:
        ensure_work_pool(api_url)
        locks = ensure_concurrency_limit(api_url, config_file=config_file)
        output = run_deploy(prefect_env(api_url), project_root=PROJECT_ROOT, names=deployable)
        # Issue 12: notification automations and the release watcher's schedule, from the setup.
        notified = ensure_on_deploy(api_url, config_file, ui_url=runs.ui_url(api_url))
        watching = apply_watch_schedule(api_url, config_file)
    except (
        PrefectCommandFailed,
        ConfigError,
        runs.RunApiError,
        NotificationBlockMissing,
    ) as exc:
        raise _fail(str(exc)) from None
    typer.echo(output.strip().splitlines()[-1] if output.strip() else "deployed")
    typer.echo(notified)
    typer.echo(watching)
    typer.echo(f"Concurrency limits: {', '.join(locks)}.")
    typer.echo(f"Deployed {', '.join(deployable)}.")
    if missing:
        typer.echo(f"Not deployed (their flow is not in this checkout): {', '.join(missing)}.")
    typer.echo("Start a worker: prefect worker start --pool release-promotion")


# -- runs --------------------------------------------------------------------------------------


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="The release tag, for example v1.0.1.")],
    initiator: Annotated[
        str, typer.Option(help="Your login (you may not approve your own release).")
    ] = "release-manager",
    approval_timeout_seconds: Annotated[
        int | None,
        typer.Option(min=1, help="How long each approval may wait (default: the flow's)."),
    ] = None,
    auto_rollback: Annotated[
        str | None,
        typer.Option(help="On a failed deploy: off, argocd or revert (default: the flow's)."),
    ] = None,
    allow_downgrade: Annotated[
        bool, typer.Option("--allow-downgrade", help="Allow a version older than what runs.")
    ] = False,
    allow_held: Annotated[
        bool, typer.Option("--allow-held", help="Allow a version on hold after a rollback.")
    ] = False,
    freeze_override_by: Annotated[
        str | None,
        typer.Option(help="Merge through a freeze window: your login, listed in override_by."),
    ] = None,
    freeze_override_reason: Annotated[
        str | None, typer.Option(help="Why the freeze is overridden (with --freeze-override-by).")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Only show what it would do (PRs, gates, freezes)."),
    ] = False,
    config_file: Annotated[
        str | None,
        typer.Option(help="The promotion setup file, as the worker sees it (default: its own)."),
    ] = None,
    application: Application = None,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Start promote-release for VERSION; print the run's link.

    Only the options given are sent; the others take the flow's defaults.
    """
    from promotion.models import validate_version

    try:
        validate_version(version)
    except ValueError as exc:
        raise _fail(f"invalid version {version!r}: {exc}", 2) from None
    if auto_rollback is not None and auto_rollback not in AUTO_ROLLBACK:
        raise _fail(f"--auto-rollback must be off, argocd or revert, not {auto_rollback!r}", 2)
    parameters: dict[str, Any] = {"version": version, "initiator": initiator}
    if approval_timeout_seconds is not None:
        parameters["approval_timeout_seconds"] = approval_timeout_seconds
    if auto_rollback is not None:
        parameters["auto_rollback"] = auto_rollback
    if allow_downgrade:
        parameters["allow_downgrade"] = True
    if allow_held:
        parameters["allow_held"] = True
    if (freeze_override_by is None) != (freeze_override_reason is None):
        raise _fail("--freeze-override-by and --freeze-override-reason go together", 2)
    if freeze_override_by is not None:
        parameters["freeze_override_by"] = freeze_override_by
        parameters["freeze_override_reason"] = freeze_override_reason
    if dry_run:
        parameters["dry_run"] = True
    if config_file is not None:
        parameters["config_file"] = config_file
    what = f"promoting {version}"
    if application is not None:
        parameters["application"] = _check_name(application, "application")
        what += f" of {application}"
    _start(api_url, PROMOTE_DEPLOYMENT, parameters, what)


@app.command()
def approve(
    run_id: Annotated[str, typer.Argument(help="The paused flow run id.")],
    approver: Annotated[str, typer.Option(help="Your login (a listed approver).")],
    reject: Annotated[bool, typer.Option("--reject", help="Reject instead of approve.")] = False,
    comment: Annotated[str, typer.Option(help="Why; shown in the summary and on the PR.")] = "",
    application: Application = None,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Resume a waiting approval exactly as the UI's Resume form does.

    With ``--application``, refuse a run that promotes another application.
    """
    try:
        run = runs.read_run(api_url, run_id)
        promoted = run.parameters.get("application")
        if application is not None and promoted not in (None, application):
            raise _fail(
                f"run {run_id} promotes application {promoted}, not {application}: nothing sent", 2
            )
        result = runs.resume_run(
            api_url, run_id, {"approved": not reject, "approver": approver, "comment": comment}
        )
    except runs.RunApiError as exc:
        raise _fail(str(exc)) from None
    gate = gate_of_pause_key(run.pause_key or "") or "the"
    verb = "rejected" if reject else "approved"
    if result.accepted:
        typer.echo(f"ACCEPT: {gate} gate {verb} by {approver}; the run goes on.")
        typer.echo(runs.run_url(api_url, run_id))
        return
    if result.status == "REJECT":
        raise _fail(
            f"REJECT: the input was refused: {result.reason.removeprefix('Reason: ')}. The run keeps waiting."
        )
    raise _fail(f"{result.status}: {result.reason or 'the run is not waiting for an approval'}")


def _check_name(value: str, what: str) -> str:
    """Refuse an application name that cannot exist (exit 2); return it."""
    from pydantic import TypeAdapter, ValidationError

    from promotion.config import Name

    try:
        TypeAdapter(Name).validate_python(value)
    except ValidationError:
        raise _fail(
            f"invalid {what} {value!r}: an {what} name is lowercase letters, digits and inner "
            "'-', at most 63 characters (as in promotion.yaml)",
            2,
        ) from None
    return value


def _check_env(env: str) -> None:
    """Refuse an environment name that cannot exist (exit 2) before anything is started.

    Only its form: which environments exist is for the setup the worker reads (its own
    ``promotion.yaml`` or ``RELEASE_PROMOTION_CONFIG_FILE``), and the flow names an unknown one.
    """
    from pydantic import TypeAdapter, ValidationError

    from promotion.config import Name

    try:
        TypeAdapter(Name).validate_python(env)
    except ValidationError:
        raise _fail(
            f"invalid environment {env!r}: an environment name is lowercase letters, digits "
            "and inner '-', at most 63 characters (as in promotion.yaml)",
            2,
        ) from None


def _check_rollback_target(to: str) -> None:
    if to != "previous" and not (to.isdigit() and int(to) > 0):
        raise _fail(f"--to must be 'previous', an Argo CD history id or a PR number, not {to!r}", 2)


@app.command()
def rollback(
    env: Annotated[str, typer.Argument(help="The environment, for example prod.")],
    method: Annotated[
        str, typer.Option(help="argocd (Argo CD rollback) or revert (revert PR).")
    ] = "revert",
    to: Annotated[str, typer.Option(help="previous, an Argo CD history id or a PR number.")] = (
        "previous"
    ),
    application: Application = None,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Start rollback-release for ENV; print the run's link."""
    if method not in ("argocd", "revert"):
        raise _fail(f"--method must be argocd or revert, not {method!r}", 2)
    _check_env(env)
    _check_rollback_target(to)
    parameters: dict[str, Any] = {"env": env, "method": method, "to": to}
    if application is not None:
        parameters["application"] = _check_name(application, "application")
    _start(api_url, ROLLBACK_DEPLOYMENT, parameters, f"roll back {env} by {method} to {to}")


@app.command("resume-autosync")
def resume_autosync(
    env: Annotated[str, typer.Argument(help="The environment, for example prod.")],
    config_file: Annotated[
        str | None,
        typer.Option(help="The promotion setup file, as the worker sees it (default: its own)."),
    ] = None,
    application: Application = None,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Start resume-autosync for ENV (auto-sync back on after an Argo CD rollback); print the link."""
    _check_env(env)
    parameters: dict[str, Any] = {"env": env}
    if config_file is not None:
        parameters["config_file"] = config_file
    if application is not None:
        parameters["application"] = _check_name(application, "application")
    _start(api_url, RESUME_AUTOSYNC_DEPLOYMENT, parameters, f"resume auto-sync of {env}")


def read_holds(api_url: str, application: str) -> dict[str, dict[str, Any]]:
    """The holds recorded by rollbacks of ``application``: its Variable (``holds_variable``), a JSON object
    ``{version: {"env", "reason", "at", "run"}}``; absent means none."""
    variable = holds_variable(application)
    with runs.api_client(api_url) as http:
        response = runs.request_with_retry(http, "GET", f"variables/name/{variable}")
    if response.status_code == 404:
        return {}
    if response.status_code >= 400:
        raise runs.RunApiError(
            f"read variable {variable}: HTTP {response.status_code} {response.text[:200]}"
        )
    value: Any = (response.json() or {}).get("value")
    if isinstance(value, str):  # a variable set from the UI as text
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError as exc:
            raise runs.RunApiError(f"variable {variable} is not a JSON object") from exc
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise runs.RunApiError(f"variable {variable} is not a JSON object")
    return {
        str(k): dict(v) if isinstance(v, dict) else {"reason": str(v)} for k, v in value.items()
    }


def _argocd_endpoint() -> tuple[str, str] | None:
    """Argo CD URL and token: the settings, else a sandbox recorded under .sandbox/."""
    from promotion.config import Settings

    settings = Settings()
    if settings.argocd_token is not None:
        return settings.argocd_url, settings.argocd_token.get_secret_value()
    for info_file in (
        PROJECT_ROOT / ".sandbox" / "demo" / "sandbox" / "sandbox.json",
        PROJECT_ROOT / ".sandbox" / "sandbox" / "sandbox.json",
    ):
        try:
            data = json.loads(info_file.read_text())
        except (OSError, ValueError):
            continue
        return str(data["argocd_url"]), str(data["argocd_token"])
    return None


def freeze_lines(
    config_file: str | Path | None = None, application: str | None = None
) -> dict[str, list[str]]:
    """Environment -> one line per freeze window of the setup (in force, next, or over)."""
    from datetime import UTC, datetime

    from promotion.config import load_config
    from promotion.freeze import describe_windows

    now = datetime.now(UTC)
    return {
        env.name: [row.line() for row in describe_windows(env.freeze, now)]
        for env in load_config(config_file, application).environments
        if env.freeze is not None
    }


def _environments(version: str | None, config: Any) -> list[dict[str, Any]]:
    """One row per environment: what Argo CD runs, since when Healthy, its soak and freeze."""
    from datetime import UTC, datetime

    import httpx

    from promotion.argocd import ArgoCDClient, ArgoCDError
    from promotion.freeze import freeze_summary
    from promotion.soak import live_since, soak_status

    now = datetime.now(UTC)
    endpoint = _argocd_endpoint()
    rows: list[dict[str, Any]] = []
    if endpoint is None:
        return [
            {
                "environment": e.name,
                "app": e.argocd_app,
                "state": "unknown (no Argo CD settings)",
                "freeze": freeze_summary(e.freeze, now),
            }
            for e in config.environments
        ]
    with ArgoCDClient(endpoint[0], endpoint[1]) as client:
        for env in config.environments:
            freeze = freeze_summary(env.freeze, now)
            try:
                app_ = client.get_app(env.argocd_app)
            except (ArgoCDError, httpx.HTTPError) as exc:
                rows.append(
                    {
                        "environment": env.name,
                        "app": env.argocd_app,
                        "state": str(exc),
                        "freeze": freeze,
                    }
                )
                continue
            images = list(app_.status.summary.images)
            tags = sorted({str(i).rsplit(":", 1)[-1] for i in images})
            health = str(app_.status.health.status or "")
            since = live_since(app_.status.history, health)
            soak = soak_status(env.name, ",".join(tags), since, env.soak_minutes, now)
            row: dict[str, Any] = {
                "environment": env.name,
                "app": env.argocd_app,
                "versions": tags,
                "sync": app_.status.sync.status,
                "health": app_.status.health.status,
                "revision": app_.status.sync.revision[:12],
                "since": since.isoformat() if since is not None else None,
                "soak": soak.brief(),
                "soak_minutes": env.soak_minutes,
                "soak_remaining_minutes": soak.remaining.total_seconds() / 60,
                "freeze": freeze,
            }
            if version is not None:
                row["runs_version"] = tags == [version]
            rows.append(row)
    return rows


@app.command()
def status(
    version: Annotated[str | None, typer.Argument(help="Only this release's runs.")] = None,
    api_url: ApiUrl = DEFAULT_API,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    application: Application = None,
) -> None:
    """Where each environment of the application stands and which approvals wait, with links."""
    from promotion.config import ConfigError, load_config

    config_file = os.environ.get("RELEASE_PROMOTION_CONFIG_FILE")
    try:
        config = load_config(config_file, application)
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None
    envs = _environments(version, config)
    if not as_json:
        for row in envs:
            if "versions" in row:
                mark = ""
                if version is not None:
                    mark = "  <- runs " + version if row["runs_version"] else f"  (not {version})"
                typer.echo(
                    f"{row['environment']:<10} {','.join(row['versions']) or '-':<10} "
                    f"{row['sync']}/{row['health']} at {row['revision']}  ({row['app']}){mark}"
                )
                since = f"Healthy since {row['since']}" if row["since"] else "not Healthy"
                typer.echo(f"{'':<10} {since}; soak: {row['soak']}; freeze: {row['freeze']}")
            else:
                typer.echo(f"{row['environment']:<10} {row['state']}")
                typer.echo(f"{'':<10} freeze: {row['freeze']}")
    try:
        waiting = runs.waiting_approvals(api_url, config.application, version)
    except Exception as exc:  # no deployment yet, or no server at all
        raise _fail(f"cannot list approvals at {api_url}: {exc}") from None
    try:
        holds = read_holds(api_url, config.application)
    except Exception as exc:  # a server that answers oddly
        raise _fail(f"cannot read the holds at {api_url}: {exc}") from None
    if version is not None:
        holds = {v: h for v, h in holds.items() if v == version}
    freezes = freeze_lines(config_file, config.application)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "environments": envs,
                    "waiting": [w.to_json() for w in waiting],
                    "holds": holds,
                    "freeze": freezes,
                },
                indent=2,
            )
        )
        return
    for env_name, lines in freezes.items():
        for line in lines:
            typer.echo(f"freeze: {env_name} {line}")
    if not holds:
        typer.echo("No release is on hold.")
    for held, hold in sorted(holds.items()):
        run_id = hold.get("run")
        link = f" (run {runs.run_url(api_url, str(run_id))})" if run_id else ""
        typer.echo(
            f"held: {held} in {hold.get('env', '?')} since {hold.get('at', '?')}: "
            f"{hold.get('reason', '')}{link}"
        )
    if not waiting:
        typer.echo("No approval is waiting.")
    for item in waiting:
        typer.echo(
            f"waiting: {item.gate.upper()} approval of {item.version} in run "
            f"{item.run.name}: {item.url}"
        )


if __name__ == "__main__":  # pragma: no cover
    app()
