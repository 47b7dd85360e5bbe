"""The HTTP face of the Argo CD emulator: the ``/api/v1/applications`` routes and ``/_sandbox/`` knobs.

Errors are answered in Argo CD's (grpc-gateway's) shape ``{"error", "code", "message"}`` with
the gRPC code and the HTTP status grpc-gateway maps it to (FailedPrecondition 9 and
InvalidArgument 3 -> 400, Unauthenticated 16 -> 401, PermissionDenied 7 -> 403, Unknown 2 -> 500).
An unknown Application answers 403 "permission denied", as Argo CD does to hide which exist.

``GET /api/v1/applications?fields=`` keeps only Argo CD's ``appFields`` keys (per version);
``GET /api/v1/stream/applications?name=`` streams newline-delimited watch events;
``GET /api/version`` answers the ``version`` knob.

Admin routes (no auth; not counted, never faulted):

- ``GET /_sandbox/stats``: calls per route handler, faults served/pending, latency, bad image
  patterns, internal counters (renders, reconciles, refreshes, operations, syncs, rollbacks).
- ``POST /_sandbox/faults`` ``{"count": N, "status": 503, "kind": "error", "routes": [...],
  "query": regex, "seconds": s}``: the next N API calls (of ``routes``, handler names such as
  ``get_app``, ``watch``, ``sync``, ``rollback``, ``patch_app``, any when empty; whose query
  string matches ``query``, e.g. ``refresh=``) fail. ``kind`` "error" answers ``status``;
  "timeout" serves the call, then holds its answer ``seconds`` (a client with a shorter read
  timeout gives up on a call that did happen); "operation_in_progress" answers what
  Argo CD answers a sync or rollback while the Application has an operation: gRPC
  FailedPrecondition (code 9, HTTP 400) "another operation is already in progress"
  (``util/argo/argo.go`` ``SetAppOperation``), on ``sync`` and ``rollback`` only.
- ``POST /_sandbox/latency`` ``{"seconds": 0.5}``: every API answer is delayed.
- ``POST /_sandbox/bad-images`` ``{"patterns": ["*/frontend:v1.0.2"]}``: fnmatch on ``name:tag``;
  a sync deploying a match goes Degraded.
- ``POST /_sandbox/reconcile``: reconcile every Application now (what the poller does).
- ``POST /_sandbox/reenable-autosync`` ``{"app": NAME, "seconds": 2.0 | null}``: simulate Argo CD
  issue 5351 (auto-sync comes back on by itself ``seconds`` after it is turned off).
- ``POST /_sandbox/applicationset`` ``{"app": NAME, "applicationset": "set-name" | null}``: make the
  Application owned by an ApplicationSet (``ownerReferences``), which then puts its spec back.
- ``POST /_sandbox/knobs`` ``{"version": "v2.14.9", "progress_deadline": 600, ...}``: the
  emulator's timing and version knobs (``KNOBS``; see ``ArgoCDEmulator``).

Faults and latency apply to ``/api/`` routes only.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from sandbox.argocd.core import (
    ArgoAPIError,
    ArgoCDState,
    failed_precondition,
    invalid_argument,
    version_tuple,
)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _patterns(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


# The ``ArgoCDState`` knobs ``POST /_sandbox/knobs`` may set, with their parsers.
KNOBS: dict[str, Callable[[Any], Any]] = {
    "version": str,
    "health_delay": float,
    "progress_deadline": _optional_float,
    "repo_error_grace": float,
    "refresh_latency": float,
    "refresh_deadline": _optional_float,
    "sync_retry_limit": int,
    "sync_retry_backoff": float,
    "failing_image_patterns": _patterns,
    "stale_health_window": float,
    "applicationset_revert_after": float,
    "watch_break_after": _optional_float,
    "sync_duration": float,
}


FAULT_KINDS = ("error", "timeout", "operation_in_progress")
# The routes that start an operation (Argo CD's SetAppOperation): the only ones that can answer
# "another operation is already in progress".
OPERATION_ROUTES = frozenset({"sync", "rollback"})


@dataclass
class ArgoFault:
    """An armed fault: the next ``remaining`` calls of ``routes`` (any when empty) fail."""

    kind: str = "error"
    remaining: int = 1
    status: int = 503
    routes: frozenset[str] = frozenset()
    seconds: float = 0.0
    query: str | None = None

    def matches(self, route: str, query: str) -> bool:
        if self.routes and route not in self.routes:
            return False
        return self.query is None or re.search(self.query, query) is not None


class Knobs:
    """Fault and latency injection, shared by the Python API and the ``/_sandbox/`` routes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.faults: list[ArgoFault] = []
        self.latency = 0.0
        self.calls: Counter[str] = Counter()
        self.faults_served = 0

    @property
    def fail_count(self) -> int:
        with self._lock:
            return sum(f.remaining for f in self.faults)

    def fail_next(
        self,
        count: int,
        status: int = 503,
        *,
        kind: str = "error",
        routes: Iterable[str] = (),
        seconds: float = 0.0,
        query: str | None = None,
    ) -> ArgoFault:
        """Arm a fault for the next ``count`` calls of ``routes`` whose query string matches
        ``query`` (replacing the armed ones)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        chosen = frozenset(routes)
        if kind == "operation_in_progress":
            chosen = chosen or OPERATION_ROUTES
            if not chosen <= OPERATION_ROUTES:
                raise ValueError("operation_in_progress applies to the sync and rollback routes")
        if query is not None:
            re.compile(query)
        fault = ArgoFault(kind, count, status, chosen, seconds, query)
        with self._lock:
            self.faults = [fault] if count > 0 else []
        return fault

    def take_fault(self, route: str, query: str = "") -> ArgoFault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(route, query):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                    self.faults_served += 1
                    return fault
        return None


def error(exc: ArgoAPIError) -> JSONResponse:
    return JSONResponse(
        {"error": exc.message, "code": exc.grpc_code, "message": exc.message},
        status_code=exc.http_status,
    )


Requirement = tuple[str, str, frozenset[str]]


def parse_selector(selector: str) -> list[Requirement]:
    """A Kubernetes label selector: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)``."""
    out: list[Requirement] = []
    parts = [p.strip() for p in re.split(r",(?![^()]*\))", selector) if p.strip()]
    for part in parts:
        if m := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", part):
            key, op, raw = m.groups()
            out.append((key, op, frozenset(v.strip() for v in raw.split(",") if v.strip())))
        elif m := re.fullmatch(r"([\w./-]+)\s*(!=|==|=)\s*([\w.-]*)", part):
            key, op, value = m.groups()
            out.append((key, "notin" if op == "!=" else "in", frozenset({value})))
        elif m := re.fullmatch(r"(!?)([\w./-]+)", part):
            out.append((m.group(2), "absent" if m.group(1) else "exists", frozenset()))
        else:
            raise invalid_argument(f"unable to parse requirement: {part!r}")
    return out


def matches(labels: dict[str, str], requirements: list[Requirement]) -> bool:
    for key, op, values in requirements:
        ok = {
            "in": labels.get(key) in values,
            "notin": labels.get(key) not in values,
            "exists": key in labels,
            "absent": key not in labels,
        }[op]
        if not ok:
            return False
    return True


# pkg/apiclient/application/forwarder_overwrite.go ``appFields``: the only keys the list call's
# ``fields`` parameter can select (argo-cd v2.x to v3.1; status.sourceHydrator from v3.2; the
# spec.* sub-fields and status.sync.revision from v3.5). Any other path is dropped silently.
APP_FIELDS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.annotations",
    "metadata.labels",
    "metadata.creationTimestamp",
    "metadata.deletionTimestamp",
    "spec",
    "status.sync.status",
    "status.health",
    "status.summary",
    "status.operationState.startedAt",
    "status.operationState.finishedAt",
    "status.resources",
    "operation.sync",
    "status.operationState.phase",
    "status.operationState.operation.sync",
)
APP_FIELDS_FROM_3_2 = ("status.sourceHydrator",)
APP_FIELDS_FROM_3_5 = (
    "spec.destination",
    "spec.project",
    "spec.source",
    "spec.sources",
    "spec.sourceHydrator",
    "spec.syncPolicy",
    "status.sync.revision",
)
_OMIT = object()  # an extractor's untyped nil: the key is left out (a typed nil is JSON null)


def app_fields(version: str) -> tuple[str, ...]:
    """The ``appFields`` keys of Argo CD ``version``."""
    fields: tuple[str, ...] = APP_FIELDS
    if version_tuple(version) >= (3, 2, 0):
        fields += APP_FIELDS_FROM_3_2
    if version_tuple(version) >= (3, 5, 0):
        fields += APP_FIELDS_FROM_3_5
    return fields


def _extract(app: dict[str, Any], field: str) -> Any:
    """The value ``appFields[field]`` gives for ``app`` (JSON), ``_OMIT`` for an untyped nil."""
    status = app.get("status") or {}
    if field.startswith("status.operationState."):
        state = status.get("operationState")
        if state is None:
            return _OMIT
        if field == "status.operationState.operation.sync":
            return state.get("syncResult")  # sic: this key returns the sync *result*
        return state.get(field.rsplit(".", 1)[1])
    if field == "operation.sync":
        operation = app.get("operation")
        return _OMIT if operation is None else operation.get("sync")
    if field == "status.resources":
        return status.get("resources") or _OMIT
    node: Any = app
    for part in field.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node  # a nil map or pointer is encoded as null


def select_fields(
    items: list[dict[str, Any]], requested: set[str], exclude: bool, version: str
) -> list[dict[str, Any]]:
    """Each Application reduced to the selected ``appFields`` keys, as Argo CD's list answers."""
    whitelist = app_fields(version)
    chosen = {f for f in whitelist if (f"items.{f}" in requested) != exclude}
    # An ancestor's value covers its descendants (v3.5 selectAppFields).
    chosen = {
        f
        for f in chosen
        if not any(".".join(f.split(".")[:i]) in chosen for i in range(1, f.count(".") + 1))
    }
    out = []
    for item in items:
        converted: dict[str, Any] = {}
        for field in sorted(chosen):
            value = _extract(item, field)
            if value is _OMIT:
                continue
            node = converted
            *parents, leaf = field.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        out.append(converted)
    return out


