"""Release detection: a scheduled run that starts ``promote-release`` for a newly published release.

Every run lists the tags of the release's image repositories in the registry, keeps the
semantic-version tags present in every repository (a complete release), compares them with what
the first environment's overlay holds in Git, skips the versions on hold (saying why) and starts
``promote-release`` for the newest newer one, once (an idempotency key per repository and
version). It publishes two markdown artifacts: ``watch-releases`` (what it found, started and
skipped) and ``release-status`` (per environment: the version in Git, what Argo CD runs, since
when Healthy, the freeze, the soak; then the freeze windows, the approvals that wait and the
holds). With ``watch.enabled: false`` in promotion.yaml it starts nothing and says so (the status
is still published).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from deployments.runs import WaitingApproval
from flows.runtime import Runtime, load_runtime
from promotion.freeze import describe_windows, freeze_summary
from promotion.kustomize import read_image_tags
from promotion.names import PROMOTE_DEPLOYMENT, WATCH_FLOW, holds_variable
from promotion.registry import RepositoryNotFound
from promotion.soak import soak_status
from promotion.watch import WatchDecision, current_version, select_releases
from tasks import github as github_tasks
from tasks import registry as registry_tasks
from tasks.watch import (
    LiveState,
    StartedRun,
    read_holds,
    read_live,
    read_waiting,
    start_promotion,
)

WATCH_KEY = "watch-releases"
STATUS_KEY = "release-status"


def list_release_tags(runtime: Runtime) -> dict[str, list[str]]:
    """Repository -> its tags (a repository the registry does not know has none)."""
    target = runtime.registry()
    tags: dict[str, list[str]] = {}
    for repository in runtime.registry_repositories().values():
        try:
            tags[repository] = registry_tasks.list_tags(target, repository)
        except RepositoryNotFound:
            tags[repository] = []
    return tags


def overlay_tags(runtime: Runtime, overlay: str) -> dict[str, str]:
    """Image name -> tag of the release's images in ``overlay`` at the base branch head."""
    text = github_tasks.read_file(runtime.github(), overlay)
    wanted = set(runtime.config.images().values())
    return {image: tag for image, tag in read_image_tags(text).items() if image in wanted}


def status_markdown(
    runtime: Runtime,
    git: dict[str, str | None],
    live: dict[str, LiveState],
    holds: dict[str, dict[str, Any]],
    at: datetime,
    waiting: list[WaitingApproval] | str,
) -> str:
    """The status at a glance: one row per environment, then freezes, approvals and holds.

    Args:
        runtime: The setup of the application.
        git: Environment -> the version its overlay holds in Git.
        live: Environment -> what Argo CD runs there.
        holds: The versions on hold.
        at: The instant of the status.
        waiting: The approvals that wait (``read_waiting``), or why they could not be read.
    """
    lines = [f"# Release status at {at.isoformat(timespec='seconds')}", ""]
    lines += [
        "| environment | in Git | Argo CD runs | freeze | Healthy since | soak |",
        "|---|---|---|---|---|---|",
    ]
    for env in runtime.config.environments:
        state = live[env.name]
        if state.error:
            runs = f"unreadable ({state.error[:80]})"
        else:
            runs = f"{', '.join(state.tags) or '?'} ({state.sync}/{state.health})"
        freeze = freeze_summary(env.freeze, at, mark=lambda word: f"**{word}**")
        since = state.healthy_since.isoformat(timespec="seconds") if state.healthy_since else "-"
        soak = soak_status(
            env.name, ",".join(state.tags), state.healthy_since, env.soak_minutes, at
        ).brief()
        version = git.get(env.name) or "?"
        lines.append(f"| {env.name} | {version} | {runs} | {freeze} | {since} | {soak} |")
    windows = [
        (env.name, row.line())
        for env in runtime.config.environments
        for row in describe_windows(env.freeze, at)
    ]
    if windows:
        lines += ["", "## Freeze windows", ""]
        lines += [f"- {env}: {line}" for env, line in windows]
    lines += ["", "## Waiting approvals", ""]
    if isinstance(waiting, str):
        lines.append(f"unreadable ({waiting[:200]})")
    elif waiting:
        lines += [
            f"- {item.gate.upper()} approval of {item.version} (run {item.run.name}): {item.url}"
            for item in waiting
        ]
    else:
        lines.append("none")
    lines += ["", "## Holds", ""]
    if holds:
        for version, hold in sorted(holds.items()):
            lines.append(
                f"- {version}: {hold.get('env', '?')} since {hold.get('at', '?')}: "
                f"{hold.get('reason', '')}"
            )
    else:
        lines.append("none")
    return "\n".join(lines)


