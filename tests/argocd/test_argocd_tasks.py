"""The Argo CD tasks inside a real (temporary) Prefect server: transient faults are retried."""

from __future__ import annotations

import time

import pytest
from prefect import flow

from promotion.argocd import Deployed, DeploymentDegraded, RolledBack
from tasks import argocd as argocd_tasks

from .conftest import PROD, TOKEN, Argo, Repo

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("prefect_harness")]


def test_confirm_survives_server_errors(argo: Argo, repo: Repo) -> None:
    sha = repo.push_release("v1.0.1")

    @flow
    def confirm() -> Deployed:
        argo.emulator.fail_next(2, 503)
        result: Deployed = argocd_tasks.confirm_deployed(
            argo.url, TOKEN, PROD, sha, timeout=20, poll_interval=0.05
        )
        return result

    deployed = confirm()
    assert deployed.revision == sha
    assert argo.emulator.stats()["faults_served"] == 2


def test_degraded_is_not_retried(argo: Argo, repo: Repo) -> None:
    argo.emulator.set_bad_image_patterns(["*:v6.6.6"])
    sha = repo.push_release("v6.6.6")

    @flow
    def confirm() -> None:
        argocd_tasks.confirm_deployed(argo.url, TOKEN, PROD, sha, timeout=20, poll_interval=0.05)

    started = time.monotonic()
    with pytest.raises(DeploymentDegraded):
        confirm()
    assert time.monotonic() - started < 5
    # one refresh for the one attempt: no retry
    assert argo.emulator.stats()["counters"]["refreshes"] == 1


def test_rollback_in_two_tasks_and_resume(argo: Argo, repo: Repo) -> None:
    sha = repo.push_release("v1.0.1")

    @flow
    def roll() -> tuple[RolledBack, bool, bool]:
        argocd_tasks.confirm_deployed(argo.url, TOKEN, PROD, sha, timeout=20, poll_interval=0.05)
        target = argocd_tasks.rollback_target(argo.url, TOKEN, PROD)
        argo.emulator.fail_next(1, 502)
        rolled: RolledBack = argocd_tasks.rollback_app(
            argo.url, TOKEN, PROD, target.id, timeout=20, poll_interval=0.05
        )
        reenabled: bool = argocd_tasks.autosync_reenabled(argo.url, TOKEN, PROD)
        resumed: bool = argocd_tasks.resume_autosync(argo.url, TOKEN, PROD)
        return rolled, reenabled, resumed

    rolled, reenabled, resumed = roll()
    assert rolled.to_revision == repo.seed_sha
    assert not reenabled
    assert resumed
    apps = argocd_tasks.list_apps.fn(argo.url, TOKEN, "environment=prod")
    assert [a.name for a in apps] == [PROD]
