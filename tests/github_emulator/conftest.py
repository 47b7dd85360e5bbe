"""Fixtures: a seeded bare repository and the GitHub emulator served over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import github
import pytest

from promotion.config import PromotionConfig, load_config
from sandbox.github import GitHubEmulator
from sandbox.http import serve_in_thread
from sandbox.seed import seed_repository

REPO = "acme/microservices-demo-gitops"
DEV_TOKEN = "ghp_sandboxdev0000000000000000000000000000"
PM_TOKEN = "ghp_sandboxpm00000000000000000000000000000"
TOKENS = {DEV_TOKEN: "release-bot", PM_TOKEN: "pm-carol"}


@dataclass
class Sandbox:
    emu: GitHubEmulator
    url: str
    seed_sha: str

    def client(self, token: str = DEV_TOKEN) -> github.Github:
        return github.Github(
            base_url=self.emu.api_url,
            auth=github.Auth.Token(token),
            seconds_between_requests=None,
            seconds_between_writes=None,
            retry=None,
        )


@pytest.fixture(scope="session")
def config() -> PromotionConfig:
    return load_config()


@pytest.fixture
def bare_repo(tmp_path: Path, config: PromotionConfig) -> tuple[Path, str]:
    bare = tmp_path / "repo.git"
    return bare, seed_repository(bare, config)


def start(bare: Path, seed_sha: str, **options: object) -> Iterator[Sandbox]:
    emu = GitHubEmulator(bare, REPO, TOKENS, **options)  # type: ignore[arg-type]
    server = serve_in_thread(emu.app)
    emu.bind(server.url)
    try:
        yield Sandbox(emu, server.url, seed_sha)
    finally:
        emu.close()
        server.stop()


@pytest.fixture
def sandbox(bare_repo: tuple[Path, str]) -> Iterator[Sandbox]:
    yield from start(*bare_repo)


@pytest.fixture
def gh(sandbox: Sandbox) -> github.Github:
    return sandbox.client()
