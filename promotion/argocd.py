"""Argo CD client: read Applications, confirm a revision is deployed and healthy, roll back.

The client speaks Argo CD's REST API (``/api/v1/applications``) over an injectable ``httpx``
client with a bearer token, and reads the answers into small pydantic models of the fields this
project depends on. "Deployed" means: the Application's sync revision is the merge commit, the
sync operation for that commit Succeeded, and health Healthy was observed after that operation
finished (``status.reconciledAt`` not older than ``operationState.finishedAt``).

Rollback through Argo CD needs auto-sync off first: Argo CD refuses a rollback with
FailedPrecondition "rollback cannot be initiated when auto-sync is enabled". ``rollback`` turns
auto-sync off with a merge patch of ``spec.syncPolicy.automated.enabled=false`` (``prune`` and
``selfHeal`` kept), marks the Application with the annotation ``AUTOSYNC_DISABLED_ANNOTATION``,
rolls back and waits until the old revision is healthy.

**The issue-5351 trap** (argoproj/argo-cd#5351): when the Application itself is managed from Git
(an app of apps, an ApplicationSet, or any controller applying its manifest), that parent puts
the spec from Git back, so ``automated`` comes back on by itself a moment after we turned it off,
and the next reconciliation syncs the branch head again: the rollback is silently undone.
``autosync_reenabled(app)`` detects it (our annotation is still there, yet auto-sync is on), and
``rollback`` reports it as a warning in ``RolledBack.warnings`` (or raises ``RollbackUndone``
when the Application already moved off the rolled-back revision). The cure is to change the
parent's source in Git (or use a revert pull request), not to retry.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

AUTOSYNC_DISABLED_ANNOTATION = "release-promotion.io/autosync-disabled-at"
TRAP_5351 = (
    "auto-sync came back on by itself after it was turned off for the rollback: the Application "
    "is probably managed from Git (app of apps; Argo CD issue 5351), so the next reconciliation "
    "will sync the branch head again and undo the rollback; revert in Git instead"
)

# ----------------------------------------------------------------------------------------------
# Exceptions


class ArgoCDError(Exception):
    """Base of every Argo CD failure; ``app`` names the Application when known."""

    def __init__(self, message: str, *, app: str | None = None) -> None:
        super().__init__(message)
        self.app = app


class ArgoCDUnavailable(ArgoCDError):
    """Argo CD could not be reached (connection error or timeout): transient."""


class ArgoCDRequestFailed(ArgoCDError):
    """Argo CD answered an error (``status_code``, gRPC ``code`` and its message)."""

    def __init__(
        self,
        message: str,
        *,
        app: str | None = None,
        status_code: int | None = None,
        code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, app=app)
        self.status_code = status_code
        self.code = code
        self.retry_after = retry_after


class ArgoCDAuthFailed(ArgoCDRequestFailed):
    """The token is missing or invalid (401) or lacks the permission (403)."""


class ApplicationNotFound(ArgoCDRequestFailed):
    """No Application of that name."""


class OperationInProgress(ArgoCDRequestFailed):
    """Argo CD refused: another operation is already in progress (transient)."""


class RollbackRefused(ArgoCDRequestFailed):
    """A rollback was refused (auto-sync on, unknown history id, nothing to roll back to)."""


class RollbackUndone(ArgoCDError):
    """The Application moved off the rolled-back revision (see the issue-5351 trap)."""


class DeploymentDegraded(ArgoCDError):
    """The revision was synced but the Application became Degraded."""


class DeploymentFailed(ArgoCDError):
    """The sync operation for the revision Failed (for example, kustomize could not render)."""


class DeploymentTimedOut(ArgoCDError):
    """The revision was not confirmed deployed in time; the message holds the last state seen."""


TRANSIENT_STATUS = {429, 500, 502, 503, 504}


def is_transient(exc: BaseException) -> bool:
    """Whether retrying ``exc`` may help: 5xx/429, timeouts, connection errors, busy operations."""
    if isinstance(exc, ArgoCDUnavailable | OperationInProgress):
        return True
    if isinstance(exc, ArgoCDRequestFailed):
        return exc.status_code is not None and (
            exc.status_code in TRANSIENT_STATUS or exc.status_code >= 500
        )
    return isinstance(exc, httpx.TimeoutException | httpx.TransportError)


# ----------------------------------------------------------------------------------------------
# Models of what we read (Argo CD's field names as aliases; unknown fields ignored)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class ApplicationSource(_Model):
    repo_url: str = Field("", alias="repoURL")
    path: str = ""
    target_revision: str = Field("", alias="targetRevision")


class SyncPolicyAutomated(_Model):
    enabled: bool | None = None
    prune: bool = False
    self_heal: bool = Field(False, alias="selfHeal")


class SyncPolicy(_Model):
    automated: SyncPolicyAutomated | None = None


class ApplicationSpec(_Model):
    source: ApplicationSource | None = None
    sync_policy: SyncPolicy | None = Field(None, alias="syncPolicy")
    revision_history_limit: int | None = Field(None, alias="revisionHistoryLimit")


class ApplicationMetadata(_Model):
    name: str = ""
    namespace: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class SyncStatus(_Model):
    status: str = "Unknown"
    revision: str = ""


class HealthStatus(_Model):
    status: str = "Unknown"
    message: str = ""


class SyncOperation(_Model):
    revision: str = ""


class Operation(_Model):
    sync: SyncOperation | None = None


class SyncOperationResult(_Model):
    revision: str = ""


class OperationState(_Model):
    phase: str = ""
    message: str = ""
    started_at: datetime | None = Field(None, alias="startedAt")
    finished_at: datetime | None = Field(None, alias="finishedAt")
    sync_result: SyncOperationResult | None = Field(None, alias="syncResult")
    operation: Operation | None = None

    @property
    def revision(self) -> str:
        """The revision the operation was about (its result, else what it was asked for)."""
        if self.sync_result is not None and self.sync_result.revision:
            return self.sync_result.revision
        if self.operation is not None and self.operation.sync is not None:
            return self.operation.sync.revision
        return ""


class RevisionHistory(_Model):
    id: int
    revision: str = ""
    deployed_at: datetime | None = Field(None, alias="deployedAt")
    source: ApplicationSource | None = None


class ApplicationCondition(_Model):
    type: str = ""
    message: str = ""


class ApplicationSummary(_Model):
    images: list[str] = Field(default_factory=list)


class AppStatus(_Model):
    sync: SyncStatus = Field(default_factory=SyncStatus)
    health: HealthStatus = Field(default_factory=HealthStatus)
    operation_state: OperationState | None = Field(None, alias="operationState")
    history: list[RevisionHistory] = Field(default_factory=list)
    summary: ApplicationSummary = Field(default_factory=ApplicationSummary)
    conditions: list[ApplicationCondition] = Field(default_factory=list)
    reconciled_at: datetime | None = Field(None, alias="reconciledAt")


class Application(_Model):
    metadata: ApplicationMetadata = Field(default_factory=ApplicationMetadata)
    spec: ApplicationSpec = Field(default_factory=ApplicationSpec)
    status: AppStatus = Field(default_factory=AppStatus)
    operation: Operation | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def automated(self) -> SyncPolicyAutomated | None:
        return self.spec.sync_policy.automated if self.spec.sync_policy else None

    @property
    def autosync_enabled(self) -> bool:
        """Auto-sync is on: ``automated`` is set and not explicitly ``enabled: false``."""
        automated = self.automated
        return automated is not None and automated.enabled is not False

    def describe(self) -> str:
        """One line of the state that matters for a deployment, for messages."""
        op = self.status.operation_state
        op_text = (
            f"operation {op.phase or '?'} at {_short(op.revision)}"
            + (f" ({op.message})" if op.message and op.phase != "Succeeded" else "")
            if op is not None
            else "no operation"
        )
        health = self.status.health
        return (
            f"sync {self.status.sync.status} at {_short(self.status.sync.revision)}, {op_text}, "
            f"health {health.status}" + (f" ({health.message})" if health.message else "")
        )


_TRANSIENT_COMPARISON = (
    "code = Unavailable",
    "code = DeadlineExceeded",
    "context deadline exceeded",
    "connection refused",
    "i/o timeout",
    "EOF",
)


def _raise_on_comparison_error(current: Application, app: str, revision: str) -> None:
    """Fail fast when Argo CD cannot generate the manifests of ``revision``.

    Argo CD does not auto-sync an Application whose sync status is Unknown: with a
    ComparisonError (kustomize failed) at the target revision no operation ever starts, so
    waiting would only time out. A repo-server outage is also a ComparisonError: keep waiting
    on those.
    """
    sync = current.status.sync
    if sync.revision != revision or sync.status != "Unknown":
        return
    for condition in current.status.conditions:
        if condition.type == "ComparisonError" and not any(
            marker in condition.message for marker in _TRANSIENT_COMPARISON
        ):
            raise DeploymentFailed(
                f"[{app}] Argo CD cannot render revision {_short(revision)}: {condition.message}",
                app=app,
            )


def _short(revision: str) -> str:
    return revision[:12] if revision else "-"


# ----------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Deployed:
    """A revision confirmed deployed and healthy."""

    app: str
    revision: str
    health: str
    history_id: int | None
    seconds: float
    finished_at: datetime | None


@dataclass(frozen=True)
class RolledBack:
    """A rollback confirmed healthy at the old revision; ``warnings`` holds the 5351 trap."""

    app: str
    from_revision: str
    to_revision: str
    history_id: int | None
    seconds: float
    autosync_reenabled: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def warning(self) -> str | None:
        """The warnings as one line, or None."""
        return "; ".join(self.warnings) or None


# ----------------------------------------------------------------------------------------------
# Client


class ArgoCDClient:
    """A client of one Argo CD API server.

    Args:
        base_url: The Argo CD server, for example ``https://argocd.example.com``.
        token: An Argo CD API token (sent as a bearer token; never printed).
        http: The ``httpx.Client`` to use (its transport decides where requests go); by default
            the client builds and owns one with ``timeout``.
        timeout: Per-request timeout of the default ``httpx.Client``.
        sleep: How to wait between polls (tests may pass a fake).
        clock: A monotonic clock in seconds.
    """

    def __init__(
        self,
        base_url: str,
        token: SecretStr | str,
        *,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout)
        self._sleep = sleep
        self._clock = clock

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> ArgoCDClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        app: str | None = None,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Any:
        url = f"{self.base_url}{path}"
        headers = {
            "Authorization": f"Bearer {self._token.get_secret_value()}",
            "Accept": "application/json",
        }
        where = f"[{app}] " if app else ""
        try:
            response = self._http.request(
                method, url, params=dict(params or {}), json=body, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise ArgoCDUnavailable(
                f"{where}{method} {path}: Argo CD did not answer in time ({type(exc).__name__})",
                app=app,
            ) from exc
        except httpx.TransportError as exc:
            raise ArgoCDUnavailable(
                f"{where}{method} {path}: cannot reach Argo CD at {self.base_url}: {exc}", app=app
            ) from exc
        if response.is_success:
            if not response.content:
                return {}
            return response.json()
        raise self._error(response, method, path, app)

    @staticmethod
    def _error(
        response: httpx.Response, method: str, path: str, app: str | None
    ) -> ArgoCDRequestFailed:
        code: int | None = None
        text = response.text[:500]
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            text = str(payload.get("message") or payload.get("error") or text)
            raw_code = payload.get("code")
            code = raw_code if isinstance(raw_code, int) else None
        retry_after: float | None = None
        header = response.headers.get("retry-after")
        if header:
            try:
                retry_after = float(header)
            except ValueError:
                retry_after = None
        status = response.status_code
        where = f"[{app}] " if app else ""
        message = f"{where}{method} {path} failed with HTTP {status}: {text}"
        kind: type[ArgoCDRequestFailed] = ArgoCDRequestFailed
        if status in {401, 403}:
            kind = ArgoCDAuthFailed
        elif status == 404:
            kind = ApplicationNotFound
        elif "another operation is already in progress" in text:
            kind = OperationInProgress
        elif "rollback cannot be initiated" in text:
            kind = RollbackRefused
        return kind(message, app=app, status_code=status, code=code, retry_after=retry_after)

    # -- reads ----------------------------------------------------------------------------------

    def get_app(self, app: str, refresh: Literal["normal", "hard"] | None = None) -> Application:
        """Read the Application; with ``refresh`` Argo CD reconciles it with git first."""
        params = {"refresh": refresh} if refresh else None
        data = self._request("GET", f"/api/v1/applications/{app}", app=app, params=params)
        return Application.model_validate(data)

    def list_apps(
        self, selector: str | None = None, fields: Sequence[str] | str | None = None
    ) -> list[Application]:
        """List Applications, narrowed by a label ``selector`` and to ``fields`` (dotted paths).

        Example: ``list_apps("environment=prod", ["items.metadata.name", "items.status.sync"])``.
        """
        params: dict[str, str] = {}
        if selector:
            params["selector"] = selector
        if fields:
            params["fields"] = fields if isinstance(fields, str) else ",".join(fields)
        data = self._request("GET", "/api/v1/applications", params=params)
        items = data.get("items") if isinstance(data, dict) else None
        return [Application.model_validate(item) for item in items or []]

    def deployed_revision(self, app: str) -> str:
        """The revision of the latest deployment of ``app`` ("" if it never deployed)."""
        current = self.get_app(app)
        history = current.status.history
        return history[-1].revision if history else ""

    # -- operations ---------------------------------------------------------------------------

    def sync(self, app: str, revision: str | None = None, *, prune: bool = False) -> Application:
        """Start a sync of ``app`` (to ``revision``, default its target revision).

        Raises ``OperationInProgress`` while another operation runs (transient).
        """
        body: dict[str, Any] = {"prune": prune}
        if revision:
            body["revision"] = revision
        data = self._request("POST", f"/api/v1/applications/{app}/sync", app=app, body=body)
        return Application.model_validate(data)

    def terminate_operation(self, app: str) -> None:
        """Terminate the running operation of ``app``."""
        self._request("DELETE", f"/api/v1/applications/{app}/operation", app=app)

    # -- confirmation ---------------------------------------------------------------------------

    def confirm_deployed(
        self,
        app: str,
        revision: str,
        *,
        timeout: float = 300.0,
        poll_interval: float = 1.0,
        contains: Callable[[str], bool] | None = None,
    ) -> Deployed:
        """Wait until ``revision`` is deployed and healthy on ``app``.

        Refreshes first (so the answer does not wait for Argo CD's git poll), then polls until
        the sync revision is ``revision``, the operation for it Succeeded and health Healthy was
        observed after the operation finished.

        ``contains(sha)`` answers whether a later commit includes ``revision``. When another
        merge lands on the branch before Argo CD syncs (staging and prod may follow one branch),
        Argo CD goes straight to that later commit; if it contains ``revision``, confirming the
        later commit confirms ours, and the result names the commit that really runs.

        Raises:
            DeploymentDegraded: health went Degraded after the sync (message included).
            DeploymentFailed: the sync operation for the revision failed.
            DeploymentTimedOut: not confirmed within ``timeout``; reports the last state seen.
        """
        return self._wait_healthy(
            app,
            revision,
            timeout=timeout,
            poll_interval=poll_interval,
            rollback=False,
            contains=contains,
        )

    def _wait_healthy(
        self,
        app: str,
        revision: str,
        *,
        timeout: float,
        poll_interval: float,
        rollback: bool,
        started: float | None = None,
        contains: Callable[[str], bool] | None = None,
    ) -> Deployed:
        start = self._clock() if started is None else started
        deadline = self._clock() + timeout
        # A rollback leaves the branch head (and so the sync revision) elsewhere: no refresh.
        current = self.get_app(app) if rollback else self.get_app(app, refresh="normal")
        judged: set[str] = {revision}
        while True:
            seen = current.status.sync.revision
            if contains is not None and seen and seen not in judged:
                judged.add(seen)
                if contains(seen):
                    revision = seen  # a later commit that includes ours: confirm that one
            deployed = self._verdict(current, app, revision, rollback=rollback, start=start)
            if deployed is not None:
                return deployed
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise DeploymentTimedOut(
                    f"[{app}] revision {_short(revision)} not confirmed deployed within "
                    f"{timeout:g}s; last seen: {current.describe()}",
                    app=app,
                )
            self._sleep(min(poll_interval, remaining))
            stale = not rollback and current.status.sync.revision != revision
            current = self.get_app(app, refresh="normal" if stale else None)

    def _verdict(
        self, current: Application, app: str, revision: str, *, rollback: bool, start: float
    ) -> Deployed | None:
        op = current.status.operation_state
        if not rollback and (op is None or op.revision != revision or op.phase != "Succeeded"):
            _raise_on_comparison_error(current, app, revision)
        if op is None or op.revision != revision:
            if rollback and op is not None and op.phase and current.autosync_enabled:
                raise RollbackUndone(
                    f"[{app}] the rollback to {_short(revision)} was replaced by an operation at "
                    f"{_short(op.revision)}: {TRAP_5351}",
                    app=app,
                )
            return None
        if op.phase in {"Failed", "Error"}:
            raise DeploymentFailed(
                f"[{app}] sync of revision {_short(revision)} {op.phase}: {op.message}", app=app
            )
        if op.phase != "Succeeded":
            return None
        if not rollback and current.status.sync.revision != revision:
            return None
        reconciled, finished = current.status.reconciled_at, op.finished_at
        if reconciled is None or finished is None or reconciled < finished:
            return None  # health not yet assessed after the operation
        health = current.status.health
        if health.status == "Degraded":
            raise DeploymentDegraded(
                f"[{app}] revision {_short(revision)} is Degraded: "
                f"{health.message or 'no message from Argo CD'}",
                app=app,
            )
        if health.status != "Healthy":
            return None
        history_id = next(
            (h.id for h in reversed(current.status.history) if h.revision == revision), None
        )
        return Deployed(
            app=app,
            revision=revision,
            health=health.status,
            history_id=history_id,
            seconds=round(self._clock() - start, 3),
            finished_at=finished,
        )

    # -- auto-sync and rollback -----------------------------------------------------------------

    def _patch(self, app: str, patch: Mapping[str, Any]) -> Application:
        body = {"patch": json.dumps(patch), "patchType": "merge"}
        data = self._request("PATCH", f"/api/v1/applications/{app}", app=app, body=body)
        return Application.model_validate(data)

    def disable_autosync(self, app: str) -> Application:
        """Turn auto-sync off (``automated.enabled=false``, prune/selfHeal kept) and mark it."""
        current = self.get_app(app)
        automated = current.automated or SyncPolicyAutomated()
        patched = self._patch(
            app,
            {
                "metadata": {
                    "annotations": {
                        AUTOSYNC_DISABLED_ANNOTATION: datetime.now(UTC).strftime(
                            "%Y-%m-%dT%H:%M:%SZ"
                        )
                    }
                },
                "spec": {
                    "syncPolicy": {
                        "automated": {
                            "enabled": False,
                            "prune": automated.prune,
                            "selfHeal": automated.self_heal,
                        }
                    }
                },
            },
        )
        if patched.autosync_enabled:
            raise ArgoCDError(
                f"[{app}] auto-sync is still enabled after patching automated.enabled=false "
                "(an Argo CD older than 3.0 ignores the field; set syncPolicy.automated to null)",
                app=app,
            )
        return patched

    def resume_autosync(self, app: str) -> Application:
        """Turn auto-sync back on (prune/selfHeal kept) and remove the rollback mark."""
        current = self.get_app(app)
        automated = current.automated or SyncPolicyAutomated()
        return self._patch(
            app,
            {
                "metadata": {"annotations": {AUTOSYNC_DISABLED_ANNOTATION: None}},
                "spec": {
                    "syncPolicy": {
                        "automated": {
                            "enabled": True,
                            "prune": automated.prune,
                            "selfHeal": automated.self_heal,
                        }
                    }
                },
            },
        )

    def autosync_reenabled(self, app: str) -> bool:
        """Whether auto-sync came back on by itself after a rollback turned it off (issue 5351).

        True when the Application still carries our ``AUTOSYNC_DISABLED_ANNOTATION`` (set by
        ``rollback``, removed by ``resume_autosync``) but auto-sync is on again.
        """
        current = self.get_app(app)
        return AUTOSYNC_DISABLED_ANNOTATION in current.metadata.annotations and (
            current.autosync_enabled
        )

    def _post_rollback(self, app: str, history_id: int, prune: bool) -> None:
        try:
            self._request(
                "POST",
                f"/api/v1/applications/{app}/rollback",
                app=app,
                body={"id": history_id, "prune": prune, "dryRun": False},
            )
        except RollbackRefused as exc:
            if self.autosync_reenabled(app):
                raise RollbackRefused(
                    f"{exc}; {TRAP_5351}", app=app, status_code=exc.status_code, code=exc.code
                ) from exc
            raise

    def rollback_target(
        self, app: str, to: Literal["previous"] | int = "previous"
    ) -> RevisionHistory:
        """The history entry a rollback of ``app`` to ``to`` would deploy (see ``rollback``)."""
        return self._rollback_target(self.get_app(app), app, to)

    @staticmethod
    def _rollback_target(
        current: Application, app: str, to: Literal["previous"] | int
    ) -> RevisionHistory:
        history = current.status.history
        if not history:
            raise RollbackRefused(f"[{app}] has no deployment history to roll back to", app=app)
        deployed = history[-1].revision
        if to == "previous":
            target = next((h for h in reversed(history) if h.revision != deployed), None)
            if target is None:
                raise RollbackRefused(
                    f"[{app}] has no previous deployment of another revision than "
                    f"{_short(deployed)}",
                    app=app,
                )
            return target
        found = next((h for h in history if h.id == to), None)
        if found is None:
            ids = ", ".join(str(h.id) for h in history)
            raise RollbackRefused(
                f"[{app}] does not have deployment with id {to} (history ids: {ids})", app=app
            )
        return found

    def rollback(
        self,
        app: str,
        to: Literal["previous"] | int = "previous",
        *,
        timeout: float = 300.0,
        poll_interval: float = 1.0,
        prune: bool = False,
    ) -> RolledBack:
        """Roll ``app`` back to a history entry and wait until it is healthy there.

        ``to`` is ``"previous"`` (the newest history entry whose revision differs from the one
        deployed now) or a history id. With a history id the call is idempotent: if ``app``
        already runs that revision it only confirms it (resolve "previous" once with
        ``rollback_target`` before retrying). Auto-sync is turned off first (Argo CD refuses
        a rollback while it is on); turn it back on with ``resume_autosync`` once Git holds the fix. If
        auto-sync comes back on by itself (issue 5351, see the module docstring), the result
        carries a warning, or ``RollbackUndone`` is raised if the head was synced again.

        Raises:
            RollbackRefused: nothing to roll back to, unknown id, or Argo CD refused.
            DeploymentDegraded, DeploymentFailed, DeploymentTimedOut: as in ``confirm_deployed``.
        """
        start = self._clock()
        current = self.get_app(app)
        target = self._rollback_target(current, app, to)
        from_revision = current.status.history[-1].revision
        # Idempotent for an explicit id: a retried rollback that already reached the target
        # only confirms it (rolling back "previous" twice would go back to the bad revision).
        already_there = (
            isinstance(to, int)
            and from_revision == target.revision
            and (
                current.status.operation_state is None
                or current.status.operation_state.revision == target.revision
            )
        )
        if current.autosync_enabled:
            self.disable_autosync(app)
        if not already_there:
            self._post_rollback(app, target.id, prune)
        confirmed = self._wait_healthy(
            app,
            target.revision,
            timeout=max(0.0, timeout - (self._clock() - start)),
            poll_interval=poll_interval,
            rollback=True,
            started=start,
        )
        reenabled = self.autosync_reenabled(app)
        return RolledBack(
            app=app,
            from_revision=from_revision,
            to_revision=target.revision,
            history_id=confirmed.history_id,
            seconds=round(self._clock() - start, 3),
            autosync_reenabled=reenabled,
            warnings=(f"[{app}] {TRAP_5351}",) if reenabled else (),
        )
