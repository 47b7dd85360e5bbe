"""Start every local stand-in at once: the GitOps repository, GitHub, Argo CD and the registry.

``start_sandbox(state_dir)`` seeds the microservices-demo repository (a real bare git repo) at
v1.0.0, serves the GitHub emulator over it, starts the Argo CD emulator with the staging and prod
Applications (auto-sync on, following ``main``) and a real ``docker-registry`` holding the images
of v1.0.0 and v1.0.1, and per environment an application endpoint (``sandbox.webapp``: ``GET
/version`` reports the tag Argo CD runs there), each on a free 127.0.0.1 port. It returns a ``Sandbox`` (a context manager)
whose ``info`` is what clients need: URLs and tokens, also written to ``state_dir/sandbox.json``.
``python -m sandbox up`` is the same from a shell (see ``sandbox.__main__``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from promotion.config import PromotionConfig, load_config
from sandbox.http import PortInUse, RunningServer, serve_in_thread
from sandbox.seed import seed_repository

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = PROJECT_ROOT / ".sandbox" / "sandbox"
INFO_FILE = "sandbox.json"
BOT_LOGIN = "release-bot"
RELEASES = ("v1.0.0", "v1.0.1")

__all__ = [
    "BOT_LOGIN",
    "DEFAULT_STATE_DIR",
    "INFO_FILE",
    "RELEASES",
    "PortInUse",
    "Sandbox",
    "SandboxError",
    "SandboxInfo",
    "read_info",
    "sandbox_status",
    "start_sandbox",
    "stop_recorded_sandbox",
]


class SandboxError(RuntimeError):
    """The sandbox could not start, or a recorded sandbox could not be reached or stopped."""


@dataclass(frozen=True)
class SandboxInfo:
    """What a client needs to use a running sandbox (the JSON line ``up`` prints)."""

    github_url: str
    github_token: str
    git_url: str
    repo: str
    argocd_url: str
    argocd_token: str
    registry_url: str
    state_dir: str
    reviewer_tokens: dict[str, str] = field(default_factory=dict)
    pid: int = 0
    web_urls: dict[str, str] = field(default_factory=dict)
    """Environment -> the base URL of its application endpoint (``GET /version``)."""
    config_file: str = ""
    """The promotion setup of a sandbox of several applications (empty: the project's)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SandboxInfo:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def env(self) -> dict[str, str]:
        """The ``RELEASE_PROMOTION_*`` variables that point the flows at this sandbox."""
        return {
            "RELEASE_PROMOTION_GITHUB_URL": self.github_url,
            "RELEASE_PROMOTION_GITHUB_TOKEN": self.github_token,
            "RELEASE_PROMOTION_ARGOCD_URL": self.argocd_url,
            "RELEASE_PROMOTION_ARGOCD_TOKEN": self.argocd_token,
            "RELEASE_PROMOTION_REGISTRY_URL": self.registry_url,
        } | ({"RELEASE_PROMOTION_CONFIG_FILE": self.config_file} if self.config_file else {})


@dataclass
class AppSandbox:
    """One application of a sandbox: its setup, GitHub emulator and Argo CD emulator."""

    config: PromotionConfig
    github: Any
    argocd: Any


class Sandbox:
    """A running sandbox; ``stop()`` (or leaving the ``with`` block) stops everything it started."""

    def __init__(self, info: SandboxInfo, config: PromotionConfig) -> None:
        self.info = info
        self.config = config
        self.github: Any = None
        self.argocd: Any = None
        self.registry: Any = None
        self.web: dict[str, Any] = {}  # environment -> sandbox.webapp.EnvironmentWebApp
        # application -> its setup and emulators (one entry for a one-application sandbox)
        self.applications: dict[str, AppSandbox] = {}
        self._stops: list[Callable[[], None]] = []

    @property
    def state_dir(self) -> Path:
        return Path(self.info.state_dir)

    def env(self) -> dict[str, str]:
        return self.info.env()

    def _on_stop(self, stop: Callable[[], None]) -> None:
        self._stops.append(stop)

    def stop(self) -> None:
        while self._stops:
            stop = self._stops.pop()
            with contextlib.suppress(Exception):
                stop()
        info_file = self.state_dir / INFO_FILE
        with contextlib.suppress(OSError, ValueError):
            if json.loads(info_file.read_text()).get("pid") == os.getpid():
                info_file.unlink()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie, exited but not yet reaped by its parent, does not)."""
    if pid <= 0:
        return False
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in {"Z", "X"}:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prepare_state_dir(state_dir: Path) -> None:
    """Make ``state_dir`` empty; refuse a live sandbox's or a foreign non-empty directory."""
    info_file = state_dir / INFO_FILE
    if info_file.exists():
        with contextlib.suppress(OSError, ValueError):
            pid = int(json.loads(info_file.read_text()).get("pid", 0))
            if _pid_alive(pid) and pid != os.getpid():
                raise SandboxError(
                    f"a sandbox is already running from {state_dir} (pid {pid}); "
                    f"stop it with `python -m sandbox down --state-dir {state_dir}`"
                )
    if state_dir.exists() and any(state_dir.iterdir()):
        ours = info_file.exists() or (state_dir / "repo.git").exists()
        if not ours:
            raise SandboxError(
                f"{state_dir} is not empty and holds no sandbox; choose an empty state directory"
            )
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)


