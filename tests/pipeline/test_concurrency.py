"""Two prod promotions approved at the same time are serialized, and prod never goes back."""

from __future__ import annotations

from collections.abc import Callable

from deployments.local import LocalPrefect
from deployments.runs import read_artifact, resume_run
from flows.promote import promote_release
from pipeline.conftest import BackgroundRun
from pipeline.helpers import INITIATOR, PROD, argo, decide, pulls, tags
from sandbox.launcher import Sandbox


def test_concurrent_prod_promotions_are_serialized(
    sandbox: Sandbox, prefect_server: LocalPrefect, run_in_background: Callable[..., BackgroundRun]
) -> None:
    api = prefect_server.api_url
    sandbox.registry.publish(sandbox.config.registry.path, list(sandbox.config.services), "v1.0.2")
    first = run_in_background(promote_release, version="v1.0.1", initiator=INITIATOR)
    decide(api, first, "qa", "qa-alice")
    first.wait_paused("pm-approval")
    second = run_in_background(promote_release, version="v1.0.2", initiator=INITIATOR)
    decide(api, second, "qa", "qa-bob")
    second.wait_paused("pm-approval")

    # Both prod PRs change the same lines; approve both at once. One takes prod's lock first.
    for run in (first, second):
        answer = {"approved": True, "approver": "pm-carol", "comment": "go"}
        assert resume_run(api, run.run_id, answer).status == "ACCEPT"

    # v1.0.2 first: v1.0.1 may no longer merge (releases only move forward). v1.0.1 first:
    # v1.0.2's PR no longer merges as approved; it is rebuilt and the PM is asked again.
    older = first.join()
    if older.state_type == "COMPLETED":
        again = second.wait_paused("pm-approval")
        assert again.paused, again
        voided = read_artifact(api, second.run_id, "prod-overlay-diff")
        assert voided is not None and "v1.0.1" in voided, "the PM now sees v1.0.1 -> v1.0.2"
        decide(api, second, "pm", "pm-carol", comment="seen the rebuilt PR")
    else:
        assert older.state_type == "FAILED"
        assert "which is newer than v1.0.1: releases only move forward" in older.message
    newer = second.join()
    assert newer.state_type == "COMPLETED", newer.message

    prod_prs = {
        p["head"]["ref"]: p for p in pulls(sandbox) if p["head"]["ref"].startswith("promote/prod/")
    }
    assert prod_prs["promote/prod/v1.0.2"]["merged_at"]
    assert tags(sandbox, PROD) == {"v1.0.2"}, "never a downgrade"
    merges = sorted(
        (p for p in prod_prs.values() if p["merged_at"]), key=lambda p: str(p["merged_at"])
    )
    assert merges[-1]["head"]["ref"] == "promote/prod/v1.0.2"

    with argo(sandbox) as client:
        app = client.get_app("prod-microservices-demo")
    deployed = [h.revision for h in app.status.history]
    merge_shas = [p["merge_commit_sha"] for p in merges]
    # Serialized: each merge was deployed (confirmed) before the next one merged.
    assert deployed[-len(merge_shas) :] == merge_shas, (deployed, merge_shas)
    assert app.status.health.status == "Healthy"
    assert app.status.sync.revision == sandbox.github.head("main") == merge_shas[-1]
    summary = read_artifact(api, second.run_id, "promotion-summary")
    assert summary is not None and "succeeded" in summary
