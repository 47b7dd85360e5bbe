"""Read many files of the GitOps repository at the head of its branches in one network round.

``read_files`` makes a shallow fetch (``--depth 1``) of the wanted branches over git's
smart-HTTP protocol into a temporary bare repository, then reads every wanted path with one
``git cat-file --batch``: the network cost is the same for one overlay or a thousand. The token
(a ``SecretStr``) goes to git as an ``Authorization`` header through ``GIT_CONFIG_*`` environment
variables, never in the command line or the URL, so it shows in no process list, log or error
message (GitHub accepts ``x-access-token:<token>`` as basic credentials for git over HTTPS).
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import SecretStr

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


class GitOpsError(Exception):
    """Base of the failures reading the GitOps repository."""


class GitFetchFailed(GitOpsError):
    """git could not fetch the branches (unreachable, refused, unknown branch, timeout)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class GitReadFailed(GitOpsError):
    """The fetched commit could not be read."""


def is_transient(exc: BaseException) -> bool:
    """Whether retrying may help (network errors, timeouts, 5xx from the git server)."""
    return isinstance(exc, GitFetchFailed) and exc.transient


@dataclass(frozen=True)
class BranchFiles:
    """Files of one branch at its head commit; a path that does not exist maps to None."""

    repo_url: str
    branch: str
    revision: str
    files: Mapping[str, str | None]


