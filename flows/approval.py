"""Approval gates: wait for a person's decision through a typed Prefect form.

Under a deployment the run is *suspended* (no process is held while people decide; on resume
the flow runs again from the top, so every step before a gate is idempotent). Outside a
deployment (tests, a plain Python call) it falls back to ``pause_flow_run``.

The form offers only the eligible approvers, so the Prefect server itself rejects an input from
anyone else (the UI shows the reason and the run keeps waiting). The decision is checked once
more on arrival; a refused input is recorded and the gate waits again under a new key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from pydantic import Field, WithJsonSchema, create_model

from promotion.policy import Refusal, check_approver, eligible_approvers
from promotion.report import now

DEFAULT_APPROVAL_TIMEOUT = 3 * 24 * 3600
MAX_REFUSALS = 20


class ApprovalExpired(RuntimeError):
    """Nobody decided at a gate in time; the run ends and merges nothing more."""


class ApprovalForm(RunInput):
    """The decision a person gives at a gate."""

    approved: bool
    approver: str
    comment: str = ""


@dataclass(frozen=True)
class Decision:
    gate: str
    approved: bool
    approver: str
    comment: str
    evidence: str | None = None  # what else confirmed it (an approving GitHub review, say)
    at: datetime | None = None  # when the person answered


Verifier = Callable[[ApprovalForm], "tuple[str | None, str | None]"]
"""Checks an approving answer further: returns (refusal reason or None, evidence or None)."""


def approval_form(gate: str, eligible: Sequence[str]) -> type[ApprovalForm]:
    """A form whose ``approver`` field only accepts the eligible logins."""
    # An enum in the schema (a select in the UI, refused by the server for anyone else); with
    # one login pydantic would emit a "const", which the Prefect UI shows as a locked, empty box.
    choices: Any = Annotated[
        Literal[tuple(eligible)], WithJsonSchema({"type": "string", "enum": list(eligible)})
    ]
    model: type[ApprovalForm] = create_model(
        f"{gate.upper()}Approval",
        __base__=ApprovalForm,
        approved=(
            bool,
            Field(description=f"Approve (on) or reject (off) this release at the {gate} gate."),
        ),
        approver=(
            choices,
            Field(description=f"Your login; one of the {gate} approvers: {', '.join(eligible)}."),
        ),
        comment=(str, Field(default="", description="Why: shown in the summary and on the PR.")),
    )
    return model


def recorded_answer(form: type[ApprovalForm], key: str) -> tuple[ApprovalForm, datetime] | None:
    """The answer already given at the wait ``key`` of this run, and when, if any.

    Prefect keeps every answer as a flow run input; reading it first makes a decision survive
    a crash and a retry of the run (a retried run forgets which pauses already fired), and a
    run resumed after a suspend reports when the person answered, not when it re-ran.
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None
    # Prefect keys an answer by the waiting state's name: Suspended under a deployment.
    state_name = "suspended" if in_deployment() else "paused"
    client: Any = context.client  # the run's own client: no new connection per gate
    found = client.filter_flow_run_input(
        context.flow_run.id, f"{state_name}-{key}-response", 1, set()
    )
    if not found:
        return None
    return form(**found[0].decoded_value), found[0].created or now()


def in_deployment() -> bool:
    context = FlowRunContext.get()
    return bool(context and context.flow_run and context.flow_run.deployment_id)


def request_approval(
    gate: str,
    *,
    listed: Sequence[str],
    initiator: str | None,
    description: str,
    timeout_seconds: int = DEFAULT_APPROVAL_TIMEOUT,
    poll_interval: float = 2.0,
    verify: Verifier | None = None,
) -> Decision:
    """Wait for an eligible person's decision at ``gate`` and return it.

    Args:
        gate: the gate's name, for example ``qa`` or ``pm``.
        listed: the logins configured as approvers of this gate.
        initiator: who started the release; they may not approve it.
        description: markdown shown above the form (version, changes, links).
        timeout_seconds: how long to wait before the run fails with nothing merged.
        poll_interval: seconds between checks for an answer when paused in-process.
        verify: a further check of an approving answer (for instance an approving GitHub
            review by the same person); a refusal keeps the gate waiting, with the reason.
    """
    logger = get_run_logger()
    eligible = eligible_approvers(gate, listed, initiator)
    form = approval_form(gate, eligible)
    for attempt in range(MAX_REFUSALS):
        key = f"{gate}-approval-{attempt}"
        waiting = form.with_initial_data(description=description, approved=False)
        recorded = recorded_answer(form, key)
        answered_at = now()
        if recorded is not None:
            answer, answered_at = recorded
            logger.info("Using the %s decision already given in this run", gate)
        elif in_deployment():
            logger.info("Waiting for the %s approval (approvers: %s)", gate, ", ".join(eligible))
            answer = suspend_flow_run(wait_for_input=waiting, timeout=timeout_seconds, key=key)
        else:
            logger.info("Waiting for the %s approval (approvers: %s)", gate, ", ".join(eligible))
            try:
                # Prefect types poll_interval as int but sleeps with anyio: fractions work.
                poll: Any = poll_interval
                answer = pause_flow_run(
                    wait_for_input=waiting,
                    timeout=timeout_seconds,
                    poll_interval=poll,
                    key=key,
                )
            except FlowPauseTimeout as exc:
                raise ApprovalExpired(
                    f"the {gate} approval was not given within {timeout_seconds} s; "
                    "the promotion stopped there and merged nothing more"
                ) from exc
        refusal = check_approver(gate, answer.approver, listed, initiator)
        evidence = None
        if refusal is None and answer.approved and verify is not None:
            reason, evidence = verify(answer)
            if reason is not None:
                refusal = Refusal(answer.approver, reason)
        if refusal is None:
            logger.info(
                "%s gate %s by %s",
                gate,
                "approved" if answer.approved else "rejected",
                answer.approver,
            )
            return Decision(
                gate,
                answer.approved,
                answer.approver.strip(),
                answer.comment,
                evidence,
                answered_at,
            )
        logger.warning("Refused %s input: %s; waiting again", gate, refusal.reason)
        create_markdown_artifact(
            markdown=f"**{gate} approval refused:** {refusal.reason}. The run keeps waiting.",
            key=f"{gate}-approval-refused",
            description=f"Refused {gate} approval input",
        )
    raise RuntimeError(f"{gate} gate: {MAX_REFUSALS} refused inputs in a row; giving up")
