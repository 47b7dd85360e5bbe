"""Run the project's Prefect side on one machine: a server, the work pool, the limit, a worker.

This is what ``prefect.yaml`` cannot hold. A ``LocalPrefect`` starts ``prefect server start`` on
127.0.0.1 with its own ``PREFECT_HOME`` (SQLite inside it) and stops its whole process group;
``ensure_work_pool`` and ``ensure_concurrency_limit`` create (or update) what the flows need
through the REST API, so the project never assumes they exist; ``deploy`` runs
``prefect --no-prompt deploy --all`` from the project root; ``Worker`` runs
``prefect worker start --pool release-promotion`` and stops it the way it actually stops
(SIGINT, then SIGKILL of its process group). The demo, the CLI and the flow tests share these.

A protected server: ``LocalPrefect(auth_string="user:pass")`` starts the server with
``PREFECT_SERVER_API_AUTH_STRING`` and gives every client process it starts (``env()``: CLI,
``prefect deploy``, the worker and its flow runs) ``PREFECT_API_AUTH_STRING``; the REST calls
here send it as Basic auth (``deployments.runs.auth_headers``). It is never logged.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from deployments.runs import AUTH_STRING_ENV, api_client, auth_headers, request_with_retry
from sandbox.http import PortInUse, free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORK_POOL = "release-promotion"
SERVER_AUTH_STRING_ENV = "PREFECT_SERVER_API_AUTH_STRING"
PROJECT_DIR_ENV = "RELEASE_PROMOTION_PROJECT_DIR"
"""Env var that prefect.yaml's ``set_working_directory`` pull step reads (absolute path)."""

_QUIET_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLI_COLORS": "false",
    "PREFECT_CLI_WRAP_LINES": "false",
}

__all__ = [
    "PROJECT_DIR_ENV",
    "PROJECT_ROOT",
    "SERVER_AUTH_STRING_ENV",
    "WORK_POOL",
    "LocalPrefect",
    "PortInUse",
    "PrefectCommandFailed",
    "PrefectStartFailed",
    "Worker",
    "deploy",
    "deployable_names",
    "ensure_concurrency_limit",
    "ensure_finish_automation",
    "ensure_work_pool",
    "environment_locks",
    "prefect_command",
    "prefect_env",
    "wait_healthy",
]


class PrefectStartFailed(RuntimeError):
    """The local Prefect server (or worker) did not come up; the message holds its log tail."""


class PrefectCommandFailed(RuntimeError):
    """A ``prefect`` CLI command exited non-zero; the message holds its output."""


def prefect_command() -> list[str]:
    """The ``prefect`` CLI of the running interpreter (works inside the venv without PATH)."""
    candidate = Path(sys.executable).with_name("prefect")
    if candidate.exists():
        return [str(candidate)]
    return [sys.executable, "-m", "prefect"]