def redact_url(url: str) -> str:
    """``url`` without any user:password part."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return parts._replace(netloc=host).geturl()


def token_applies(api_url: str, repo_url: str) -> bool:
    """Whether a token for the GitHub API at ``api_url`` may be sent to ``repo_url``.

    Only to the same host (GitHub Enterprise, the sandbox) or to ``github.com`` for
    ``api.github.com``: a token is never handed to another server.
    """
    api_host = (urlsplit(api_url).hostname or "").lower()
    repo_host = (urlsplit(repo_url).hostname or "").lower()
    return bool(repo_host) and (repo_host == api_host or api_host == f"api.{repo_host}")


def _git_env(token: SecretStr | None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GIT_") or key in {"GIT_SSL_CAINFO", "GIT_SSL_NO_VERIFY"}
    }
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
            "LC_ALL": "C",
        }
    )
    if token is not None:
        basic = base64.b64encode(f"x-access-token:{token.get_secret_value()}".encode()).decode()
        env.update(
            {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "http.extraHeader",
                "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
            }
        )
    return env


def _scrub(text: str, token: SecretStr | None) -> str:
    if token is not None:
        secret = token.get_secret_value()
        if secret:
            text = text.replace(secret, "***")
            basic = base64.b64encode(f"x-access-token:{secret}".encode()).decode()
            text = text.replace(basic, "***")
    return text.strip()


_TRANSIENT = re.compile(
    r"(timed out|timeout|could not resolve host|connection refused|connection reset|"
    r"failed to connect|the remote end hung up|early eof|returned error: 5\d\d|"
    r"HTTP 5\d\d|RPC failed)",
    re.IGNORECASE,
)


def _run(
    args: list[str],
    env: Mapping[str, str],
    *,
    token: SecretStr | None,
    what: str,
    timeout: float,
    input: bytes | None = None,
) -> bytes:
    try:
        result = subprocess.run(
            ["git", *args],
            env=dict(env),
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GitFetchFailed(f"{what}: git did not finish in {timeout:g}s", transient=True) from exc
    except OSError as exc:
        raise GitOpsError(f"{what}: cannot run git: {exc}") from exc
    if result.returncode != 0:
        message = _scrub(result.stderr.decode(errors="replace"), token) or (
            f"exit code {result.returncode}"
        )
        raise GitFetchFailed(f"{what}: {message}", transient=bool(_TRANSIENT.search(message)))
    return result.stdout


def read_files(
    repo_url: str,
    wanted: Mapping[str, Iterable[str]],
    token: SecretStr | None = None,
    *,
    timeout: float = 120.0,
) -> dict[str, BranchFiles]:
    """Read the files ``wanted`` (branch -> paths) at the head of each branch of ``repo_url``.

    One shallow fetch of all the branches (one network round), then one local batch read.

    Raises:
        GitFetchFailed: the fetch failed (``transient`` tells whether a retry may help); the
            message names the repository (without credentials) and git's own reason.
        GitReadFailed: the fetched objects could not be read.
    """
    branches = sorted(wanted)
    if not branches:
        return {}
    shown = redact_url(repo_url)
    env = _git_env(token)
    with tempfile.TemporaryDirectory(prefix="gitops-read-") as tmp:
        run_env = {**env, "GIT_DIR": tmp}
        _run(["init", "--quiet", "--bare", tmp], env, token=token, what=shown, timeout=timeout)
        refspecs = [f"+refs/heads/{b}:refs/remotes/origin/{b}" for b in branches]
        _run(
            [
                "-c",
                "protocol.version=2",
                "fetch",
                "--quiet",
                "--depth=1",
                "--no-tags",
                "--no-write-fetch-head",
                repo_url,
                *refspecs,
            ],
            run_env,
            token=token,
            what=f"git fetch {shown} ({', '.join(branches)})",
            timeout=timeout,
        )
        heads = (
            _run(
                ["rev-parse", *[f"refs/remotes/origin/{b}" for b in branches]],
                run_env,
                token=token,
                what=f"{shown}: resolve branch heads",
                timeout=timeout,
            )
            .decode()
            .split()
        )
        revisions = dict(zip(branches, heads, strict=True))
        requests: list[tuple[str, str]] = []
        for branch in branches:
            for path in dict.fromkeys(wanted[branch]):
                requests.append((branch, path.strip("/")))
        batch = "".join(f"{revisions[b]}:{p}\n" for b, p in requests).encode()
        out = _run(
            ["cat-file", "--batch"],
            run_env,
            token=token,
            what=f"{shown}: read files",
            timeout=timeout,
            input=batch,
        )
    contents = _parse_batch(out, len(requests), shown)
    files: dict[str, dict[str, str | None]] = {b: {} for b in branches}
    for (branch, path), content in zip(requests, contents, strict=True):
        files[branch][path] = content
    return {
        b: BranchFiles(repo_url=shown, branch=b, revision=revisions[b], files=files[b])
        for b in branches
    }


def _parse_batch(out: bytes, count: int, shown: str) -> list[str | None]:
    """Parse ``git cat-file --batch`` output: ``<oid> <type> <size>\\n<data>\\n`` or ``missing``."""
    contents: list[str | None] = []
    pos = 0
    for _ in range(count):
        end = out.find(b"\n", pos)
        if end < 0:
            raise GitReadFailed(f"{shown}: truncated answer from git cat-file")
        header = out[pos:end].decode(errors="replace").split()
        pos = end + 1
        if len(header) == 3 and header[1] in {"blob", "tree", "commit", "tag"}:
            size = int(header[2])
            data = out[pos : pos + size]
            pos += size + 1
            contents.append(data.decode("utf-8", errors="replace") if header[1] == "blob" else None)
        else:  # "<name> missing" or "<name> ambiguous"
            contents.append(None)
    return contents


def kustomization_candidates(app_path: str) -> list[str]:
    """The file names kustomize looks for in an application's directory."""
    base = app_path.strip("/")
    return [f"{base}/{name}" if base else name for name in KUSTOMIZATION_NAMES]


def pick_kustomization(files: Mapping[str, str | None], app_path: str) -> tuple[str, str] | None:
    """The (path, text) of the kustomization of ``app_path`` among ``files``, if there is one."""
    for candidate in kustomization_candidates(app_path):
        text = files.get(candidate)
        if text is not None:
            return candidate, text
    return None
