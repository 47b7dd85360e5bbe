"""What stops a promotion: rejections, refused approvers, failed checks, missing images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from deployments.local import LocalPrefect
from deployments.runs import read_artifact, resume_run, wait_for_run
from flows.promote import promote_release
from pipeline.conftest import BackgroundRun
from pipeline.helpers import (
    INITIATOR,
    PROD,
    STAGING,
    approve_on_github,
    comments,
    decide,
    pulls,
    setup_with_pm_review,
    tags,
)
from sandbox.launcher import Sandbox
from sandbox.seed import git


def test_qa_rejection_stops_before_prod(
    sandbox: Sandbox, prefect_server: LocalPrefect, run_in_background: Callable[..., BackgroundRun]
) -> None:
    api = prefect_server.api_url
    run = run_in_background(promote_release, version="v1.0.1", initiator=INITIATOR)
    decide(api, run, "qa", "qa-bob", approved=False, comment="checkout is broken")
    final = run.join()
    assert final.state_type == "FAILED"
    assert "checkout is broken" in final.message
    assert tags(sandbox, PROD) == {"v1.0.0"}
    assert not [p for p in pulls(sandbox) if p["head"]["ref"].startswith("promote/prod/")]
    summary = read_artifact(api, run.run_id, "promotion-summary")
    assert summary is not None and "rejected" in summary and "qa-bob" in summary


def test_pm_rejection_closes_the_prod_pr_and_merges_nothing(
    sandbox: Sandbox, prefect_server: LocalPrefect, run_in_background: Callable[..., BackgroundRun]
) -> None:
    api = prefect_server.api_url
    run = run_in_background(promote_release, version="v1.0.1", initiator=INITIATOR)
    decide(api, run, "qa", "qa-alice")
    decide(api, run, "pm", "pm-carol", approved=False, comment="not during the sale")
    final = run.join()
    assert final.state_type == "FAILED"
    assert "not during the sale" in final.message
    assert tags(sandbox, PROD) == {"v1.0.0"}
    assert tags(sandbox, STAGING) == {"v1.0.1"}
    (prod_pr,) = [p for p in pulls(sandbox) if p["head"]["ref"].startswith("promote/prod/")]
    assert prod_pr["state"] == "closed" and prod_pr["merged_at"] is None
    assert any("not during the sale" in c for c in comments(sandbox, prod_pr["number"]))


def test_an_unlisted_approver_is_refused_and_the_run_keeps_waiting(
    sandbox: Sandbox, prefect_server: LocalPrefect, run_in_background: Callable[..., BackgroundRun]
) -> None:
    api = prefect_server.api_url
    run = run_in_background(promote_release, version="v1.0.1", initiator=INITIATOR)
    waiting = run.wait_paused("qa-approval")
    for intruder in ("mallory", "pm-carol", INITIATOR):
        result = resume_run(
            api, run.run_id, {"approved": True, "approver": intruder, "comment": "lgtm"}
        )
        assert result.status == "REJECT", result
        assert "approver" in result.reason and "qa-bob" in result.reason
        again = run.wait_paused("qa-approval")
        assert again.paused and again.pause_key == waiting.pause_key
    decide(api, run, "qa", "qa-bob", comment="verified")
    decide(api, run, "pm", "pm-carol", approved=False, comment="stop here")
    final = run.join()
    assert final.state_type == "FAILED"
    summary = read_artifact(api, run.run_id, "promotion-summary")
    assert summary is not None
    assert "qa-bob" in summary and "mallory" not in summary


@pytest.mark.parametrize(
    ("initiator", "expected"),
    [
        ("qa-alice", "qa-alice started this release but is a listed approver of qa"),
        ("  ", "initiator '  ' is not a valid GitHub login"),
        ("dave--x", "is not a valid GitHub login"),
    ],
)
def test_a_bad_initiator_is_refused_before_anything_is_written(
    initiator: str,
    expected: str,
    sandbox: Sandbox,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
) -> None:
    run = run_in_background(promote_release, version="v1.0.1", initiator=initiator)
    final = run.join()
    assert final.state_type == "FAILED"
    assert expected in final.message
    assert pulls(sandbox) == [] and sandbox.github.branches().keys() == {"main"}


def test_an_initiator_with_spaces_is_trimmed(
    sandbox: Sandbox, prefect_server: LocalPrefect, run_in_background: Callable[..., BackgroundRun]
) -> None:
    api = prefect_server.api_url
    run = run_in_background(promote_release, version="v1.0.1", initiator=f"  {INITIATOR} ")
    decide(api, run, "qa", "qa-bob", approved=False, comment="no")
    run.join()
    summary = read_artifact(api, run.run_id, "promotion-summary")
    assert summary is not None and f"**Started by:** {INITIATOR}\n" in summary


def test_failed_validation_check_stops_before_the_pm_gate(
    sandbox: Sandbox,
    tmp_path: Path,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
) -> None:
    # Someone broke the prod overlay on main: the prod PR's Kustomize check must fail.
    work = tmp_path / "work"
    git("clone", "--quiet", sandbox.info.git_url, str(work))
    overlay = work / PROD
    overlay.write_text(overlay.read_text() + "patches:\n  - path: missing-patch.yaml\n")
    git("commit", "--quiet", "-am", "Add a patch (forgot the file)", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    broken_head = sandbox.github.head("main")

    api = prefect_server.api_url
    run = run_in_background(promote_release, version="v1.0.1", initiator=INITIATOR)
    decide(api, run, "qa", "qa-alice")
    final = run.join()
    assert final.state_type == "FAILED"
    assert "Kustomize validation" in final.message
    assert "missing-patch.yaml" in final.message
    assert sandbox.github.head("main") != broken_head  # staging merged ...
    assert tags(sandbox, PROD) == {"v1.0.0"}  # ... prod did not
    (prod_pr,) = [p for p in pulls(sandbox) if p["head"]["ref"].startswith("promote/prod/")]
    assert prod_pr["merged_at"] is None


def test_missing_release_image_stops_before_any_pr(
    sandbox: Sandbox, prefect_server: LocalPrefect, run_in_background: Callable[..., BackgroundRun]
) -> None:
    sandbox.registry.publish(sandbox.config.registry.path, ["cartservice", "frontend"], "v2.0.0")
    run = run_in_background(promote_release, version="v2.0.0", initiator=INITIATOR)
    final = run.join()
    assert final.state_type == "FAILED"
    missing = [s for s in sandbox.config.services if s not in {"cartservice", "frontend"}]
    for service in missing:
        assert service in final.message
    assert "cartservice" not in final.message.split("missing", 1)[-1]
    assert pulls(sandbox) == []
    assert sandbox.github.branches().keys() == {"main"}


def test_expired_approval_ends_the_run_and_merges_nothing(
    sandbox: Sandbox, prefect_server: LocalPrefect, run_in_background: Callable[..., BackgroundRun]
) -> None:
    run = run_in_background(
        promote_release, version="v1.0.1", initiator=INITIATOR, approval_timeout_seconds=3
    )
    final = run.join()
    assert final.state_type == "FAILED"
    # Prefect fails a timed-out pause with its own message; the summary says what happened.
    assert tags(sandbox, PROD) == {"v1.0.0"}
    summary = read_artifact(prefect_server.api_url, run.run_id, "promotion-summary")
    assert summary is not None and "not given within 3 s" in summary


def test_pm_gate_can_require_an_approving_github_review(
    sandbox: Sandbox,
    tmp_path: Path,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
) -> None:
    api = prefect_server.api_url
    run = run_in_background(
        promote_release,
        version="v1.0.1",
        initiator=INITIATOR,
        config_file=setup_with_pm_review(tmp_path),
    )
    decide(api, run, "qa", "qa-alice")
    first = run.wait_paused("pm-approval")
    # The form alone is not enough: pm-carol has not approved the PR on GitHub yet.
    decide(api, run, "pm", "pm-carol", comment="approved in the form only")
    waiting = wait_for_run(
        api, run.run_id, until=lambda r: r.paused and r.pause_key != first.pause_key, timeout=60
    )
    assert waiting.paused and (waiting.pause_key or "").startswith("pm-approval"), waiting
    assert tags(sandbox, PROD) == {"v1.0.0"}
    refused = read_artifact(api, run.run_id, "pm-approval-refused")
    assert refused is not None and "has not approved PR" in refused

    (prod_pr,) = [p for p in pulls(sandbox) if p["head"]["ref"].startswith("promote/prod/")]
    approve_on_github(sandbox, prod_pr["number"], "pm-carol")
    decide(api, run, "pm", "pm-carol", comment="approved on GitHub too")
    final = run.join()
    assert final.state_type == "COMPLETED", final.message
    assert tags(sandbox, PROD) == {"v1.0.1"}
    summary = read_artifact(api, run.run_id, "promotion-summary")
    assert summary is not None and "GitHub review by pm-carol" in summary


THREE_ENVIRONMENTS = """\
environments:
  - name: dev
    overlay: kustomize/dev/kustomization.yaml
    argocd_app: dev-microservices-demo
  - name: staging
    overlay: kustomize/staging/kustomization.yaml
    argocd_app: staging-microservices-demo
    approvals:
      - gate: qa
        when: after_deploy
        approvers: [qa-alice, qa-bob]
  - name: prod
    overlay: kustomize/prod/kustomization.yaml
    argocd_app: prod-microservices-demo
    approvals:
      - gate: pm
        when: before_merge
        approvers: [pm-carol]
