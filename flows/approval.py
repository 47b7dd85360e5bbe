"""Approval gates: wait for a person's decision, bound to exactly what they were shown.

An answer is stored by Prefect under the wait's key, and the key names the ``Binding`` (version,
environment, PR number, head sha, the digest of the PR's own diff, the release's image digests
and the run's parameters). The binding itself is stored beside it as a run input. Each time the
flow runs (a resume after a suspend re-runs it from the top) the gate reads the answers given
at it, newest first: the latest answer wins; an answer given for another binding is void and the
gate asks again, saying why (head moved, PR rebuilt, parameters changed).

Under a deployment the run is *suspended* (no process is held while people decide); outside
one (tests, a plain Python call) it pauses. The form offers only the eligible approvers, so the
Prefect server itself refuses anyone else; the answer is checked again on arrival, and, when the
setup asks for it, against GitHub (an approving review at the approved head, or a comment).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout, ObjectAlreadyExists
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from prefect.input.actions import create_flow_run_input
from pydantic import Field, WithJsonSchema, create_model

from flows.runtime import notify
from promotion.names import EVENT_APPROVAL_WAITING, pause_key
from promotion.policy import check_approver, eligible_approvers
from promotion.records import Binding, Decision
from promotion.report import now

DEFAULT_APPROVAL_TIMEOUT = 3 * 24 * 3600
MAX_ANSWERS = 50


class ApprovalExpired(RuntimeError):
    """Nobody decided at a gate in time; the run ends and merges nothing more."""


class ApprovalForm(RunInput):
    """The decision a person gives at a gate."""

    approved: bool
    approver: str
    comment: str = ""


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
            Field(description=f"Approve (on) or reject (off) what is shown, at the {gate} gate."),
        ),
        approver=(
            choices,
            Field(description=f"Your login; one of the {gate} approvers: {', '.join(eligible)}."),
        ),
        comment=(str, Field(default="", description="Why: shown in the summary and on the PR.")),
    )
    return model


def in_deployment() -> bool:
    context = FlowRunContext.get()
    return bool(context and context.flow_run and context.flow_run.deployment_id)


def _state_prefix() -> str:
    # Prefect keys an answer by the waiting state's name: Suspended under a deployment.
    return "suspended" if in_deployment() else "paused"


def _answers(gate: str) -> list[tuple[str, dict[str, Any], datetime]]:
    """(pause key, answer, when) of every answer given at ``gate`` in this run, oldest first."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return []
    client: Any = context.client
    prefix = f"{_state_prefix()}-{gate}-approval-"
    found = client.filter_flow_run_input(context.flow_run.id, prefix, MAX_ANSWERS, set())
    answers = []
    for item in found:
        if not item.key.endswith("-response"):
            continue
        key = item.key[len(_state_prefix()) + 1 : -len("-response")]
        answers.append((key, dict(item.decoded_value), item.created or now()))
    return sorted(answers, key=lambda a: a[2])


def _stored_binding(key: str) -> dict[str, Any] | None:
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None
    client: Any = context.client
    found = client.filter_flow_run_input(context.flow_run.id, f"binding-{key}", 1, set())
    return dict(found[0].decoded_value) if found else None


def _store_binding(key: str, binding: Binding) -> None:
    # Stored by an earlier execution of this run: the same binding (the key names it).
    with contextlib.suppress(ObjectAlreadyExists):
        create_flow_run_input(key=f"binding-{key}", value=binding.as_dict())


def _describe_binding(binding: Binding) -> str:
    return (
        "| approves | |\n|---|---|\n"
        f"| version | `{binding.version}` |\n"
        f"| environment | {binding.environment} |\n"
        f"| pull request | #{binding.pr_number} |\n"
        f"| head | `{binding.head_sha}` |\n"
        f"| diff digest (sha256 of the PR's diff) | `{binding.diff_digest}` |\n"
        f"| image digests | `{binding.images_digest[:16]}` |\n"
    )


def request_approval(
    binding: Binding,
    *,
    listed: Sequence[str],
    initiator: str,
    description: str,
    timeout_seconds: int = DEFAULT_APPROVAL_TIMEOUT,
    poll_interval: float = 2.0,
    verify: Verifier | None = None,
) -> Decision:
    """Wait for an eligible person's decision on exactly ``binding`` and return it.

    Args:
        binding: what the approval approves; an answer given for anything else is void.
        listed: the logins configured as approvers of this gate.
        initiator: who started the release; they may not approve it.
        description: markdown shown above the form (what changes, links, the PR's diff).
        timeout_seconds: how long to wait before the run fails with nothing more merged.
        poll_interval: seconds between checks for an answer when paused in-process.
        verify: a further check of an approving answer (GitHub evidence); a refusal keeps the
            gate waiting, with the reason.
    """
    logger = get_run_logger()
    gate = binding.gate
    eligible = eligible_approvers(gate, listed, initiator)
    form = approval_form(gate, eligible)
    mine = binding.digest
    for _ in range(MAX_ANSWERS):
        answers = _answers(gate)
        attempt = sum(1 for key, _, _ in answers if key.startswith(pause_key(gate, mine, 0)[:-1]))
        notice = ""
        if answers:
            key, raw, answered_at = answers[-1]  # the latest answer at the gate wins
            earlier = _stored_binding(key)
            if earlier is None or earlier != binding.as_dict():
                why = binding.why_void(earlier or {})
                notice = f"**The earlier answer is void:** {why}. Please decide again.\n\n"
                logger.warning("The %s answer given earlier is void: %s", gate, why)
            else:
                answer = form.model_validate(raw)
                refusal = check_approver(gate, answer.approver, listed, initiator)
                reason, evidence = refusal.reason if refusal else None, None
                if reason is None and answer.approved and verify is not None:
                    reason, evidence = verify(answer)
                if reason is None:
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
                        answered_at,
                        binding,
                        evidence,
                    )
                notice = f"**The last answer was refused:** {reason}. The gate waits again.\n\n"
                logger.warning("Refused %s input: %s; waiting again", gate, reason)
                create_markdown_artifact(
                    markdown=f"**{gate} approval refused:** {reason}. The run keeps waiting.",
                    key=f"{gate}-approval-refused",
                    description=f"Refused {gate} approval input",
                )
        key = pause_key(gate, mine, attempt)
        _store_binding(key, binding)
        waiting = form.with_initial_data(
            description=f"{notice}{description}\n\n{_describe_binding(binding)}", approved=False
        )
        logger.info("Waiting for the %s approval (approvers: %s)", gate, ", ".join(eligible))
        notify(
            EVENT_APPROVAL_WAITING,
            gate=gate,
            version=binding.version,
            env=binding.environment,
            approvers=list(eligible),
        )
        if in_deployment():
            suspend_flow_run(wait_for_input=waiting, timeout=timeout_seconds, key=key)
            continue
        try:
            # Prefect types poll_interval as int but sleeps with anyio: fractions work.
            poll: Any = poll_interval
            pause_flow_run(
                wait_for_input=waiting, timeout=timeout_seconds, poll_interval=poll, key=key
            )
        except FlowPauseTimeout as exc:
            raise ApprovalExpired(
                f"the {gate} approval was not given within {timeout_seconds} s; "
                "the promotion stopped there and merged nothing more"
            ) from exc
    raise ApprovalExpired(f"{gate} gate: {MAX_ANSWERS} answers without a decision; giving up")
