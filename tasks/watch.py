"""Prefect tasks of release detection: read the holds, start a promotion once, read what runs.

``start_promotion`` creates a run of the ``promote-release`` deployment with an idempotency key
(``promotion.names.watch_idempotency_key``): the server hands back the run already created under
that key, so two watchers, or a watcher re-run, never start a version twice. ``read_live`` reads
what Argo CD runs in an environment for the status artifact, ``read_waiting`` the approvals that
wait (as ``release-promotion status`` lists them); neither fails the watcher.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL
from prefect.variables import Variable

from deployments.runs import WaitingApproval, waiting_approvals
from promotion.drift import split_image
from promotion.names import HOLDS_VARIABLE, watch_idempotency_key
from promotion.soak import live_since
from promotion.watch import parse_holds

__all__ = [
    "LiveState",
    "StartedRun",
    "read_holds",
    "read_live",
    "read_waiting",
    "start_promotion",
]


@dataclass(frozen=True)
class StartedRun:
    version: str
    flow_run_id: str
    flow_run_name: str
    new: bool  # False: a run under the same idempotency key existed already


@dataclass(frozen=True)
class LiveState:
    """What Argo CD reports for an environment (``error`` when it could not be read)."""

    sync: str = ""
    health: str = ""
    tags: tuple[str, ...] = ()
    healthy_since: datetime | None = None  # since when it runs what it runs, Healthy
    error: str = ""


@task(name="read-holds", cache_policy=NO_CACHE)
def read_holds(name: str = HOLDS_VARIABLE) -> dict[str, dict[str, Any]]:
    """The versions on hold: the Prefect Variable ``name`` as {version: {env, reason, at}}."""
    return parse_holds(Variable.get(name, default=None))


@task(name="start-promotion", task_run_name="start-promotion-{version}", cache_policy=NO_CACHE)
def start_promotion(
    deployment: str,
    version: str,
    initiator: str,
    repository: str,
    application: str | None = None,
) -> StartedRun:
    """Start ``deployment`` for ``version`` once (idempotency key ``watch-releases:<repo>:<v>``).

    Args:
        deployment: ``flow/deployment`` of the promotion (``promote-release/promote-release``).
        version: The release to promote.
        initiator: Who the run is started as (``watch.initiator`` of promotion.yaml).
        repository: The GitOps repository (part of the key).
        application: The application (passed on to the run when given).
    """
    key = watch_idempotency_key(repository, version)
    asked = datetime.now(UTC)
    with get_client(sync_client=True) as client:
        target = client.read_deployment_by_name(deployment)
        run = client.create_flow_run_from_deployment(
            target.id,
            parameters={"version": version, "initiator": initiator}
            | ({"application": application} if application else {}),
            idempotency_key=key,
            tags=["release-promotion", "watch-releases"],
        )
    created = run.created
    new = created is None or created >= asked.replace(microsecond=0)
    started = StartedRun(version, str(run.id), run.name, new)
    logger = get_run_logger()
    if new:
        logger.info("Started %s for %s (run %s, key %s)", deployment, version, run.name, key)
    else:
        logger.info(
            "%s for %s was already started (run %s, key %s)", deployment, version, run.name, key
        )
    return started


def _tags(images: list[str], image_names: set[str]) -> tuple[str, ...]:
    tags = set()
    for ref in images:
        name, tag = split_image(ref)
        if name in image_names and tag:
            tags.add(tag)
    return tuple(sorted(tags))


@task(name="read-live", task_run_name="read-live-{app}", cache_policy=NO_CACHE)
def read_live(argocd: Any, app: str, image_names: list[str]) -> LiveState:
    """What Argo CD runs for ``app`` (never raises: the error is in ``LiveState.error``).

    Args:
        argocd: An ``ArgoTarget`` (tasks.argocd).
        app: The Application.
        image_names: The release's image names (others are ignored).
    """
    try:
        with argocd.client() as client:
            application = client.get_app(app)
        status = application.status
        health = str(status.health.status or "")
        return LiveState(
            sync=str(status.sync.status or ""),
            health=health,
            tags=_tags(list(status.summary.images), set(image_names)),
            healthy_since=live_since(status.history, health),
        )
    except Exception as exc:  # status only: say why, never fail the watcher
        return LiveState(error=f"{type(exc).__name__}: {exc}")


@task(name="read-waiting", cache_policy=NO_CACHE)
def read_waiting(deployment: str, application: str) -> list[WaitingApproval] | str:
    """The approvals that wait: paused runs of ``deployment`` for ``application`` (never raises:
    the error, as text, instead).

    Args:
        deployment: ``flow/deployment`` of the promotion (``promote-release/promote-release``).
        application: The application.
    """
    api_url = PREFECT_API_URL.value()
    if not api_url:
        return "no Prefect API URL (an ephemeral server)"
    try:
        return waiting_approvals(api_url, application, deployment=deployment)
    except Exception as exc:  # status only: say why, never fail the watcher
        return f"{type(exc).__name__}: {exc}"
