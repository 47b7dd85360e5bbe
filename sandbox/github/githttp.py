"""Smart-HTTP git (clone, fetch, push) of the bare repository through ``git http-backend``.

``git http-backend`` is a CGI program: the bridge hands it the request as CGI environment plus
the (buffered) body on stdin and turns its ``Status:``/header/body output back into a response.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sandbox.seed import GIT_ENV


@dataclass(frozen=True)
class CgiResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def http_backend(
    repo: Path,
    method: str,
    path_in_repo: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    remote_user: str | None = None,
) -> CgiResponse:
    """Serve one smart-HTTP request for ``repo``; ``path_in_repo`` is e.g. ``/info/refs``."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
        **GIT_ENV,
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_PROJECT_ROOT": str(repo.parent),
        "GIT_HTTP_EXPORT_ALL": "1",
        # pushes are allowed whatever the repository's own config says
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.receivepack",
        "GIT_CONFIG_VALUE_0": "true",
        "PATH_INFO": f"/{repo.name}{path_in_repo}",
        "REQUEST_METHOD": method,
        "QUERY_STRING": query,
        "CONTENT_TYPE": headers.get("content-type", ""),
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_ADDR": "127.0.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "GATEWAY_INTERFACE": "CGI/1.1",
    }
    if remote_user:
        env["REMOTE_USER"] = remote_user
    if "content-encoding" in headers:
        env["HTTP_CONTENT_ENCODING"] = headers["content-encoding"]
    if "git-protocol" in headers:
        env["GIT_PROTOCOL"] = headers["git-protocol"]
    result = subprocess.run(
        ["git", "http-backend"], input=body, capture_output=True, env=env, check=False
    )
    out = result.stdout
    head, sep, rest = out.partition(b"\r\n\r\n")
    if not sep:
        head, sep, rest = out.partition(b"\n\n")
    status = 200
    response_headers: list[tuple[str, str]] = []
    for line in head.decode("latin-1").splitlines():
        if ":" not in line:
            continue
        name, value = line.split(":", 1)
        if name.lower() == "status":
            status = int(value.strip().split(" ", 1)[0])
        else:
            response_headers.append((name.strip(), value.strip()))
    if not sep:
        message = result.stderr.decode(errors="replace") or "git http-backend failed"
        return CgiResponse(500, [("Content-Type", "text/plain")], message.encode())
    return CgiResponse(status, response_headers, rest)
