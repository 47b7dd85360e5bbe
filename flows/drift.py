"""The scheduled drift audit: does each environment run what Git says it should?

For the configured environments (default: staging) the flow reads, once each, the Argo CD
Applications of those environments (one list call narrowed with ``fields`` and a label
selector), the overlays they follow at the head of their branches (one shallow git fetch) and
the tags of the release's images in the registry, classifies every application with
``promotion.drift`` and publishes a table artifact (one row per application and service), a
markdown report and one ``release-promotion.drift.detected`` event per drifting application
(the automation in ``deployments/drift_automation.py`` turns those into notifications).
The run Completes with the number of drifting applications as its result; it Fails only when
the audit itself could not run, and then says why (also in the report artifact).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.runtime import load_runtime
from promotion import gitops
from promotion.argocd import ArgoCDError
from promotion.config import ConfigError, PromotionConfig, Settings
from promotion.drift import (
    AppDrift,
    DesiredState,
    DriftAudit,
    LiveApp,
    ReleaseInfo,
    classify,
    desired_from_overlay,
)
from tasks import drift as drift_tasks

REPORT_KEY = "drift-report"
TABLE_KEY = "drift-table"
MAX_LOGGED = 50  # drifting applications logged one by one; the artifacts hold them all


class DriftAuditFailed(RuntimeError):
    """The audit could not run (setup, Argo CD or the GitOps repository unreachable)."""


@dataclass(frozen=True)
class _Target:
    app: str
    environment: str
    live: LiveApp | None
    repo_url: str
    branch: str
    path: str


def _branch(revision: str, default: str) -> str:
    return default if revision in {"", "HEAD"} else revision.removeprefix("refs/heads/")


def _targets(
    envs: list[str],
    live: list[LiveApp],
    config: PromotionConfig,
    git_url: str | None,
) -> list[_Target]:
    """Every application to audit: Argo CD's, plus a configured one Argo CD does not have."""
    base = config.github.base_branch
    known_repo = git_url or next((a.repo_url for a in live if a.repo_url), "")
    targets = [
        _Target(
            app=a.name,
            environment=a.environment,
            live=a,
            repo_url=git_url or a.repo_url,
            branch=_branch(a.target_revision, base),
            path=a.path,
        )
        for a in sorted(live, key=lambda a: (a.environment, a.name))
        if a.environment in envs
    ]
    names = {t.app for t in targets}
    for env_name in envs:
        env = config.environment(env_name)
        if env.argocd_app not in names:
            targets.append(
                _Target(env.argocd_app, env.name, None, known_repo, base, env.overlay_dir)
            )
    return targets


def _read_desired(
    targets: list[_Target], settings: Settings
) -> tuple[dict[str, DesiredState], dict[str, str]]:
    """Desired state per application name, and the head revision per ``repo@branch``."""
    wanted: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for t in targets:
        if t.repo_url:
            wanted[t.repo_url][t.branch].update(gitops.kustomization_candidates(t.path))
    heads: dict[str, str] = {}
    files: dict[tuple[str, str], gitops.BranchFiles] = {}
    for repo_url, branches in wanted.items():
        token = settings.github_token
        if token is not None and not gitops.token_applies(settings.github_url, repo_url):
            token = None
        try:
            got = drift_tasks.read_overlays(
                repo_url, {b: sorted(p) for b, p in branches.items()}, token
            )
        except gitops.GitOpsError as exc:
            raise DriftAuditFailed(f"cannot read the GitOps repository: {exc}") from exc
        for branch, read in got.items():
            files[(repo_url, branch)] = read
            heads[f"{read.repo_url}@{branch}"] = read.revision
    desired: dict[str, DesiredState] = {}
    for t in targets:
        branch_files = files.get((t.repo_url, t.branch))
        if branch_files is None:
            desired[t.app] = DesiredState(t.path, "", None, "no repository URL known for it")
            continue
        found = gitops.pick_kustomization(branch_files.files, t.path)
        path, text = found if found else (None, None)
        desired[t.app] = desired_from_overlay(path, text, branch_files.revision)
    return desired, heads


def _release(config: PromotionConfig, settings: Settings, include_prereleases: bool) -> ReleaseInfo:
    logger = get_run_logger()
    registry_url = settings.registry_url or f"https://{config.registry.host}"
    repositories = [f"{config.registry.path}/{s}" for s in config.services]
    try:
        return drift_tasks.newest_release(
            registry_url,
            repositories,
            settings.registry_username,
            settings.registry_password,
            include_prereleases,
        )
    except Exception as exc:  # the Git/Argo CD comparison still stands without it
        logger.warning("Newest release unknown (registry %s): %s", registry_url, exc)
        return ReleaseInfo.unknown(f"registry unreadable: {exc}")


def _publish(audit: DriftAudit, envs: list[str]) -> None:
    create_table_artifact(
        table=audit.table_rows(),
        key=TABLE_KEY,
        description=f"Drift per application and service ({', '.join(envs)})",
    )
    create_markdown_artifact(
        markdown=audit.markdown(),
        key=REPORT_KEY,
        description=f"Drift audit of {', '.join(envs)}: {audit.drift_count} drifting",
    )


