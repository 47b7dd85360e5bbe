"""`make demo ARGS=--auto-approve` end to end, as a subprocess, and its plain failure modes."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from deployments.demo import write_demo_setup
from deployments.local import PROJECT_ROOT
from promotion.config import load_config
from sandbox.http import free_port
from sandbox.launcher import SandboxInfo


def _demo(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deployments.demo", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# About two minutes, up to one of them waiting for the release watcher's next look; six on a
# machine busy with other tests.
@pytest.mark.timeout(600)
def test_published_v1_0_1_is_promoted_by_the_watcher_to_prod_and_exits_0(tmp_path: Path) -> None:
    result = _demo(
        "--auto-approve", "--port", str(free_port()), "--state-dir", str(tmp_path), timeout=560
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    # nobody started it: the release watcher's scheduled run found the published tag
    assert "Release watcher: on, cron '* * * * *' (UTC)." in out
    assert "publishing v1.0.1 to the registry (9 images) ... done" in out
    assert re.search(
        r"The release watcher \(watch-releases run [a-z]+-[a-z]+\) started promote-release for "
        r"v1\.0\.1:",
        out,
    ), out
    assert (
        "initiator release-manager, tags release-promotion, watch-releases, idempotency key "
        "watch-releases:acme/microservices-demo-gitops:v1.0.1"
    ) in out
    assert "Waiting for the QA approval" in out and "Waiting for the PM approval" in out
    assert "auto-approve as qa-alice: ACCEPT" in out
    assert "auto-approve as pm-carol: ACCEPT" in out
    assert "# Promotion of v1.0.1" in out
    # verified for real: each environment's sandbox endpoint answered the release's version
    for env in ("staging", "prod"):
        assert f"**verification of v1.0.1 in {env} passed (1 check(s))**" in out
    assert (
        len(re.findall(r"passed: GET http://127\.0\.0\.1:\d+/version .*version = 'v1\.0\.1'", out))
        == 2
    )
    assert (
        "OK: prod runs v1.0.1 (prod-microservices-demo: Synced/Healthy, 9 images at v1.0.1)" in out
    )
    # everything it started is gone: the recorded sandbox was removed on stop
    assert not (tmp_path / "sandbox" / "sandbox.json").exists()


def test_a_busy_prefect_port_is_reported_plainly(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = _demo(
            "--auto-approve", "--port", str(port), "--state-dir", str(tmp_path), timeout=60
        )
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_demo_setup_adds_release_detection_and_a_probe_per_environment(
    tmp_path: Path,
) -> None:
    web = {"staging": "http://127.0.0.1:1001", "prod": "http://127.0.0.1:1002"}
    info = SandboxInfo(
        github_url="",
        github_token="",
        git_url="",
        repo="acme/microservices-demo-gitops",
        argocd_url="",
        argocd_token="",
        registry_url="",
        state_dir=str(tmp_path),
        web_urls=web,
    )
    setup = write_demo_setup(
        info,
        tmp_path / "promotion.yaml",
        initiator="release-manager",
        per_environment={"staging": {"soak_minutes": 30}},
    )
    config = load_config(setup)
    assert config.application == "microservices-demo-gitops"
    assert config.watch.enabled and config.watch.cron == "* * * * *"
    assert config.watch.initiator == "release-manager"
    for env in config.environments:
        assert env.verify is not None
        (probe,) = env.verify.probes
        assert probe.url == f"{web[env.name]}/version" and probe.json_field == "version"
    assert config.environment("staging").soak_minutes == 30
    assert "# QA approves what runs in staging" in setup.read_text()  # comments kept