def _serve(app: Any, port: int | None, what: str) -> RunningServer:
    try:
        return serve_in_thread(app, port=port)
    except PortInUse as exc:
        raise PortInUse(f"{what}: {exc}") from None


def start_sandbox(
    state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR,
    *,
    config: PromotionConfig | None = None,
    seed_version: str = "v1.0.0",
    releases: Sequence[str] = RELEASES,
    reconcile_interval: float = 180.0,
    check_duration: float = 0.0,
    health_delay: float = 0.2,
    github_port: int | None = None,
    argocd_port: int | None = None,
    registry_port: int | None = None,
    registry: bool = True,
    applications: int = 1,
) -> Sandbox:
    """Seed the repository and start GitHub, Argo CD and the registry; return the ``Sandbox``.

    Args:
        state_dir: where the repository, the registry storage and ``sandbox.json`` live; wiped
            first if it holds an old sandbox.
        config: the promotion setup (default: the project's ``promotion.yaml``).
        seed_version: the version both overlays start at.
        releases: the versions whose images the registry holds.
        reconcile_interval: seconds between Argo CD's polls of the repository (a refresh
            request reconciles at once, as in Argo CD).
        check_duration: seconds the sandbox CI takes to finish the validation check of a PR.
        health_delay: seconds a synced Application stays Progressing before Healthy.
        github_port, argocd_port, registry_port: fixed ports (default: free ones); a busy
            port raises ``PortInUse`` naming the service.
        registry: start the registry (off for tests that do not need images).
        applications: how many applications to seed (``sandbox.seed.several_applications``:
            ``app-1`` ... each with its repository, Argo CD applications and images, behind one
            GitHub and one Argo CD address; the setup is written to ``promotion.yaml`` in
            ``state_dir`` and named by ``RELEASE_PROMOTION_CONFIG_FILE`` in ``env()``). 1: the
            one application of ``config``.
    """
    config = config or load_config()
    state = Path(state_dir).resolve()
    if applications < 1:
        raise SandboxError(f"applications must be at least 1, not {applications}")
    if applications > 1:
        _prepare_state_dir(state)
        return _start_many(
            state,
            config,
            applications,
            seed_version,
            releases,
            reconcile_interval,
            check_duration,
            health_delay,
            registry,
        )
    _prepare_state_dir(state)
    bare = state / "repo.git"
    seed_repository(bare, config, seed_version)

    bot_token = "ghp_bot_" + secrets.token_hex(16)
    reviewer_tokens = {
        login: "ghp_" + login.replace("-", "_") + "_" + secrets.token_hex(8)
        for login in dict.fromkeys(login for _, a in config.approvals() for login in a.approvers)
    }
    tokens = {bot_token: BOT_LOGIN, **{tok: login for login, tok in reviewer_tokens.items()}}
    argocd_token = "argocd_" + secrets.token_hex(16)

    sandbox = Sandbox(
        SandboxInfo("", "", "", config.github.repository, "", "", "", str(state)), config
    )
    try:
        github_url, git_url = _start_github(
            sandbox, bare, config, tokens, check_duration, github_port
        )
        argocd_url = _start_argocd(
            sandbox,
            bare,
            config,
            git_url,
            argocd_token,
            reconcile_interval,
            health_delay,
            argocd_port,
        )
        web_urls = _start_webapps(sandbox, config, argocd_url, argocd_token)
        registry_url = ""
        if registry:
            registry_url = _start_registry(sandbox, state, config, releases, registry_port)
    except BaseException:
        sandbox.stop()
        raise
    sandbox.info = SandboxInfo(
        github_url=github_url,
        github_token=bot_token,
        git_url=git_url,
        repo=config.github.repository,
        argocd_url=argocd_url,
        argocd_token=argocd_token,
        registry_url=registry_url,
        state_dir=str(state),
        reviewer_tokens=reviewer_tokens,
        pid=os.getpid(),
        web_urls=web_urls,
    )
    (state / INFO_FILE).write_text(sandbox.info.to_json() + "\n", encoding="utf-8")
    sandbox.applications[config.application] = AppSandbox(config, sandbox.github, sandbox.argocd)
    return sandbox


