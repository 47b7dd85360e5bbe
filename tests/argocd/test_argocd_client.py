"""The Argo CD client against the emulator over real HTTP, with real git and real kustomize."""

from __future__ import annotations

import time

import httpx
import pytest

from promotion.argocd import (
    AUTOSYNC_DISABLED_ANNOTATION,
    ApplicationNotFound,
    ArgoCDAuthFailed,
    ArgoCDClient,
    ArgoCDRequestFailed,
    ArgoCDUnavailable,
    DeploymentDegraded,
    DeploymentFailed,
    DeploymentTimedOut,
    OperationInProgress,
    RollbackRefused,
    RollbackUndone,
    is_transient,
)
from sandbox.argocd import AppSpec

from .conftest import PROD, PROD_OVERLAY, STAGING, TOKEN, Argo, Repo, start_argo

pytestmark = pytest.mark.timeout(60)


def test_initial_state_is_synced_and_healthy(argo: Argo, repo: Repo) -> None:
    app = argo.client().get_app(PROD)
    assert app.status.sync.status == "Synced"
    assert app.status.sync.revision == repo.seed_sha
    assert app.status.health.status == "Healthy"
    assert [h.id for h in app.status.history] == [0]
    assert app.autosync_enabled
    assert all(i.endswith(":v1.0.0") for i in app.status.summary.images)
    assert len(app.status.summary.images) == len(repo.config.services)


def test_push_is_confirmed_deployed_by_refresh_not_poll(argo: Argo, repo: Repo) -> None:
    sha = repo.push_release("v1.0.1")
    deployed = argo.client().confirm_deployed(PROD, sha, timeout=10, poll_interval=0.05)
    assert deployed.revision == sha
    assert deployed.health == "Healthy"
    assert deployed.history_id == 1
    assert deployed.seconds < 10
    app = argo.client().get_app(PROD)
    assert all(i.endswith(":v1.0.1") for i in app.status.summary.images)
    assert app.status.operation_state is not None
    assert app.status.operation_state.phase == "Succeeded"
    assert argo.emulator.stats()["counters"]["refreshes"] >= 1
    # staging follows its own overlay, untouched by the push
    assert argo.client().get_app(STAGING).status.sync.status == "Synced"


def test_degraded_image_fails_fast_with_the_health_message(argo: Argo, repo: Repo) -> None:
    argo.emulator.set_bad_image_patterns(["*/frontend:v6.6.6"])
    sha = repo.push_tags({"frontend": "v6.6.6"})
    started = time.monotonic()
    with pytest.raises(DeploymentDegraded) as caught:
        argo.client().confirm_deployed(PROD, sha, timeout=20, poll_interval=0.05)
    assert time.monotonic() - started < 5
    assert "frontend" in str(caught.value)
    assert "v6.6.6" in str(caught.value)
    assert caught.value.app == PROD


def test_bad_image_pattern_over_http(argo: Argo, repo: Repo) -> None:
    httpx.post(f"{argo.url}/_sandbox/bad-images", json={"patterns": ["*:v9*"]}).raise_for_status()
    sha = repo.push_release("v9.0.0")
    with pytest.raises(DeploymentDegraded):
        argo.client().confirm_deployed(PROD, sha, timeout=20, poll_interval=0.05)


def test_kustomize_error_fails_the_operation_with_its_message(repo: Repo) -> None:
    # Argo CD keeps the old status for a new repository error during its grace period (180 s;
    # short here), then reports the ComparisonError with sync.revision = the branch name.
    running = start_argo(repo, repo_error_grace=0.3, reconcile_interval=0.2)
    try:
        broken = repo.read(PROD_OVERLAY).replace("../base", "../no-such-base")
        sha = repo.push({PROD_OVERLAY: broken}, "break the overlay")
        started = time.monotonic()
        with pytest.raises(DeploymentFailed) as caught:
            running.client().confirm_deployed(PROD, sha, timeout=20, poll_interval=0.05)
        assert time.monotonic() - started < 5
        message = str(caught.value)
        assert "no-such-base" in message
        assert "kustomize" in message
        app = running.client().get_app(PROD)
        assert app.status.sync.status == "Unknown"
        assert app.status.sync.revision == "main"  # the target revision, not a sha
        assert app.status.conditions[0].type == "ComparisonError"
        # as Argo CD: no automated sync of an Unknown app, the old revision still runs
        assert app.status.operation_state is not None
        assert app.status.operation_state.revision == repo.seed_sha
        assert app.status.health.status == "Healthy"
    finally:
        running.http.close()
        running.emulator.stop()
        running.server.stop()


