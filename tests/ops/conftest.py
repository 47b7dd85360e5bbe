"""Fixtures of the operations tests: a real sandbox and helpers that change what it runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from promotion.config import PromotionConfig, load_config
from promotion.kustomize import set_image_tags
from sandbox.launcher import Sandbox, start_sandbox
from sandbox.seed import git

CONFIG = load_config()


def push_release(box: Sandbox, env: str, tag: str) -> str:
    """Set every image of ``env``'s overlay to ``tag`` in the sandbox repository; return the SHA."""
    config: PromotionConfig = box.config
    overlay = config.environment(env).overlay
    bare = box.state_dir / "repo.git"
    work = box.state_dir / "ops-work"
    if not work.exists():
        git("clone", "--quiet", str(bare), str(work))
    git("pull", "--quiet", "origin", "main", cwd=work)
    path = work / overlay
    images = {config.image(s): tag for s in config.services}
    path.write_text(set_image_tags(path.read_text(encoding="utf-8"), images), encoding="utf-8")
    git("commit", "--quiet", "-am", f"{env}: {tag}", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


def reconcile(box: Sandbox) -> None:
    httpx.post(f"{box.info.argocd_url}/_sandbox/reconcile", timeout=30).raise_for_status()


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox of its own per test module (they change what it runs)."""
    state: Path = tmp_path_factory.mktemp("ops-sandbox")
    with start_sandbox(state, registry=True, releases=("v1.0.0", "v1.0.1")) as sandbox:
        yield sandbox
