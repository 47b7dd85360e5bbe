"""Two prod promotions approved at the same time are serialized, and neither update is lost."""

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

    # Both prod PRs change the same lines; approve both at once.
    for run in (first, second):
        answer = {"approved": True, "approver": "pm-carol", "comment": "go"}
        assert resume_run(api, run.run_id, answer).status == "ACCEPT"
    results = [first.join(), second.join()]
    assert [r.state_type for r in results] == ["COMPLETED", "COMPLETED"], [
        r.message for r in results
    ]

    prod_prs = {
        p["head"]["ref"]: p for p in pulls(sandbox) if p["head"]["ref"].startswith("promote/prod/")
    }
    assert set(prod_prs) == {"promote/prod/v1.0.1", "promote/prod/v1.0.2"}
    assert all(p["merged_at"] for p in prod_prs.values())
    merges = sorted(prod_prs.values(), key=lambda p: str(p["merged_at"]))
    last_version = merges[-1]["head"]["ref"].rsplit("/", 1)[1]
    assert tags(sandbox, PROD) == {last_version}, "the overlay holds the release merged last"
    later = first if last_version == "v1.0.1" else second
    summary = read_artifact(api, later.run_id, "promotion-summary")
    assert summary is not None and "rebuilt on the current main after the approval" in summary

    with argo(sandbox) as client:
        app = client.get_app("prod-microservices-demo")
    deployed = [h.revision for h in app.status.history]
    merge_shas = [p["merge_commit_sha"] for p in merges]
    # Serialized: the first merge was deployed (confirmed) before the second merged.
    assert deployed[-2:] == merge_shas, (deployed, merge_shas)
    assert app.status.health.status == "Healthy"
    assert app.status.sync.revision == sandbox.github.head("main") == merge_shas[-1]