"""


def test_dev_staging_prod_asks_qa_where_the_setup_puts_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
) -> None:
    """dev merges unasked; QA approves what runs in staging (not dev); the PM approves prod."""
    from deployments.local import ensure_concurrency_limit
    from deployments.runs import keyset_description, read_run
    from pipeline.conftest import clear_holds
    from promotion.config import DEFAULT_CONFIG, load_config
    from sandbox.launcher import start_sandbox

    text = DEFAULT_CONFIG.read_text()
    setup = tmp_path / "promotion.yaml"
    setup.write_text(text[: text.index("environments:")] + THREE_ENVIRONMENTS)
    api = prefect_server.api_url
    clear_holds(api)
    with start_sandbox(tmp_path / "sandbox", config=load_config(setup)) as box:
        refused = run_in_background(
            promote_release, version="v1.0.1", initiator=INITIATOR, config_file=str(setup)
        ).join()
        assert refused.state_type == "FAILED"
        assert "dev: the Prefect server has no lock promotion-" in refused.message
        assert "release-promotion deploy" in refused.message
        assert not pulls(box), "refused before anything was written"
        ensure_concurrency_limit(api, config_file=setup)  # what `release-promotion deploy` does
        for name, value in box.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("RELEASE_PROMOTION_POLL_INTERVAL", "0.2")
        run = run_in_background(
            promote_release, version="v1.0.1", initiator=INITIATOR, config_file=str(setup)
        )
        qa = run.wait_paused("qa-approval")
        assert qa.paused, qa
        dev = "kustomize/dev/kustomization.yaml"
        assert tags(box, dev) == tags(box, STAGING) == {"v1.0.1"}, "dev and staging merged"
        assert tags(box, PROD) == {"v1.0.0"}
        assert "v1.0.1 in staging" in keyset_description(api, read_run(api, run.run_id))
        decide(api, run, "qa", "qa-alice")
        run.wait_paused("pm-approval")
        assert tags(box, PROD) == {"v1.0.0"}, "prod waits for the PM"
        decide(api, run, "pm", "pm-carol")
        final = run.join()
        assert final.state_type == "COMPLETED", final.message
        assert tags(box, PROD) == {"v1.0.1"}
        merged = [str(p["head"]["ref"]) for p in pulls(box) if p["merged_at"]]
        assert sorted(merged) == [f"promote/{e}/v1.0.1" for e in ("dev", "prod", "staging")]


def test_a_hold_recorded_before_applications_had_names_still_holds(
    sandbox: Sandbox, prefect_server: LocalPrefect, run_in_background: Callable[..., BackgroundRun]
) -> None:
    from prefect.variables import Variable

    from promotion.names import HOLDS_VARIABLE

    hold = {"env": "prod", "reason": "crash loop", "at": "2026-11-30T10:00:00+00:00"}
    Variable.set(HOLDS_VARIABLE, {"v1.0.1": hold}, overwrite=True)
    final = run_in_background(promote_release, version="v1.0.1", initiator=INITIATOR).join()
    assert final.state_type == "FAILED"
    assert "v1.0.1 is on hold" in final.message and "crash loop" in final.message
    assert not pulls(sandbox)
