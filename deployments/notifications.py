"""Notifications: Prefect automations that turn the promotion's events into messages.

``ensure_automations(config)`` creates, or updates in place, one automation per event of
``promotion.names`` (approval waiting, promotion rejected / failed / rolled back, release
deployed to an environment, drift detected), plus a reminder when an approval has waited longer
than ``notifications.reminder_after_minutes``: a *proactive* trigger that fires when a waiting
event is not followed, within that time, by the run going on (``prefect.flow-run.Running``) or
ending. Each sends a ``SendNotification`` through the Prefect notification block named by
``notifications.block`` (Slack, Microsoft Teams, a custom webhook, any Apprise URL), with the
gate, version, environment, eligible approvers, reason and a link to the run's page (where the
Resume button is). Automations are found by name: running it again never duplicates them (extra
copies are deleted), a changed setup updates them, and a setup without a block (or without a
reminder) removes the ones it no longer wants. ``release-promotion deploy`` calls it.

This is Argo CD Notifications' job (triggers + templates + services) done by Prefect's own
automations, so it also covers what Argo CD cannot see: approvals and rollbacks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from prefect.automations import Automation, EventTrigger, Posture, SendNotification
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client

from promotion.config import PromotionConfig
from promotion.names import (
    EVENT_APPROVAL_WAITING,
    EVENT_DRIFT_DETECTED,
    EVENT_ENVIRONMENT_DEPLOYED,
    EVENT_PREFIX,
    EVENT_PROMOTION_FAILED,
    EVENT_PROMOTION_REJECTED,
    EVENT_PROMOTION_ROLLED_BACK,
)

__all__ = [
    "AUTOMATION_PREFIX",
    "NotificationBlockMissing",
    "NotificationSpec",
    "describe",
    "ensure_automations",
    "notification_block_id",
    "notification_specs",
    "remove_automations",
]

AUTOMATION_PREFIX = f"{EVENT_PREFIX}-notify-"
REMINDER = "approval-reminder"
# What ends an approval's wait: the run goes on (a resume), or ends.
WAIT_ENDED = {
    "prefect.flow-run.Running",
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
}
FLOW_RUNS = {"prefect.resource.id": "prefect.flow-run.*"}


class NotificationBlockMissing(LookupError):
    """The notification block named in promotion.yaml does not exist (or is ambiguous)."""


# Jinja, rendered by the Prefect server with ``event`` = the triggering event (for the
# reminder, the waiting event that was not followed by a resume). ``__UI__`` is the UI's URL.
_RUN_URL = '{% set run_url = "__UI__/runs/flow-run/" ~ (event.resource.id | replace("prefect.flow-run.", "")) %}'
_APPROVERS = '{{ (event.payload.approvers or []) | join(", ") }}'
_WHERE = "{{ event.payload.version }} in {{ event.payload.env }}"
_RESUME = "{{ event.payload.resume_url or run_url }}"


@dataclass(frozen=True)
class NotificationSpec:
    """One automation: which event, and what the message says."""

    key: str
    event: str
    subject: str
    body: str
    description: str


def notification_specs(reminder_after_minutes: float | None) -> list[NotificationSpec]:
    """What is notified, in the ecosystem's words (subject and body templates)."""
    specs = [
        NotificationSpec(
            "approval-waiting",
            EVENT_APPROVAL_WAITING,
            "Approval waiting: {{ event.payload.gate }} gate for " + _WHERE,
            _RUN_URL + "The {{ event.payload.gate }} approval of " + _WHERE + " is waiting.\n"
            "Eligible approvers: " + _APPROVERS + "\n"
            "{% if event.payload.reason %}{{ event.payload.reason }}\n{% endif %}"
            "Open the run and click Resume: " + _RESUME,
            "An approval is waiting (gate, version, eligible approvers, link to the Resume page).",
        ),
        NotificationSpec(
            "promotion-rejected",
            EVENT_PROMOTION_REJECTED,
            "Promotion rejected: " + _WHERE + " at the {{ event.payload.gate }} gate",
            _RUN_URL + "The promotion of " + _WHERE + " was rejected at the "
            "{{ event.payload.gate }} gate: {{ event.payload.reason }}\nRun: {{ run_url }}",
            "A promotion was rejected at an approval gate (with the reason).",
        ),
        NotificationSpec(
            "promotion-failed",
            EVENT_PROMOTION_FAILED,
            "Promotion failed: " + _WHERE,
            _RUN_URL + "The promotion of " + _WHERE + " failed: {{ event.payload.reason }}\n"
            "Run: {{ run_url }}",
            "A promotion failed (with the reason).",
        ),
        NotificationSpec(
            "promotion-rolled-back",
            EVENT_PROMOTION_ROLLED_BACK,
            "Rolled back: " + _WHERE,
            _RUN_URL + "{{ event.payload.env }} was rolled back from {{ event.payload.version }}: "
            "{{ event.payload.reason }}\nRun: {{ run_url }}",
            "An environment was rolled back (with the reason).",
        ),
        NotificationSpec(
            "environment-deployed",
            EVENT_ENVIRONMENT_DEPLOYED,
            "Deployed: " + _WHERE,
            _RUN_URL + "{{ event.payload.version }} runs in {{ event.payload.env }} "
            "(Argo CD Synced and Healthy{% if event.payload.reason %}; "
            "{{ event.payload.reason }}{% endif %}).\nRun: {{ run_url }}",
            "A release was deployed to an environment.",
        ),
    ]
    if reminder_after_minutes is not None:
        specs.append(
            NotificationSpec(
                REMINDER,
                EVENT_APPROVAL_WAITING,
                "Reminder: {{ event.payload.gate }} approval of " + _WHERE + " still waiting",
                _RUN_URL + "The {{ event.payload.gate }} approval of " + _WHERE + " has waited "
                f"more than {reminder_after_minutes:g} minutes.\n"
                "Eligible approvers: " + _APPROVERS + "\n"
                "Open the run and click Resume: " + _RESUME,
                f"An approval has waited more than {reminder_after_minutes:g} minutes.",
            )
        )
    specs.append(
        NotificationSpec(
            "drift-detected",
            EVENT_DRIFT_DETECTED,
            "Drift in {{ event.payload.environment }}/{{ event.payload.application }}",
            "Drift in {{ event.payload.environment }}/{{ event.payload.application }}: "
            "{{ event.payload.summary }}",
            "The drift audit found an application that does not run what Git says.",
        )
    )
    return specs


