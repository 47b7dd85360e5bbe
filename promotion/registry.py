"""Container registry client: is every image of a release there? (OCI distribution API).

``check_release`` sends ``HEAD /v2/<repository>/manifests/<tag>`` for every service with an
``Accept`` of the OCI and Docker manifest and index media types, and raises ONE
``ReleaseIncomplete`` naming every missing image. Hosted registries (DOCR, Docker Hub) answer an
anonymous request with ``401`` and ``WWW-Authenticate: Bearer realm=...,service=...,scope=...``;
the client then asks the realm for a token (with basic credentials when it has them), caches it
per scope until it expires, and repeats the request with it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MANIFEST_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)
TRANSIENT_STATUS = {429, 500, 502, 503, 504}
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(Exception):
    """Base of every registry failure."""


class RegistryUnavailable(RegistryError):
    """The registry (or its token service) could not be reached: transient."""


class RegistryRequestFailed(RegistryError):
    """The registry answered an unexpected HTTP status."""

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class RegistryAuthFailed(RegistryRequestFailed):
    """The credentials were refused, or no token grants the access."""


class RepositoryNotFound(RegistryRequestFailed):
    """The repository does not exist (or is not visible with these credentials)."""


@dataclass(frozen=True)
class MissingImage:
    service: str
    reference: str
    detail: str = ""


class ReleaseIncomplete(RegistryError):
    """Images of a release are missing; ``missing`` lists every one of them."""

    def __init__(self, tag: str, missing: tuple[MissingImage, ...], registry: str) -> None:
        listed = ", ".join(
            f"{m.service} ({m.reference}{'; ' + m.detail if m.detail else ''})" for m in missing
        )
        super().__init__(
            f"release {tag} is incomplete in {registry}: {len(missing)} image(s) missing: {listed}"
        )
        self.tag = tag
        self.missing = missing


def is_transient(exc: BaseException) -> bool:
    """Whether retrying ``exc`` may help: 5xx/429, timeouts, connection errors."""
    if isinstance(exc, RegistryUnavailable):
        return True
    if isinstance(exc, RegistryRequestFailed):
        return exc.status_code is not None and (
            exc.status_code in TRANSIENT_STATUS or exc.status_code >= 500
        )
    return isinstance(exc, httpx.TimeoutException | httpx.TransportError)


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="r",service="s"`` -> ``("bearer", {"realm": "r", "service": "s"})``."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), {k.lower(): v for k, v in _CHALLENGE_PARAM.findall(rest)}


class RegistryClient:
    """A client of one registry's distribution API.

    Args:
        base_url: The registry, for example ``https://registry.digitalocean.com``.
        username: For the token service (DOCR: any non-empty name with an API token). It can
            itself be a token, so it never appears in a message.
        password: The password or API token (never printed).
        http: The ``httpx.Client`` to use; by default one is built and owned with ``timeout``.
        timeout: Per-request timeout of the default client.
        clock: Monotonic seconds, for token expiry.
    """

    def __init__(
        self,
        base_url: str,
        *,
        username: SecretStr | str | None = None,
        password: SecretStr | str | None = None,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._username = SecretStr(username) if isinstance(username, str) else username
        self._password = SecretStr(password) if isinstance(password, str) else password
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout)
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}
        self.token_requests = 0

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r})"

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport and the token flow -----------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        what: str,
        auth: httpx.BasicAuth | None = None,
    ) -> httpx.Response:
        try:
            return self._http.request(
                method, url, headers=dict(headers), auth=auth or httpx.USE_CLIENT_DEFAULT
            )
        except httpx.TimeoutException as exc:
            raise RegistryUnavailable(
                f"{what}: {self.base_url} did not answer in time ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise RegistryUnavailable(f"{what}: cannot reach {self.base_url}: {exc}") from exc

    def _basic(self) -> httpx.BasicAuth | None:
        if self._username is None or self._password is None:
            return None
        return httpx.BasicAuth(self._username.get_secret_value(), self._password.get_secret_value())

    def _fetch_token(self, params: dict[str, str], scope: str, what: str) -> tuple[str, float]:
        realm = params.get("realm")
        if not realm:
            raise RegistryAuthFailed(f"{what}: Bearer challenge without a realm", status_code=401)
        query = {"service": params.get("service", "")}
        query["scope"] = params.get("scope") or scope
        self.token_requests += 1
        try:
            response = self._http.get(
                realm, params=query, auth=self._basic() or httpx.USE_CLIENT_DEFAULT
            )
        except httpx.TimeoutException as exc:
            raise RegistryUnavailable(f"{what}: token service {realm} timed out") from exc
        except httpx.TransportError as exc:
            raise RegistryUnavailable(f"{what}: cannot reach token service {realm}: {exc}") from exc
        if response.status_code in {401, 403}:
            raise RegistryAuthFailed(
                f"{what}: token service {realm} refused the credentials "
                f"(HTTP {response.status_code})",
                status_code=response.status_code,
            )
        if not response.is_success:
            raise RegistryRequestFailed(
                f"{what}: token service {realm} answered HTTP {response.status_code}",
                status_code=response.status_code,
            )
        body: Any = response.json()
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryAuthFailed(f"{what}: token service {realm} returned no token")
        expires_in = body.get("expires_in", 60)
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 60.0
        # Renew a little early so a token never expires between the check and the request.
        return token, self._clock() + max(lifetime - 10.0, lifetime / 2)

    def _request(
        self, method: str, path: str, scope: str, what: str, accept: str | None = None
    ) -> httpx.Response:
        url = f"{self.base_url}{path}"
        headers = {"Accept": accept} if accept else {}
        cached = self._tokens.get(scope)
        if cached is not None and cached[1] > self._clock():
            headers["Authorization"] = f"Bearer {cached[0]}"
        response = self._send(method, url, headers, what)
        if response.status_code != 401:
            return response
        scheme, params = parse_challenge(response.headers.get("www-authenticate", ""))
        basic = None
        if scheme == "bearer":
            self._tokens.pop(scope, None)
            token = self._fetch_token(params, scope, what)
            self._tokens[scope] = token
            headers["Authorization"] = f"Bearer {token[0]}"
        elif scheme == "basic" and self._basic() is not None:
            basic = self._basic()
        else:
            raise RegistryAuthFailed(
                f"{what}: {self.base_url} requires authentication ({scheme or 'no challenge'})",
                status_code=401,
            )
        response = self._send(method, url, headers, what, auth=basic)
        if response.status_code == 401 and scheme == "bearer":
            # The token service accepted the credentials and issued a token for this scope, yet
            # the registry refuses it: Docker Hub answers so for a repository that does not exist
            # (it will not tell "absent" from "not yours"). Report it as missing, not as bad
            # credentials.
            raise RepositoryNotFound(
                f"{what}: {self.base_url} answered 401 to a freshly issued token for {scope}: "
                "the repository does not exist (or these credentials may not read it)",
                status_code=401,
            )
        if response.status_code == 401:
            raise RegistryAuthFailed(
                f"{what}: {self.base_url} refused the credentials for {scope}", status_code=401
            )
        return response

    def _failed(self, response: httpx.Response, what: str) -> RegistryRequestFailed:
        retry_after: float | None = None
        try:
            retry_after = float(response.headers.get("retry-after", ""))
        except ValueError:
            retry_after = None
        status = response.status_code
        kind = RegistryAuthFailed if status in {401, 403} else RegistryRequestFailed
        detail = response.text[:300] if response.request.method != "HEAD" else ""
        return kind(
            f"{what}: {self.base_url} answered HTTP {status}{': ' + detail if detail else ''}",
            status_code=status,
            retry_after=retry_after,
        )

    # -- API ------------------------------------------------------------------------------------

    def manifest_digest(self, repository: str, tag: str) -> str | None:
        """The digest of ``repository:tag`` (``HEAD`` of the manifest), or None if it is absent."""
        what = f"[{repository}:{tag}] HEAD manifest"
        try:
            response = self._request(
                "HEAD",
                f"/v2/{repository}/manifests/{tag}",
                f"repository:{repository}:pull",
                what,
                accept=MANIFEST_ACCEPT,
            )
        except RepositoryNotFound:
            return None
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise self._failed(response, what)
        return str(response.headers.get("docker-content-digest", ""))

    def check_release(self, repositories: Mapping[str, str], tag: str) -> dict[str, str]:
        """Check every image of a release; return service -> manifest digest.

        Args:
            repositories: service -> repository path inside the registry
                (``microservices-demo/frontend``).
            tag: The release tag.

        Raises:
            ReleaseIncomplete: listing EVERY missing image, not just the first.
        """
        found: dict[str, str] = {}
        missing: list[MissingImage] = []
        for service, repository in sorted(repositories.items()):
            digest = self.manifest_digest(repository, tag)
            if digest is None:
                missing.append(MissingImage(service, f"{repository}:{tag}"))
            else:
                found[service] = digest
        if missing:
            raise ReleaseIncomplete(tag, tuple(missing), self.base_url)
        return found

    def list_tags(self, repository: str, page_size: int = 100) -> list[str]:
        """Every tag of ``repository`` (following ``Link`` pagination)."""
        what = f"[{repository}] list tags"
        path: str | None = f"/v2/{repository}/tags/list?n={page_size}"
        tags: list[str] = []
        while path:
            response = self._request("GET", path, f"repository:{repository}:pull", what)
            if response.status_code == 404:
                raise RepositoryNotFound(
                    f"{what}: repository {repository} not found in {self.base_url}",
                    status_code=404,
                )
            if not response.is_success:
                raise self._failed(response, what)
            tags.extend(response.json().get("tags") or [])
            link = response.headers.get("link", "")
            match = re.match(r"<([^>]+)>", link)
            path = match.group(1) if match else None
            if path and path.startswith(self.base_url):
                path = path.removeprefix(self.base_url)
        return tags
