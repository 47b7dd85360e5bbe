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
from dataclasses import dataclass, replace

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.runtime import load_setup
from promotion import gitops
from promotion.argocd import ArgoCDError
from promotion.config import Applications, ConfigError, PromotionConfig, Settings
from promotion.drift import (
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


UNOWNED = "(not in promotion.yaml)"


@dataclass(frozen=True)
class _Group:
    """The Argo CD applications audited against one application of the setup."""

    name: str  # "" in a single-application setup (today's report, unchanged)
    config: PromotionConfig | None  # None: labelled applications no application names
    live: list[LiveApp]


def _groups(setup: Applications, application: str | None, live: list[LiveApp]) -> list[_Group]:
    """Who audits which live application: a single-application setup audits every labelled
    one (as before applications had names); in a setup of several, each application audits
    the Argo CD applications its environments name, and the rest form their own group when
    every application is audited."""
    if len(setup.names) == 1:
        return [_Group("", setup.get(None), live)]
    owner = {
        env.argocd_app: name
        for name, config in setup.applications.items()
        for env in config.environments
    }
    names = [application] if application is not None else list(setup.names)
    groups = [
        _Group(name, setup.get(name), [a for a in live if owner.get(a.name) == name])
        for name in names
    ]
    rest = [a for a in live if a.name not in owner]
    if application is None and rest:
        groups.append(_Group(UNOWNED, None, rest))
    return groups


def _branch(revision: str, default: str) -> str:
    return default if revision in {"", "HEAD"} else revision.removeprefix("refs/heads/")


def _targets(
    envs: list[str],
    live: list[LiveApp],
    config: PromotionConfig | None,
    git_url: str | None,
) -> list[_Target]:
    """Every application to audit: Argo CD's, plus a configured one Argo CD does not have
    (``config`` None: Argo CD's only, those no application of the setup names)."""
    base = config.github.base_branch if config is not None else "main"
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
    configured = [e for e in config.environments if e.name in envs] if config is not None else []
    for env in configured:
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


def _audit(
    group: _Group,
    envs: list[str],
    targets: list[_Target],
    desired: dict[str, DesiredState],
    heads: dict[str, str],
    settings: Settings,
    check_release: bool,
    behind_release_is_drift: bool,
    include_prereleases: bool,
) -> DriftAudit:
    """Classify one group's applications against its own images and newest release."""
    config = group.config
    if config is None:
        release = ReleaseInfo.unknown("not described by any application of promotion.yaml")
    elif check_release:
        release = _release(config, settings, include_prereleases)
    else:
        release = ReleaseInfo.unknown("not checked (check_release is off)")
    services = {image: service for service, image in config.images().items()} if config else {}
    apps = [
        replace(
            classify(
                t.app,
                t.environment,
                t.live,
                desired.get(t.app),
                release,
                services,
                behind_is_drift=behind_release_is_drift,
            ),
            owner=group.name,
        )
        for t in targets
    ]
    notes: list[str] = []
    if config is None:
        notes.append(
            "these Argo CD applications carry the environment label but no application of "
            "promotion.yaml names them: compared with Git only"
        )
    elif release.error and check_release:
        notes.append(f"the newest release is unknown ({release.error}): not checked")
    elif check_release and release.version is None:
        notes.append("no release is published for every image in the registry: not checked")
    return DriftAudit(tuple(envs), tuple(apps), release, heads, tuple(notes))


def _publish(audits: list[DriftAudit], names: list[str], envs: list[str]) -> None:
    """One table and one report; in a setup of several applications, a section per application
    and an ``owner`` column (the promotion.yaml application)."""
    drifting = sum(a.drift_count for a in audits)
    if names == [""]:
        table, markdown = audits[0].table_rows(), audits[0].markdown()
    else:
        table = [
            {"owner": name, **row}
            for name, audit in zip(names, audits, strict=True)
            for row in audit.table_rows()
        ]
        total = sum(len(a.apps) for a in audits)
        lines = [
            f"# Drift audit: {', '.join(envs)} ({len(audits)} applications of promotion.yaml)",
            "",
            f"**{drifting} of {total} Argo CD applications drift.**"
            if drifting
            else f"**No drift**: all {total} Argo CD applications run what Git says.",
            "",
        ]
        for name, audit in zip(names, audits, strict=True):
            section = audit.markdown().split("\n", 1)[1]  # its own title line gives way to ours
            lines += [f"# {name}", section.replace("\n## ", "\n### ")]
        markdown = "\n".join(lines)
    create_table_artifact(
        table=table,
        key=TABLE_KEY,
        description=f"Drift per application and service ({', '.join(envs)})",
    )
    create_markdown_artifact(
        markdown=markdown,
        key=REPORT_KEY,
        description=f"Drift audit of {', '.join(envs)}: {drifting} drifting",
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
    application: str | None = None,
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
        application: In a setup of several applications, audit only this one (default: every
            application, plus the labelled Argo CD applications none of them names).
    """
    logger = get_run_logger()
    started = time.monotonic()
    envs = list(dict.fromkeys(environments or ["staging"]))
    try:
        setup, settings = load_setup(config_file)
        if application is not None:
            setup.get(application)  # an unknown name is refused here, naming the configured
        audited = [application] if application is not None else list(setup.names)
        known = {e.name for name in audited for e in setup.get(name).environments}
        unknown = [e for e in envs if e not in known]
        if unknown:
            raise ConfigError(
                f"unknown environment {unknown[0]!r}; configured: {', '.join(sorted(known))}"
            )
        if git_url is not None and len(audited) > 1:
            raise ConfigError(
                "git_url names one GitOps repository, and this setup describes "
                f"{len(audited)} applications: give the application too"
            )
        argocd_token = settings.secret("argocd_token")
    except ConfigError as exc:
        _publish_failure(f"Setup problem: {exc}", envs)
        raise DriftAuditFailed(f"the audit could not run: {exc}") from exc

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
        groups = _groups(setup, application, live)
        read = []
        for group in groups:
            targets = _targets(envs, group.live, group.config, git_url)
            read.append((group, targets, *_read_desired(targets, settings)))
        phase("git")
    except (ArgoCDError, DriftAuditFailed) as exc:
        reason = str(exc)
        if isinstance(exc, ArgoCDError):
            reason = f"cannot list the Argo CD applications at {settings.argocd_url}: {exc}"
        _publish_failure(reason, envs)
        raise DriftAuditFailed(f"the audit could not run: {reason}") from exc
    logger.info(
        "Auditing %d applications of %s (Argo CD selector %r)",
        sum(len(targets) for _, targets, _, _ in read),
        envs,
        selector,
    )

    audits: list[DriftAudit] = []
    for group, targets, desired, heads in read:
        audits.append(
            _audit(
                group,
                envs,
                targets,
                desired,
                heads,
                settings,
                check_release,
                behind_release_is_drift,
                include_prereleases,
            )
        )
    phase("registry+classify")
    drifting = [app for audit in audits for app in audit.drifting]
    _publish(audits, [g.name for g in groups], envs)
    phase("artifacts")

    for app in drifting[:MAX_LOGGED]:
        logger.warning("Drift in %s/%s: %s", app.environment, app.app, "; ".join(app.findings))
    if len(drifting) > MAX_LOGGED:
        logger.warning(
            "... and %d more drifting applications (see the %s artifact)",
            len(drifting) - MAX_LOGGED,
            TABLE_KEY,
        )
    if emit_events and drifting:
        drift_tasks.emit_drift_events(drifting)
    phase("events")
    logger.info(
        "Drift audit of %s: %d of %d applications drift (%.2fs: %s)",
        ", ".join(envs),
        len(drifting),
        sum(len(a.apps) for a in audits),
        time.monotonic() - started,
        ", ".join(f"{k} {v:.2f}s" for k, v in phases.items()),
    )
    return len(drifting)
