"""The sandbox's application endpoint: one small web server per environment, reporting its version.

In a real cluster the application itself answers ``GET /version``; here each environment gets a
stand-in that reads what the Argo CD emulator runs there (``status.summary.images`` of the
environment's Application, through the emulator's REST API, on every request) and answers
``{"version": "<tag>", "environment", "application", "images": {service: tag}}``. So a probe
(``promotion.verify``) sees the release Argo CD deployed, and keeps seeing the truth after a
rollback or a bad sync. ``version`` is null when the services run different tags; Argo CD
unreachable answers 503.

Knob (no auth, like the emulator's ``/_sandbox/`` routes):

- ``POST /_sandbox/version`` ``{"version": "v9.9.9"}``: report this version whatever runs (a
  release that deployed but serves the wrong build); ``{"version": null}`` reports the truth again.
  In-process: ``EnvironmentWebApp.wrong_version``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["EnvironmentWebApp", "tags_of"]


def tags_of(images: list[str], services: Mapping[str, str]) -> dict[str, str]:
    """Service -> tag of the live ``images`` (``name:tag`` or ``name:tag@digest``) of each service
    whose image name ``services`` (service -> image name) lists."""
    by_image = {image: service for service, image in services.items()}
    tags: dict[str, str] = {}
    for ref in images:
        name_tag = ref.split("@", 1)[0]
        name, sep, tag = name_tag.rpartition(":")
        if not sep or "/" in tag:
            continue
        service = by_image.get(name)
        if service is not None:
            tags[service] = tag
    return tags


class EnvironmentWebApp:
    """The ``/version`` endpoint of one environment.

    Args:
        environment: The environment's name.
        application: Its Argo CD Application.
        argocd_url: The Argo CD (emulator) API server.
        argocd_token: A bearer token for it.
        services: Service -> image name as the overlays hold it.
        timeout: Seconds for the Argo CD call.
    """

    def __init__(
        self,
        environment: str,
        application: str,
        argocd_url: str,
        argocd_token: str,
        services: Mapping[str, str],
        timeout: float = 5.0,
    ) -> None:
        self.environment = environment
        self.application = application
        self.argocd_url = argocd_url.rstrip("/")
        self.argocd_token = argocd_token
        self.services = dict(services)
        self.timeout = timeout
        self.wrong_version: str | None = None
        self.app = Starlette(
            routes=[
                Route("/version", self.version, methods=["GET"]),
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/_sandbox/version", self.set_version, methods=["POST"]),
            ]
        )

    async def _live_images(self) -> list[str]:
        async with httpx.AsyncClient(timeout=self.timeout) as http:
            response = await http.get(
                f"{self.argocd_url}/api/v1/applications/{self.application}",
                headers={"Authorization": f"Bearer {self.argocd_token}"},
            )
        response.raise_for_status()
        data: Any = response.json()
        images = ((data.get("status") or {}).get("summary") or {}).get("images") or []
        return [str(i) for i in images]

    async def version(self, request: Request) -> Response:
        try:
            images = await self._live_images()
        except (httpx.HTTPError, ValueError) as exc:
            return JSONResponse(
                {"error": f"cannot read {self.application} from Argo CD: {exc}"}, status_code=503
            )
        tags = tags_of(images, self.services)
        distinct = sorted(set(tags.values()))
        version: str | None = distinct[0] if len(distinct) == 1 else None
        body: dict[str, Any] = {
            "version": self.wrong_version if self.wrong_version is not None else version,
            "environment": self.environment,
            "application": self.application,
            "images": tags,
        }
        return JSONResponse(body)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def set_version(self, request: Request) -> Response:
        try:
            data = await request.json()
            value = data.get("version") if isinstance(data, dict) else None
        except ValueError:
            return JSONResponse({"error": 'expected {"version": "..." | null}'}, status_code=400)
        if value is not None and not isinstance(value, str):
            return JSONResponse({"error": "version must be a string or null"}, status_code=400)
        self.wrong_version = value
        return JSONResponse({"wrong_version": self.wrong_version})
