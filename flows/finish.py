"""finish-promotion: finish a promote-release run that the Prefect server stopped.

A run suspended at an approval holds no process. When the approval expires, Prefect's server
(its pause-expiration service) fails the run without running any of its code, so the run could
not close its open pull request nor write its final summary. The automation that
``release-promotion deploy`` creates (``promotion.names.FINISH_AUTOMATION``) starts this flow
for every promote-release run that ends Failed or Crashed. It is idempotent and harmless on a
run that finished itself: it closes the run's open promotion PRs with one comment each (edited,
never repeated) and, when the run's summary still says "running", publishes its final version.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import flow, get_client, get_run_logger
from prefect.client.schemas.actions import ArtifactCreate

from flows.environment import close_open_prs
from flows.runtime import load_runtime
from promotion.names import FINISH_FLOW, PROMOTE_FLOW, SUMMARY_ARTIFACT

RUNNING_OUTCOME = "**Outcome:** running"


def _run_id(flow_run_id: str) -> UUID:
    # The automation passes the event's resource id: prefect.flow-run.<uuid>.
    return UUID(flow_run_id.rsplit(".", 1)[-1])


@flow(name=FINISH_FLOW, log_prints=True)
def finish_promotion(flow_run_id: str) -> dict[str, Any]:
    """Close what a stopped promote-release run left open, and finish its summary.

    Args:
        flow_run_id: the promote-release run (its id, or the event resource id
            `prefect.flow-run.<id>`).
    """
    logger = get_run_logger()
    run_id = _run_id(flow_run_id)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        flow_name = client.read_flow(run.flow_id).name
        state = run.state
        if (
            flow_name != PROMOTE_FLOW
            or state is None
            or not state.is_final()
            or (state.is_completed())
        ):
            logger.info("Run %s (%s, %s): nothing to finish", run_id, flow_name, state)
            return {"run": str(run_id), "closed": [], "summary": False}
        params = run.parameters
        version = str(params.get("version", ""))
        why = state.message or state.name or "stopped"
        rt = load_runtime(params.get("config_file"), params.get("application"))
        closed = close_open_prs(rt, version, f"{state.name}: {why}", key=f"stopped-{run_id}")
        summary = _final_summary(client, run_id, state.name or state.type.value, why, closed)
    logger.info("Finished run %s: closed %s; summary %s", run_id, closed or "nothing", summary)
    return {"run": str(run_id), "closed": closed, "summary": summary}


def _final_summary(client: Any, run_id: UUID, state_name: str, why: str, closed: list[int]) -> bool:
    """Publish the final summary on the stopped run when its last one still says running."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    found = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[SUMMARY_ARTIFACT]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
        ),
        sort=ArtifactSort.CREATED_DESC,
        limit=1,
    )
    previous = str(found[0].data) if found else f"# Promotion (run {run_id})\n\n{RUNNING_OUTCOME}\n"
    if RUNNING_OUTCOME not in previous:
        return False  # the run wrote its own final summary
    outcome = "expired" if "pause" in why.lower() or "timed out" in why.lower() else "stopped"
    text = previous.replace(RUNNING_OUTCOME, f"**Outcome:** {outcome}: {state_name}: {why}", 1)
    text += (
        "\n## Finished by finish-promotion\n\n"
        f"The Prefect server ended this run ({state_name}: {why}) without running its code. "
        + (
            f"Closed the open promotion PR(s): {', '.join(f'#{n}' for n in closed)}.\n"
            if closed
            else "No promotion PR was open.\n"
        )
    )
    client.create_artifact(
        artifact=ArtifactCreate(
            key=SUMMARY_ARTIFACT,
            type="markdown",
            data=text,
            flow_run_id=run_id,
            description="Promotion summary (finished after the run stopped)",
        )
    )
    return True
