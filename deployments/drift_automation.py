"""The automation that turns drift events into notifications, defined from code.

The drift audit (``flows/drift.py``) emits ``release-promotion.drift.detected`` once per
drifting application. ``ensure_drift_automation`` makes the Prefect server call a webhook for
each of them: it saves the webhook URL (a secret: Slack, Teams, PagerDuty or any HTTP receiver)
in a Prefect ``Webhook`` block and creates an automation whose ``EventTrigger`` matches the
event and whose ``CallWebhook`` action posts a JSON summary (application, environment, drift
classes, findings). Prefect records each firing and each webhook call (status code, answer) as
``prefect.automation.*`` events, which is the log of every notification sent; the audit run
also logs each drift as a warning. Idempotent: the block is overwritten, the automation found by
name and updated, so running it again after a change converges.

    python -m deployments.drift_automation --webhook-url https://hooks.example.com/drift
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import cast
from uuid import UUID

from prefect.automations import Automation, CallWebhook, EventTrigger, Posture
from prefect.blocks.webhook import Webhook

DRIFT_EVENT = "release-promotion.drift.detected"
AUTOMATION_NAME = "release-promotion-drift-notification"
WEBHOOK_BLOCK = "release-promotion-drift-webhook"
WEBHOOK_URL_ENV = "RELEASE_PROMOTION_DRIFT_WEBHOOK_URL"

# Rendered by the server with Jinja; ``event`` is the triggering event. "text" makes it readable
# as is by Slack-compatible receivers.
PAYLOAD_TEMPLATE = """{
  "text": {{ ("Drift in " ~ event.payload.environment ~ "/" ~ event.payload.application ~ ": " ~ event.payload.summary) | tojson }},
  "event": {{ event.event | tojson }},
  "event_id": {{ event.id | string | tojson }},
  "occurred": {{ event.occurred | string | tojson }},
  "resource": {{ event.resource.id | tojson }},
  "application": {{ event.payload.application | tojson }},
  "environment": {{ event.payload.environment | tojson }},
  "kinds": {{ event.payload.kinds | tojson }},
  "findings": {{ event.payload.findings | tojson }},
  "sync": {{ event.payload.sync | tojson }},
  "health": {{ event.payload.health | tojson }},
  "desired_revision": {{ event.payload.desired_revision | tojson }}
}"""


def save_webhook_block(
    url: str, headers: Mapping[str, str] | None = None, name: str = WEBHOOK_BLOCK
) -> UUID:
    """Save (or overwrite) the ``Webhook`` block holding the notification URL; return its id."""
    block = Webhook(method="POST", url=url, headers=dict(headers or {}))
    block_id = block.save(name, overwrite=True)
    return UUID(str(block_id))


def webhook_block_id(name: str = WEBHOOK_BLOCK) -> UUID:
    """The id of the saved webhook block ``name`` (``ValueError`` when there is none)."""
    block = Webhook.load(name)
    block_id = getattr(block, "_block_document_id", None)
    if block_id is None:
        raise ValueError(f"the Webhook block {name!r} has no id")
    return UUID(str(block_id))


def drift_automation(
    block_id: UUID,
    name: str = AUTOMATION_NAME,
    environments: Sequence[str] | None = None,
) -> Automation:
    """The automation: every drift event (of ``environments``, default any) calls the webhook."""
    match: dict[str, str | list[str]] = {"prefect.resource.id": "release-promotion.argocd-app.*"}
    if environments:
        match["release-promotion.environment"] = list(environments)
    return Automation(
        name=name,
        description=(
            "Notify when the drift audit finds an application that does not run what Git says "
            "(one webhook call per drifting application and audit run)."
        ),
        enabled=True,
        trigger=EventTrigger(
            expect={DRIFT_EVENT},
            match=match,
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(seconds=0),
        ),
        actions=[CallWebhook(block_document_id=block_id, payload=PAYLOAD_TEMPLATE)],
    )


def ensure_drift_automation(
    webhook_url: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    name: str = AUTOMATION_NAME,
    block_name: str = WEBHOOK_BLOCK,
    environments: Sequence[str] | None = None,
) -> Automation:
    """Create the drift notification automation, or update the one of that name.

    Args:
        webhook_url: Where to post notifications (default: ``RELEASE_PROMOTION_DRIFT_WEBHOOK_URL``;
            without either, the already saved block ``block_name`` is used).
        headers: Extra headers of the webhook call (for instance an authorization header).
        name: The automation's name (the key that makes this idempotent).
        block_name: The Webhook block's name.
        environments: Notify only for these environments (default: every environment).
    """
    url = webhook_url or os.environ.get(WEBHOOK_URL_ENV)
    block_id = save_webhook_block(url, headers, block_name) if url else webhook_block_id(block_name)
    wanted = drift_automation(block_id, name, environments)
    try:
        existing = cast(Automation, Automation.read(name=name))
    except ValueError:
        return cast(Automation, wanted.create())
    wanted.id = existing.id
    wanted.update()
    return wanted


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create or update the drift notification.")
    parser.add_argument("--webhook-url", help=f"default: ${WEBHOOK_URL_ENV} or the saved block")
    parser.add_argument("--environment", action="append", help="notify only for these")
    parser.add_argument("--name", default=AUTOMATION_NAME)
    args = parser.parse_args(argv)
    automation = ensure_drift_automation(
        args.webhook_url, name=args.name, environments=args.environment
    )
    print(f"automation {automation.name!r} ({automation.id}) calls the webhook on {DRIFT_EVENT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