def app_specs(config: PromotionConfig) -> list[Any]:
    """One auto-synced Argo CD Application per environment of ``config`` (``AppSpec``s)."""
    from sandbox.argocd import AppSpec

    return [
        AppSpec(
            name=env.argocd_app,
            path=env.overlay_dir,
            target_revision=config.github.base_branch,
            auto_sync=True,
            environment=env.name,
        )
        for env in config.environments
    ]


def _start_many(
    state: Path,
    base: PromotionConfig,
    count: int,
    seed_version: str,
    releases: Sequence[str],
    reconcile_interval: float,
    check_duration: float,
    health_delay: float,
    registry: bool,
) -> Sandbox:
    """A sandbox of ``count`` applications (see ``start_sandbox``)."""
    from sandbox.argocd import ArgoCDEmulator
    from sandbox.github import GitHubEmulator
    from sandbox.multi import ArgoCDByApplication, GitHubByRepository
    from sandbox.seed import applications_yaml, several_applications

    configs = several_applications(base, count)
    config_file = state / "promotion.yaml"
    config_file.write_text(applications_yaml(configs), encoding="utf-8")
    bot_token = "ghp_bot_" + secrets.token_hex(16)
    reviewer_tokens = {
        login: "ghp_" + login.replace("-", "_") + "_" + secrets.token_hex(8)
        for login in dict.fromkeys(login for _, a in base.approvals() for login in a.approvers)
    }
    tokens = {bot_token: BOT_LOGIN, **{tok: login for login, tok in reviewer_tokens.items()}}
    argocd_token = "argocd_" + secrets.token_hex(16)
    first = next(iter(configs.values()))
    sandbox = Sandbox(
        SandboxInfo("", "", "", first.github.repository, "", "", "", str(state)), first
    )
    try:
        github: dict[str, Any] = {}
        for name, config in configs.items():
            bare = state / f"{name}.git"
            seed_repository(bare, config, seed_version)
            github[name] = GitHubEmulator(
                bare,
                config.github.repository,
                tokens=tokens,
                base_branch=config.github.base_branch,
                required_checks=tuple(config.github.required_checks),
                check_duration=check_duration,
            )
            sandbox._on_stop(github[name].close)
        gh_server = _serve(
            GitHubByRepository({configs[n].github.repository: e.app for n, e in github.items()}),
            None,
            "GitHub emulator",
        )
        sandbox._on_stop(gh_server.stop)
        for emu in github.values():
            emu.bind(gh_server.url)
        by_app: dict[str, Any] = {}
        for name, config in configs.items():
            argo = ArgoCDEmulator(
                state / f"{name}.git",
                applications=app_specs(config),
                token=argocd_token,
                reconcile_interval=reconcile_interval,
                health_delay=health_delay,
                repo_url=str(github[name].git_url),
            )
            argo.start()
            sandbox._on_stop(argo.stop)
            by_app.update({env.argocd_app: argo.app for env in config.environments})
            sandbox.applications[name] = AppSandbox(config, github[name], argo)
        argo_server = _serve(ArgoCDByApplication(by_app), None, "Argo CD emulator")
        sandbox._on_stop(argo_server.stop)
        registry_url = ""
        if registry:
            registry_url = _start_registry(sandbox, state, first, releases, None)
            for config in list(configs.values())[1:]:
                for tag in releases:
                    sandbox.registry.publish(config.registry.path, list(config.services), tag)
    except BaseException:
        sandbox.stop()
        raise
    sandbox.github = sandbox.applications[first.application].github
    sandbox.argocd = sandbox.applications[first.application].argocd
    sandbox.info = SandboxInfo(
        github_url=str(github[first.application].api_url),
        github_token=bot_token,
        git_url=str(github[first.application].git_url),
        repo=first.github.repository,
        argocd_url=argo_server.url,
        argocd_token=argocd_token,
        registry_url=registry_url,
        state_dir=str(state),
        reviewer_tokens=reviewer_tokens,
        pid=os.getpid(),
        config_file=str(config_file),
    )
    (state / INFO_FILE).write_text(sandbox.info.to_json() + "\n", encoding="utf-8")
    return sandbox


def _start_github(
    sandbox: Sandbox,
    bare: Path,
    config: PromotionConfig,
    tokens: dict[str, str],
    check_duration: float,
    port: int | None,
) -> tuple[str, str]:
    from sandbox.github import GitHubEmulator

    emu = GitHubEmulator(
        bare,
        config.github.repository,
        tokens=tokens,
        base_branch=config.github.base_branch,
        required_checks=tuple(config.github.required_checks),
        check_duration=check_duration,
    )
    server = _serve(emu.app, port, "GitHub emulator")
    sandbox._on_stop(server.stop)
    emu.bind(server.url)
    sandbox._on_stop(emu.close)
    sandbox.github = emu
    return str(emu.api_url), str(emu.git_url)


