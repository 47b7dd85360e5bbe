"""Fixtures: the GitHub emulator over a seeded bare repository, served on a free loopback port.

``github`` gives each test its own repository and emulator (cheap: a bare repo and a uvicorn
thread). ``prefect_server`` starts one real Prefect test server for the whole session (it takes
about 15 s), only for the task tests that ask for it.
"""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from promotion.config import PromotionConfig, load_config
from promotion.github import GitHubClient
from sandbox.github import GitHubEmulator
from sandbox.http import RunningServer, serve_in_thread
from sandbox.seed import git, seed_repository

BOT_TOKEN = "ghp_bot_0123456789abcdefSECRET"
TOKENS = {
    BOT_TOKEN: "promotion-bot",
    "ghp_pm_token": "pm-carol",
    "ghp_qa_token": "qa-alice",
    "ghp_other_token": "mallory",
}


@dataclass
class Sandbox:
    """One emulator with its repository, a client for the bot, and admin helpers."""

    emu: Any
    server: RunningServer
    bare: Path
    config: PromotionConfig
    client: GitHubClient
    admin: httpx.Client

    @property
    def repository(self) -> str:
        return self.config.github.repository

    def client_for(self, token: str) -> GitHubClient:
        return GitHubClient(self.emu.api_url, token, self.repository)

    def stats(self) -> dict[str, Any]:
        response = self.admin.get("/_sandbox/stats")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def reset_stats(self) -> None:
        self.admin.post("/_sandbox/stats/reset").raise_for_status()

    def fault(self, **spec: Any) -> None:
        self.admin.post("/_sandbox/faults", json=spec).raise_for_status()

    def git(self, *args: str) -> str:
        return git(*args, cwd=self.bare).strip()

    def commits_ahead(self, branch: str) -> list[str]:
        return self.git("rev-list", f"refs/heads/{branch}", "--not", "refs/heads/main").split()

    def push_change(self, branch: str, path: str, text: str, start: str = "main") -> str:
        """Commit ``path`` = ``text`` on top of ``start`` straight into the bare repository."""
        parent = self.git("rev-parse", start)
        blob = git("hash-object", "-w", "--stdin", cwd=self.bare, input=text)
        index = self.bare / "tmp-index"
        env_git = ["--git-dir", str(self.bare)]
        os.environ["GIT_INDEX_FILE"] = str(index)
        try:
            git(*env_git, "read-tree", parent)
            git(*env_git, "update-index", "--add", "--cacheinfo", f"100644,{blob.strip()},{path}")
            tree = git(*env_git, "write-tree").strip()
        finally:
            del os.environ["GIT_INDEX_FILE"]
            index.unlink(missing_ok=True)
        commit = git(
            "commit-tree", tree, "-p", parent, "-m", f"change {path}", cwd=self.bare
        ).strip()
        self.git("update-ref", f"refs/heads/{branch}", commit)
        return commit


@pytest.fixture
def config() -> PromotionConfig:
    return load_config()


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One seeded bare repository; each test works on its own copy (seeding takes ~0.6 s)."""
    bare = tmp_path_factory.mktemp("seed") / "repo.git"
    seed_repository(bare, load_config())
    return bare


@pytest.fixture
def github(tmp_path: Path, config: PromotionConfig, seeded: Path) -> Iterator[Sandbox]:
    bare = tmp_path / "repo.git"
    shutil.copytree(seeded, bare, symlinks=True)
    emu = GitHubEmulator(bare, config.github.repository, dict(TOKENS))
    server = serve_in_thread(emu.app)
    emu.bind(server.url)
    client = GitHubClient(emu.api_url, BOT_TOKEN, config.github.repository)
    admin = httpx.Client(base_url=server.url, timeout=30)
    try:
        yield Sandbox(emu, server, bare, config, client, admin)
    finally:
        admin.close()
        client.close_session()
        server.stop()
