"""The HTTP face of the GitHub emulator: an ASGI app (Starlette).

Three areas share one server: the REST API under ``/api/v3`` (token auth, rate-limit headers,
``ETag``/``If-None-Match``, GitHub-shaped errors, fault injection, call counting), smart-HTTP
git under ``/{owner}/{name}.git`` (``git http-backend``), and the admin routes under
``/_sandbox/`` (no auth) that tests and benchmarks in other processes use:

- ``GET /_sandbox/stats``: ``{"total", "routes": {"METHOD template": n}, "not_modified_total",
  "not_modified", "faulted_total", "faulted"}`` (304s and injected faults apart from ``routes``);
  ``POST /_sandbox/stats/reset``.
- ``POST /_sandbox/faults`` ``{"kind": "error"|"rate_limit"|"primary_rate_limit"|
  "secondary_rate_limit"|"base_modified"|"stall"|"reset", "path": regex, "method": "GET"|..., "count": n,
  "status": 502, "retry_after": s or null (no header), "reset_in": s, "seconds": s}`` -> 201 with
  the fault (see ``sandbox.github.faults``); ``GET /_sandbox/faults``; ``DELETE /_sandbox/faults``
  (also resets the latency).
- ``PUT /_sandbox/latency`` ``{"seconds": s}``: delay every request.
- ``POST /_sandbox/statuses`` ``{"sha", "context", "state", "description"?, "target_url"?}``.
- ``PUT /_sandbox/protection`` ``{"branch"?, "required_checks"? (names or {"context", "app_id"}),
  "required_approving_reviews"?,
  "strict"?, "dismiss_stale_reviews"?}``.
- ``PUT /_sandbox/rulesets`` ``{"rulesets": [{"name", "branches", "enforcement",
  "required_checks": [name or {"context", "integration_id"}], "merge_queue"}]}`` (replaces them).
- ``POST /_sandbox/checks/wait`` ``{"timeout": s}`` -> ``{"idle": bool}``; ``GET /_sandbox/heads``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as StarletteRoute
from starlette.types import Receive, Scope, Send

from sandbox.github.faults import KINDS, Fault
from sandbox.github.routing import DOCS, ApiError, Reply, Request

if TYPE_CHECKING:
    from sandbox.github.emulator import GitHubEmulator

API_PREFIX = "/api/v3"
RATE_LIMIT = 5000
JSON_TYPE = "application/json; charset=utf-8"


class RateLimiter:
    """GitHub's core rate limit per token: 5000 calls an hour, reported in headers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: dict[str, tuple[int, int]] = {}  # login -> (window reset epoch, used)

    def spend(self, login: str, cost: int) -> dict[str, str]:
        now = int(time.time())
        with self._lock:
            reset, used = self._used.get(login, (now + 3600, 0))
            if now >= reset:
                reset, used = now + 3600, 0
            used += cost
            self._used[login] = (reset, used)
        return {
            "X-RateLimit-Limit": str(RATE_LIMIT),
            "X-RateLimit-Remaining": str(max(RATE_LIMIT - used, 0)),
            "X-RateLimit-Reset": str(reset),
            "X-RateLimit-Used": str(used),
            "X-RateLimit-Resource": "core",
        }

    def status(self, login: str) -> tuple[int, int]:
        now = int(time.time())
        with self._lock:
            reset, used = self._used.get(login, (now + 3600, 0))
        return (reset, used) if now < reset else (now + 3600, 0)


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _error_response(error: ApiError, headers: dict[str, str]) -> Response:
    return Response(
        _json_bytes(error.body()),
        status_code=error.status,
        headers={**headers, **error.headers},
        media_type=JSON_TYPE,
    )


def _fault_response(fault: Fault) -> Response:
    headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
    if fault.kind == "primary_rate_limit":
        body: dict[str, Any] = {
            "message": "API rate limit exceeded for user ID 1. If you reach out to GitHub Support "
            "for help, please include the request ID 0000:0000:0000000:0000000:00000000.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
        }
        headers = {
            "X-RateLimit-Limit": str(RATE_LIMIT),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Used": str(RATE_LIMIT),
            "X-RateLimit-Reset": str(int(time.time() + fault.reset_in)),
            "X-RateLimit-Resource": "core",
        }
    elif fault.kind == "base_modified":
        body = {
            "message": "Base branch was modified. Review and try the merge again.",
            "documentation_url": "https://docs.github.com/rest/pulls/pulls#merge-a-pull-request",
        }
        headers = {}
    elif fault.kind == "rate_limit":
        body = {
            "message": "API rate limit exceeded for user ID 1.",
            "documentation_url": DOCS,
        }
        headers["X-RateLimit-Remaining"] = "0"
    elif fault.kind == "secondary_rate_limit":
        body = {
            "message": "You have exceeded a secondary rate limit. Please wait a few minutes "
            "before you try again. If you reach out to GitHub Support for help, please "
            "include the request ID 0000:0000:0000000:0000000:00000000.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
        }
    else:
        reason = {502: "Server Error", 503: "Service Unavailable", 504: "Gateway Timeout"}
        body = {"message": reason.get(fault.status, "Server Error"), "documentation_url": DOCS}
        headers = {}
    return Response(
        _json_bytes(body), status_code=fault.status, headers=headers, media_type=JSON_TYPE
    )