def _trigger(spec: NotificationSpec, reminder_after_minutes: float | None) -> EventTrigger:
    if spec.key == REMINDER:
        assert reminder_after_minutes is not None
        return EventTrigger(
            after={spec.event},
            expect=set(WAIT_ENDED),
            for_each={"prefect.resource.id"},
            match=FLOW_RUNS,
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(minutes=reminder_after_minutes),
        )
    match = (
        {"prefect.resource.id": "release-promotion.argocd-app.*"}
        if spec.event == EVENT_DRIFT_DETECTED
        else FLOW_RUNS
    )
    return EventTrigger(
        expect={spec.event},
        match=match,
        posture=Posture.Reactive,
        threshold=1,
        within=timedelta(seconds=0),
    )


def notification_block_id(name: str) -> UUID:
    """The id of the notification block ``name`` (``type-slug/name``, or a name unique among
    the notification blocks)."""
    if "/" in name:
        try:
            block = Block.load(name)
        except ValueError as exc:
            raise NotificationBlockMissing(f"no notification block {name!r}: {exc}") from None
        block_id = getattr(block, "_block_document_id", None)
        if block_id is None:  # pragma: no cover - a loaded block always has one
            raise NotificationBlockMissing(f"the block {name!r} has no id")
        return UUID(str(block_id))
    with get_client(sync_client=True) as client:
        documents = client.read_block_documents(include_secrets=False)
    found = [
        d
        for d in documents
        if d.name == name
        and d.block_schema is not None
        and "notify" in (d.block_schema.capabilities or [])
    ]
    if not found:
        raise NotificationBlockMissing(
            f"no notification block named {name!r}: save one (for example "
            f"CustomWebhookNotificationBlock(...).save({name!r})) or fix notifications.block"
        )
    if len(found) > 1:
        kinds = ", ".join(sorted(f"{d.block_type.slug}/{name}" for d in found if d.block_type))
        raise NotificationBlockMissing(
            f"several notification blocks are named {name!r} ({kinds}): name one as type/name"
        )
    return found[0].id


