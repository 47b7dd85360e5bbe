"""The Argo CD tasks inside a real (temporary) Prefect server: transient faults are retried."""

from __future__ import annotations

import time

import pytest
from prefect import flow
from pydantic import SecretStr

from promotion.argocd import Deployed, DeploymentDegraded, RolledBack
from tasks import argocd as argocd_tasks

from .conftest import PROD, TOKEN, Argo, Repo


def target(argo: Argo) -> argocd_tasks.ArgoTarget:
    return argocd_tasks.ArgoTarget(base_url=argo.url, token=SecretStr(TOKEN))


pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("prefect_harness")]


def test_confirm_survives_server_errors(argo: Argo, repo: Repo) -> None:
    sha = repo.push_release("v1.0.1")

    @flow
    def confirm() -> Deployed:
        argo.emulator.fail_next(2, 503)
        result: Deployed = argocd_tasks.confirm_deployed(
            target(argo), PROD, sha, timeout=20, poll_interval=0.05
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
        argocd_tasks.confirm_deployed(target(argo), PROD, sha, timeout=20, poll_interval=0.05)

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
        argocd_tasks.confirm_deployed(target(argo), PROD, sha, timeout=20, poll_interval=0.05)
        before = argocd_tasks.get_revision(target(argo), PROD)
        assert before == sha
        argo.emulator.fail_next(1, 502)
        rolled = argocd_tasks.rollback(target(argo), PROD, timeout=20, poll_interval=0.05)
        assert rolled.warning is None
        reenabled: bool = argocd_tasks.autosync_reenabled(target(argo), PROD)
        resumed: bool = argocd_tasks.resume_autosync(target(argo), PROD)
        return rolled, reenabled, resumed

    rolled, reenabled, resumed = roll()
    assert rolled.to_revision == repo.seed_sha
    assert not reenabled
    assert resumed
    apps = argocd_tasks.list_apps.fn(target(argo), "environment=prod")
    assert [a.name for a in apps] == [PROD]
