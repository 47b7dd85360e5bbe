"""A tiny stand-in for promote_release: one approval gate with the same form, then a summary."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput


class QAApproval(RunInput):
    """The decision a person gives at a gate."""

    approved: bool
    approver: str
    comment: str = ""


@flow(persist_result=True)
def toy_release(version: str = "v1.0.1") -> str:
    """Wait for a QA approval, then publish a summary naming the approver.

    Args:
        version: the release tag.
    """
    answer = suspend_flow_run(
        wait_for_input=QAApproval.with_initial_data(
            description=f"**Approve {version}?**", approved=False
        ),
        timeout=600,
        key="qa-approval-0",
    )
    verdict = "approved" if answer.approved else "rejected"
    get_run_logger().info("%s %s by %s", version, verdict, answer.approver)
    create_markdown_artifact(
        key="promotion-summary",
        markdown=f"# Toy release {version}\n\nQA: {verdict} by **{answer.approver}**: {answer.comment}\n",
    )
    if not answer.approved:
        raise RuntimeError(f"{version} rejected by {answer.approver}")
    return answer.approver