def test_manual_sync_of_a_broken_revision_fails_the_operation(repo: Repo) -> None:
    running = start_argo(
        repo, apps=[AppSpec(PROD, "kustomize/prod", environment="prod", auto_sync=False)]
    )
    try:
        broken = repo.read(PROD_OVERLAY).replace("../base", "../no-such-base")
        sha = repo.push({PROD_OVERLAY: broken}, "break the overlay")
        client = running.client()
        client.sync(PROD, sha)
        running.emulator.wait_idle(5)
        state = client.get_app(PROD).status.operation_state
        assert state is not None and state.phase == "Failed"
        assert "no-such-base" in state.message
        with pytest.raises(DeploymentFailed, match="no-such-base"):
            client.confirm_deployed(PROD, sha, timeout=5, poll_interval=0.05)
    finally:
        running.http.close()
        running.emulator.stop()
        running.server.stop()


def test_timeout_reports_the_last_state(repo: Repo) -> None:
    running = start_argo(
        repo, apps=[AppSpec(PROD, "kustomize/prod", environment="prod", auto_sync=False)]
    )
    try:
        sha = repo.push_release("v1.0.1")
        with pytest.raises(DeploymentTimedOut) as caught:
            running.client().confirm_deployed(PROD, sha, timeout=0.5, poll_interval=0.1)
        assert "OutOfSync" in str(caught.value)
        assert sha[:12] in str(caught.value)
        # a manual sync then deploys it
        running.client().sync(PROD)
        assert running.client().confirm_deployed(PROD, sha, timeout=10, poll_interval=0.05)
    finally:
        running.http.close()
        running.emulator.stop()
        running.server.stop()


def test_rollback_is_refused_while_autosync_is_on(argo: Argo) -> None:
    response = httpx.post(
        f"{argo.url}/api/v1/applications/{PROD}/rollback",
        json={"id": 0, "prune": False, "dryRun": False},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "rollback cannot be initiated when auto-sync is enabled",
        "code": 9,
        "message": "rollback cannot be initiated when auto-sync is enabled",
    }


def test_rollback_turns_autosync_off_and_confirms_the_old_revision(argo: Argo, repo: Repo) -> None:
    client = argo.client()
    sha = repo.push_release("v1.0.1")
    client.confirm_deployed(PROD, sha, timeout=10, poll_interval=0.05)
    result = client.rollback(PROD, "previous", timeout=10, poll_interval=0.05)
    assert (result.from_revision, result.to_revision) == (sha, repo.seed_sha)
    assert result.history_id == 2
    assert result.warnings == ()
    assert not result.autosync_reenabled
    app = client.get_app(PROD, refresh="normal")
    assert not app.autosync_enabled
    automated = app.automated
    assert automated is not None and automated.prune and automated.self_heal  # kept
    assert AUTOSYNC_DISABLED_ANNOTATION in app.metadata.annotations
    assert app.status.sync.status == "OutOfSync"  # git still says v1.0.1
    assert all(i.endswith(":v1.0.0") for i in app.status.summary.images)
    assert not client.autosync_reenabled(PROD)
    # resuming auto-sync brings the head back
    resumed = client.resume_autosync(PROD)
    assert resumed.autosync_enabled
    assert AUTOSYNC_DISABLED_ANNOTATION not in resumed.metadata.annotations
    assert client.confirm_deployed(PROD, sha, timeout=10, poll_interval=0.05).history_id == 3


def test_rollback_to_a_history_id_and_unknown_id(argo: Argo, repo: Repo) -> None:
    client = argo.client()
    first = repo.push_release("v1.0.1")
    client.confirm_deployed(PROD, first, timeout=10, poll_interval=0.05)
    second = repo.push_release("v1.0.2")
    client.confirm_deployed(PROD, second, timeout=10, poll_interval=0.05)
    with pytest.raises(RollbackRefused, match="id 42"):
        client.rollback(PROD, 42)
    result = client.rollback(PROD, 1, timeout=10, poll_interval=0.05)
    assert result.to_revision == first


def test_autosync_that_comes_back_by_itself_is_detected(repo: Repo) -> None:
    """The issue-5351 trap: the Application is managed from Git and re-enables auto-sync."""
    running = start_argo(repo, health_delay=1.0)
    try:
        client = running.client()
        sha = repo.push_release("v1.0.1")
        client.confirm_deployed(PROD, sha, timeout=10, poll_interval=0.05)
        running.emulator.set_reenable_autosync_after(PROD, 0.4)
        with pytest.raises(RollbackUndone, match="5351"):
            client.rollback(PROD, "previous", timeout=10, poll_interval=0.05)
        assert client.autosync_reenabled(PROD)
        # and auto-sync took the app back to the head: the rollback was undone
        assert client.confirm_deployed(PROD, sha, timeout=10, poll_interval=0.05)
    finally:
        running.http.close()
        running.emulator.stop()
        running.server.stop()


