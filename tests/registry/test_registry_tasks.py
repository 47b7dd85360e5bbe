"""The registry tasks in a real (temporary) Prefect server: faults retried, gaps not."""

from __future__ import annotations

import pytest
from prefect import flow

from promotion.registry import ReleaseIncomplete
from tasks import registry as registry_tasks

from .conftest import MISSING_IN_V101, PASSWORD, USER, Front, Published

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("prefect_harness")]


def test_check_release_survives_faults_and_reports_gaps(published: Published, front: Front) -> None:
    repositories = published.repositories

    @flow
    def check(tag: str) -> dict[str, str]:
        front.front.fail_next(2, 503)
        digests: dict[str, str] = registry_tasks.check_release(
            front.url, repositories, tag, username=USER, password=PASSWORD
        )
        return digests

    assert len(check("v1.0.0")) == len(repositories)
    assert front.front.counts["faults"] == 2
    with pytest.raises(ReleaseIncomplete) as caught:
        check("v1.0.1")
    assert tuple(m.service for m in caught.value.missing) == MISSING_IN_V101
    tags = registry_tasks.list_tags.fn(
        front.url, repositories["frontend"], username=USER, password=PASSWORD
    )
    assert tags == ["v1.0.0"]