_CUT = "ASGI callable returned without completing response."


class _QuietCut(logging.Filter):
    """uvicorn logs an error for every response left incomplete; a "reset" fault means it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _CUT


_quiet_cut = _QuietCut()


class CutResponse(Response):
    """The status, the headers (with the full ``Content-Length``) and half the body; then the
    app returns without finishing, and uvicorn closes the connection: the client reads a
    truncated answer ("connection broken: IncompleteRead") after the server did the work."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        logger = logging.getLogger("uvicorn.error")
        if _quiet_cut not in logger.filters:
            logger.addFilter(_quiet_cut)
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send(
            {
                "type": "http.response.body",
                "body": self.body[: len(self.body) // 2],
                "more_body": True,
            }
        )


def _cut(response: Response) -> Response:
    """The same answer, cut in the middle (a body of at least 2 bytes, so something is missing)."""
    body = bytes(response.body) if response.body else b"{}"
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return CutResponse(body, status_code=response.status_code, headers=headers)


def _token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() in {"token", "bearer"} and value.strip():
        return value.strip()
    return None


def _etag(payload: bytes) -> str:
    return f'W/"{hashlib.sha256(payload).hexdigest()[:40]}"'


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    wanted = etag.removeprefix("W/")
    return any(
        tag.strip() == "*" or tag.strip().removeprefix("W/") == wanted for tag in header.split(",")
    )


_request_ids = itertools.count(1)


def _github_headers() -> dict[str, str]:
    number = next(_request_ids)
    return {
        "X-GitHub-Media-Type": "github.v3; format=json",
        "X-GitHub-Api-Version-Selected": "2022-11-28",
        "X-GitHub-Request-Id": f"5A4D:{number:04X}:{number:06X}:{number:07X}:00000000",
        "X-OAuth-Scopes": "repo",
        "X-Accepted-OAuth-Scopes": "repo",
    }


def build_app(emu: GitHubEmulator) -> Starlette:
    rate = RateLimiter()

    async def api(request: HttpRequest) -> Response:
        path = request.url.path[len(API_PREFIX) :] or "/"
        method = request.method
        if emu.faults.latency > 0:
            await asyncio.sleep(emu.faults.latency)
        route, params, path_known = emu.router.match(method, path)
        key = route.key if route is not None else f"{method} (unrouted)"
        fault = emu.faults.take(method, path)
        if fault is not None and fault.kind == "reset":
            emu.stats.count(key, 0, faulted=True)
            return _cut(await served(request, path, method, route, params, path_known, key))
        if fault is not None:
            if fault.kind == "stall":
                # The request has arrived whole: it is served even if its caller is gone by then.
                await request.body()
                await asyncio.sleep(fault.seconds)
            else:
                emu.stats.count(key, fault.status, faulted=True)
                return _fault_response(fault)
        return await served(request, path, method, route, params, path_known, key)

    async def served(
        request: HttpRequest,
        path: str,
        method: str,
        route: Any,
        params: dict[str, str],
        path_known: bool,
        key: str,
    ) -> Response:
        login = emu.tokens.get(_token(request.headers.get("authorization")) or "")
        if login is None:
            error = ApiError(401, "Bad credentials")
            emu.stats.count(key, 401)
            return _error_response(error, {})
        headers = rate.spend(login, 0)
        if route is None:
            error = (
                ApiError(405, "Method Not Allowed") if path_known else ApiError(404, "Not Found")
            )
            emu.stats.count(key, error.status)
            return _error_response(error, headers)
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw.strip() else None
        except ValueError:
            error = ApiError(400, "Problems parsing JSON")
            emu.stats.count(key, 400)
            return _error_response(error, rate.spend(login, 1))
        call = Request(method, path, params, dict(request.query_params), body, login)
        try:
            reply: Reply = await run_in_threadpool(emu.call, route.handler, call)
        except ApiError as error:
            emu.record(key, error.status, error.body())
            emu.stats.count(key, error.status)
            return _error_response(error, rate.spend(login, 1))
        payload = b"" if reply.body is None else _json_bytes(reply.body)
        out_headers = {**reply.headers, **_github_headers()}
        if method == "GET" and reply.status == 200:
            etag = _etag(payload)
            out_headers["ETag"] = etag
            out_headers["Cache-Control"] = "private, max-age=60, s-maxage=60"
            out_headers["Vary"] = "Accept, Authorization, Cookie, X-GitHub-OTP"
            if _etag_matches(request.headers.get("if-none-match"), etag):
                emu.stats.count(key, 304)
                # a conditional hit does not count against the rate limit on GitHub
                return Response(status_code=304, headers={**out_headers, **rate.spend(login, 0)})
        emu.record(key, reply.status, reply.body)
        emu.stats.count(key, reply.status)
        out_headers.update(rate.spend(login, 1))
        if reply.body is None:
            return Response(status_code=reply.status, headers=out_headers)
        return Response(
            payload, status_code=reply.status, headers=out_headers, media_type=JSON_TYPE
        )

    async def git(request: HttpRequest) -> Response:
        if emu.faults.latency > 0:
            await asyncio.sleep(emu.faults.latency)
        fault = emu.faults.take(request.method, request.url.path)
        if fault is not None and fault.kind not in {"stall", "reset"}:
            return _fault_response(fault)
        if fault is not None and fault.kind == "stall":
            await asyncio.sleep(fault.seconds)
        prefix = f"/{emu.repository}.git"
        rest = request.url.path[len(prefix) :]
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        pushing = rest.endswith("/git-receive-pack")
        result = await run_in_threadpool(
            emu.serve_git, request.method, rest, request.url.query, headers, body, pushing
        )
        response = Response(result.body, status_code=result.status, headers=dict(result.headers))
        return _cut(response) if fault is not None and fault.kind == "reset" else response

    async def admin(request: HttpRequest) -> Response:
        action = request.path_params["action"]
        method = request.method
        raw = await request.body()
        try:
            data: Any = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return JSONResponse({"message": "body is not JSON"}, status_code=400)
        try:
            return await run_in_threadpool(_admin, emu, method, action, data)
        except (ValueError, TypeError, KeyError) as exc:
            return JSONResponse({"message": str(exc)}, status_code=400)

    routes = [
        StarletteRoute("/_sandbox/{action:path}", admin, methods=["GET", "POST", "PUT", "DELETE"]),
        StarletteRoute(f"/{emu.repository}.git/{{rest:path}}", git, methods=["GET", "POST"]),
        StarletteRoute(
            API_PREFIX + "/{rest:path}",
            api,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        ),
        StarletteRoute(API_PREFIX, api, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def _admin(emu: GitHubEmulator, method: str, action: str, data: dict[str, Any]) -> Response:
    action = action.strip("/")
    if action == "stats" and method == "GET":
        return JSONResponse(emu.stats.snapshot())
    if action == "stats/reset" and method == "POST":
        emu.stats.reset()
        return JSONResponse(emu.stats.snapshot())
    if action == "faults" and method == "GET":
        return JSONResponse(
            {"latency": emu.faults.latency, "faults": [f.as_dict() for f in emu.faults.list()]}
        )
    if action == "faults" and method == "POST":
        kind = data.get("kind", "error")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        fault = emu.faults.add(
            kind,
            path=str(data.get("path", ".*")),
            method=data.get("method"),
            count=int(data.get("count", 1)),
            status=int(data["status"]) if "status" in data else None,
            retry_after=None
            if data.get("retry_after", 1) is None
            else int(data.get("retry_after", 1)),
            seconds=float(data.get("seconds", 0.0)),
            reset_in=float(data.get("reset_in", 60.0)),
        )
        return JSONResponse(fault.as_dict(), status_code=201)
    if action == "faults" and method == "DELETE":
        emu.faults.clear()
        return Response(status_code=204)
    if action == "latency" and method in {"PUT", "POST"}:
        emu.faults.latency = float(data.get("seconds", 0.0))
        return JSONResponse({"latency": emu.faults.latency})
    if action == "statuses" and method == "POST":
        status = emu.add_status(
            str(data["sha"]),
            str(data["context"]),
            str(data["state"]),
            description=data.get("description"),
            target_url=data.get("target_url"),
        )
        return JSONResponse(status, status_code=201)
    if action == "protection" and method in {"PUT", "POST"}:
        emu.set_protection(
            branch=data.get("branch"),
            required_checks=data.get("required_checks"),
            required_approving_reviews=data.get("required_approving_reviews"),
            strict=data.get("strict"),
            dismiss_stale_reviews=data.get("dismiss_stale_reviews"),
        )
        return JSONResponse(emu.protection_json(data.get("branch") or emu.base_branch))
    if action == "rulesets" and method in {"PUT", "POST"}:
        emu.set_rulesets(data.get("rulesets", []))
        return JSONResponse(emu.branch_rules_json(data.get("branch") or emu.base_branch))
    if action == "checks/wait" and method == "POST":
        done = emu.wait_for_checks(float(data.get("timeout", 30.0)))
        return JSONResponse({"idle": done})
    if action == "heads" and method == "GET":
        return JSONResponse(emu.branches())
    return JSONResponse({"message": f"no admin route {method} /_sandbox/{action}"}, status_code=404)
