"""Emit the promotion's events (``promotion.names.EVENT_*``) about a flow run.

The automations of ``deployments.notifications`` match these events and send the notifications;
the payload carries what a message needs (gate, version, environment, eligible approvers,
reason, a link to the Resume page). The resource is the flow run, so a notification links to
its page and the reminder automation can wait for that run to go on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from prefect.events import Event, emit_event

__all__ = ["PAYLOAD_KEYS", "emit", "flow_run_resource"]

PAYLOAD_KEYS = ("gate", "version", "env", "approvers", "reason", "resume_url")
"""The payload keys the notification templates read (others are kept, not shown)."""


def flow_run_resource(flow_run_id: UUID | str) -> dict[str, str]:
    return {"prefect.resource.id": f"prefect.flow-run.{flow_run_id}"}


def emit(event_name: str, *, flow_run_id: UUID | str, payload: Mapping[str, Any]) -> Event | None:
    """Emit ``event_name`` about the flow run ``flow_run_id`` with ``payload``.

    Args:
        event_name: One of ``promotion.names.EVENT_*``.
        flow_run_id: The run the event is about (its page is the notification's link).
        payload: ``gate``, ``version``, ``env``, ``approvers`` (a list of logins), ``reason``,
            ``resume_url``, as they apply; missing keys render as empty in the messages.

    Returns:
        The event, or None when events are off (no Prefect API).
    """
    body: dict[str, Any] = {key: "" for key in PAYLOAD_KEYS}
    body["approvers"] = []
    body.update({k: (list(v) if k == "approvers" else v) for k, v in payload.items()})
    return emit_event(event=event_name, resource=flow_run_resource(flow_run_id), payload=body)
