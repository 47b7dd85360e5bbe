"""Shared fixtures of the unit tests: the default promotion setup and the seeded kustomize tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from promotion.config import PromotionConfig, load_config
from sandbox.seed import seed_files

SEED_VERSION = "v1.0.0"


@pytest.fixture(scope="session")
def config() -> PromotionConfig:
    return load_config()


@pytest.fixture(scope="session")
def seed_tree(tmp_path_factory: pytest.TempPathFactory, config: PromotionConfig) -> Path:
    """A directory holding the seeded repository's files at v1.0.0 (read-only for tests)."""
    root = tmp_path_factory.mktemp("seed")
    for path, content in seed_files(config, SEED_VERSION).items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    return root
