"""Prefect tasks of the drift audit: read Argo CD, the GitOps repository and the registry once each.

Each task takes plain values (URLs, tokens as ``SecretStr``), builds its client, makes its calls
and closes it; the number of calls does not grow with the number of applications: one Argo CD
list call narrowed with ``fields`` and a label selector, one shallow git fetch of every branch
the applications follow, one tag listing per image repository of the release. Retries happen
here only, for failures the client calls transient. Nothing is cached: the audit must see now.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from pydantic import SecretStr

from promotion import gitops
from promotion.argocd import AUTOSYNC_DISABLED_ANNOTATION, Application, ArgoCDClient
from promotion.argocd import is_transient as argocd_transient
from promotion.drift import AppDrift, LiveApp, ReleaseInfo
from promotion.registry import RegistryClient, RepositoryNotFound
from promotion.registry import is_transient as registry_transient
from tasks.retry import transient_retries

DRIFT_EVENT = "release-promotion.drift.detected"

# What the audit reads of each Application: the list answer is narrowed to these. Argo CD keeps
# only the keys of its fixed whitelist (``appFields`` in pkg/apiclient/application/
# forwarder_overwrite.go) and drops any other path silently: ``items.status.summary.images``,
# ``items.spec.source`` and (before 3.5) ``items.status.sync.revision`` would come back empty.
# ``items.status.operationState.operation.sync`` returns the last sync's *result* (its revision).
LIST_FIELDS = (
    "items.metadata.name",
    "items.metadata.labels",
    "items.metadata.annotations",
    "items.spec",
    "items.status.sync.status",
    "items.status.health",
    "items.status.summary",
    "items.status.operationState.operation.sync",
)


def to_live_app(app: Application, environment_label: str) -> LiveApp:
    source = app.spec.source
    return LiveApp(
        name=app.name,
        environment=app.metadata.labels.get(environment_label, ""),
        sync_status=app.status.sync.status,
        # sync.revision is outside the whitelist before Argo CD 3.5: the last sync's revision.
        sync_revision=app.status.sync.revision
        or (app.status.operation_state.revision if app.status.operation_state else ""),
        health_status=app.status.health.status,
        health_message=app.status.health.message,
        autosync_enabled=app.autosync_enabled,
        images=tuple(app.status.summary.images),
        repo_url=source.repo_url if source else "",
        path=source.path if source else "",
        target_revision=source.target_revision if source else "",
        autosync_disabled_at=app.metadata.annotations.get(AUTOSYNC_DISABLED_ANNOTATION),
    )


@task(
    name="list-argocd-apps",
    **transient_retries(argocd_transient),
)
def list_live_apps(
    argocd_url: str,
    token: SecretStr,
    selector: str,
    environment_label: str = "environment",
    timeout: float = 30.0,
) -> list[LiveApp]:
    """Every Application matching ``selector``, read with ONE list call narrowed to what we use."""
    with ArgoCDClient(argocd_url, token, timeout=timeout) as client:
        apps = client.list_apps(selector=selector, fields=LIST_FIELDS)
    return [to_live_app(a, environment_label) for a in apps]


@task(
    name="read-overlays",
    **transient_retries(gitops.is_transient),
)
def read_overlays(
    repo_url: str,
    wanted: Mapping[str, Sequence[str]],
    token: SecretStr | None = None,
    timeout: float = 120.0,
) -> dict[str, gitops.BranchFiles]:
    """The wanted files (branch -> paths) at the head of each branch, in one shallow fetch."""
    return gitops.read_files(repo_url, wanted, token, timeout=timeout)


@task(
    name="newest-release",
    **transient_retries(registry_transient),
)
def newest_release(
    registry_url: str,
    repositories: Sequence[str],
    username: str | None = None,
    password: SecretStr | None = None,
    include_prereleases: bool = False,
) -> ReleaseInfo:
    """The newest release published for every repository (one tag listing per repository).

    A repository the registry does not know counts as one without tags.
    """
    tags: dict[str, list[str]] = {}
    with RegistryClient(registry_url, username=username, password=password) as client:
        for repo in repositories:
            try:
                tags[repo] = client.list_tags(repo)
            except RepositoryNotFound:
                tags[repo] = []
    return ReleaseInfo.from_tags(tags, include_prereleases)


@task(name="emit-drift-events", cache_policy=NO_CACHE)
def emit_drift_events(drifting: Sequence[AppDrift]) -> int:
    """Emit ``release-promotion.drift.detected`` for each drifting application; return how many."""
    sent = 0
    for app in drifting:
        event = emit_event(
            event=DRIFT_EVENT,
            resource=app.event_resource(),
            related=[
                {
                    "prefect.resource.id": f"release-promotion.environment.{app.environment}",
                    "prefect.resource.role": "environment",
                    "prefect.resource.name": app.environment,
                }
            ],
            payload=app.event_payload(),
        )
        if event is not None:
            sent += 1
    return sent