def _watch_markdown(decision: WatchDecision, started: list[StartedRun], enabled: bool) -> str:
    lines = ["# Release detection", "", decision.to_markdown(), ""]
    if not enabled:
        lines.append("Release detection is **off** (`watch.enabled: false`): nothing started.")
    for run in started:
        verb = "started" if run.new else "already started"
        lines.append(f"- {run.version}: promote-release {verb} (run {run.flow_run_name})")
    return "\n".join(lines)


@flow(name=WATCH_FLOW)
def watch_releases(
    config_file: str | None = None,
    newest_only: bool = True,
    promote_deployment: str = PROMOTE_DEPLOYMENT,
    application: str | None = None,
) -> dict[str, Any]:
    """Start promote-release for a newly published, complete release (and publish the status).

    Args:
        config_file: Another promotion setup (default: the project's promotion.yaml).
        newest_only: Start only the newest new release (older new ones are reported superseded).
        promote_deployment: The deployment to start (``flow/deployment``).
        application: The application to watch (may be left empty when promotion.yaml
            describes only one).
    """
    logger = get_run_logger()
    runtime = load_runtime(config_file, application)
    config = runtime.config
    first = config.environments[0]
    at = datetime.now(UTC)

    tags = list_release_tags(runtime)
    git = {
        env.name: current_version(overlay_tags(runtime, env.overlay)) for env in config.environments
    }
    holds = read_holds(holds_variable(runtime.application))
    decision = select_releases(tags, git[first.name], holds, newest_only=newest_only)
    logger.info(
        "%s holds %s in Git; complete releases: %s",
        first.name,
        decision.current,
        ", ".join(decision.complete) or "none",
    )
    for skipped in decision.skipped:
        logger.info("Skipping %s: %s", skipped.version, skipped.why)

    started: list[StartedRun] = []
    if not config.watch.enabled:
        logger.info("Release detection is off (watch.enabled: false): nothing started")
    for version in decision.to_start if config.watch.enabled else ():
        registry_tasks.check_release(runtime.registry(), runtime.registry_repositories(), version)
        started.append(
            start_promotion(
                promote_deployment,
                version,
                config.watch.initiator,
                config.github.repository,
                application,
            )
        )
    if not decision.to_start:
        logger.info("Nothing new to promote")

    create_markdown_artifact(
        markdown=_watch_markdown(decision, started, config.watch.enabled),
        key=WATCH_KEY,
        description="What release detection found, started and skipped",
    )
    live = {
        env.name: read_live(runtime.argocd(), env.argocd_app, list(config.images().values()))
        for env in config.environments
    }
    waiting = read_waiting(promote_deployment, runtime.application)
    create_markdown_artifact(
        markdown=status_markdown(runtime, git, live, holds, at, waiting),
        key=STATUS_KEY,
        description=(
            "Per environment: version, Argo CD, Healthy since, freeze, soak; "
            "waiting approvals, holds"
        ),
    )
    return {
        "current": decision.current,
        "complete": list(decision.complete),
        "started": [
            {"version": r.version, "flow_run_id": r.flow_run_id, "new": r.new} for r in started
        ],
        "skipped": {s.version: s.why for s in decision.skipped},
        "enabled": config.watch.enabled,
    }
