"""Argo CD client: read Applications, confirm a revision is deployed and healthy, roll back.

The client speaks Argo CD's REST API (``/api/v1/applications``, the watch stream
``/api/v1/stream/applications``, ``/api/version``) over an injectable ``httpx`` client with a
bearer token, and reads the answers into small pydantic models of the fields this project
depends on. "Deployed" means: the last sync operation Succeeded at the merge commit or at a
later commit that contains it (a commit that leaves the Application's manifests unchanged
starts no sync, so the sync revision may be further on), the Application is Synced and Healthy
now, reconciled strictly after that operation finished (``reconciledAt > finishedAt``: both have
one-second precision and the reconciliation that starts an auto-sync persists pre-sync health),
and the live images carry the tags our change set. An unknown Application answers 403
"permission denied" (``ApplicationNotFoundOrDenied``).

Rollback through Argo CD needs auto-sync off first: Argo CD refuses a rollback with
FailedPrecondition "rollback cannot be initiated when auto-sync is enabled". ``rollback`` turns
auto-sync off (from Argo CD 3.1 a merge patch of ``spec.syncPolicy.automated.enabled=false``,
``prune`` and ``selfHeal`` kept; before 3.1 ``automated`` is removed and kept in
``AUTOSYNC_SAVED_ANNOTATION``), marks the Application with ``AUTOSYNC_DISABLED_ANNOTATION``, rolls
back and waits until the old revision is healthy. An ApplicationSet-managed Application is
refused (``ManagedByApplicationSet``): its ApplicationSet would put auto-sync back.

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

import contextlib
import json
import re
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

AUTOSYNC_DISABLED_ANNOTATION = "release-promotion.io/autosync-disabled-at"
# Before Argo CD 3.1 auto-sync is off only without ``automated``: what it held is kept here.
AUTOSYNC_SAVED_ANNOTATION = "release-promotion.io/autosync-automated"
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
    """No Application of that name (404 from a proxy or an old server; see the subclass)."""


class ApplicationNotFoundOrDenied(ApplicationNotFound, ArgoCDAuthFailed):
    """403 "permission denied" on reading an Application: unknown, or the token may not read it.

    Argo CD answers both the same way so that a caller cannot learn which Applications exist
    (server/application/application.go ``getAppEnforceRBAC``); it is both "not found" and
    "auth failed", and never transient.
    """


class OperationInProgress(ArgoCDRequestFailed):
    """Argo CD refused: another operation is already in progress (transient)."""


class RollbackRefused(ArgoCDRequestFailed):
    """A rollback was refused (auto-sync on, unknown history id, nothing to roll back to)."""


class ManagedByApplicationSet(RollbackRefused):
    """The Application is owned by an ApplicationSet, which rewrites its spec: an Argo CD
    rollback (which needs auto-sync off) cannot hold; revert in Git instead."""


class RollbackUndone(ArgoCDError):
    """The Application moved off the rolled-back revision (see the issue-5351 trap)."""


class DeploymentDegraded(ArgoCDError):
    """The revision was synced but the Application became Degraded."""


class DeploymentFailed(ArgoCDError):
    """The sync operation for the revision Failed (for example, kustomize could not render)."""


class DeploymentTimedOut(ArgoCDError):
    """The revision was not confirmed deployed in time; the message holds the last state seen."""


class DeploymentStuckProgressing(DeploymentTimedOut):
    """Timed out with the sync Succeeded at our commit and health still Progressing.

    A bad image keeps a Deployment Progressing until its progress deadline (600 s by default)
    before Argo CD calls it Degraded; a flow may treat this like Degraded and roll back
    (``Settings.rollback_when_stuck_progressing``).
    """


class DeploymentSuperseded(ArgoCDError):
    """A later change to the same images runs instead of ours (a newer release, a revert).

    ``expected`` and ``live`` map image name -> tag(s): what our change set, what runs.
    """

    def __init__(
        self,
        message: str,
        *,
        app: str | None = None,
        expected: Mapping[str, str] | None = None,
        live: Mapping[str, Sequence[str]] | None = None,
        revision: str = "",
    ) -> None:
        super().__init__(message, app=app)
        self.expected = dict(expected or {})
        self.live = {name: tuple(tags) for name, tags in (live or {}).items()}
        self.revision = revision


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
    enabled: bool | None = None  # from Argo CD 3.1 only
    prune: bool = False
    self_heal: bool = Field(False, alias="selfHeal")
    allow_empty: bool = Field(False, alias="allowEmpty")


class SyncPolicy(_Model):
    automated: SyncPolicyAutomated | None = None


class ApplicationSpec(_Model):
    source: ApplicationSource | None = None
    sync_policy: SyncPolicy | None = Field(None, alias="syncPolicy")
    revision_history_limit: int | None = Field(None, alias="revisionHistoryLimit")


class OwnerReference(_Model):
    api_version: str = Field("", alias="apiVersion")
    kind: str = ""
    name: str = ""


class ApplicationMetadata(_Model):
    name: str = ""
    namespace: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    owner_references: list[OwnerReference] = Field(default_factory=list, alias="ownerReferences")

    @field_validator("labels", "annotations", mode="before")
    @classmethod
    def _null_map(cls, value: Any) -> Any:
        # The list call's ``fields`` answers a Go nil map as null ("annotations": null).
        return {} if value is None else value

    @field_validator("owner_references", mode="before")
    @classmethod
    def _null_list(cls, value: Any) -> Any:
        return [] if value is None else value


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
    retry_count: int = Field(0, alias="retryCount")

    @property
    def retrying(self) -> bool:
        """Running again after a failed attempt ("Retrying attempt #n"): not yet a failure."""
        return self.phase == "Running" and (
            self.retry_count > 0 or "Retrying attempt" in self.message
        )

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
    last_transition_time: datetime | None = Field(None, alias="lastTransitionTime")


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
    def applicationset(self) -> str | None:
        """The ApplicationSet that owns this Application (``ownerReferences``), if any."""
        return next(
            (
                ref.name or "?"
                for ref in self.metadata.owner_references
                if ref.kind == "ApplicationSet"
            ),
            None,
        )

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
        errors = "".join(
            f"; {c.type}: {c.message}" for c in self.status.conditions if c.type.endswith("Error")
        )
        return (
            f"sync {self.status.sync.status} at {_short(self.status.sync.revision)}, {op_text}, "
            f"health {health.status}" + (f" ({health.message})" if health.message else "") + errors
        )


_TRANSIENT_COMPARISON = (
    "code = Unavailable",
    "code = DeadlineExceeded",
    "context deadline exceeded",
    "connection refused",
    "i/o timeout",
    "EOF",
)


def _raise_on_comparison_error(current: Application, app: str, since: datetime | None) -> None:
    """Fail fast when Argo CD reports it cannot generate the manifests after ``since``.

    Argo CD does not auto-sync an Application whose sync status is Unknown: with a
    ComparisonError no operation ever starts, so waiting would only time out. Its
    ``sync.revision`` is then the target revision as written (a branch name, not our sha:
    controller/state.go), so the error cannot be matched to a commit; a condition whose
    ``lastTransitionTime`` is not older than our refresh (1 s precision) is ours. Before that,
    Argo CD ignores a new repository error for up to 180 s (the repo-error grace period) and
    keeps the old status. A repo-server outage is also a ComparisonError: keep waiting on those.
    """
    for condition in current.status.conditions:
        if condition.type != "ComparisonError" or any(
            marker in condition.message for marker in _TRANSIENT_COMPARISON
        ):
            continue
        seen = condition.last_transition_time
        if since is not None and seen is not None and seen < since.replace(microsecond=0):
            continue  # older than our refresh: not about our change
        raise DeploymentFailed(
            f"[{app}] Argo CD cannot render {current.status.sync.revision or 'the target'}: "
            f"{condition.message}",
            app=app,
        )


def _fresh(reconciled: datetime | None, finished: datetime | None) -> bool:
    """Health reconciled strictly after the operation finished (1 s precision: a second later).

    The reconciliation that starts an automated sync persists the health it computed before
    the sync, possibly in the same second as ``finishedAt``; only a later one can be trusted.
    """
    return reconciled is not None and finished is not None and reconciled > finished


def image_tags(images: Iterable[str]) -> dict[str, list[str]]:
    """Image name -> the tags running for it, from ``status.summary.images``.

    ``name:tag@sha256:...`` counts as ``tag``; ``name@sha256:...`` as ``@sha256:...``; a bare
    name as ``latest`` (as ``promotion.drift.split_image``).
    """
    out: dict[str, list[str]] = {}
    for ref in images:
        name, at, digest = ref.partition("@")
        slash, colon = name.rfind("/"), name.rfind(":")
        if colon > slash:
            image, tag = name[:colon], name[colon + 1 :]
        else:
            image, tag = name, f"@{digest}" if at else "latest"
        tags = out.setdefault(image, [])
        if tag not in tags:
            tags.append(tag)
    return out


def _healthy_after(current: Application, op: OperationState, app: str) -> bool:
    """Healthy as assessed after the operation ``op`` finished; Degraded raises."""
    if not _fresh(current.status.reconciled_at, op.finished_at):
        return False  # health not yet assessed after the operation
    health = current.status.health
    if health.status == "Degraded":
        raise DeploymentDegraded(
            f"[{app}] revision {_short(op.revision)} is Degraded: "
            f"{health.message or 'no message from Argo CD'}",
            app=app,
        )
    return health.status == "Healthy"


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
        refresh_timeout: Read timeout of a ``?refresh=`` read, which Argo CD answers only once
            the controller has reconciled (seconds on a busy controller).
        watch: Follow a deployment on Argo CD's watch stream (falling back to polls when the
            stream breaks); False: poll only.
        stream_idle_timeout: Reconnect a watch stream that stayed silent this long.
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
        refresh_timeout: float = 60.0,
        watch: bool = True,
        stream_idle_timeout: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout)
        self._sleep = sleep
        self._clock = clock
        self._refresh_timeout = refresh_timeout
        self._watch = watch
        self._stream_idle_timeout = stream_idle_timeout
        self._version: tuple[int, int, int] | None = None
        self._version_read = False

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> ArgoCDClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token.get_secret_value()}",
            "Accept": "application/json",
        }

    def _timeout(self, read: float) -> httpx.Timeout:
        """The client's timeouts with another read timeout."""
        base = self._http.timeout
        return httpx.Timeout(connect=base.connect, read=read, write=base.write, pool=base.pool)

    def _request(
        self,
        method: str,
        path: str,
        *,
        app: str | None = None,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        read_timeout: float | None = None,
    ) -> Any:
        url = f"{self.base_url}{path}"
        where = f"[{app}] " if app else ""
        timeout: httpx.Timeout | httpx._client.UseClientDefault = (
            self._timeout(max(read_timeout, self._http.timeout.read or 0.0))
            if read_timeout is not None
            else httpx.USE_CLIENT_DEFAULT
        )
        try:
            response = self._http.request(
                method,
                url,
                params=dict(params or {}),
                json=body,
                headers=self._headers(),
                timeout=timeout,
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
        if status == 403 and app and text.strip() == "permission denied":
            # Argo CD answers an unknown Application exactly like one the token may not read.
            message = (
                f"[{app}] unknown application or no permission: Argo CD answered {method} {path} "
                "with 403 permission denied, which it gives both for an Application that does "
                "not exist and for one the token's role may not read; check the name and the "
                "token's project role"
            )
            kind = ApplicationNotFoundOrDenied
        elif status in {401, 403}:
            kind = ArgoCDAuthFailed
        elif status == 404:
            kind = ApplicationNotFound
        elif "another operation is already in progress" in text:
            kind = OperationInProgress
        elif "rollback cannot be initiated" in text:
            kind = RollbackRefused
        return kind(message, app=app, status_code=status, code=code, retry_after=retry_after)

    # -- reads ----------------------------------------------------------------------------------

    def server_version(self) -> tuple[int, int, int] | None:
        """Argo CD's version from ``GET /api/version`` (read once per client), or None."""
        if not self._version_read:
            try:
                data = self._request("GET", "/api/version")
            except ArgoCDRequestFailed:
                data = {}
            text = str(data.get("Version", "")) if isinstance(data, dict) else ""
            match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", text)
            self._version = (
                (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None
            )
            self._version_read = True
        return self._version

    def has_automated_enabled(self) -> bool:
        """Whether ``spec.syncPolicy.automated.enabled`` exists (Argo CD 3.1 and later).

        An unknown version counts as older: removing ``automated`` works on every version.
        """
        version = self.server_version()
        return version is not None and version >= (3, 1, 0)

    def get_app(self, app: str, refresh: Literal["normal", "hard"] | None = None) -> Application:
        """Read the Application; with ``refresh`` Argo CD reconciles it with git first.

        A refresh read waits until the controller has reconciled: it gets ``refresh_timeout``.
        """
        params = {"refresh": refresh} if refresh else None
        data = self._request(
            "GET",
            f"/api/v1/applications/{app}",
            app=app,
            params=params,
            read_timeout=self._refresh_timeout if refresh else None,
        )
        return Application.model_validate(data)

    def list_apps(
        self, selector: str | None = None, fields: Sequence[str] | str | None = None
    ) -> list[Application]:
        """List Applications, narrowed by a label ``selector`` and to ``fields`` (dotted paths).

        Argo CD keeps only the ``fields`` of its fixed whitelist (``LIST_FIELDS``) and drops
        any other path silently. Example: ``list_apps("environment=prod", ["items.spec"])``.
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

    # -- observing an Application ---------------------------------------------------------------

    def _first_read(self, app: str, refresh: bool) -> Application:
        """The Application now; with ``refresh``, after one reconciliation with git.

        A refresh that ends in "application refresh deadline exceeded" or a read timeout was
        still requested (the controller will reconcile): read without it and go on.
        """
        if not refresh:
            return self.get_app(app)
        try:
            return self.get_app(app, refresh="normal")
        except ArgoCDUnavailable as exc:
            if not isinstance(exc.__cause__, httpx.TimeoutException):
                raise
        except ArgoCDRequestFailed as exc:
            if "deadline exceeded" not in str(exc):
                raise
        return self.get_app(app)

    def _stream(self, app: str, deadline: float) -> Iterator[Application]:
        """Application states from Argo CD's watch stream until ``deadline`` or a quiet spell.

        ``GET /api/v1/stream/applications?name=APP`` answers newline-delimited JSON, one
        ``{"result": {"type": ..., "application": {...}}}`` per change (the first with the state
        now), or ``{"error": {...}}``.
        """
        path = "/api/v1/stream/applications"
        read = max(0.05, min(deadline - self._clock(), self._stream_idle_timeout))
        try:
            with self._http.stream(
                "GET",
                f"{self.base_url}{path}",
                params={"name": app},
                headers=self._headers(),
                timeout=self._timeout(read),
            ) as response:
                if not response.is_success:
                    response.read()
                    raise self._error(response, "GET", path, app)
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    doc = json.loads(line)
                    if "error" in doc:
                        error = doc["error"] or {}
                        raise ArgoCDRequestFailed(
                            f"[{app}] watch stream error: {error.get('message') or error}",
                            app=app,
                            code=error.get("grpc_code"),
                        )
                    result = doc.get("result") or {}
                    yield Application.model_validate(result.get("application") or {})
                    if self._clock() >= deadline:
                        return
        except httpx.ReadTimeout:
            return  # quiet: the caller checks its deadline and reconnects
        except (httpx.TransportError, ValueError) as exc:
            raise ArgoCDUnavailable(f"[{app}] watch stream broke: {exc}", app=app) from exc

    def _observe(
        self, app: str, *, refresh: bool, deadline: float, poll_interval: float
    ) -> Generator[Application, None, None]:
        """States of ``app`` until ``deadline``: the (refreshed) state now, then each change.

        Changes come from the watch stream; when it fails three times (or ``watch`` is off)
        the states come from polls every ``poll_interval`` seconds. A refresh happens once, at
        the start: it costs a reconciliation, and a later one cannot see more than the stream.
        """
        yield self._first_read(app, refresh)
        failures = 0
        while self._clock() < deadline:
            if self._watch and failures < 3:
                opened, events = self._clock(), 0
                try:
                    for state in self._stream(app, deadline):
                        events += 1
                        yield state
                    if events and self._clock() - opened >= poll_interval:
                        continue  # a stream that worked ended (idle or cut): open another
                    failures += 1  # ended at once or empty: count it, poll once, then retry
                except (ArgoCDUnavailable, ArgoCDRequestFailed) as exc:
                    if isinstance(exc, ArgoCDAuthFailed | ApplicationNotFound):
                        raise
                    failures += 1
            remaining = deadline - self._clock()
            if remaining <= 0:
                return
            self._sleep(min(poll_interval, remaining))
            yield self.get_app(app)

    # -- confirmation ---------------------------------------------------------------------------

    def confirm_deployed(
        self,
        app: str,
        revision: str,
        *,
        expected_images: Mapping[str, str] | None = None,
        timeout: float = 300.0,
        poll_interval: float = 1.0,
        contains: Callable[[str], bool] | None = None,
    ) -> Deployed:
        """Wait until the change merged as ``revision`` runs on ``app``, synced and Healthy.

        Confirmed when:

        - the last sync operation Succeeded at ``revision`` or at a commit that contains it
          (``contains(sha)`` answers that; staging and prod may follow one branch, so Argo CD
          may go straight to a later merge). The sync revision may have moved on: a commit that
          leaves the app's manifests unchanged starts no sync (Argo CD's auto-sync skips a
          Synced app), so never wait for "an operation at the branch head";
        - the app is Synced and Healthy now, reconciled strictly after that operation finished
          (a Healthy stamped in the operation's own second may predate it);
        - with ``expected_images`` (image name -> tag), ``status.summary.images`` runs exactly
          those tags for those names.

        Follows the watch stream (polls when it breaks); refreshes once at the start.

        Raises:
            DeploymentDegraded: health went Degraded after the sync (message included).
            DeploymentFailed: the sync operation failed (after Argo CD's retries), or Argo CD
                reported a ComparisonError (cannot render) after our refresh.
            DeploymentSuperseded: a later change to the same images runs instead of ours.
            DeploymentStuckProgressing: timed out while Progressing after a successful sync.
            DeploymentTimedOut: not confirmed within ``timeout``; reports the last state seen.
        """
        start = self._clock()
        deadline = start + timeout
        refreshed_at = datetime.now(UTC)
        judged: dict[str, bool] = {revision: True}
        expected = dict(expected_images or {})
        current: Application | None = None
        with contextlib.closing(
            self._observe(app, refresh=True, deadline=deadline, poll_interval=poll_interval)
        ) as states:
            for current in states:
                deployed = self._deploy_verdict(
                    current, app, revision, expected, contains, judged, refreshed_at, start
                )
                if deployed is not None:
                    return deployed
        raise self._timed_out(app, revision, timeout, current, expected, judged)

    def _runs_ours(
        self,
        commit: str,
        contains: Callable[[str], bool] | None,
        judged: dict[str, bool],
    ) -> bool:
        if commit not in judged:
            judged[commit] = bool(commit) and contains is not None and contains(commit)
        return judged[commit]

    def _deploy_verdict(
        self,
        current: Application,
        app: str,
        revision: str,
        expected: Mapping[str, str],
        contains: Callable[[str], bool] | None,
        judged: dict[str, bool],
        refreshed_at: datetime,
        start: float,
    ) -> Deployed | None:
        op = current.status.operation_state
        if op is None or not self._runs_ours(op.revision, contains, judged):
            _raise_on_comparison_error(current, app, refreshed_at)
            return None
        if op.phase in {"Failed", "Error"}:
            raise DeploymentFailed(
                f"[{app}] sync of revision {_short(op.revision)} {op.phase}: {op.message}", app=app
            )
        if op.phase != "Succeeded":  # Running, including "Retrying attempt #n"; Terminating
            return None
        _raise_on_comparison_error(current, app, refreshed_at)
        if current.status.sync.status != "Synced":
            return None
        if not _healthy_after(current, op, app):
            return None
        live = image_tags(current.status.summary.images)
        differ = {
            name: tag
            for name, tag in expected.items()
            if live.get(name) != [f"@{tag}" if tag.startswith("sha256:") else tag]
        }
        if differ:
            if all(live.get(name) for name in differ):
                changes = ", ".join(
                    f"{name}: ours {tag}, runs {', '.join(live[name])}"
                    for name, tag in differ.items()
                )
                raise DeploymentSuperseded(
                    f"[{app}] a later change runs instead of ours (revision "
                    f"{_short(revision)}; Argo CD synced {_short(op.revision)}): {changes}",
                    app=app,
                    expected=differ,
                    live={name: live[name] for name in differ},
                    revision=op.revision,
                )
            return None  # an image of ours is not reported yet
        history_id = next(
            (h.id for h in reversed(current.status.history) if h.revision == op.revision), None
        )
        return Deployed(
            app=app,
            revision=op.revision,
            health=current.status.health.status,
            history_id=history_id,
            seconds=round(self._clock() - start, 3),
            finished_at=op.finished_at,
        )

    def _timed_out(
        self,
        app: str,
        revision: str,
        timeout: float,
        current: Application | None,
        expected: Mapping[str, str],
        judged: dict[str, bool],
    ) -> DeploymentTimedOut:
        seen = current.describe() if current is not None else "nothing (no answer)"
        message = (
            f"[{app}] revision {_short(revision)} not confirmed deployed within {timeout:g}s; "
            f"last seen: {seen}"
        )
        if current is not None and expected:
            live = image_tags(current.status.summary.images)
            waiting = [f"{n}: {', '.join(live.get(n, [])) or 'none'}" for n in expected]
            message += f"; live images {'; '.join(waiting)}"
        op = current.status.operation_state if current is not None else None
        if (
            current is not None
            and op is not None
            and op.phase == "Succeeded"
            and judged.get(op.revision)
            and current.status.health.status == "Progressing"
        ):
            return DeploymentStuckProgressing(
                message + " (still Progressing after a successful sync: a Deployment that cannot "
                "become available stays Progressing until its progress deadline, 600 s by default)",
                app=app,
            )
        return DeploymentTimedOut(message, app=app)

    def _wait_rolled_back(
        self, app: str, revision: str, *, timeout: float, poll_interval: float, start: float
    ) -> Deployed:
        deadline = self._clock() + timeout
        current: Application | None = None
        with contextlib.closing(
            self._observe(app, refresh=False, deadline=deadline, poll_interval=poll_interval)
        ) as states:
            for current in states:
                done = self._rollback_verdict(current, app, revision, start)
                if done is not None:
                    return done
        raise self._timed_out(app, revision, timeout, current, {}, {revision: True})

    def _rollback_verdict(
        self, current: Application, app: str, revision: str, start: float
    ) -> Deployed | None:
        op = current.status.operation_state
        if op is None or op.revision != revision:
            if op is not None and op.phase and current.autosync_enabled:
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
        if not _healthy_after(current, op, app):
            return None
        history_id = next(
            (h.id for h in reversed(current.status.history) if h.revision == revision), None
        )
        return Deployed(
            app=app,
            revision=revision,
            health=current.status.health.status,
            history_id=history_id,
            seconds=round(self._clock() - start, 3),
            finished_at=op.finished_at,
        )

    # -- auto-sync and rollback -----------------------------------------------------------------

    def _patch(self, app: str, patch: Mapping[str, Any]) -> Application:
        body = {"patch": json.dumps(patch), "patchType": "merge"}
        data = self._request("PATCH", f"/api/v1/applications/{app}", app=app, body=body)
        return Application.model_validate(data)

    @staticmethod
    def _refuse_applicationset(current: Application, app: str, action: str) -> None:
        owner = current.applicationset
        if owner is not None:
            raise ManagedByApplicationSet(
                f"[{app}] cannot {action}: the Application is managed by the ApplicationSet "
                f"{owner!r}, which puts its spec back (auto-sync cannot stay off, Argo CD "
                "docs/user-guide/auto_sync.md); use the rollback method 'revert' (a pull request "
                "reverting the change in Git) instead",
                app=app,
            )

    def disable_autosync(self, app: str) -> Application:
        """Turn auto-sync off and mark the Application (our annotation holds the time).

        From Argo CD 3.1: ``automated.enabled=false`` (prune/selfHeal kept). Before 3.1 the
        field does not exist and Argo CD refuses a rollback while ``automated`` is set: the
        ``automated`` block is removed and kept in ``AUTOSYNC_SAVED_ANNOTATION`` for
        ``resume_autosync``. Refused for an ApplicationSet-managed Application.
        """
        current = self.get_app(app)
        self._refuse_applicationset(current, app, "turn auto-sync off")
        automated = current.automated or SyncPolicyAutomated()
        annotations: dict[str, str | None] = {
            AUTOSYNC_DISABLED_ANNOTATION: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        }
        if self.has_automated_enabled():
            new_automated: dict[str, Any] | None = {
                "enabled": False,
                "prune": automated.prune,
                "selfHeal": automated.self_heal,
            }
        else:
            new_automated = None  # a merge patch null removes the key
            annotations[AUTOSYNC_SAVED_ANNOTATION] = json.dumps(
                {
                    "prune": automated.prune,
                    "selfHeal": automated.self_heal,
                    "allowEmpty": automated.allow_empty,
                },
                separators=(",", ":"),
            )
        patched = self._patch(
            app,
            {
                "metadata": {"annotations": annotations},
                "spec": {"syncPolicy": {"automated": new_automated}},
            },
        )
        if patched.autosync_enabled:
            raise ArgoCDError(
                f"[{app}] auto-sync is still enabled after turning it off "
                "(set syncPolicy.automated to null by hand)",
                app=app,
            )
        return patched

    def resume_autosync(self, app: str) -> Application:
        """Turn auto-sync back on (prune/selfHeal kept or restored) and remove our marks."""
        current = self.get_app(app)
        saved_text = current.metadata.annotations.get(AUTOSYNC_SAVED_ANNOTATION)
        automated = current.automated or SyncPolicyAutomated()
        if saved_text:
            with contextlib.suppress(ValueError):
                automated = SyncPolicyAutomated.model_validate(json.loads(saved_text))
        new_automated: dict[str, Any] = {"prune": automated.prune, "selfHeal": automated.self_heal}
        if automated.allow_empty:
            new_automated["allowEmpty"] = True
        if self.has_automated_enabled():
            new_automated["enabled"] = True
        return self._patch(
            app,
            {
                "metadata": {
                    "annotations": {
                        AUTOSYNC_DISABLED_ANNOTATION: None,
                        AUTOSYNC_SAVED_ANNOTATION: None,
                    }
                },
                "spec": {"syncPolicy": {"automated": new_automated}},
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
        """The history entry a rollback of ``app`` to ``to`` would deploy (see ``rollback``).

        Raises ``ManagedByApplicationSet`` for an ApplicationSet-managed Application.
        """
        current = self.get_app(app)
        self._refuse_applicationset(current, app, "roll back through Argo CD")
        return self._rollback_target(current, app, to)

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
            ManagedByApplicationSet: the Application belongs to an ApplicationSet (use revert).
            RollbackRefused: nothing to roll back to, unknown id, or Argo CD refused.
            DeploymentDegraded, DeploymentFailed, DeploymentTimedOut: as in ``confirm_deployed``.
        """
        start = self._clock()
        current = self.get_app(app)
        self._refuse_applicationset(current, app, "roll back through Argo CD")
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
        confirmed = self._wait_rolled_back(
            app,
            target.revision,
            timeout=max(0.0, timeout - (self._clock() - start)),
            poll_interval=poll_interval,
            start=start,
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