def prefect_env(
    api_url: str, home: str | os.PathLike[str] | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for a Prefect process talking to ``api_url`` (never a temporary server)."""
    env = {**os.environ, **_QUIET_ENV, "PREFECT_API_URL": api_url}
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    env.setdefault(PROJECT_DIR_ENV, str(PROJECT_ROOT))
    if extra:
        env.update(extra)
    return env


def _die_with_parent(sig: int) -> Callable[[], None]:
    """A ``preexec_fn``: new session, and ``sig`` when the parent dies (Linux ``PR_SET_PDEATHSIG``).

    A test run killed hard (or a ``timeout``) must not leave a server or worker behind. The
    signal follows the *thread* that started the child: start them from a long-lived thread.
    """

    def setup() -> None:
        os.setsid()
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG

    return setup


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_healthy(
    api_url: str, timeout: float = 60.0, process: subprocess.Popen[Any] | None = None
) -> None:
    """Wait until ``GET {api_url}/health`` answers 200; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as http:
        while True:
            if process is not None and process.poll() is not None:
                raise PrefectStartFailed(f"Prefect server exited with code {process.returncode}")
            try:
                if http.get(f"{api_url}/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise PrefectStartFailed(
                    f"Prefect server at {api_url} not healthy after {timeout}s"
                )
            time.sleep(0.2)


def _stop_group(process: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGINT the process group, then SIGTERM, then SIGKILL; always reap the leader."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        break
    # Children of the group (flow-run subprocesses) may outlive the leader.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


class LocalPrefect:
    """A ``prefect server`` on 127.0.0.1 with its own home and SQLite database.

    Use as a context manager::

        with LocalPrefect() as prefect:
            ensure_work_pool(prefect.api_url)
            print(prefect.ui_url)

    Args:
        home: the ``PREFECT_HOME`` (default: a new temporary directory, removed on stop).
        port: the port (default: a free one); a busy port raises ``PortInUse``.
        startup_timeout: seconds to wait for ``/api/health``.
        extra_env: more environment for the server process.
        auth_string: protect the API with this ``user:password`` (HTTP Basic); ``env()`` then
            carries it as ``PREFECT_API_AUTH_STRING`` for every client.
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        port: int | None = None,
        startup_timeout: float = 90.0,
        extra_env: Mapping[str, str] | None = None,
        auth_string: str | None = None,
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if home is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="prefect-home-")
            home = self._tmp.name
        self.home = Path(home).resolve()
        self.requested_port = port
        self.port = port or 0
        self.startup_timeout = startup_timeout
        self.extra_env = dict(extra_env or {})
        self.auth_string = auth_string or None
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "server.log"

    @property
    def protected(self) -> bool:
        return self.auth_string is not None

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a client process (CLI, worker, flow) of this server."""
        env = prefect_env(self.api_url, self.home, extra)
        if self.auth_string is not None:
            env[AUTH_STRING_ENV] = self.auth_string
        return env

    def client(self, timeout: float = 15.0) -> httpx.Client:
        """An httpx client for this server's REST API (authenticated when protected)."""
        return api_client(self.api_url, timeout, auth_string=self.auth_string or "")

    def flow_run_url(self, flow_run_id: object) -> str:
        """The UI page of a flow run."""
        return f"{self.ui_url}/runs/flow-run/{flow_run_id}"

    def start(self) -> LocalPrefect:
        if self.process is not None:
            return self
        if self.requested_port is not None:
            if not _port_free(self.requested_port):
                raise PortInUse(
                    f"port {self.requested_port} on 127.0.0.1 is already in use: "
                    "stop what runs there or choose another port"
                )
            self.port = self.requested_port
        else:
            self.port = free_port()
        self.home.mkdir(parents=True, exist_ok=True)
        env = self.env(
            {
                "PREFECT_SERVER_API_HOST": "127.0.0.1",
                "PREFECT_SERVER_API_PORT": str(self.port),
                "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
                **self.extra_env,
            }
        )
        if self.auth_string is not None:
            env[SERVER_AUTH_STRING_ENV] = self.auth_string
        else:
            # an auth string inherited from the caller would protect a server meant to be open
            env.pop(SERVER_AUTH_STRING_ENV, None)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                *prefect_command(),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(signal.SIGTERM),
        )
        try:
            wait_healthy(self.api_url, self.startup_timeout, self.process)
        except PrefectStartFailed as exc:
            self.stop()
            raise PrefectStartFailed(
                f"{exc}\n--- {self.log_path} ---\n{_tail(self.log_path)}"
            ) from None
        return self

    def stop(self) -> None:
        if self.process is not None:
            _stop_group(self.process)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @contextlib.contextmanager
    def use(self) -> Iterator[LocalPrefect]:
        """Point this process's Prefect client at the server (``temporary_settings``)."""
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        updates: dict[Any, Any] = {PREFECT_API_URL: self.api_url}
        if self.auth_string is not None:
            updates[PREFECT_API_AUTH_STRING] = self.auth_string
        with temporary_settings(updates):
            yield self

    def __enter__(self) -> LocalPrefect:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _default_api_url(api_url: str | None) -> str:
    url = api_url or os.environ.get("PREFECT_API_URL")
    if not url:
        raise ValueError("no Prefect API URL: pass api_url or set PREFECT_API_URL")
    return url.rstrip("/")


def ensure_work_pool(
    api_url: str | None = None,
    name: str = WORK_POOL,
    concurrency_limit: int | None = None,
    auth_string: str | None = None,
) -> None:
    """Create the process work pool ``name`` unless it exists (idempotent).

    ``auth_string``: the server's basic auth (default: ``PREFECT_API_AUTH_STRING``)."""
    from prefect.workers.process import ProcessWorker

    url = _default_api_url(api_url)
    body: dict[str, Any] = {
        "name": name,
        "type": "process",
        "description": "Runs the release-promotion flows as local processes.",
        "base_job_template": ProcessWorker.get_default_base_job_template(),
    }
    if concurrency_limit is not None:
        body["concurrency_limit"] = concurrency_limit
    with httpx.Client(timeout=15.0, headers=auth_headers(auth_string)) as http:
        response = request_with_retry(http, "POST", f"{url}/work_pools/", json=body)
        if response.status_code == 409:
            return
        if response.status_code >= 400:
            raise PrefectCommandFailed(
                f"cannot create work pool {name!r}: HTTP {response.status_code} {response.text}"
            )


def environment_locks(config_file: str | os.PathLike[str] | None = None) -> list[str]:
    """The global concurrency limits the flows take: one per application and environment of the
    promotion setup (``promotion.names.environment_lock``)."""
    from promotion.config import load_applications
    from promotion.names import environment_lock

    return [
        environment_lock(name, env.name)
        for name, config in load_applications(config_file).applications.items()
        for env in config.environments
    ]


def ensure_concurrency_limit(
    api_url: str | None = None,
    name: str | None = None,
    limit: int = 1,
    auth_string: str | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> list[str]:
    """Create (or set to ``limit``) the global concurrency limit ``name``, active; without a
    name, every application's environment locks of the promotion setup (``environment_locks``). Idempotent.
    Returns the names ensured.

    The flows take them with ``concurrency(name, occupy=1, strict=True)``: strict, so a missing
    limit is an error, never an unguarded run.
    """
    url = _default_api_url(api_url)
    names = [name] if name is not None else environment_locks(config_file)
    with httpx.Client(timeout=15.0, headers=auth_headers(auth_string)) as http:
        for each in names:
            response = request_with_retry(
                http,
                "POST",
                f"{url}/v2/concurrency_limits/",
                json={"name": each, "limit": limit, "active": True},
            )
            if response.status_code == 409:
                response = request_with_retry(
                    http,
                    "PATCH",
                    f"{url}/v2/concurrency_limits/{each}",
                    json={"limit": limit, "active": True},
                )
            if response.status_code >= 400:
                raise PrefectCommandFailed(
                    f"cannot create concurrency limit {each!r}: "
                    f"HTTP {response.status_code} {response.text}"
                )
    return names


def ensure_finish_automation(
    api_url: str | None = None, auth_string: str | None = None
) -> str | None:
    """Create (or update in place) the automation that finishes stopped promotions.

    When a promote-release run ends Failed or Crashed, it starts the ``finish-promotion``
    deployment with the run's id (``promotion.names.FINISH_AUTOMATION``): an approval that
    expires under a deployment is failed by the server without running flow code, so this is
    what closes its PR and finishes its summary. Returns the automation id, or None when the
    finish-promotion deployment does not exist (nothing to run).
    """
    from promotion.names import FINISH_AUTOMATION, FINISH_DEPLOYMENT, PROMOTE_FLOW

    url = _default_api_url(api_url)
    with httpx.Client(timeout=15.0, headers=auth_headers(auth_string)) as http:
        found = request_with_retry(http, "GET", f"{url}/deployments/name/{FINISH_DEPLOYMENT}")
        if found.status_code == 404:
            return None
        found.raise_for_status()
        body = {
            "name": FINISH_AUTOMATION,
            "description": "Close the PR and finish the summary of a promote-release run that "
            "ended Failed or Crashed (an expired approval fails the run without its code).",
            "enabled": True,
            "trigger": {
                "type": "event",
                "match": {"prefect.resource.id": "prefect.flow-run.*"},
                "match_related": {
                    "prefect.resource.role": "flow",
                    "prefect.resource.name": PROMOTE_FLOW,
                },
                "after": [],
                "expect": ["prefect.flow-run.Failed", "prefect.flow-run.Crashed"],
                "for_each": ["prefect.resource.id"],
                "posture": "Reactive",
                "threshold": 1,
                "within": 0,
            },
            "actions": [
                {
                    "type": "run-deployment",
                    "source": "selected",
                    "deployment_id": found.json()["id"],
                    "parameters": {"flow_run_id": "{{ event.resource.id }}"},
                }
            ],
        }
        existing = request_with_retry(
            http,
            "POST",
            f"{url}/automations/filter",
            json={"automations": {"name": {"any_": [FINISH_AUTOMATION]}}, "limit": 10},
        )
        existing.raise_for_status()
        ids = [a["id"] for a in existing.json() if a.get("name") == FINISH_AUTOMATION]
        if ids:
            for extra in ids[1:]:  # a duplicate from a race: one automation only
                request_with_retry(http, "DELETE", f"{url}/automations/{extra}")
            updated = request_with_retry(http, "PUT", f"{url}/automations/{ids[0]}", json=body)
            if updated.status_code >= 400:
                raise PrefectCommandFailed(
                    f"cannot update automation {FINISH_AUTOMATION!r}: "
                    f"HTTP {updated.status_code} {updated.text}"
                )
            return str(ids[0])
        created = request_with_retry(http, "POST", f"{url}/automations/", json=body)
        if created.status_code >= 400:
            raise PrefectCommandFailed(
                f"cannot create automation {FINISH_AUTOMATION!r}: "
                f"HTTP {created.status_code} {created.text}"
            )
        return str(created.json()["id"])


def _defines(path: Path, function: str) -> bool:
    import ast

    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return False
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function
        for node in tree.body
    )


def deployable_names(
    project_root: str | os.PathLike[str] = PROJECT_ROOT,
    prefect_file: str | os.PathLike[str] | None = None,
) -> tuple[list[str], list[str]]:
    """The deployments of ``prefect.yaml`` whose entrypoint exists in this checkout, and those
    whose flow is not there (yet): ``(deployable, missing)``."""
    from ruamel.yaml import YAML

    root = Path(project_root).resolve()
    file = Path(prefect_file).resolve() if prefect_file is not None else root / "prefect.yaml"
    data: Any = YAML(typ="safe", pure=True).load(file.read_text(encoding="utf-8"))
    deployable: list[str] = []
    missing: list[str] = []
    for item in data.get("deployments") or []:
        module, _, function = str(item.get("entrypoint", "")).partition(":")
        found = _defines(root / module, function)
        (deployable if found else missing).append(str(item["name"]))
    return deployable, missing


def deploy(
    env: Mapping[str, str],
    project_root: str | os.PathLike[str] = PROJECT_ROOT,
    names: Sequence[str] = (),
    prefect_file: str | os.PathLike[str] | None = None,
    timeout: float = 180.0,
) -> str:
    """Run ``prefect --no-prompt deploy`` (``--name`` for each of ``names``; by default every
    deployment whose flow exists in the checkout, see ``deployable_names``, or ``--all``).

    ``env`` must carry ``PREFECT_API_URL`` (see ``LocalPrefect.env``). The project root is
    exported as ``RELEASE_PROMOTION_PROJECT_DIR`` for the ``set_working_directory`` pull step.
    Returns the CLI output; raises ``PrefectCommandFailed`` with it on failure.
    """
    root = Path(project_root).resolve()
    full_env = {**env, **_QUIET_ENV, PROJECT_DIR_ENV: str(root)}
    args = [*prefect_command(), "--no-prompt", "deploy"]
    if prefect_file is not None:
        args += ["--prefect-file", str(Path(prefect_file).resolve())]
    if not names:
        deployable, missing = deployable_names(root, prefect_file)
        names = deployable if missing else ()
    if names:
        for name in names:
            args += ["--name", name]
    else:
        args.append("--all")
    result = subprocess.run(
        args,
        cwd=root,
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise PrefectCommandFailed(f"prefect deploy failed (exit {result.returncode}):\n{output}")
    ensure_finish_automation(env.get("PREFECT_API_URL"), env.get(AUTH_STRING_ENV))
    return output


class Worker:
    """``prefect worker start --pool POOL`` in its own process group.

    Args:
        env: environment with ``PREFECT_API_URL`` (and whatever the flows need:
            ``RELEASE_PROMOTION_*``); flow runs inherit it.
        pool: the work pool.
        cwd: working directory (default: the project root).
        log_path: where its output goes (default: a temporary file).
        query_seconds: how often it polls for runs (``PREFECT_WORKER_QUERY_SECONDS``).
        name: the worker's name (default: a unique one; ``start`` waits until the server has
            seen this name poll the pool).
    """

    def __init__(
        self,
        env: Mapping[str, str],
        pool: str = WORK_POOL,
        cwd: str | os.PathLike[str] = PROJECT_ROOT,
        log_path: str | os.PathLike[str] | None = None,
        query_seconds: float = 1.0,
        name: str | None = None,
    ) -> None:
        self.env = {
            **env,
            **_QUIET_ENV,
            "PREFECT_WORKER_QUERY_SECONDS": str(query_seconds),
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            "PYTHONUNBUFFERED": "1",
        }
        self.pool = pool
        self.cwd = Path(cwd)
        # A unique name, so readiness means *this* worker polled (not one seen before).
        self.name = name or f"release-promotion-{uuid.uuid4().hex[:8]}"
        if log_path is None:
            fd, tmp = tempfile.mkstemp(prefix="prefect-worker-", suffix=".log")
            os.close(fd)
            log_path = tmp
        self.log_path = Path(log_path)
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, ready_timeout: float = 60.0) -> Worker:
        """Start the worker and wait until the server has seen it poll the pool."""
        if self.process is not None:
            return self
        args = [*prefect_command(), "worker", "start", "--pool", self.pool, "--type", "process"]
        args += ["--name", self.name]
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            args,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # the worker ignores a lone SIGTERM for long; its flow runs then die with it
            preexec_fn=_die_with_parent(signal.SIGKILL),
        )
        self._wait_ready(ready_timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        api_url = self.env.get("PREFECT_API_URL", "").rstrip("/")
        deadline = time.monotonic() + timeout
        # the worker's own credential, not this process's
        headers = auth_headers(self.env.get(AUTH_STRING_ENV, ""))
        with httpx.Client(timeout=5.0, headers=headers) as http:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise PrefectStartFailed(
                        f"worker exited with code {self.process.returncode}\n"
                        f"--- {self.log_path} ---\n{_tail(self.log_path)}"
                    )
                try:
                    response = http.post(
                        f"{api_url}/work_pools/{self.pool}/workers/filter", json={}
                    )
                    if response.status_code == 200 and any(
                        w.get("name") == self.name for w in response.json()
                    ):
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise PrefectStartFailed(
                        f"worker for pool {self.pool!r} not seen by the server after {timeout}s\n"
                        f"--- {self.log_path} ---\n{_tail(self.log_path)}"
                    )
                time.sleep(0.25)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker and its flow-run processes at once (crash simulation)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            self.process = None
        self._close_log()

    def stop(self, grace: float = 5.0) -> None:
        """SIGINT (the worker ignores a lone SIGTERM for long), then SIGKILL the group."""
        if self.process is not None:
            _stop_group(self.process, grace)
            self.process = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