def _ui_url(config: PromotionConfig, ui_url: str | None) -> str:
    if ui_url:
        return ui_url.rstrip("/")
    if config.notifications.ui_url:
        return config.notifications.ui_url
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    explicit = PREFECT_UI_URL.value()
    if explicit:
        return str(explicit).rstrip("/")
    api = str(PREFECT_API_URL.value() or os.environ.get("PREFECT_API_URL", ""))
    return api.rstrip("/").removesuffix("/api")


def _upsert(wanted: Automation) -> tuple[Automation, str]:
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(wanted.name)
        for extra in existing[1:]:
            client.delete_automation(extra.id)
    if not existing:
        return wanted.create(), "created"  # type: ignore[return-value]
    wanted.id = existing[0].id
    wanted.update()
    return wanted, "updated"


def remove_automations(keep: set[str] | None = None) -> list[str]:
    """Delete this project's notification automations except those named in ``keep``."""
    removed: list[str] = []
    with get_client(sync_client=True) as client:
        for automation in client.read_automations():
            name = automation.name
            if name.startswith(AUTOMATION_PREFIX) and name not in (keep or set()):
                client.delete_automation(automation.id)
                removed.append(name)
    return removed


def ensure_automations(
    config: PromotionConfig, *, ui_url: str | None = None
) -> list[tuple[str, UUID, str]]:
    """Create or update the notification automations of ``config``; return (name, id, what).

    Args:
        config: The promotion setup (``notifications.block``, ``reminder_after_minutes``,
            ``ui_url``).
        ui_url: The Prefect UI for the links (default: ``notifications.ui_url``, then
            ``PREFECT_UI_URL``, then ``PREFECT_API_URL`` without ``/api``).

    Without ``notifications.block`` nothing is notified: our automations are removed.
    """
    settings = config.notifications
    if settings.block is None:
        remove_automations()
        return []
    block_id = notification_block_id(settings.block)
    ui = _ui_url(config, ui_url)
    done: list[tuple[str, UUID, str]] = []
    for spec in notification_specs(settings.reminder_after_minutes):
        name = AUTOMATION_PREFIX + spec.key
        wanted = Automation(
            name=name,
            description=spec.description,
            enabled=True,
            trigger=_trigger(spec, settings.reminder_after_minutes),
            actions=[
                SendNotification(
                    block_document_id=block_id,
                    subject=spec.subject.replace("__UI__", ui),
                    body=spec.body.replace("__UI__", ui),
                )
            ],
        )
        automation, what = _upsert(wanted)
        assert automation.id is not None
        done.append((name, automation.id, what))
    remove_automations(keep={name for name, _, _ in done})
    return done


def describe(done: list[tuple[str, UUID, str]]) -> str:
    """One line for the CLI."""
    if not done:
        return "Notifications: none (no notifications.block in promotion.yaml)."
    return (
        "Notifications: "
        + ", ".join(f"{n.removeprefix(AUTOMATION_PREFIX)} ({w})" for n, _, w in done)
        + "."
    )


def ensure_on_deploy(
    api_url: str, config_file: str | os.PathLike[str] | None = None, ui_url: str | None = None
) -> str:
    """What ``release-promotion deploy`` calls: ensure the automations against ``api_url``
    for the setup in ``config_file``; return the line it prints."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from promotion.config import load_config

    config = load_config(config_file)
    with temporary_settings({PREFECT_API_URL: api_url}):
        return describe(ensure_automations(config, ui_url=ui_url))
