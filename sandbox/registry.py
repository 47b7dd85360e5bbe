"""A real container registry on loopback (Debian's ``docker-registry``), plus a bearer-token front.

``LocalRegistry`` runs ``docker-registry serve`` with a generated configuration (127.0.0.1 on a
free port, filesystem storage under the state directory, no auth) and publishes tiny but real
OCI images (a config blob, one gzipped tar layer, an OCI manifest) over the distribution API.

``BearerTokenFront`` is an ASGI app that stands in front of it the way hosted registries (DOCR,
Docker Hub) do: a request without a valid token gets ``401`` with
``WWW-Authenticate: Bearer realm=...,service=...,scope=...``; ``GET /token`` hands out a token
for the asked scopes (checking basic credentials when users are configured); authorized requests
are proxied to the real registry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import secrets
import subprocess
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.http import free_port

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

CONFIG_TEMPLATE = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  headers:
    X-Content-Type-Options: [nosniff]
"""


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class TinyImage:
    """The three parts of a tiny OCI image."""

    config: bytes
    layer: bytes
    manifest: bytes

    @property
    def digest(self) -> str:
        return _digest(self.manifest)


def tiny_image(repository: str, tag: str, build: str = "") -> TinyImage:
    """A real, minimal OCI image whose one layer holds a file naming ``repository:tag``.

    ``build`` is written beside it: another build of the same tag, so another manifest digest
    (a tag re-pushed after it was tested).
    """
    content = f"{repository}:{tag}\n{build}".encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("release.txt")
        info.size = len(content)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    layer = gzip.compress(tar_bytes, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"org.opencontainers.image.version": tag}},
            "rootfs": {"type": "layers", "diff_ids": [_digest(tar_bytes)]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": _digest(layer), "size": len(layer)}],
        },
        sort_keys=True,
    ).encode()
    return TinyImage(config, layer, manifest)


class RegistryStartFailed(RuntimeError):
    """``docker-registry`` did not start or did not answer ``/v2/``."""


