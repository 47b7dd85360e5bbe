"""Fixtures: a seeded bare GitOps repository and the Argo CD emulator served over real HTTP."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from promotion.argocd import ArgoCDClient
from promotion.config import PromotionConfig, load_config
from promotion.kustomize import set_image_tags
from sandbox.argocd import AppSpec, ArgoCDEmulator
from sandbox.http import RunningServer, serve_in_thread
from sandbox.seed import git, seed_repository

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

TOKEN = "argocd-test-token"
PROD = "prod-microservices-demo"
STAGING = "staging-microservices-demo"
PROD_OVERLAY = "kustomize/prod/kustomization.yaml"
HARNESS_KEY = "_release_promotion_prefect_harness"


@dataclass
class Repo:
    """A seeded bare repository and helpers that push new commits to it."""

    bare: Path
    config: PromotionConfig
    seed_sha: str

    def push(self, files: Mapping[str, str], message: str = "change") -> str:
        work = self.bare.parent / "work"
        if not work.exists():
            git("clone", "--quiet", str(self.bare), str(work))
        for path, content in files.items():
            target = work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        git("add", "-A", cwd=work)
        git("commit", "--quiet", "-m", message, cwd=work)
        git("push", "--quiet", "origin", "HEAD:main", cwd=work)
        return git("rev-parse", "HEAD", cwd=work).strip()

    def read(self, path: str) -> str:
        return git("show", f"main:{path}", cwd=self.bare)

    def push_tags(self, tags: Mapping[str, str], overlay: str = PROD_OVERLAY) -> str:
        """Set ``service -> tag`` in ``overlay`` with the real editor, commit, push."""
        images = {self.config.image(service): tag for service, tag in tags.items()}
        text = set_image_tags(self.read(overlay), images)
        return self.push({overlay: text}, f"Promote {dict(tags)}")

    def push_release(self, tag: str, overlay: str = PROD_OVERLAY) -> str:
        return self.push_tags(dict.fromkeys(self.config.services, tag), overlay)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    config = load_config()
    bare = tmp_path / "gitops.git"
    return Repo(bare, config, seed_repository(bare, config))


@dataclass
class Argo:
    emulator: ArgoCDEmulator
    server: RunningServer
    http: httpx.Client

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, token: str = TOKEN) -> ArgoCDClient:
        return ArgoCDClient(self.url, token, http=self.http)


def start_argo(repo: Repo, **options: object) -> Argo:
    apps = [
        AppSpec(PROD, "kustomize/prod", environment="prod"),
        AppSpec(STAGING, "kustomize/staging", environment="staging"),
    ]
    overrides = {k: v for k, v in options.items() if k == "apps"}
    if overrides:
        apps = list(overrides["apps"])  # type: ignore[call-overload]
    kwargs = {k: v for k, v in options.items() if k != "apps"}
    emulator = ArgoCDEmulator(repo.bare, apps, token=TOKEN, **kwargs)  # type: ignore[arg-type]
    server = serve_in_thread(emulator.app)
    emulator.start()
    return Argo(emulator, server, httpx.Client(timeout=10.0))


@pytest.fixture
def argo(repo: Repo) -> Iterator[Argo]:
    running = start_argo(repo, health_delay=0.2, readonly_tokens={"viewer-token": "viewer"})
    yield running
    running.http.close()
    running.emulator.stop()
    running.server.stop()


@pytest.fixture(scope="session")
def prefect_harness(prefect_server: object) -> Iterator[None]:
    """The session's one Prefect server (tests/conftest.py)."""
    yield
