"""Fixtures: the real ``docker-registry`` with published releases, and a bearer-token front."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from promotion.config import PromotionConfig, load_config
from sandbox.http import RunningServer, serve_in_thread
from sandbox.registry import BearerTokenFront, LocalRegistry

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

HARNESS_KEY = "_release_promotion_prefect_harness"
USER, PASSWORD = "docr-user", "dop_v1_not-a-real-token"
MISSING_IN_V101 = ("cartservice", "frontend")


@dataclass
class Published:
    registry: LocalRegistry
    config: PromotionConfig

    @property
    def repositories(self) -> dict[str, str]:
        path = self.config.registry.path
        return {service: f"{path}/{service}" for service in self.config.services}


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    """v1.0.0 complete; v1.0.1 without cartservice and frontend."""
    config = load_config()
    registry = LocalRegistry(tmp_path_factory.mktemp("registry")).start()
    try:
        registry.publish(config.registry.path, config.services, "v1.0.0")
        partial = [s for s in config.services if s not in MISSING_IN_V101]
        registry.publish(config.registry.path, partial, "v1.0.1")
        yield Published(registry, config)
    finally:
        registry.stop()


@dataclass
class Front:
    front: BearerTokenFront
    server: RunningServer

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
def front(published: Published) -> Iterator[Front]:
    token_front = BearerTokenFront(published.registry.url, users={USER: PASSWORD})
    server = serve_in_thread(token_front.app)
    yield Front(token_front, server)
    server.stop()
    token_front.close()


@pytest.fixture(scope="session")
def prefect_harness(prefect_server: object) -> Iterator[None]:
    """The session's one Prefect server (tests/conftest.py)."""
    yield
