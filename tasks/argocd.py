"""Prefect tasks over the Argo CD client: build the client from plain values, call it, log.

Every task takes an ``ArgoTarget`` (plain, serializable values: the Argo CD URL and the token as
a ``SecretStr`` or the name of a Prefect Secret block) rather than a live client, builds a
``promotion.argocd.ArgoCDClient``, makes one call and closes it. Retries live
here and only here, for failures ``promotion.argocd.is_transient`` accepts (5xx, 429, timeouts,
connection errors, "another operation is already in progress"); Degraded, Failed, timed-out and
refused deployments fail the task at once. Every task polls or writes, so none is cached.

A rollback is two tasks: ``rollback_target`` resolves "previous" to a history id once, then
``rollback_app`` rolls back to that id (idempotent, so a retry never rolls back twice);
``rollback`` runs both.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Literal

from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel, ConfigDict, SecretStr

from promotion.argocd import (
    Application,
    ArgoCDClient,
    ArgoCDError,
    Deployed,
    RevisionHistory,
    RolledBack,
    is_transient,
)
from promotion.config import Settings
from promotion.github import GitHubClient
from tasks.github import GitHubTarget
from tasks.retry import transient_retries
from tasks.secrets import read_secret_block

DEFAULT_TOKEN_BLOCK = Settings.SECRET_BLOCKS["argocd_token"]

__all__ = [
    "ArgoTarget",
    "autosync_reenabled",
    "confirm_deployed",
    "get_app",
    "get_revision",
    "list_apps",
    "resume_autosync",
    "rollback",
    "rollback_app",
    "rollback_target",
]

RETRY = transient_retries(is_transient)


class ArgoTarget(BaseModel):
    """Where Argo CD is and how to authenticate (safe to pass to tasks).

    Give ``token`` (kept as a ``SecretStr``: it prints as ``**********``) or the name of a
    Prefect Secret block in ``token_block``.
    """

    model_config = ConfigDict(frozen=True)

    base_url: str
    token: SecretStr | None = None
    token_block: str | None = None
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ArgoTarget:
        """Build from the endpoint settings; without a token, name the default Secret block."""
        return cls(
            base_url=settings.argocd_url,
            token=settings.argocd_token,
            token_block=None if settings.argocd_token is not None else DEFAULT_TOKEN_BLOCK,
        )

    def resolve_token(self) -> SecretStr:
        if self.token is not None:
            return self.token
        if self.token_block is None:
            raise ArgoCDError(f"no Argo CD token and no Secret block given for {self.base_url}")
        return read_secret_block(self.token_block, f"Argo CD token for {self.base_url}")

    def client(self) -> ArgoCDClient:
        return ArgoCDClient(self.base_url, self.resolve_token(), timeout=self.timeout)


def _client(target: ArgoTarget) -> ArgoCDClient:
    return target.client()


@task(name="argocd-get-app", task_run_name="argocd-get-app-{app}", **RETRY)
def get_app(
    target: ArgoTarget,
    app: str,
    refresh: Literal["normal", "hard"] | None = None,
) -> Application:
    """Read an Argo CD Application.

    Args:
        target: Where Argo CD is and the token.
        app: The Application name.
        refresh: "normal" or "hard" to make Argo CD compare with git before answering.

    Returns:
        The Application (sync, health, operation state, history, images).
    """
    with _client(target) as client:
        return client.get_app(app, refresh=refresh)


@task(name="argocd-list-apps", **RETRY)
def list_apps(target: ArgoTarget, selector: str | None = None) -> list[Application]:
    """List Argo CD Applications.

    Args:
        target: Where Argo CD is and the token.
        selector: A label selector such as ``environment=prod``.

    Returns:
        The matching Applications.
    """
    with _client(target) as client:
        return client.list_apps(selector=selector)


@task(name="confirm-deployed", task_run_name="confirm-deployed-{app}", **RETRY)
def confirm_deployed(
    target: ArgoTarget,
    app: str,
    revision: str,
    timeout: float = 300.0,
    poll_interval: float = 2.0,
    repository: GitHubTarget | None = None,
    expected_images: dict[str, str] | None = None,
) -> Deployed:
    """Wait until Argo CD runs the change merged as ``revision`` on ``app``, synced and Healthy.

    Confirmed when the last sync operation Succeeded at ``revision`` (or a later commit that
    contains it), the app is Synced and Healthy now (reconciled after that operation) and, with
    ``expected_images``, the live images carry exactly those tags. The branch head may have
    moved on: a commit that does not change the app's manifests starts no sync.

    Args:
        target: Where Argo CD is and the token.
        app: The Application name.
        revision: The commit SHA that must be deployed (the merge commit).
        timeout: Seconds to wait before failing with the last state seen (keep it above the
            Deployments' progress deadline, 600 s by default: ``Settings.deploy_timeout``).
        poll_interval: Seconds between reads when Argo CD's watch stream is unavailable.
        repository: The GitOps repository: when given, a later commit that contains
            ``revision`` (another merge landed before Argo CD synced) also confirms it.
        expected_images: Image name -> tag our change set (for example
            ``{"registry.digitalocean.com/microservices-demo/frontend": "v1.0.1"}``); a later
            change to those images (newer release, revert) raises ``DeploymentSuperseded``.

    Returns:
        What was confirmed: revision (the commit that really runs), health, history id, seconds.
    """
    logger = get_run_logger()
    with ExitStack() as stack:
        contains = None
        if repository is not None:
            github: list[GitHubClient] = []  # opened only if Argo CD shows another commit

            def contains(commit: str) -> bool:
                if not github:
                    github.append(stack.enter_context(repository.client()))
                return github[0].contains(commit, revision)

        client = stack.enter_context(_client(target))
        deployed = client.confirm_deployed(
            app,
            revision,
            expected_images=expected_images,
            timeout=timeout,
            poll_interval=poll_interval,
            contains=contains,
        )
    if deployed.revision != revision:
        logger.info(
            "%s synced the later commit %s, which contains %s",
            app,
            deployed.revision[:12],
            revision[:12],
        )
    logger.info(
        "%s runs %s, Healthy (history id %s) after %.1fs",
        app,
        deployed.revision[:12],
        deployed.history_id,
        deployed.seconds,
    )
    return deployed


@task(name="argocd-rollback-target", task_run_name="argocd-rollback-target-{app}", **RETRY)
def rollback_target(
    target: ArgoTarget, app: str, to: Literal["previous"] | int = "previous"
) -> RevisionHistory:
    """Resolve which history entry a rollback of ``app`` goes to.

    Args:
        target: Where Argo CD is and the token.
        app: The Application name.
        to: "previous" (the last deployment of another revision) or a history id.

    Returns:
        The history entry (id, revision, deployedAt).
    """
    with _client(target) as client:
        return client.rollback_target(app, to)


@task(name="argocd-rollback", task_run_name="argocd-rollback-{app}-to-{history_id}", **RETRY)
def rollback_app(
    target: ArgoTarget,
    app: str,
    history_id: int,
    timeout: float = 300.0,
    poll_interval: float = 2.0,
) -> RolledBack:
    """Roll ``app`` back to a history entry through Argo CD (auto-sync is turned off first).

    Args:
        target: Where Argo CD is and the token.
        app: The Application name.
        history_id: The history id to roll back to (see ``rollback_target``).
        timeout: Seconds to wait for the old revision to be Healthy.
        poll_interval: Seconds between reads.

    Returns:
        The rollback: from and to revisions, history id, seconds, warnings (issue 5351).
    """
    logger = get_run_logger()
    with _client(target) as client:
        result = client.rollback(app, history_id, timeout=timeout, poll_interval=poll_interval)
    logger.info(
        "%s rolled back from %s to %s in %.1fs; auto-sync stays off until resumed",
        app,
        result.from_revision[:12],
        result.to_revision[:12],
        result.seconds,
    )
    for warning in result.warnings:
        logger.warning(warning)
    return result


@task(name="argocd-resume-autosync", task_run_name="argocd-resume-autosync-{app}", **RETRY)
def resume_autosync(target: ArgoTarget, app: str) -> bool:
    """Turn auto-sync of ``app`` back on (prune and selfHeal kept).

    Args:
        target: Where Argo CD is and the token.
        app: The Application name.

    Returns:
        Whether auto-sync is on afterwards.
    """
    with _client(target) as client:
        return client.resume_autosync(app).autosync_enabled


@task(name="argocd-autosync-reenabled", task_run_name="argocd-autosync-reenabled-{app}", **RETRY)
def autosync_reenabled(target: ArgoTarget, app: str) -> bool:
    """Whether auto-sync came back on by itself after a rollback (Argo CD issue 5351).

    Args:
        target: Where Argo CD is and the token.
        app: The Application name.

    Returns:
        True when the Application is managed from Git and undid the auto-sync switch-off.
    """
    with _client(target) as client:
        reenabled = client.autosync_reenabled(app)
    if reenabled:
        get_run_logger().warning("%s: auto-sync came back on by itself (issue 5351)", app)
    return reenabled


@task(name="argocd-deployed-revision", task_run_name="argocd-deployed-revision-{app}", **RETRY)
def get_revision(target: ArgoTarget, app: str) -> str:
    """The revision ``app`` runs now (its latest deployment).

    Args:
        target: Where Argo CD is and the token.
        app: The Application name.

    Returns:
        The commit SHA of the latest deployment ("" if it never deployed).
    """
    with _client(target) as client:
        return client.deployed_revision(app)


def rollback(
    target: ArgoTarget,
    app: str,
    to: Literal["previous"] | int = "previous",
    *,
    timeout: float = 300.0,
    poll_interval: float = 2.0,
) -> RolledBack:
    """Roll ``app`` back through Argo CD: resolve the history entry once, then roll back to it.

    Not a task itself: it runs ``rollback_target`` and ``rollback_app`` (call it in a flow), so a
    retried rollback cannot resolve "previous" a second time and go back to the bad revision.

    Args:
        target: Where Argo CD is and the token.
        app: The Application name.
        to: "previous" or an Argo CD history id.
        timeout: Seconds to wait for the old revision to be Healthy.
        poll_interval: Seconds between reads.

    Returns:
        The rollback (``warning`` is set when auto-sync came back on by itself, issue 5351).
    """
    entry = rollback_target(target, app, to)
    result: RolledBack = rollback_app(
        target, app, entry.id, timeout=timeout, poll_interval=poll_interval
    )
    return result
