"""An approval binds exactly what it approved; releases only move forward; the tag is what QA saw.

Each test reproduces a way an approval used to be applied to something other than what the
person saw (issue 10), on a real Prefect server, the real GitHub emulator over a real git repo,
the Argo CD emulator and a real registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from deployments.local import LocalPrefect
from deployments.runs import read_artifact, read_run, resume_run
from flows.promote import promote_release
from pipeline.conftest import BackgroundRun
from pipeline.helpers import (
    INITIATOR,
    PROD,
    STAGING,
    approve_on_github,
    comments,
    decide,
    merged_promotion,
    pulls,
    setup_with_pm_review,
    tags,
)
from sandbox.launcher import Sandbox
from sandbox.seed import git


def _push_to_main(box: Sandbox, work: Path, path: str, append: str, message: str) -> str:
    if not work.exists():
        git("clone", "--quiet", box.info.git_url, str(work))
    git("pull", "--quiet", "origin", "main", cwd=work)
    target = work / path
    target.write_text(target.read_text() + append)
    git("add", path, cwd=work)
    git("commit", "--quiet", "-m", message, cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    return box.github.head("main")


def _prod_pr(box: Sandbox) -> dict[str, object]:
    (pr,) = [p for p in pulls(box) if str(p["head"]["ref"]).startswith("promote/prod/")]
    return pr


def test_a_prod_overlay_change_while_the_pm_waits_voids_the_approval(
    sandbox: Sandbox,
    tmp_path: Path,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
) -> None:
    api = prefect_server.api_url
    run = run_in_background(promote_release, version="v1.0.1", initiator=INITIATOR)
    decide(api, run, "qa", "qa-alice")
    first = run.wait_paused("pm-approval")
    approved_head = str(_prod_pr(sandbox)["head"]["sha"])  # type: ignore[index]

    # A hotfix lands on the prod overlay while the PM looks at the PR.
    _push_to_main(
        sandbox, tmp_path / "work", PROD, "commonLabels:\n  hotfix: one\n", "Hotfix: label prod"
    )
    assert (
        resume_run(
            api, run.run_id, {"approved": True, "approver": "pm-carol", "comment": "go"}
        ).status
        == "ACCEPT"
    )

    # The approval no longer matches the PR that would merge: the gate asks again.
    again = run.wait_paused("pm-approval")
    assert again.paused and again.pause_key != first.pause_key, again
    assert tags(sandbox, PROD) == {"v1.0.0"}, "nothing merged on the old approval"
    rebuilt = _prod_pr(sandbox)
    rebuilt_head = str(rebuilt["head"]["sha"])  # type: ignore[index]
    assert rebuilt_head != approved_head
    described = httpx.get(f"{api}/flow_runs/{run.run_id}/input/{_description_key(again)}")
    assert described.status_code == 200, described.text
    text = described.text
    assert "void" in text and "rebuilt" in text, text
    assert rebuilt_head[:12] in text and "hotfix: one" in text

    decide(api, run, "pm", "pm-carol", comment="seen the rebuilt PR")
    final = run.join()
    assert final.state_type == "COMPLETED", final.message
    merged = _prod_pr(sandbox)
    assert merged["merged_at"]
    summary = read_artifact(api, run.run_id, "promotion-summary")
    assert summary is not None
    # Both answers are in the summary, each bound to the head it approved.
    assert approved_head[:12] in summary and rebuilt_head[:12] in summary
    assert "Prefect form only" in summary
    overlay = sandbox.github.read_file("main", PROD)
    assert "hotfix: one" in overlay and "newTag: v1.0.1" in overlay


def _description_key(view: object) -> str:
    # Prefect stores a wait's form description as the run input "<state>-<key>-description".
    key = getattr(view, "pause_key", None)
    return f"paused-{key}-description"


def test_a_later_rejection_wins_over_an_earlier_refused_answer(
    sandbox: Sandbox,
    tmp_path: Path,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
) -> None:
    """An approval refused for lack of a GitHub review must not come back once the review exists
    and override the rejection given after it."""
    api = prefect_server.api_url
    run = run_in_background(
        promote_release,
        version="v1.0.1",
        initiator=INITIATOR,
        config_file=setup_with_pm_review(tmp_path),
    )
    decide(api, run, "qa", "qa-alice")
    first = run.wait_paused("pm-approval")
    decide(api, run, "pm", "pm-carol", comment="form only")  # refused: no GitHub review yet
    refused = run.wait_paused("pm-approval")
    assert refused.pause_key != first.pause_key
    approve_on_github(sandbox, _prod_pr(sandbox)["number"], "pm-carol")
    decide(api, run, "pm", "pm-carol", approved=False, comment="changed my mind")
    final = run.join()
    assert final.state_type == "FAILED"
    assert "changed my mind" in final.message
    assert tags(sandbox, PROD) == {"v1.0.0"}
    pr = _prod_pr(sandbox)
    assert pr["state"] == "closed" and not pr["merged_at"]
    rejections = [c for c in comments(sandbox, int(pr["number"])) if "rejected" in c]  # type: ignore[call-overload]
    assert len(rejections) == 1


def test_a_downgrade_is_refused_unless_allowed(
    sandbox: Sandbox, prefect_server: LocalPrefect, run_in_background: Callable[..., BackgroundRun]
) -> None:
    merged_promotion(sandbox, "staging", "v1.0.1")
    merged_promotion(sandbox, "prod", "v1.0.1")
    head = sandbox.github.head("main")
    before = len(pulls(sandbox))
    run = run_in_background(promote_release, version="v1.0.0", initiator=INITIATOR)
    final = run.join()
    assert final.state_type == "FAILED"
    assert "staging runs v1.0.1, which is newer than v1.0.0" in final.message
    assert "allow_downgrade" in final.message
    assert len(pulls(sandbox)) == before and sandbox.github.head("main") == head

    allowed = run_in_background(
        promote_release, version="v1.0.0", initiator=INITIATOR, allow_downgrade=True
    )
    decide(prefect_server.api_url, allowed, "qa", "qa-alice")
    allowed.wait_paused("pm-approval")
    assert tags(sandbox, STAGING) == {"v1.0.0"}
    decide(prefect_server.api_url, allowed, "pm", "pm-carol", approved=False, comment="no")
    assert allowed.join().state_type == "FAILED"


def test_a_tag_moved_after_qa_stops_the_run_with_both_digests(
    sandbox: Sandbox, prefect_server: LocalPrefect, run_in_background: Callable[..., BackgroundRun]
) -> None:
    api = prefect_server.api_url
    run = run_in_background(promote_release, version="v1.0.1", initiator=INITIATOR)
    decide(api, run, "qa", "qa-alice")
    run.wait_paused("pm-approval")
    repository = f"{sandbox.config.registry.path}/frontend"
    old = sandbox.registry.publish(sandbox.config.registry.path, ["frontend"], "v1.0.1")["frontend"]
    new = sandbox.registry.push_image(repository, "v1.0.1", build="rebuilt")
    assert new != old
    decide(api, run, "pm", "pm-carol")
    final = run.join()
    assert final.state_type == "FAILED"
    assert "moved in the registry" in final.message
    assert f"frontend: {old} -> {new}" in final.message
    assert tags(sandbox, PROD) == {"v1.0.0"}


def test_a_rollback_waits_for_the_environment_lock(
    sandbox: Sandbox, prefect_server: LocalPrefect, run_in_background: Callable[..., BackgroundRun]
) -> None:
    """While a promotion holds prod's lock (merging, confirming), a rollback does not start."""
    from prefect.concurrency.sync import concurrency

    from flows.rollback import rollback_release
    from promotion.names import environment_lock

    merged_promotion(sandbox, "prod", "v1.0.1")
    with concurrency(
        environment_lock(sandbox.config.application, "prod"),
        occupy=1,
        strict=True,
        timeout_seconds=30,
    ):
        rollback = run_in_background(rollback_release, env="prod", method="revert")
        time.sleep(4.0)
        assert not [p for p in pulls(sandbox) if str(p["head"]["ref"]).startswith("revert/")]
        assert read_run(prefect_server.api_url, rollback.run_id).state_type == "RUNNING"
    final = rollback.join()
    assert final.state_type == "COMPLETED", final.message
    assert tags(sandbox, PROD) == {"v1.0.0"}
