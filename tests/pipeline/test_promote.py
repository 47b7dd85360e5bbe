"""promote-release end to end in the sandbox, approvals resumed through the UI's REST call."""

from __future__ import annotations

from collections.abc import Callable

from deployments.local import LocalPrefect
from deployments.runs import read_artifact
from flows.promote import promote_release
from pipeline.conftest import BackgroundRun
from pipeline.helpers import INITIATOR, PROD, STAGING, decide, promoted, pulls, tags
from promotion.argocd import ArgoCDClient
from sandbox.launcher import Sandbox


def test_release_reaches_prod_after_qa_and_pm(
    sandbox: Sandbox, prefect_server: LocalPrefect, run_in_background: Callable[..., BackgroundRun]
) -> None:
    api = prefect_server.api_url
    run = run_in_background(promote_release, version="v1.0.1", initiator=INITIATOR)

    qa = run.wait_paused("qa-approval")
    assert qa.paused, qa
    assert tags(sandbox, STAGING) == {"v1.0.1"}, "staging is merged before QA is asked"
    assert tags(sandbox, PROD) == {"v1.0.0"}, "prod is untouched before QA"
    decide(api, run, "qa", "qa-alice", comment="smoke tests green")

    run.wait_paused("pm-approval")
    assert tags(sandbox, PROD) == {"v1.0.0"}, "prod is not merged before the PM approves"
    open_prod = [
        p for p in pulls(sandbox, "open") if str(p["head"]["ref"]).startswith("promote/prod/")
    ]  # type: ignore[index]
    assert len(open_prod) == 1
    diff = read_artifact(api, run.run_id, "prod-overlay-diff")
    assert diff is not None
    assert (
        sum(
            1
            for line in diff.splitlines()
            if line.startswith("+ ")
            or line.startswith("+\t")
            or (line.startswith("+") and "newTag: v1.0.1" in line)
        )
        == 9
    )
    decide(api, run, "pm", "pm-carol", comment="ship it")

    final = run.join()
    assert final.state_type == "COMPLETED", final.message
    head = sandbox.github.head("main")
    assert tags(sandbox, PROD) == {"v1.0.1"}
    with ArgoCDClient(sandbox.info.argocd_url, sandbox.info.argocd_token) as argo:
        app = argo.get_app("prod-microservices-demo")
    assert app.status.sync.revision == head
    assert app.status.health.status == "Healthy"
    assert {image.rsplit(":", 1)[1] for image in app.status.summary.images} == {"v1.0.1"}
    summary = read_artifact(api, run.run_id, "promotion-summary")
    assert summary is not None
    assert "succeeded" in summary
    assert "qa-alice" in summary and "smoke tests green" in summary
    assert "pm-carol" in summary and "ship it" in summary
    assert head[:12] in summary
    assert len([p for p in pulls(sandbox) if p["merged_at"]]) == 2


def test_a_second_promotion_of_a_release_already_in_prod_merges_nothing_and_says_whose_pr(
    sandbox: Sandbox, prefect_server: LocalPrefect, run_in_background: Callable[..., BackgroundRun]
) -> None:
    api = prefect_server.api_url
    promoted(api, run_in_background)
    merged_before = sorted(p["number"] for p in pulls(sandbox) if p["merged_at"])
    head = sandbox.github.head("main")

    again = run_in_background(promote_release, version="v1.0.1", initiator=INITIATOR)
    # QA approves what runs in staging (it does), then prod has nothing to merge: no PM gate.
    decide(api, again, "qa", "qa-bob")
    final = again.join()
    assert final.state_type == "COMPLETED", final.message
    assert sorted(p["number"] for p in pulls(sandbox) if p["merged_at"]) == merged_before
    assert len(pulls(sandbox)) == 2, "no PR opened again"
    assert sandbox.github.head("main") == head, "nothing was committed"
    summary = read_artifact(api, again.run_id, "promotion-summary")
    assert summary is not None
    for env, number in zip(("staging", "prod"), merged_before, strict=True):
        assert (
            f"{env} already ran v1.0.1: PR #{number} was merged by an earlier promotion" in summary
        )
    assert "merged by an earlier execution of this run" not in summary
    assert "pm-carol" not in summary, "the PM was not asked to approve a merge that happened"