def _publish_failure(reason: str, envs: list[str]) -> None:
    try:
        create_markdown_artifact(
            markdown=f"# Drift audit: {', '.join(envs)}\n\n**The audit could not run.**\n\n"
            f"{reason}\n",
            key=REPORT_KEY,
            description="Drift audit failed",
        )
    except Exception as exc:  # never hide the audit's own error
        get_run_logger().warning("Could not publish the failure report: %s", exc)


@flow(name="audit-drift", log_prints=False)
def audit_drift(
    environments: list[str] | None = None,
    check_release: bool = True,
    behind_release_is_drift: bool = True,
    include_prereleases: bool = False,
    environment_label: str = "environment",
    git_url: str | None = None,
    emit_events: bool = True,
    config_file: str | None = None,
) -> int:
    """Compare what Git says each application should run with what Argo CD reports it runs.

    Publishes a table artifact (one row per application and service), a markdown report and a
    ``release-promotion.drift.detected`` event per drifting application. Returns the number of
    drifting applications; fails only when the audit itself cannot run.

    Args:
        environments: Environments to audit (default: ``["staging"]``). Their Argo CD
            Applications are those labelled ``<environment_label>=<environment>``, plus the
            application the promotion setup names for each.
        check_release: Read the registry for the newest release (off: no "behind" check).
        behind_release_is_drift: Count an application that runs an older version than the
            newest complete release in the registry as drifting.
        include_prereleases: Let pre-release tags (``v1.2.0-rc.1``) count as the newest release.
        environment_label: The Application label that names its environment.
        git_url: Clone URL of the GitOps repository (default: each Application's
            ``spec.source.repoURL``, the repository Argo CD itself follows).
        emit_events: Emit a ``release-promotion.drift.detected`` event per drifting application.
        config_file: Path of the promotion setup (default: ``RELEASE_PROMOTION_CONFIG_FILE`` or
            the project's ``promotion.yaml``).
    """
    logger = get_run_logger()
    started = time.monotonic()
    envs = list(dict.fromkeys(environments or ["staging"]))
    try:
        rt = load_runtime(config_file)
        for env in envs:
            rt.config.environment(env)
        argocd_token = rt.settings.secret("argocd_token")
    except ConfigError as exc:
        _publish_failure(f"Setup problem: {exc}", envs)
        raise DriftAuditFailed(f"the audit could not run: {exc}") from exc
    config, settings = rt.config, rt.settings

    selector = f"{environment_label} in ({','.join(envs)})"
    phases: dict[str, float] = {}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases[name] = now - mark
        mark = now

    try:
        live = drift_tasks.list_live_apps(
            settings.argocd_url, argocd_token, selector, environment_label
        )
        phase("argocd")
        targets = _targets(envs, live, config, git_url)
        desired, heads = _read_desired(targets, settings)
        phase("git")
    except (ArgoCDError, DriftAuditFailed) as exc:
        reason = str(exc)
        if isinstance(exc, ArgoCDError):
            reason = f"cannot list the Argo CD applications at {settings.argocd_url}: {exc}"
        _publish_failure(reason, envs)
        raise DriftAuditFailed(f"the audit could not run: {reason}") from exc
    logger.info(
        "Auditing %d applications of %s (Argo CD selector %r)", len(targets), envs, selector
    )

    release = (
        _release(config, settings, include_prereleases)
        if check_release
        else ReleaseInfo.unknown("not checked (check_release is off)")
    )
    phase("registry")
    services = {image: service for service, image in config.images().items()}
    apps: list[AppDrift] = [
        classify(
            t.app,
            t.environment,
            t.live,
            desired.get(t.app),
            release,
            services,
            behind_is_drift=behind_release_is_drift,
        )
        for t in targets
    ]
    notes: list[str] = []
    if release.error and check_release:
        notes.append(f"the newest release is unknown ({release.error}): not checked")
    elif check_release and release.version is None:
        notes.append("no release is published for every image in the registry: not checked")
    audit = DriftAudit(tuple(envs), tuple(apps), release, heads, tuple(notes))
    phase("classify")
    _publish(audit, envs)
    phase("artifacts")

    for app in audit.drifting[:MAX_LOGGED]:
        logger.warning("Drift in %s/%s: %s", app.environment, app.app, "; ".join(app.findings))
    if audit.drift_count > MAX_LOGGED:
        logger.warning(
            "... and %d more drifting applications (see the %s artifact)",
            audit.drift_count - MAX_LOGGED,
            TABLE_KEY,
        )
    if emit_events and audit.drifting:
        drift_tasks.emit_drift_events(list(audit.drifting))
    phase("events")
    logger.info(
        "Drift audit of %s: %d of %d applications drift (%.2fs: %s)",
        ", ".join(envs),
        audit.drift_count,
        len(audit.apps),
        time.monotonic() - started,
        ", ".join(f"{k} {v:.2f}s" for k, v in phases.items()),
    )
    return audit.drift_count
