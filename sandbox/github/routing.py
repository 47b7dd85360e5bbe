"""Request, reply and route types of the GitHub emulator, and GitHub-shaped errors."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DOCS = "https://docs.github.com/rest"


class ApiError(Exception):
    """An error answer in GitHub's shape: ``message``, ``documentation_url``, maybe ``errors``."""

    def __init__(
        self,
        status: int,
        message: str,
        errors: list[Any] | None = None,
        documentation_url: str = DOCS,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.documentation_url = documentation_url
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        body["documentation_url"] = self.documentation_url
        body["status"] = str(self.status)
        return body


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


def validation_failed(*errors: Any, message: str = "Validation Failed") -> ApiError:
    return ApiError(422, message, errors=list(errors))


@dataclass
class Request:
    method: str
    path: str  # without the API prefix
    params: dict[str, str]  # path parameters
    query: dict[str, str]
    body: Any
    login: str


@dataclass
class Reply:
    status: int
    body: Any  # JSON-able, or None for no body
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Reply]

# Parameters that may hold slashes (refs, branch names, file paths).
_GREEDY = {"ref", "path", "branch", "basehead"}


@dataclass
class Route:
    method: str
    template: str
    handler: Handler
    regex: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        pattern = ""
        for piece in re.split(r"(\{[a-z_]+\})", self.template):
            if piece.startswith("{"):
                name = piece[1:-1]
                pattern += f"(?P<{name}>.+?)" if name in _GREEDY else f"(?P<{name}>[^/]+)"
            else:
                pattern += re.escape(piece)
        self.regex = re.compile(pattern + "$")

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler) -> None:
        self.routes.append(Route(method, template, handler))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """The route for this call, its parameters, and whether the path exists at all."""
        path_known = False
        for route in self.routes:
            found = route.regex.match(path)
            if found is None:
                continue
            path_known = True
            if route.method == method:
                return route, found.groupdict(), True
        return None, {}, path_known
