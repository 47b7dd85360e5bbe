"""The sandbox launcher: in-process (``start_sandbox``) and as ``python -m sandbox up|status|down``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from promotion.config import load_config
from sandbox.launcher import INFO_FILE, Sandbox, SandboxError, read_info, start_sandbox

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_config()

try:
    import sandbox.registry  # noqa: F401

    HAVE_REGISTRY = True
except ImportError:
    HAVE_REGISTRY = False


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with start_sandbox(tmp_path_factory.mktemp("sandbox"), registry=HAVE_REGISTRY) as sandbox:
        yield sandbox


def _apps(sandbox: Sandbox) -> dict[str, dict[str, object]]:
    info = sandbox.info
    data = httpx.get(
        f"{info.argocd_url}/api/v1/applications",
        headers={"Authorization": f"Bearer {info.argocd_token}"},
    ).json()
    return {item["metadata"]["name"]: item for item in data["items"]}


def test_info_is_recorded_and_points_the_flows_at_the_sandbox(running: Sandbox) -> None:
    info = running.info
    assert read_info(info.state_dir) == info
    assert info.repo == CONFIG.github.repository
    assert info.pid == os.getpid()
    env = info.env()
    assert env["RELEASE_PROMOTION_GITHUB_URL"] == info.github_url
    assert env["RELEASE_PROMOTION_ARGOCD_TOKEN"] == info.argocd_token


def test_every_token_authenticates_as_its_login(running: Sandbox) -> None:
    info = running.info
    expected = {info.github_token: "release-bot", **{t: u for u, t in info.reviewer_tokens.items()}}
    assert set(info.reviewer_tokens) == {"qa-alice", "qa-bob", "pm-carol"} == CONFIG.approvers()
    for token, login in expected.items():
        user = httpx.get(f"{info.github_url}/user", headers={"Authorization": f"token {token}"})
        assert user.json()["login"] == login


def test_staging_and_prod_apps_are_synced_healthy_at_the_seed(running: Sandbox) -> None:
    apps = _apps(running)
    assert set(apps) == {env.argocd_app for env in CONFIG.environments}
    head = running.github.head(CONFIG.github.base_branch)
    for env in CONFIG.environments:
        app = apps[env.argocd_app]
        status = app["status"]
        spec = app["spec"]
        assert spec["source"]["path"] == env.overlay_dir
        assert spec["source"]["targetRevision"] == "main"
        assert spec["syncPolicy"]["automated"]["enabled"] is True
        assert status["sync"]["status"] == "Synced" and status["sync"]["revision"] == head
        assert status["health"]["status"] == "Healthy"
        assert all(image.endswith(":v1.0.0") for image in status["summary"]["images"])


@pytest.mark.skipif(not HAVE_REGISTRY, reason="sandbox.registry is not built yet")
def test_registry_holds_both_releases_of_every_service(running: Sandbox) -> None:
    info = running.info
    for service in CONFIG.services:
        tags = httpx.get(f"{info.registry_url}/v2/{CONFIG.registry.path}/{service}/tags/list")
        assert set(tags.json()["tags"]) >= {"v1.0.0", "v1.0.1"}


def test_a_foreign_nonempty_state_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SandboxError, match="not empty"):
        start_sandbox(tmp_path, registry=False)
    assert (tmp_path / "notes.txt").exists()


def _busy_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


def _sandbox_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "sandbox", *args]


def test_cli_up_prints_one_json_line_status_and_down_stop_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        _sandbox_cmd("up", "--state-dir", str(state), "--no-registry"),
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        info = json.loads(line)
        for key in (
            "github_url",
            "github_token",
            "git_url",
            "repo",
            "argocd_url",
            "argocd_token",
            "registry_url",
            "state_dir",
            "reviewer_tokens",
        ):
            assert key in info
        assert json.loads((state / INFO_FILE).read_text()) == info
        assert info["pid"] == proc.pid

        status = subprocess.run(
            _sandbox_cmd("status", "--state-dir", str(state)),
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        report = json.loads(status.stdout)
        assert report["running"] is True
        assert report["github"].startswith("up") and report["argocd"].startswith("up")

        down = subprocess.run(
            _sandbox_cmd("down", "--state-dir", str(state)),
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert down.returncode == 0, down.stderr
        assert proc.wait(30) == 0
        assert not (state / INFO_FILE).exists()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def test_cli_up_reports_a_busy_port_plainly(tmp_path: Path) -> None:
    sock, port = _busy_port()
    with sock:
        result = subprocess.run(
            _sandbox_cmd(
                "up",
                "--state-dir",
                str(tmp_path / "s"),
                "--no-registry",
                "--github-port",
                str(port),
            ),
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"GitHub emulator: port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_down_without_a_sandbox_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        _sandbox_cmd("down", "--state-dir", str(tmp_path)),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "no sandbox recorded" in result.stderr
