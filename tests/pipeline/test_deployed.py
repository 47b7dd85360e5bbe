"""promote-release as a deployment run by a real worker: suspended approvals and a crash.

Under a deployment the approvals *suspend* the run (no process waits for people); on resume
the flow runs again from the top in a new process, so every step before a gate must find
what it already did. Here the worker and its flow process are also SIGKILLed while the prod
PR's checks run, then the run is rescheduled (as the UI's Retry does) onto a new worker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deployments.local import LocalPrefect, Worker, deploy, ensure_work_pool
from deployments.runs import read_artifact, read_run, resume_run, start_run, wait_for_run
from pipeline.conftest import clear_holds
from pipeline.helpers import INITIATOR, PROD, pulls, tags
from sandbox.launcher import Sandbox, start_sandbox
from sandbox.seed import git


@pytest.fixture(scope="module")
def deployed(prefect_server: LocalPrefect) -> str:
    ensure_work_pool(prefect_server.api_url)
    deploy(prefect_server.env(), names=["promote-release", "finish-promotion"])
    return prefect_server.api_url


@pytest.fixture
def slow_check_sandbox(tmp_path: Path, prefect_server: LocalPrefect) -> Iterator[Sandbox]:
    # A 3 s validation check leaves time to kill the worker while the prod checks run.
    clear_holds(prefect_server.api_url)
    with start_sandbox(tmp_path / "sandbox", check_duration=3.0, health_delay=0.2) as box:
        yield box


def _set_state(api: str, run_id: str, state_type: str, message: str) -> None:
    response = httpx.post(
        f"{api}/flow_runs/{run_id}/set_state",
        json={"state": {"type": state_type, "message": message}, "force": True},
        timeout=15,
    )
    response.raise_for_status()
    assert response.json()["status"] == "ACCEPT", response.json()


def _resume(api: str, run_id: str, gate: str, approver: str) -> None:
    wait_for_run(
        api, run_id, until=lambda r: r.paused and (r.pause_key or "").startswith(gate), timeout=120
    )
    result = resume_run(api, run_id, {"approved": True, "approver": approver, "comment": "ok"})
    assert result.status == "ACCEPT", result


def _commits(box: Sandbox, ref: str) -> list[str]:
    return git("rev-list", ref, cwd=box.state_dir / "repo.git").split()


def test_suspended_run_survives_a_killed_worker_without_duplicates(
    deployed: str, slow_check_sandbox: Sandbox, prefect_server: LocalPrefect, tmp_path: Path
) -> None:
    api, box = deployed, slow_check_sandbox
    env = prefect_server.env({**box.env(), "RELEASE_PROMOTION_POLL_INTERVAL": "0.2"})
    worker = Worker(env, log_path=tmp_path / "worker-1.log").start()
    try:
        run = start_run(api, "promote-release", {"version": "v1.0.1", "initiator": INITIATOR})
        qa = wait_for_run(api, run.id, until=lambda r: r.paused or r.finished, timeout=120)
        assert qa.paused and qa.state_name == "Suspended", (qa, worker.log_tail())
        _resume(api, run.id, "qa", "qa-alice")

        # Kill the worker and the flow process once the prod PR exists, before any merge.
        deadline = time.monotonic() + 120
        while not [p for p in pulls(box) if p["head"]["ref"].startswith("promote/prod/")]:
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.2)
        worker.kill()
    finally:
        worker.stop()
    time.sleep(4.0)  # longer than the check: a surviving flow process would have merged by now
    dead = read_run(api, run.id)
    assert dead.state_type in {"RUNNING", "CRASHED"}, dead
    assert tags(box, PROD) == {"v1.0.0"}
    assert not [p for p in pulls(box) if p["merged_at"] and "prod" in p["head"]["ref"]]

    # The operator marks the dead run crashed and retries it; a new worker picks it up.
    if dead.state_type == "RUNNING":
        _set_state(api, run.id, "CRASHED", "worker killed")
    _set_state(api, run.id, "SCHEDULED", "retried after the worker crash")
    with Worker(env, log_path=tmp_path / "worker-2.log") as worker2:
        _resume(api, run.id, "pm", "pm-carol")
        final = wait_for_run(api, run.id, until=lambda r: r.finished, timeout=180)
        assert final.state_type == "COMPLETED", (final.message, worker2.log_tail())

    assert tags(box, PROD) == {"v1.0.1"}
    prs = pulls(box)
    assert sorted(p["head"]["ref"] for p in prs) == [
        "promote/prod/v1.0.1",
        "promote/staging/v1.0.1",
    ]
    assert all(p["merged_at"] for p in prs)
    main = _commits(box, "main")
    assert len(main) == 3, "seed, staging merge, prod merge: nothing twice"
    prod_branch = _commits(box, "promote/prod/v1.0.1")
    assert len(set(prod_branch) - set(main)) == 1, "one commit on the prod branch"
    summary = read_artifact(api, run.id, "promotion-summary")
    assert summary is not None and "pm-carol" in summary and "qa-alice" in summary


def _patch_parameters(api: str, run_id: str, parameters: dict[str, object]) -> None:
    response = httpx.patch(f"{api}/flow_runs/{run_id}", json={"parameters": parameters}, timeout=15)
    assert response.status_code == 204, response.text


def _input(api: str, run_id: str, key: str) -> str:
    response = httpx.get(f"{api}/flow_runs/{run_id}/input/{key}", timeout=15)
    assert response.status_code == 200, response.text
    return response.text


@pytest.fixture
def worker_env(
    deployed: str, prefect_server: LocalPrefect, tmp_path: Path
) -> Iterator[tuple[Sandbox, dict[str, str]]]:
    clear_holds(prefect_server.api_url)
    with start_sandbox(tmp_path / "sandbox", health_delay=0.2) as box:
        box.registry.publish(box.config.registry.path, list(box.config.services), "v1.0.2")
        env = prefect_server.env({**box.env(), "RELEASE_PROMOTION_POLL_INTERVAL": "0.2"})
        yield box, env


def test_changed_parameters_void_the_approvals_of_a_suspended_run(
    deployed: str, worker_env: tuple[Sandbox, dict[str, str]], tmp_path: Path
) -> None:
    """PATCHing a suspended run to another version must not promote it on the old answers."""
    api, (box, env) = deployed, worker_env
    with Worker(env, log_path=tmp_path / "worker.log") as worker:
        run = start_run(api, "promote-release", {"version": "v1.0.1", "initiator": INITIATOR})
        _resume(api, run.id, "qa", "qa-alice")
        pm = wait_for_run(
            api, run.id, until=lambda r: r.paused and "pm" in (r.pause_key or ""), timeout=180
        )
        assert pm.paused, worker.log_tail()
        _patch_parameters(api, run.id, {"version": "v1.0.2", "initiator": INITIATOR})
        result = resume_run(api, run.id, {"approved": True, "approver": "pm-carol"})
        assert result.status == "ACCEPT", result
        # The re-run sees v1.0.2: the QA answer (given for v1.0.1) is void; QA is asked again.
        again = wait_for_run(
            api,
            run.id,
            until=lambda r: r.finished or (r.paused and (r.pause_key or "").startswith("qa")),
            timeout=180,
        )
        assert again.paused, (again, worker.log_tail())
        text = _input(api, run.id, f"suspended-{again.pause_key}-description")
        assert "void" in text and "version v1.0.1 -> v1.0.2" in text, text
        assert tags(box, PROD) == {"v1.0.0"}, "nothing reached prod on the old answers"
        httpx.post(
            f"{api}/flow_runs/{run.id}/set_state",
            json={"state": {"type": "CANCELLED", "message": "test over"}, "force": True},
            timeout=15,
        )


def test_a_resumed_run_never_repromotes_staging_that_moved_on(
    deployed: str, worker_env: tuple[Sandbox, dict[str, str]], tmp_path: Path
) -> None:
    """While QA looks at v1.0.1 in staging, v1.0.2 lands there: the QA answer is about
    something that no longer runs, so the run stops instead of promoting staging again."""
    from pipeline.helpers import STAGING, merged_promotion

    api, (box, env) = deployed, worker_env
    with Worker(env, log_path=tmp_path / "worker.log") as worker:
        run = start_run(api, "promote-release", {"version": "v1.0.1", "initiator": INITIATOR})
        qa = wait_for_run(api, run.id, until=lambda r: r.paused or r.finished, timeout=180)
        assert qa.paused, worker.log_tail()
        merged_promotion(box, "staging", "v1.0.2")
        staging_head = box.github.head("main")
        result = resume_run(api, run.id, {"approved": True, "approver": "qa-alice"})
        assert result.status == "ACCEPT", result
        final = wait_for_run(api, run.id, until=lambda r: r.finished, timeout=180)
    assert final.state_type == "FAILED", final
    assert "staging has moved on since this run merged v1.0.1" in (final.message or "")
    assert tags(box, STAGING) == {"v1.0.2"} and tags(box, PROD) == {"v1.0.0"}
    assert box.github.head("main") == staging_head, "no new staging PR, no merge"
    assert not [p for p in pulls(box) if p["head"]["ref"].startswith("promote/prod/")]


def test_an_expired_approval_under_a_deployment_is_finished(
    deployed: str, worker_env: tuple[Sandbox, dict[str, str]], tmp_path: Path
) -> None:
    """The server fails a suspended run whose approval expired without running its code; the
    finish-promotion automation closes its PR with one comment and finishes its summary."""
    from pipeline.helpers import comments

    api, (box, env) = deployed, worker_env
    with Worker(env, log_path=tmp_path / "worker.log") as worker:
        run = start_run(
            api,
            "promote-release",
            {"version": "v1.0.1", "initiator": INITIATOR, "approval_timeout_seconds": 25},
        )
        _resume(api, run.id, "qa", "qa-alice")
        expired = wait_for_run(api, run.id, until=lambda r: r.finished, timeout=240)
        assert expired.state_type == "FAILED", expired
        (prod_pr,) = [p for p in pulls(box) if p["head"]["ref"].startswith("promote/prod/")]
        deadline = time.monotonic() + 180
        while pulls(box, "open"):
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(1.0)
    assert tags(box, PROD) == {"v1.0.0"}
    notes = [c for c in comments(box, prod_pr["number"]) if "stopped before this PR merged" in c]
    assert len(notes) == 1, notes
    summary = read_artifact(api, run.id, "promotion-summary")
    assert summary is not None and "**Outcome:** expired" in summary, summary
    assert f"#{prod_pr['number']}" in summary


def _push_readme(box: Sandbox, work: Path, text: str) -> str:
    """An unrelated commit on main (Argo CD starts no sync for it); returns the new head."""
    if not (work / ".git").exists():
        git("clone", "--quiet", box.info.git_url, str(work))
    git("fetch", "--quiet", "origin", "main", cwd=work)
    git("reset", "--quiet", "--hard", "origin/main", cwd=work)
    (work / "README.md").write_text(text)
    git("commit", "--quiet", "-am", "docs: unrelated", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    return box.github.head("main")


def test_a_resumed_run_confirms_its_own_merge_after_unrelated_commits(
    deployed: str, worker_env: tuple[Sandbox, dict[str, str]], tmp_path: Path
) -> None:
    """Each resume runs the flow again from the top; meanwhile README commits moved main. The
    resumed run confirms staging at its own PR's merge commit, not at the branch head (where
    Argo CD ran no operation), and completes."""
    api, (box, env) = deployed, worker_env
    with Worker(env, log_path=tmp_path / "worker.log") as worker:
        run = start_run(api, "promote-release", {"version": "v1.0.1", "initiator": INITIATOR})
        qa = wait_for_run(api, run.id, until=lambda r: r.paused or r.finished, timeout=180)
        assert qa.paused, worker.log_tail()
        head = _push_readme(box, tmp_path / "work", "unrelated 1\n")
        _resume(api, run.id, "qa", "qa-alice")
        try:
            _resume(api, run.id, "pm", "pm-carol")
            _push_readme(box, tmp_path / "work", "unrelated 2\n")
            final = wait_for_run(api, run.id, until=lambda r: r.finished, timeout=150)
        except Exception as exc:
            raise AssertionError(worker.log_tail(80)) from exc
    assert final.state_type == "COMPLETED", (final.message, worker.log_tail())
    assert tags(box, PROD) == {"v1.0.1"}
    assert head in _commits(box, "main")


def test_a_tag_moved_while_the_run_was_suspended_stops_it_on_resume(
    deployed: str, worker_env: tuple[Sandbox, dict[str, str]], tmp_path: Path
) -> None:
    """The resumed execution checks the release again against the digests its first
    execution recorded (what QA is looking at), before anything else."""
    api, (box, env) = deployed, worker_env
    with Worker(env, log_path=tmp_path / "worker.log") as worker:
        run = start_run(api, "promote-release", {"version": "v1.0.1", "initiator": INITIATOR})
        qa = wait_for_run(api, run.id, until=lambda r: r.paused or r.finished, timeout=180)
        assert qa.paused, worker.log_tail()
        path = box.config.registry.path
        old = box.registry.publish(path, ["frontend"], "v1.0.1")["frontend"]
        new = box.registry.push_image(f"{path}/frontend", "v1.0.1", build="rebuilt")
        assert new != old
        _resume(api, run.id, "qa", "qa-alice")
        final = wait_for_run(api, run.id, until=lambda r: r.finished, timeout=180)
    assert final.state_type == "FAILED", final
    assert "moved in the registry since this run checked it" in (final.message or "")
    assert f"frontend: {old} -> {new}" in (final.message or "")
    assert tags(box, PROD) == {"v1.0.0"}
    assert not [p for p in pulls(box) if p["head"]["ref"].startswith("promote/prod/")]