def test_autosync_reenabled_after_a_finished_rollback(repo: Repo) -> None:
    running = start_argo(repo, health_delay=0.1)
    try:
        client = running.client()
        sha = repo.push_release("v1.0.1")
        client.confirm_deployed(PROD, sha, timeout=10, poll_interval=0.05)
        httpx.post(
            f"{running.url}/_sandbox/reenable-autosync", json={"app": PROD, "seconds": 1.5}
        ).raise_for_status()
        result = client.rollback(PROD, "previous", timeout=10, poll_interval=0.05)
        assert result.warnings == ()
        assert not client.autosync_reenabled(PROD)
        time.sleep(2.0)
        assert client.autosync_reenabled(PROD)
    finally:
        running.http.close()
        running.emulator.stop()
        running.server.stop()


def test_history_is_kept_to_the_revision_history_limit(repo: Repo) -> None:
    running = start_argo(
        repo,
        health_delay=0.02,
        apps=[AppSpec(PROD, "kustomize/prod", environment="prod", revision_history_limit=3)],
    )
    try:
        client = running.client()
        for n in range(1, 6):
            sha = repo.push_release(f"v1.0.{n}")
            client.confirm_deployed(PROD, sha, timeout=10, poll_interval=0.02)
        history = client.get_app(PROD).status.history
        assert [h.id for h in history] == [3, 4, 5]
        assert history[-1].revision == sha
    finally:
        running.http.close()
        running.emulator.stop()
        running.server.stop()


def test_sync_while_an_operation_runs_is_refused_as_transient(repo: Repo) -> None:
    running = start_argo(repo, sync_duration=1.0)
    try:
        client = running.client()
        repo.push_release("v1.0.1")
        running.emulator.set_bad_image_patterns([])
        client.get_app(PROD, refresh="normal")  # auto-sync starts a 1 s operation
        with pytest.raises(OperationInProgress) as caught:
            client.sync(PROD)
        assert is_transient(caught.value)
        assert caught.value.code == 9
        client.terminate_operation(PROD)
        running.emulator.wait_idle(5)
        state = client.get_app(PROD).status.operation_state
        assert state is not None and state.phase == "Failed"
        assert state.message == "Operation terminated"
    finally:
        running.http.close()
        running.emulator.stop()
        running.server.stop()


def test_auth_errors_and_not_found(argo: Argo) -> None:
    with pytest.raises(ArgoCDAuthFailed) as caught:
        argo.client("wrong-token").get_app(PROD)
    assert caught.value.status_code == 401
    assert "wrong-token" not in str(caught.value)
    viewer = argo.client("viewer-token")
    assert viewer.get_app(PROD).name == PROD
    with pytest.raises(ArgoCDAuthFailed) as denied:
        viewer.sync(PROD)
    assert denied.value.status_code == 403
    assert "permission denied" in str(denied.value)
    with pytest.raises(ApplicationNotFound, match="nope"):
        argo.client().get_app("nope")
    missing = httpx.get(f"{argo.url}/api/v1/applications")
    assert missing.status_code == 401
    assert missing.json()["code"] == 16


def test_faults_and_unreachable_server_are_transient(argo: Argo) -> None:
    argo.emulator.fail_next(1, 503)
    with pytest.raises(ArgoCDRequestFailed) as caught:
        argo.client().get_app(PROD)
    assert caught.value.status_code == 503
    assert is_transient(caught.value)
    assert argo.client().get_app(PROD).name == PROD
    httpx.post(f"{argo.url}/_sandbox/faults", json={"count": 1, "status": 502}).raise_for_status()
    with pytest.raises(ArgoCDRequestFailed):
        argo.client().list_apps()
    stats = httpx.get(f"{argo.url}/_sandbox/stats").json()
    assert stats["faults_served"] == 2
    assert stats["calls"]["get_app"] == 2
    with pytest.raises(ArgoCDUnavailable) as down:
        ArgoCDClient("http://127.0.0.1:9", TOKEN, timeout=1).get_app(PROD)
    assert is_transient(down.value)
    assert TOKEN not in str(down.value)
    assert not is_transient(ApplicationNotFound("x", status_code=404))