class LocalRegistry:
    """Debian's ``docker-registry`` on 127.0.0.1 with storage under ``state_dir``.

    Args:
        state_dir: Where the configuration, the log and the storage go.
        port: The port (default: a free one).
        binary: The registry executable.
    """

    def __init__(
        self, state_dir: Path, *, port: int | None = None, binary: str = "docker-registry"
    ) -> None:
        self.state_dir = Path(state_dir)
        self.port = port or free_port()
        self.binary = binary
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> LocalRegistry:
        """Start the registry and wait until ``GET /v2/`` answers."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        storage = self.state_dir / "storage"
        storage.mkdir(exist_ok=True)
        config = self.state_dir / "registry.yml"
        config.write_text(CONFIG_TEMPLATE.format(root=storage, port=self.port), encoding="utf-8")
        self._log = (self.state_dir / "registry.log").open("ab")
        self._process = subprocess.Popen(
            [self.binary, "serve", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                log = (self.state_dir / "registry.log").read_text(errors="replace")[-2000:]
                self._close_log()
                raise RegistryStartFailed(f"docker-registry exited: {log}")
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RegistryStartFailed(f"docker-registry did not answer on {self.url}/v2/")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the registry process."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
            self._process = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def push_image(
        self, repository: str, tag: str, http: httpx.Client | None = None, build: str = ""
    ) -> str:
        """Push a tiny OCI image as ``repository:tag``; return its manifest digest.

        Another ``build`` pushes different content under the same tag (the tag moves).
        """
        image = tiny_image(repository, tag, build)
        client = http or httpx.Client(timeout=10.0)
        try:
            for blob in (image.config, image.layer):
                self._push_blob(client, repository, blob)
            response = client.put(
                f"{self.url}/v2/{repository}/manifests/{tag}",
                content=image.manifest,
                headers={"Content-Type": OCI_MANIFEST},
            )
            response.raise_for_status()
        finally:
            if http is None:
                client.close()
        return image.digest

    def _push_blob(self, client: httpx.Client, repository: str, blob: bytes) -> None:
        digest = _digest(blob)
        if client.head(f"{self.url}/v2/{repository}/blobs/{digest}").status_code == 200:
            return
        started = client.post(f"{self.url}/v2/{repository}/blobs/uploads/")
        started.raise_for_status()
        location = started.headers["location"]
        if location.startswith("/"):
            location = self.url + location
        # Append to the Location string: httpx's params= would drop its _state query.
        separator = "&" if "?" in location else "?"
        done = client.put(
            f"{location}{separator}digest={digest}",
            content=blob,
            headers={"Content-Type": "application/octet-stream"},
        )
        done.raise_for_status()

    def publish(self, repository_prefix: str, services: Iterable[str], tag: str) -> dict[str, str]:
        """Push ``<prefix>/<service>:<tag>`` for every service; return service -> digest."""
        prefix = repository_prefix.strip("/")
        with httpx.Client(timeout=10.0) as client:
            return {
                service: self.push_image(f"{prefix}/{service}", tag, client) for service in services
            }


# ----------------------------------------------------------------------------------------------
# Bearer-token front

_REPO_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags)(?:/|$)")
_RESPONSE_SKIP = {"content-length", "transfer-encoding", "connection", "content-encoding", "date"}
_HOP_HEADERS = {"host", "authorization", "connection", "content-length", "transfer-encoding"}


class BearerTokenFront:
    """An ASGI token service and proxy in front of a registry (the DOCR/Docker Hub flow).

    Args:
        upstream: The registry to proxy to (``LocalRegistry.url``).
        users: username -> password; when given, ``/token`` requires basic auth.
        service: The ``service`` of the challenge.
        token_ttl: Seconds a token stays valid.
        unknown_repository_401: Answer ``401`` (with a fresh challenge) instead of ``404`` for a
            repository that does not exist, even to a valid token, as Docker Hub does (it will
            not tell "absent" from "not yours"). A missing tag of an existing repository
            still answers ``404``.
    """

    def __init__(
        self,
        upstream: str,
        *,
        users: Mapping[str, str] | None = None,
        service: str = "sandbox-registry",
        token_ttl: float = 300.0,
        unknown_repository_401: bool = False,
    ) -> None:
        self.unknown_repository_401 = unknown_repository_401
        self.upstream = upstream.rstrip("/")
        self.users = dict(users or {})
        self.service = service
        self.token_ttl = token_ttl
        self.counts: Counter[str] = Counter()
        self._tokens: dict[str, tuple[frozenset[str], float]] = {}
        self._lock = threading.Lock()
        self._faults = (0, 503)
        self._http = httpx.Client(timeout=10.0, follow_redirects=False)
        self.app = Starlette(
            routes=[
                Route("/token", self.token, methods=["GET"]),
                Route(
                    "/v2/{path:path}",
                    self.proxy,
                    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
                ),
            ]
        )

    def close(self) -> None:
        self._http.close()

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` ``/v2/`` requests with ``status`` (fault injection)."""
        with self._lock:
            self._faults = (count, status)

    def _take_fault(self) -> int | None:
        with self._lock:
            count, status = self._faults
            if count <= 0:
                return None
            self._faults = (count - 1, status)
            self.counts["faults"] += 1
            return status

    def revoke_all(self) -> None:
        """Forget every token (clients must follow the challenge again)."""
        with self._lock:
            self._tokens.clear()

    async def token(self, request: Request) -> Response:
        self.counts["token"] += 1
        if self.users:
            import base64

            header = request.headers.get("authorization", "")
            user = password = ""
            if header.lower().startswith("basic "):
                try:
                    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                except ValueError:
                    user = ""
            if not user or self.users.get(user) != password:
                self.counts["token_denied"] += 1
                return JSONResponse(
                    {"details": "incorrect username or password"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="sandbox registry token"'},
                )
        scopes = frozenset(request.query_params.getlist("scope"))
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = (scopes, time.monotonic() + self.token_ttl)
        return JSONResponse(
            {
                "token": token,
                "access_token": token,
                "expires_in": int(self.token_ttl),
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )

    def _required_scope(self, request: Request) -> str | None:
        match = _REPO_PATH.match(request.url.path)
        if match is None:
            return None
        actions = "pull" if request.method in {"GET", "HEAD"} else "pull,push"
        return f"repository:{match.group('name')}:{actions}"

    def _authorized(self, request: Request, scope: str | None) -> bool:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return False
        with self._lock:
            grant = self._tokens.get(header[7:].strip())
        if grant is None or grant[1] < time.monotonic():
            return False
        if scope is None:
            return True
        _, name, actions = scope.split(":", 2)
        granted: set[str] = set()
        for item in grant[0]:
            for one in item.split(" "):
                parts = one.split(":")
                if len(parts) == 3 and parts[0] == "repository" and parts[1] == name:
                    granted |= set(parts[2].split(","))
        return set(actions.split(",")) <= granted

    def _challenge(self, request: Request, scope: str | None, error: str | None = None) -> Response:
        realm = f"{str(request.base_url).rstrip('/')}/token"
        challenge = f'Bearer realm="{realm}",service="{self.service}"'
        if scope is not None:
            challenge += f',scope="{scope}"'
        if error is not None:
            challenge += f',error="{error}"'
        return JSONResponse(
            {
                "errors": [
                    {
                        "code": "UNAUTHORIZED",
                        "message": "authentication required",
                        "detail": None,
                    }
                ]
            },
            status_code=401,
            headers={"WWW-Authenticate": challenge},
        )

    def _repository_exists(self, request: Request) -> bool:
        match = _REPO_PATH.match(request.url.path)
        if match is None:
            return True
        probe = self._http.get(f"{self.upstream}/v2/{match.group('name')}/tags/list")
        return probe.status_code != 404

    async def proxy(self, request: Request) -> Response:
        self.counts["requests"] += 1
        fault = self._take_fault()
        if fault is not None:
            return JSONResponse(
                {"errors": [{"code": "UNAVAILABLE", "message": "sandbox fault"}]},
                status_code=fault,
            )
        scope = self._required_scope(request)
        if not self._authorized(request, scope):
            self.counts["challenged"] += 1
            return self._challenge(request, scope)
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        url = self.upstream + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        upstream = await run_in_threadpool(
            self._http.request, request.method, url, content=body, headers=headers
        )
        if (
            upstream.status_code == 404
            and self.unknown_repository_401
            and not await run_in_threadpool(self._repository_exists, request)
        ):
            self.counts["hidden_404"] += 1
            return self._challenge(request, scope, error="insufficient_scope")
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _RESPONSE_SKIP}
        if "location" in out_headers and out_headers["location"].startswith(self.upstream):
            out_headers["location"] = str(request.base_url).rstrip("/") + out_headers[
                "location"
            ].removeprefix(self.upstream)
        content = b"" if request.method == "HEAD" else upstream.content
        response = Response(content=content, status_code=upstream.status_code, headers=out_headers)
        if request.method == "HEAD" and "content-length" in upstream.headers:
            response.headers["content-length"] = upstream.headers["content-length"]
        return response
