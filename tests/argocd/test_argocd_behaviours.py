"""Behaviours of the real Argo CD (issue 11) reproduced by the emulator and handled by the client.

Each test names the behaviour; docs/contracts.md ("Argo CD emulator: behaviours and their
sources") names the Argo CD source each one follows. Everything runs over real HTTP against the
emulator, with real git and real kustomize.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from promotion.argocd import (
    AUTOSYNC_DISABLED_ANNOTATION,
    AUTOSYNC_SAVED_ANNOTATION,
    ApplicationNotFound,
    ApplicationNotFoundOrDenied,
    ArgoCDAuthFailed,
    ArgoCDClient,
    DeploymentDegraded,
    DeploymentFailed,
    DeploymentStuckProgressing,
    DeploymentSuperseded,
    DeploymentTimedOut,
    ManagedByApplicationSet,
    RollbackRefused,
    image_tags,
    is_transient,
)
from promotion.config import Settings
from sandbox.argocd import AppSpec
from tasks.drift import LIST_FIELDS, list_live_apps

from .conftest import PROD, PROD_OVERLAY, STAGING, TOKEN, Argo, Repo, start_argo

pytestmark = pytest.mark.timeout(90)
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
FRONTEND = "registry.digitalocean.com/microservices-demo/frontend"


@contextmanager
def running(repo: Repo, **options: Any) -> Iterator[Argo]:
    argo = start_argo(repo, **options)
    try:
        yield argo
    finally:
        argo.http.close()
        argo.emulator.stop()
        argo.server.stop()


def release_images(repo: Repo, tag: str) -> dict[str, str]:
    return {repo.config.image(service): tag for service in repo.config.services}


def raw_app(argo: Argo, name: str = PROD, **params: str) -> dict[str, Any]:
    response = httpx.get(f"{argo.url}/api/v1/applications/{name}", params=params, headers=HEADERS)
    response.raise_for_status()
    doc: dict[str, Any] = response.json()
    return doc


# -- 1. a commit that leaves an application's manifests unchanged starts no sync ----------------


def test_unrelated_commit_starts_no_sync_and_our_merge_still_confirms(
    argo: Argo, repo: Repo
) -> None:
    ours = repo.push_release("v1.0.1")
    argo.client().confirm_deployed(PROD, ours, timeout=10, poll_interval=0.05)
    operations = argo.emulator.stats()["counters"]["operations"]
    # A README commit and a staging change land on the shared branch (a resumed run, say).
    readme = repo.push({"README.md": "unrelated\n"}, "docs")
    head = repo.push_release("v1.0.1", overlay="kustomize/staging/kustomization.yaml")
    app = raw_app(argo, refresh="normal")
    assert app["status"]["sync"] == {**app["status"]["sync"], "status": "Synced", "revision": head}
    assert app["status"]["operationState"]["syncResult"]["revision"] == ours
    assert argo.emulator.stats()["counters"]["operations"] == operations  # no new sync
    assert readme != head
    deployed = argo.client().confirm_deployed(
        PROD, ours, expected_images=release_images(repo, "v1.0.1"), timeout=5, poll_interval=0.05
    )
    assert deployed.revision == ours  # the commit that really runs, not the branch head
    assert deployed.history_id == 1


# -- 2. "contains our commit" is not "runs our change" ------------------------------------------


def test_a_later_change_to_our_images_supersedes_ours(argo: Argo, repo: Repo) -> None:
    ours = repo.push_release("v1.0.1")
    newer = repo.push_release("v1.0.2")  # contains ours, changes the same overlay again
    with pytest.raises(DeploymentSuperseded) as caught:
        argo.client().confirm_deployed(
            PROD,
            ours,
            expected_images=release_images(repo, "v1.0.1"),
            contains={ours, newer}.__contains__,
            timeout=10,
            poll_interval=0.05,
        )
    assert caught.value.revision == newer
    assert caught.value.expected[FRONTEND] == "v1.0.1"
    assert caught.value.live[FRONTEND] == ("v1.0.2",)
    assert "ours v1.0.1, runs v1.0.2" in str(caught.value)
    # Without a later change to our images the same call confirms (only frontend moves on).
    only_frontend = repo.push_tags({"frontend": "v1.0.3"})
    checkout = {repo.config.image("checkoutservice"): "v1.0.2"}
    deployed = argo.client().confirm_deployed(
        PROD,
        newer,
        expected_images=checkout,
        contains={newer, only_frontend}.__contains__,
        timeout=10,
        poll_interval=0.05,
    )
    assert deployed.revision == only_frontend


# -- 3. Degraded comes late: the progress deadline ----------------------------------------------


def test_bad_image_stays_progressing_until_the_progress_deadline(repo: Repo) -> None:
    with running(repo, progress_deadline=3.0, bad_image_patterns=["*:v6.6.6"]) as argo:
        sha = repo.push_tags({"frontend": "v6.6.6"})
        raw_app(argo, refresh="normal")  # Argo CD syncs it (the render may take a while here)
        argo.emulator.wait_idle(5)
        with pytest.raises(DeploymentStuckProgressing) as stuck:
            argo.client().confirm_deployed(PROD, sha, timeout=1.5, poll_interval=0.05)
        assert isinstance(stuck.value, DeploymentTimedOut)
        assert "Progressing" in str(stuck.value)
        started = time.monotonic()
        with pytest.raises(DeploymentDegraded, match="exceeded its progress deadline"):
            argo.client().confirm_deployed(PROD, sha, timeout=10, poll_interval=0.05)
        assert time.monotonic() - started > 0.5  # it was still Progressing


def test_deploy_timeout_setting_exceeds_the_progress_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings()
    assert settings.deploy_timeout == 900.0 > 600.0
    assert settings.rollback_when_stuck_progressing is False
    monkeypatch.setenv("RELEASE_PROMOTION_DEPLOY_TIMEOUT", "1200")
    monkeypatch.setenv("RELEASE_PROMOTION_ROLLBACK_WHEN_STUCK_PROGRESSING", "true")
    settings = Settings()
    assert (settings.deploy_timeout, settings.rollback_when_stuck_progressing) == (1200.0, True)


# -- 4. stale health: the reconciliation that starts an auto-sync persists pre-sync health ------


def test_pre_sync_health_persisted_with_the_operation_is_not_trusted(repo: Repo) -> None:
    with running(
        repo, bad_image_patterns=["*:v6.6.6"], stale_health_window=1.5, health_delay=1.6
    ) as argo:
        sha = repo.push_tags({"frontend": "v6.6.6"})
        raw_app(argo, refresh="normal")  # the reconciliation that starts the auto-sync
        argo.emulator.wait_idle(5)
        app = raw_app(argo)
        state = app["status"]["operationState"]
        assert (state["phase"], state["syncResult"]["revision"]) == ("Succeeded", sha)
        # what the emulator shows: the pre-sync Healthy, stamped in the operation's second
        assert app["status"]["health"]["status"] == "Healthy"
        assert app["status"]["reconciledAt"] == state["finishedAt"]
        with pytest.raises(DeploymentDegraded):
            argo.client().confirm_deployed(PROD, sha, timeout=10, poll_interval=0.05)


# -- 5. the list call's fields whitelist --------------------------------------------------------


def test_list_fields_keep_only_argo_cds_whitelist(argo: Argo) -> None:
    asked = [
        "items.metadata.name",
        "items.metadata.annotations",
        "items.spec.source",
        "items.status.sync.revision",
        "items.status.summary.images",
        "items.status.operationState.phase",
    ]
    listed = httpx.get(
        f"{argo.url}/api/v1/applications",
        params={"fields": ",".join(asked), "selector": "environment=prod"},
        headers=HEADERS,
    ).json()
    # spec.source, sync.revision and summary.images are not appFields keys (v3.1): dropped
    assert listed["items"] == [
        {
            "metadata": {"name": PROD, "annotations": None},
            "status": {"operationState": {"phase": "Succeeded"}},
        }
    ]
    argo.emulator.set_knobs(version="v3.5.0+abcdef0")  # 3.5 adds spec.source, sync.revision
    newer = httpx.get(
        f"{argo.url}/api/v1/applications",
        params={"fields": ",".join(asked), "selector": "environment=prod"},
        headers=HEADERS,
    ).json()["items"][0]
    assert newer["spec"]["source"]["path"] == "kustomize/prod"
    assert newer["status"]["sync"]["revision"]
    assert "summary" not in newer["status"]


def test_drift_audit_reads_live_images_through_the_whitelist(argo: Argo, repo: Repo) -> None:
    sha = repo.push_release("v1.0.1")
    argo.client().confirm_deployed(PROD, sha, timeout=10, poll_interval=0.05)
    apps = argo.client().list_apps("environment=prod", LIST_FIELDS)
    assert apps[0].metadata.annotations == {}  # "annotations": null accepted
    live = list_live_apps.fn(argo.url, SecretStr(TOKEN), "environment in (prod,staging)")
    by_name = {a.name: a for a in live}
    assert sorted(by_name[PROD].images) == sorted(
        f"{image}:v1.0.1" for image in release_images(repo, "v1.0.1")
    )
    assert len(by_name[STAGING].images) == len(repo.config.services)
    assert by_name[PROD].sync_revision == sha  # from the last sync's result
    assert (by_name[PROD].path, by_name[PROD].target_revision) == ("kustomize/prod", "main")
    assert by_name[PROD].autosync_enabled and by_name[PROD].sync_status == "Synced"


# -- 6. ComparisonError: the branch name as revision, the repo-error grace period ---------------


def test_repository_error_is_hidden_during_the_grace_period(repo: Repo) -> None:
    with running(repo, repo_error_grace=1.0) as argo:
        broken = repo.read(PROD_OVERLAY).replace("../base", "../no-such-base")
        staging = "kustomize/staging/kustomization.yaml"
        broken_staging = repo.read(staging).replace("../base", "../no-such-base")
        sha = repo.push({PROD_OVERLAY: broken, staging: broken_staging}, "break the overlays")
        for name in (PROD, STAGING):  # first seen: ignored, the old status is kept
            first = raw_app(argo, name, refresh="normal")["status"]
            assert (first["sync"]["status"], first["sync"]["revision"]) == ("Synced", repo.seed_sha)
            assert "conditions" not in first
        hard = raw_app(argo, STAGING, refresh="hard")["status"]  # no revision cache: at once
        assert (hard["sync"]["status"], hard["sync"]["revision"]) == ("Unknown", "main")
        assert hard["conditions"][0]["type"] == "ComparisonError"
        time.sleep(1.1)  # past the grace period: the next comparison reports it
        started = time.monotonic()
        with pytest.raises(DeploymentFailed, match="cannot render main") as caught:
            argo.client().confirm_deployed(PROD, sha, timeout=20, poll_interval=0.05)
        assert time.monotonic() - started < 5
        assert "no-such-base" in str(caught.value)


# -- 7. ?refresh= blocks until reconciled --------------------------------------------------------


def test_slow_refresh_is_asked_once_with_a_fitting_timeout(repo: Repo) -> None:
    with running(repo, refresh_latency=1.5) as argo:
        sha = repo.push_release("v1.0.1")
        with httpx.Client(timeout=1.0) as impatient:  # shorter than the refresh latency
            client = ArgoCDClient(argo.url, TOKEN, http=impatient)
            deployed = client.confirm_deployed(PROD, sha, timeout=15, poll_interval=0.05)
        assert deployed.revision == sha
        assert argo.emulator.stats()["counters"]["refreshes"] == 1


def test_refresh_deadline_exceeded_is_survived(repo: Repo) -> None:
    with running(repo, refresh_latency=2.0, refresh_deadline=0.2) as argo:
        answer = httpx.get(
            f"{argo.url}/api/v1/applications/{PROD}",
            params={"refresh": "normal"},
            headers=HEADERS,
        )
        assert answer.status_code == 500
        assert answer.json() == {
            "error": "application refresh deadline exceeded",
            "code": 2,
            "message": "application refresh deadline exceeded",
        }
        sha = repo.push_release("v1.0.1")
        assert argo.client().confirm_deployed(PROD, sha, timeout=10, poll_interval=0.05)


# -- 8. versions: automated.enabled exists from 3.1 ---------------------------------------------


def test_before_3_1_autosync_off_removes_automated_and_resume_restores_it(repo: Repo) -> None:
    with running(repo, version="v2.14.9+1b2c3d4") as argo:
        version = httpx.get(f"{argo.url}/api/version").json()
        assert version == {"Version": "v2.14.9+1b2c3d4"}  # no session: the version only
        # The 3.1 way does nothing on 2.x: the unknown field is pruned, auto-sync stays on.
        patch = {"spec": {"syncPolicy": {"automated": {"enabled": False}}}}
        httpx.patch(
            f"{argo.url}/api/v1/applications/{STAGING}",
            json={"patch": json.dumps(patch), "patchType": "merge"},
            headers=HEADERS,
        ).raise_for_status()
        automated = raw_app(argo, STAGING)["spec"]["syncPolicy"]["automated"]
        assert automated == {"prune": True, "selfHeal": True}
        client = argo.client()
        sha = repo.push_release("v1.0.1")
        client.confirm_deployed(PROD, sha, timeout=10, poll_interval=0.05)
        rolled = client.rollback(PROD, timeout=10, poll_interval=0.05)
        assert rolled.to_revision == repo.seed_sha
        app = client.get_app(PROD)
        assert app.automated is None and not app.autosync_enabled
        assert json.loads(app.metadata.annotations[AUTOSYNC_SAVED_ANNOTATION]) == {
            "prune": True,
            "selfHeal": True,
            "allowEmpty": False,
        }
        resumed = client.resume_autosync(PROD)
        assert resumed.automated is not None and resumed.autosync_enabled
        assert (resumed.automated.prune, resumed.automated.self_heal) == (True, True)
        assert AUTOSYNC_SAVED_ANNOTATION not in resumed.metadata.annotations
        assert AUTOSYNC_DISABLED_ANNOTATION not in resumed.metadata.annotations
        assert client.confirm_deployed(PROD, sha, timeout=10, poll_interval=0.05)


# -- 9. ApplicationSet-managed applications ------------------------------------------------------


def test_applicationset_app_puts_its_spec_back_and_refuses_argocd_rollback(repo: Repo) -> None:
    apps = [AppSpec(PROD, "kustomize/prod", environment="prod", applicationset="microservices")]
    with running(repo, apps=apps, applicationset_revert_after=0.5) as argo:
        owner = raw_app(argo)["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"]) == ("ApplicationSet", "microservices")
        patch = {"spec": {"syncPolicy": {"automated": {"enabled": False}}}}
        answered = httpx.patch(
            f"{argo.url}/api/v1/applications/{PROD}",
            json={"patch": json.dumps(patch), "patchType": "merge"},
            headers=HEADERS,
        ).json()
        assert answered["spec"]["syncPolicy"]["automated"]["enabled"] is False
        time.sleep(1.0)
        assert raw_app(argo)["spec"]["syncPolicy"]["automated"]["enabled"] is True
        client = argo.client()
        sha = repo.push_release("v1.0.1")
        client.confirm_deployed(PROD, sha, timeout=10, poll_interval=0.05)
        with pytest.raises(ManagedByApplicationSet, match="'revert'") as refused:
            client.rollback(PROD, timeout=10, poll_interval=0.05)
        assert isinstance(refused.value, RollbackRefused)
        assert "microservices" in str(refused.value)
        with pytest.raises(ManagedByApplicationSet):
            client.rollback_target(PROD)
        assert client.get_app(PROD).autosync_enabled  # nothing was touched
        # The same over the sandbox's HTTP knob, for the launcher's sandbox.
        httpx.post(
            f"{argo.url}/_sandbox/applicationset", json={"app": PROD, "applicationset": None}
        ).raise_for_status()
        assert client.rollback_target(PROD).revision == repo.seed_sha
        httpx.post(
            f"{argo.url}/_sandbox/applicationset", json={"app": PROD, "applicationset": "other"}
        ).raise_for_status()
        with pytest.raises(ManagedByApplicationSet, match="'other'"):
            client.disable_autosync(PROD)


# -- 10. auto-sync retries -----------------------------------------------------------------------


def test_failing_autosync_retries_before_it_fails(repo: Repo) -> None:
    with running(
        repo, failing_image_patterns=["*:v6.6.6"], sync_retry_limit=3, sync_retry_backoff=0.4
    ) as argo:
        sha = repo.push_tags({"frontend": "v6.6.6"})
        raw_app(argo, refresh="normal")  # the automated sync starts and fails its first attempt
        deadline = time.monotonic() + 10
        state = raw_app(argo)["status"]["operationState"]
        while state.get("retryCount", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
            state = raw_app(argo)["status"]["operationState"]
        assert state["phase"] == "Running" and state["retryCount"] >= 1
        assert "Retrying attempt #1 at " in state["message"]
        assert state["operation"]["retry"] == {"limit": 3}
        with pytest.raises(DeploymentTimedOut, match=r"Retrying attempt #\d") as waiting:
            argo.client().confirm_deployed(PROD, sha, timeout=0.3, poll_interval=0.05)
        assert not isinstance(waiting.value, DeploymentFailed)
        with pytest.raises(DeploymentFailed, match=r"retried 3 times"):
            argo.client().confirm_deployed(PROD, sha, timeout=10, poll_interval=0.05)


# -- 11. an unknown application answers 403 permission denied ----------------------------------


def test_unknown_application_answers_permission_denied(argo: Argo) -> None:
    answer = httpx.get(f"{argo.url}/api/v1/applications/nope", headers=HEADERS)
    assert answer.status_code == 403
    assert answer.json() == {
        "error": "permission denied",
        "code": 7,
        "message": "permission denied",
    }
    with pytest.raises(ApplicationNotFoundOrDenied) as caught:
        argo.client().get_app("nope")
    assert "[nope] unknown application or no permission" in str(caught.value)
    assert isinstance(caught.value, ApplicationNotFound | ArgoCDAuthFailed)
    assert not is_transient(caught.value)
    with pytest.raises(ApplicationNotFoundOrDenied, match="unknown application"):
        argo.client().confirm_deployed("nope", "0" * 40, timeout=2, poll_interval=0.05)


# -- 18. watch instead of polling ----------------------------------------------------------------


def test_watch_stream_sends_added_then_modified(argo: Argo, repo: Repo) -> None:
    events: list[dict[str, Any]] = []
    with httpx.stream(
        "GET",
        f"{argo.url}/api/v1/stream/applications",
        params={"name": PROD},
        headers=HEADERS,
        timeout=10,
    ) as stream:
        for line in stream.iter_lines():
            events.append(json.loads(line))
            if len(events) == 1:
                repo.push_release("v1.0.1")
                raw_app(argo, refresh="normal")
            if events[-1]["result"]["application"]["status"]["health"]["status"] == "Progressing":
                break
    assert [e["result"]["type"] for e in events[:2]] == ["ADDED", "MODIFIED"]
    assert events[0]["result"]["application"]["metadata"]["name"] == PROD


def test_confirm_follows_the_stream_with_two_calls(argo: Argo, repo: Repo) -> None:
    sha = repo.push_release("v1.0.1")
    before = argo.emulator.stats()["calls"]
    deployed = argo.client().confirm_deployed(PROD, sha, timeout=10, poll_interval=5.0)
    calls = argo.emulator.stats()["calls"]
    assert deployed.revision == sha
    # one refresh, one stream; a poll every 5 s could not have confirmed this fast
    assert calls.get("get_app", 0) - before.get("get_app", 0) == 1
    assert calls.get("watch", 0) - before.get("watch", 0) == 1
    reported = argo.emulator.healthy_reported_at(PROD)
    assert reported is not None


def test_confirm_falls_back_to_polls_when_the_stream_breaks(repo: Repo) -> None:
    with running(repo, watch_break_after=0.0) as argo:
        sha = repo.push_release("v1.0.1")
        deployed = argo.client().confirm_deployed(PROD, sha, timeout=10, poll_interval=0.05)
        assert deployed.revision == sha
        calls = argo.emulator.stats()["calls"]
        assert calls["watch"] == 3  # three broken streams, then polls only
        assert calls["get_app"] > 2


def test_live_image_tags_from_the_summary() -> None:
    assert image_tags(
        [
            f"{FRONTEND}:v1.0.1",
            "r.example/a/c:v2@sha256:ab",
            "r.example/a/d@sha256:cd",
            "localhost:5000/x",
            "localhost:5000/x:v3",
        ]
    ) == {
        FRONTEND: ["v1.0.1"],
        "r.example/a/c": ["v2"],
        "r.example/a/d": ["@sha256:cd"],
        "localhost:5000/x": ["latest", "v3"],
    }