def _start_argocd(
    sandbox: Sandbox,
    bare: Path,
    config: PromotionConfig,
    git_url: str,
    token: str,
    reconcile_interval: float,
    health_delay: float,
    port: int | None,
) -> str:
    from sandbox.argocd import ArgoCDEmulator

    apps = app_specs(config)
    emu = ArgoCDEmulator(
        bare,
        applications=apps,
        token=token,
        reconcile_interval=reconcile_interval,
        health_delay=health_delay,
        repo_url=git_url,
    )
    server = _serve(emu.app, port, "Argo CD emulator")
    sandbox._on_stop(server.stop)
    emu.start()
    sandbox._on_stop(emu.stop)
    sandbox.argocd = emu
    return server.url


def _start_webapps(
    sandbox: Sandbox, config: PromotionConfig, argocd_url: str, token: str
) -> dict[str, str]:
    """One ``/version`` endpoint per environment, reading what Argo CD runs there."""
    from sandbox.webapp import EnvironmentWebApp

    urls: dict[str, str] = {}
    for env in config.environments:
        web = EnvironmentWebApp(env.name, env.argocd_app, argocd_url, token, config.images())
        server = _serve(web.app, None, f"{env.name} application endpoint")
        sandbox._on_stop(server.stop)
        sandbox.web[env.name] = web
        urls[env.name] = server.url
    return urls


def _start_registry(
    sandbox: Sandbox,
    state: Path,
    config: PromotionConfig,
    releases: Sequence[str],
    port: int | None,
) -> str:
    try:
        from sandbox.registry import LocalRegistry
    except ImportError as exc:
        raise SandboxError(f"the sandbox registry is not available: {exc}") from exc

    kwargs: dict[str, Any] = {}
    if port is not None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                raise PortInUse(f"registry: port {port} on 127.0.0.1 is already in use") from None
        kwargs["port"] = port
    reg = LocalRegistry(state / "registry", **kwargs)
    reg.start()
    sandbox._on_stop(reg.stop)
    for tag in releases:
        reg.publish(config.registry.path, list(config.services), tag)
    sandbox.registry = reg
    return str(reg.url)


# -- a sandbox recorded in a state directory (``down`` and ``status``) -------------------------


def read_info(state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> SandboxInfo:
    """The ``sandbox.json`` of ``state_dir``; ``SandboxError`` when there is none."""
    path = Path(state_dir) / INFO_FILE
    try:
        return SandboxInfo.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise SandboxError(f"no sandbox recorded in {state_dir} (no {INFO_FILE})") from None
    except (OSError, ValueError) as exc:
        raise SandboxError(f"cannot read {path}: {exc}") from exc


def stop_recorded_sandbox(
    state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR, timeout: float = 20.0
) -> int:
    """SIGTERM the sandbox process recorded in ``state_dir`` and wait for it; return its pid."""
    info = read_info(state_dir)
    if not _pid_alive(info.pid):
        with contextlib.suppress(OSError):
            (Path(state_dir) / INFO_FILE).unlink()
        raise SandboxError(f"the sandbox recorded in {state_dir} (pid {info.pid}) is not running")
    os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(info.pid):
        if time.monotonic() > deadline:
            raise SandboxError(f"sandbox pid {info.pid} still running {timeout}s after SIGTERM")
        time.sleep(0.1)
    return info.pid


def sandbox_status(state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> dict[str, Any]:
    """Whether the recorded sandbox runs and each endpoint answers."""
    import httpx

    info = read_info(state_dir)
    result: dict[str, Any] = {"state_dir": str(state_dir), "pid": info.pid}
    result["running"] = _pid_alive(info.pid)
    checks = {
        "github": (
            f"{info.github_url}/repos/{info.repo}",
            {"Authorization": f"token {info.github_token}"},
        ),
        "argocd": (
            f"{info.argocd_url}/api/v1/applications",
            {"Authorization": f"Bearer {info.argocd_token}"},
        ),
        "registry": (f"{info.registry_url}/v2/", {}),
    }
    with httpx.Client(timeout=3.0) as http:
        for name, (url, headers) in checks.items():
            if name == "registry" and not info.registry_url:
                continue
            try:
                code = http.get(url, headers=headers).status_code
                result[name] = f"up ({url} -> {code})"
            except httpx.HTTPError as exc:
                result[name] = f"down ({url}: {type(exc).__name__})"
    return result