class ArgoCDApp:
    """Builds the Starlette application over an ``ArgoCDState``."""

    def __init__(
        self,
        state: ArgoCDState,
        tokens: dict[str, str],
        readonly_tokens: dict[str, str],
        knobs: Knobs,
    ) -> None:
        self.state = state
        self.tokens = tokens
        self.readonly_tokens = readonly_tokens
        self.knobs = knobs
        api = "/api/v1/applications"
        self.app = Starlette(
            routes=[
                Route(api, self._guard(self.list_apps, write=False), methods=["GET"]),
                Route(api + "/{name}", self._guard(self.get_app, write=False), methods=["GET"]),
                Route(api + "/{name}", self._guard(self.patch_app, write=True), methods=["PATCH"]),
                Route(
                    api + "/{name}/spec", self._guard(self.put_spec, write=True), methods=["PUT"]
                ),
                Route(api + "/{name}/sync", self._guard(self.sync, write=True), methods=["POST"]),
                Route(
                    api + "/{name}/rollback",
                    self._guard(self.rollback, write=True),
                    methods=["POST"],
                ),
                Route(
                    api + "/{name}/operation",
                    self._guard(self.terminate, write=True),
                    methods=["DELETE"],
                ),
                Route(
                    "/api/v1/stream/applications",
                    self._guard(self.watch, write=False),
                    methods=["GET"],
                ),
                Route("/api/version", self.version, methods=["GET"]),
                Route("/_sandbox/stats", self.stats, methods=["GET"]),
                Route("/_sandbox/knobs", self.set_knobs, methods=["POST"]),
                Route("/_sandbox/faults", self.set_faults, methods=["POST"]),
                Route("/_sandbox/latency", self.set_latency, methods=["POST"]),
                Route("/_sandbox/bad-images", self.set_bad_images, methods=["POST"]),
                Route("/_sandbox/reconcile", self.reconcile, methods=["POST"]),
                Route("/_sandbox/reenable-autosync", self.set_reenable, methods=["POST"]),
                Route("/_sandbox/applicationset", self.set_applicationset, methods=["POST"]),
            ]
        )

    def _guard(
        self, handler: Callable[[Request, str], Response], *, write: bool
    ) -> Callable[[Request], Awaitable[Response]]:
        """Count, inject faults and latency, authenticate, then answer (in a worker thread)."""

        def endpoint(request: Request, body: bytes) -> Response:
            self.knobs.calls[handler.__name__] += 1
            if self.knobs.latency > 0:
                time.sleep(self.knobs.latency)
            fault = self.knobs.take_fault(handler.__name__, request.url.query)
            if fault is not None and fault.kind == "error":
                return JSONResponse(
                    {"error": "sandbox fault", "code": 14, "message": "sandbox fault"},
                    status_code=fault.status,
                )
            header = request.headers.get("authorization", "")
            token = header[7:].strip() if header.lower().startswith("bearer ") else ""
            if not token:
                return error(ArgoAPIError(401, 16, "no session information"))
            user = self.tokens.get(token) or self.readonly_tokens.get(token)
            if user is None:
                return error(ArgoAPIError(401, 16, "invalid session: token signature is invalid"))
            if write and token not in self.tokens:
                name = request.path_params.get("name", "*")
                return error(
                    ArgoAPIError(
                        403,
                        7,
                        f"permission denied: applications, {'sync' if request.method == 'POST' else 'update'}, "
                        f"default/{name}, sub: {user}",
                    )
                )
            if fault is not None and fault.kind == "operation_in_progress":
                return error(failed_precondition("another operation is already in progress"))
            request.state.user = user
            request.state.body = body
            try:
                response = handler(request, user)
            except ArgoAPIError as exc:
                response = error(exc)
            if fault is not None and fault.kind == "timeout":
                time.sleep(fault.seconds)  # done, but the answer comes too late
            return response

        async def asgi_endpoint(request: Request) -> Response:
            from starlette.concurrency import run_in_threadpool

            body = await request.body()
            return await run_in_threadpool(endpoint, request, body)

        return asgi_endpoint

    @staticmethod
    def _json(request: Request) -> Any:
        raw: bytes = request.state.body
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise invalid_argument(f"invalid JSON body: {exc}") from exc

    # -- application routes ---------------------------------------------------------------------

    def list_apps(self, request: Request, user: str) -> Response:
        items = self.state.list()
        selector = request.query_params.get("selector")
        if selector:
            requirements = parse_selector(selector)
            items = [i for i in items if matches(i["metadata"].get("labels") or {}, requirements)]
        names = request.query_params.getlist("name")
        if names and names != [""]:
            items = [i for i in items if i["metadata"]["name"] in names]
        doc: dict[str, Any] = {"metadata": {"resourceVersion": "0"}, "items": items}
        raw_fields = ",".join(request.query_params.getlist("fields"))
        if raw_fields:
            exclude = raw_fields.startswith("-")
            requested = {f for f in raw_fields.lstrip("-").split(",") if f}
            selected = select_fields(items, requested, exclude, self.state.version)
            doc = {"items": selected or None, "metadata": {"resourceVersion": "0"}}
        return JSONResponse(doc)

    def watch(self, request: Request, user: str) -> Response:
        """``GET /api/v1/stream/applications?name=APP``: newline-delimited JSON, one
        ``{"result": {"type", "application"}}`` per event, as grpc-gateway streams a server stream.
        """
        name = request.query_params.get("name") or ""
        if not name:
            raise invalid_argument("the sandbox watches one named Application (?name=)")

        def lines() -> Iterator[bytes]:
            for event in self.state.watch(name):
                yield json.dumps({"result": event}, separators=(",", ":")).encode() + b"\n"

        return StreamingResponse(lines(), media_type="application/json")

    def get_app(self, request: Request, user: str) -> Response:
        refresh = request.query_params.get("refresh") or None
        return JSONResponse(self.state.get(request.path_params["name"], refresh))

    def patch_app(self, request: Request, user: str) -> Response:
        body = self._json(request)
        raw_patch = body.get("patch")
        if not isinstance(raw_patch, str):
            raise invalid_argument("patch must be a JSON document in a string")
        try:
            patch = json.loads(raw_patch)
        except ValueError as exc:
            raise invalid_argument(f"invalid patch: {exc}") from exc
        patch_type = str(body.get("patchType") or "json")
        return JSONResponse(self.state.patch(request.path_params["name"], patch, patch_type))

    def put_spec(self, request: Request, user: str) -> Response:
        body = self._json(request)
        # The gateway binds the body to ``spec``; accept a wrapped body too.
        spec = body.get("spec") if isinstance(body.get("spec"), dict) else body
        return JSONResponse(self.state.update_spec(request.path_params["name"], spec))

    def sync(self, request: Request, user: str) -> Response:
        return JSONResponse(self.state.sync(request.path_params["name"], self._json(request), user))

    def rollback(self, request: Request, user: str) -> Response:
        return JSONResponse(
            self.state.rollback(request.path_params["name"], self._json(request), user)
        )

    def terminate(self, request: Request, user: str) -> Response:
        self.state.terminate_operation(request.path_params["name"])
        return JSONResponse({})

    # -- sandbox knobs ----------------------------------------------------------------------------

    async def version(self, request: Request) -> Response:
        """``GET /api/version``: only ``Version`` without a valid session (server/version)."""
        self.knobs.calls["version"] += 1
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        body: dict[str, Any] = {"Version": self.state.version}
        if token in self.tokens or token in self.readonly_tokens:
            body.update(
                {
                    "BuildDate": "2026-01-01T00:00:00Z",
                    "GitCommit": "0" * 40,
                    "GitTreeState": "clean",
                    "GoVersion": "go1.24.0",
                    "Compiler": "gc",
                    "Platform": "linux/amd64",
                    "KustomizeVersion": "v5.8.0",
                }
            )
        return JSONResponse(body)

    async def set_knobs(self, request: Request) -> Response:
        """``POST /_sandbox/knobs`` ``{"progress_deadline": 5, ...}``: set emulator knobs."""
        body = await request.json()
        unknown = sorted(set(body) - set(KNOBS))
        if unknown:
            return JSONResponse({"error": f"unknown knobs: {unknown}"}, status_code=400)
        for key, value in body.items():
            setattr(self.state, key, KNOBS[key](value))
        return JSONResponse({key: getattr(self.state, key) for key in KNOBS})

    async def stats(self, request: Request) -> Response:
        return JSONResponse(
            {
                "calls": dict(self.knobs.calls),
                "total": sum(self.knobs.calls.values()),
                "faults_served": self.knobs.faults_served,
                "faults_pending": self.knobs.fail_count,
                "latency": self.knobs.latency,
                "bad_image_patterns": list(self.state.bad_image_patterns),
                "counters": dict(self.state.counters),
            }
        )

    async def set_faults(self, request: Request) -> Response:
        body = await request.json()
        try:
            fault = self.knobs.fail_next(
                int(body.get("count", 1)),
                int(body.get("status", 503)),
                kind=str(body.get("kind", "error")),
                routes=[str(r) for r in body.get("routes") or ()],
                seconds=float(body.get("seconds", 0.0)),
                query=None if body.get("query") is None else str(body["query"]),
            )
        except (ValueError, re.error) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(
            {
                "count": fault.remaining,
                "status": fault.status,
                "kind": fault.kind,
                "routes": sorted(fault.routes),
                "seconds": fault.seconds,
                "query": fault.query,
            }
        )

    async def set_latency(self, request: Request) -> Response:
        body = await request.json()
        self.knobs.latency = float(body.get("seconds", 0.0))
        return JSONResponse({"seconds": self.knobs.latency})

    async def set_bad_images(self, request: Request) -> Response:
        body = await request.json()
        self.state.set_bad_image_patterns([str(p) for p in body.get("patterns", [])])
        return JSONResponse({"patterns": list(self.state.bad_image_patterns)})

    async def reconcile(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(self.state.reconcile_all)
        return JSONResponse({"reconciled": self.state.names()})

    async def set_applicationset(self, request: Request) -> Response:
        body = await request.json()
        owner = body.get("applicationset")
        try:
            self.state.set_applicationset(str(body["app"]), None if owner is None else str(owner))
        except ArgoAPIError as exc:
            return error(exc)
        return JSONResponse({"app": body["app"], "applicationset": owner})

    async def set_reenable(self, request: Request) -> Response:
        body = await request.json()
        seconds = body.get("seconds")
        try:
            self.state.set_reenable_autosync_after(
                str(body["app"]), None if seconds is None else float(seconds)
            )
        except ArgoAPIError as exc:
            return error(exc)
        return JSONResponse({"app": body["app"], "seconds": seconds})
