"""Several GitOps repositories behind one GitHub URL and one Argo CD URL.

A sandbox of N applications runs one GitHub emulator and one Argo CD emulator per application
(each over its own bare repository) and serves them on one address each, as GitHub and Argo CD
serve every repository and Application on one: these ASGI apps route each call to the emulator
that owns its repository or Application, and merge the Application list.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_PREFIX = "/api/v3"  # the GitHub emulator's (sandbox.github.app.API_PREFIX)
APPLICATIONS = "/api/v1/applications"


class GitHubByRepository:
    """Route ``/api/v3/repos/<owner>/<name>...`` and ``/<owner>/<name>.git/...`` to that
    repository's emulator; anything else (``/user``, ``/_sandbox``) to the first one."""

    def __init__(self, by_repository: dict[str, ASGIApp]) -> None:
        self.by_repository = by_repository
        self.default = next(iter(by_repository.values()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        for repository, app in self.by_repository.items():
            api = f"{API_PREFIX}/repos/{repository}"
            if path == api or path.startswith((api + "/", f"/{repository}.git/")):
                await app(scope, receive, send)
                return
        await self.default(scope, receive, send)


class ArgoCDByApplication:
    """Route ``/api/v1/applications/<name>...`` to the emulator holding ``<name>``; answer the
    list call with every emulator's Applications; anything else to the first one."""

    def __init__(self, by_application: dict[str, ASGIApp]) -> None:
        self.by_application = by_application
        self.apps = list(dict.fromkeys(by_application.values()))
        self.default = self.apps[0]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] == "http" and path.rstrip("/") == APPLICATIONS:
            await self._list(scope, send)
            return
        if path.startswith(APPLICATIONS + "/"):
            name = path[len(APPLICATIONS) + 1 :].split("/", 1)[0]
            await self.by_application.get(name, self.default)(scope, receive, send)
            return
        await self.default(scope, receive, send)

    async def _list(self, scope: Scope, send: Send) -> None:
        headers = {k.decode(): v.decode() for k, v in scope.get("headers", [])}
        query = scope.get("query_string", b"").decode()
        url = f"http://argocd{APPLICATIONS}" + (f"?{query}" if query else "")
        items: list[Any] = []
        first: dict[str, Any] | None = None
        status = 200
        for app in self.apps:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport) as client:
                response = await client.get(url, headers=headers)
            if response.status_code != 200:
                status, body = response.status_code, response.content
                break
            data = response.json()
            first = first or data
            items += data.get("items") or []
        else:
            body = json.dumps({**(first or {}), "items": items}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
