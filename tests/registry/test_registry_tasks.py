"""The registry tasks in a real (temporary) Prefect server: faults retried, gaps not."""

from __future__ import annotations

import pytest
from prefect import flow
from pydantic import SecretStr

from promotion.config import Settings
from promotion.registry import ReleaseIncomplete
from tasks import registry as registry_tasks

from .conftest import MISSING_IN_V101, PASSWORD, USER, Front, Published

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("prefect_harness")]


def test_check_release_survives_faults_and_reports_gaps(published: Published, front: Front) -> None:
    repositories = published.repositories
    target = registry_tasks.RegistryTarget(
        base_url=front.url, username=USER, password=SecretStr(PASSWORD)
    )
    assert PASSWORD not in repr(target)

    @flow
    def check(tag: str) -> dict[str, str]:
        front.front.fail_next(2, 503)
        digests: dict[str, str] = registry_tasks.check_release(target, repositories, tag)
        return digests

    assert len(check("v1.0.0")) == len(repositories)
    assert front.front.counts["faults"] == 2
    with pytest.raises(ReleaseIncomplete) as caught:
        check("v1.0.1")
    assert tuple(m.service for m in caught.value.missing) == MISSING_IN_V101
    tags = registry_tasks.list_tags.fn(target, repositories["frontend"])
    assert tags == ["v1.0.0"]


def test_target_from_settings(published: Published) -> None:
    settings = Settings(registry_username="u", registry_password=SecretStr("p"))
    target = registry_tasks.RegistryTarget.from_settings(settings, published.config)
    assert target.base_url == "https://registry.digitalocean.com"
    assert target.resolve_password() == SecretStr("p")


def test_the_username_is_hidden_in_the_target(published: Published) -> None:
    username = "dop_v1_username_is_a_token_0123456789"
    target = registry_tasks.RegistryTarget(
        base_url=published.registry.url, username=username, password=SecretStr(PASSWORD)
    )
    assert username not in repr(target) and username not in str(target.model_dump())
    assert target.username is not None and target.username.get_secret_value() == username