def test_list_with_selector_and_fields(argo: Argo) -> None:
    client = argo.client()
    assert {a.name for a in client.list_apps()} == {PROD, STAGING}
    assert [a.name for a in client.list_apps("environment=prod")] == [PROD]
    assert [a.name for a in client.list_apps("environment in (staging)")] == [STAGING]
    assert [a.name for a in client.list_apps("environment!=prod")] == [STAGING]
    narrowed = httpx.get(
        f"{argo.url}/api/v1/applications",
        params={"fields": "items.metadata.name,items.status.sync.status"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ).json()
    assert narrowed == {  # Argo CD always answers the list's metadata
        "items": [
            {"metadata": {"name": PROD}, "status": {"sync": {"status": "Synced"}}},
            {"metadata": {"name": STAGING}, "status": {"sync": {"status": "Synced"}}},
        ],
        "metadata": {"resourceVersion": "0"},
    }
    apps = client.list_apps(fields=["items.metadata.name", "items.status.health"])
    assert {a.status.health.status for a in apps} == {"Healthy"}


def test_put_spec_and_hard_refresh(argo: Argo, repo: Repo) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    app = httpx.get(f"{argo.url}/api/v1/applications/{PROD}", headers=headers).json()
    spec = app["spec"]
    spec["syncPolicy"].pop("automated")
    answered = httpx.put(
        f"{argo.url}/api/v1/applications/{PROD}/spec", json=spec, headers=headers
    ).json()
    assert "automated" not in answered["syncPolicy"]
    sha = repo.push_release("v1.0.1")
    hard = argo.client().get_app(PROD, refresh="hard")
    assert (hard.status.sync.revision, hard.status.sync.status) == (sha, "OutOfSync")
    assert not hard.autosync_enabled


def test_slow_answers_time_out_as_transient(argo: Argo) -> None:
    httpx.post(f"{argo.url}/_sandbox/latency", json={"seconds": 0.5}).raise_for_status()
    try:
        with httpx.Client(timeout=0.1) as impatient:
            client = ArgoCDClient(argo.url, TOKEN, http=impatient)
            with pytest.raises(ArgoCDUnavailable) as caught:
                client.get_app(PROD)
        assert is_transient(caught.value)
    finally:
        argo.emulator.set_latency(0.0)
    assert argo.client().get_app(PROD).name == PROD


def test_unsupported_requests_answer_argo_errors(argo: Argo) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    json_patch = httpx.patch(
        f"{argo.url}/api/v1/applications/{PROD}",
        json={"patch": "[]", "patchType": "json"},
        headers=headers,
    )
    assert json_patch.status_code == 400
    assert json_patch.json()["code"] == 3
    no_op = httpx.delete(f"{argo.url}/api/v1/applications/{PROD}/operation", headers=headers)
    assert no_op.status_code == 400
    assert "No operation is in progress" in no_op.json()["message"]
    bad_selector = httpx.get(
        f"{argo.url}/api/v1/applications", params={"selector": "a in b"}, headers=headers
    )
    assert bad_selector.status_code == 400


def test_the_poller_auto_syncs_without_a_refresh(repo: Repo) -> None:
    running = start_argo(repo, reconcile_interval=0.2, health_delay=0.02)
    try:
        client = running.client()
        sha = repo.push_release("v1.0.1")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            app = client.get_app(PROD)  # no refresh: only the poller can see the push
            if app.status.history[-1].revision == sha:
                break
            time.sleep(0.05)
        assert app.status.history[-1].revision == sha
        assert running.emulator.stats()["counters"].get("refreshes", 0) == 0
    finally:
        running.http.close()
        running.emulator.stop()
        running.server.stop()


def test_a_later_commit_that_contains_the_merge_confirms_it(argo: Argo, repo: Repo) -> None:
    # Two merges land before Argo CD looks: it syncs straight to the second one.
    first = repo.push_release("v1.0.1")
    second = repo.push_tags({"frontend": "v1.0.2"})
    history = {first, second}  # what a compare of the branch would say contains ``first``
    with pytest.raises(DeploymentTimedOut, match="not confirmed"):
        argo.client().confirm_deployed(PROD, first, timeout=1.5, poll_interval=0.05)
    deployed = argo.client().confirm_deployed(
        PROD, first, timeout=10, poll_interval=0.05, contains=history.__contains__
    )
    assert deployed.revision == second
    assert deployed.health == "Healthy"
    # A later commit that does not contain the merge confirms nothing.
    third = repo.push_tags({"frontend": "v1.0.3"})
    with pytest.raises(DeploymentTimedOut):
        argo.client().confirm_deployed(
            PROD, first, timeout=1.5, poll_interval=0.05, contains=lambda sha: sha != third
        )
