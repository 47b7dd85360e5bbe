"""The HTTP face of the Argo CD emulator: the ``/api/v1/applications`` routes and ``/_sandbox/`` knobs.

Errors are answered in Argo CD's (grpc-gateway's) shape ``{"error", "code", "message"}`` with
the gRPC code and the HTTP status grpc-gateway maps it to (FailedPrecondition 9 and
InvalidArgument 3 -> 400, NotFound 5 -> 404, Unauthenticated 16 -> 401, PermissionDenied 7 -> 403).

Admin routes (no auth; not counted, never faulted):

- ``GET /_sandbox/stats``: calls per route handler, faults served/pending, latency, bad image
  patterns, internal counters (renders, reconciles, refreshes, operations, syncs, rollbacks).
- ``POST /_sandbox/faults`` ``{"count": N, "status": 503}``: the next N API calls answer ``status``.
- ``POST /_sandbox/latency`` ``{"seconds": 0.5}``: every API answer is delayed.
- ``POST /_sandbox/bad-images`` ``{"patterns": ["*/frontend:v1.0.2"]}``: fnmatch on ``name:tag``;
  a sync deploying a match goes Degraded.
- ``POST /_sandbox/reconcile``: reconcile every Application now (what the poller does).
- ``POST /_sandbox/reenable-autosync`` ``{"app": NAME, "seconds": 2.0 | null}``: simulate Argo CD
  issue 5351 (auto-sync comes back on by itself ``seconds`` after it is turned off).

Faults and latency apply to ``/api/`` routes only.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.argocd.core import ArgoAPIError, ArgoCDState, invalid_argument


class Knobs:
    """Fault and latency injection, shared by the Python API and the ``/_sandbox/`` routes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.fail_count = 0
        self.fail_status = 503
        self.latency = 0.0
        self.calls: Counter[str] = Counter()
        self.faults_served = 0

    def fail_next(self, count: int, status: int = 503) -> None:
        with self._lock:
            self.fail_count = count
            self.fail_status = status

    def take_fault(self) -> int | None:
        with self._lock:
            if self.fail_count <= 0:
                return None
            self.fail_count -= 1
            self.faults_served += 1
            return self.fail_status


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


def prune_fields(doc: Any, fields: list[str]) -> Any:
    """Keep only the dotted ``fields`` of ``doc``; lists are walked through transparently."""
    tree: dict[str, Any] = {}
    for path in fields:
        node = tree
        for part in path.split("."):
            node = node.setdefault(part, {})
    return _prune(doc, tree)


def _prune(doc: Any, tree: dict[str, Any]) -> Any:
    if not tree:
        return doc
    if isinstance(doc, list):
        return [_prune(item, tree) for item in doc]
    if not isinstance(doc, dict):
        return doc
    return {key: _prune(doc[key], sub) for key, sub in tree.items() if key in doc}


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
                Route("/_sandbox/stats", self.stats, methods=["GET"]),
                Route("/_sandbox/faults", self.set_faults, methods=["POST"]),
                Route("/_sandbox/latency", self.set_latency, methods=["POST"]),
                Route("/_sandbox/bad-images", self.set_bad_images, methods=["POST"]),
                Route("/_sandbox/reconcile", self.reconcile, methods=["POST"]),
                Route("/_sandbox/reenable-autosync", self.set_reenable, methods=["POST"]),
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
            status = self.knobs.take_fault()
            if status is not None:
                return JSONResponse(
                    {"error": "sandbox fault", "code": 14, "message": "sandbox fault"},
                    status_code=status,
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
            request.state.user = user
            request.state.body = body
            try:
                return handler(request, user)
            except ArgoAPIError as exc:
                return error(exc)

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
        fields = [
            f.strip()
            for raw in request.query_params.getlist("fields")
            for f in raw.split(",")
            if f.strip()
        ]
        if fields:
            doc = prune_fields(doc, fields)
        return JSONResponse(doc)

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
        self.knobs.fail_next(int(body.get("count", 1)), int(body.get("status", 503)))
        return JSONResponse({"count": self.knobs.fail_count, "status": self.knobs.fail_status})

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
