"""Notifications end to end: events from a flow -> Prefect automations -> a loopback webhook."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prefect import flow
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.events import emit_event

from deployments.notifications import (
    AUTOMATION_PREFIX,
    NotificationBlockMissing,
    describe,
    ensure_automations,
    notification_block_id,
    remove_automations,
)
from promotion.config import PromotionConfig, load_config
from promotion.names import (
    EVENT_APPROVAL_WAITING,
    EVENT_ENVIRONMENT_DEPLOYED,
    EVENT_PROMOTION_FAILED,
    EVENT_PROMOTION_REJECTED,
    EVENT_PROMOTION_ROLLED_BACK,
)
from tasks.events import emit

UI = "http://127.0.0.1:4200"
BLOCK = "ops-test-hook"


class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps every JSON body posted to it."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        received = self.messages

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, predicate: Any, timeout: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in list(self.messages) if predicate(m)]
            if found:
                return found
            time.sleep(0.25)
        raise AssertionError(f"no matching notification in {timeout}s; got {self.messages}")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver(prefect_server: object) -> Iterator[Receiver]:
    rx = Receiver()
    CustomWebhookNotificationBlock(
        name="release-promotion",
        url=rx.url,
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
    ).save(BLOCK, overwrite=True)
    yield rx
    remove_automations()  # the session's server is shared: leave no automation behind
    rx.stop()


def setup(reminder: float | None = 0.25) -> PromotionConfig:
    base = load_config()
    notifications = base.notifications.model_copy(
        update={"block": BLOCK, "reminder_after_minutes": reminder, "ui_url": UI}
    )
    return base.model_copy(update={"notifications": notifications})


def ours() -> dict[str, list[Any]]:
    with get_client(sync_client=True) as client:
        automations = client.read_automations()
    found: dict[str, list[Any]] = {}
    for a in automations:
        if a.name.startswith(AUTOMATION_PREFIX):
            found.setdefault(a.name.removeprefix(AUTOMATION_PREFIX), []).append(a)
    return found


def test_ensure_is_idempotent_and_converges(receiver: Receiver) -> None:
    first = ensure_automations(setup())
    assert {what for _, _, what in first} == {"created"}
    second = ensure_automations(setup())
    assert [(n, i) for n, i, _ in second] == [(n, i) for n, i, _ in first]
    assert {what for _, _, what in second} == {"updated"}
    found = ours()
    assert sorted(found) == sorted(
        [
            "approval-waiting",
            "approval-reminder",
            "promotion-rejected",
            "promotion-failed",
            "promotion-rolled-back",
            "environment-deployed",
            "drift-detected",
        ]
    )
    assert all(len(copies) == 1 for copies in found.values())  # never duplicated
    # a changed setup updates in place; dropping the reminder removes it
    without = ensure_automations(setup(reminder=None))
    assert "approval-reminder" not in ours()
    assert len(without) == 6
    assert describe(without).startswith("Notifications: approval-waiting (updated)")
    ensure_automations(setup())
    reminder = ours()["approval-reminder"][0]
    assert reminder.trigger.within.total_seconds() == 15
    assert reminder.trigger.posture == "Proactive"


def test_an_unknown_block_is_named() -> None:
    with pytest.raises(NotificationBlockMissing, match="no notification block named 'nope'"):
        notification_block_id("nope")
    assert notification_block_id(f"custom-webhook/{BLOCK}") == notification_block_id(BLOCK)


@flow(name="ops-emit-events")
def emit_events(stuck_run: str, resumed_run: str) -> str:
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    run_id = str(context.flow_run.id)
    common = {"version": "v1.0.1", "env": "prod"}
    emit(
        EVENT_APPROVAL_WAITING,
        flow_run_id=run_id,
        payload={**common, "gate": "pm", "approvers": ["pm-carol"]},
    )
    emit(
        EVENT_PROMOTION_REJECTED,
        flow_run_id=run_id,
        payload={**common, "gate": "qa", "reason": "login page broken"},
    )
    emit(EVENT_PROMOTION_FAILED, flow_run_id=run_id, payload={**common, "reason": "Degraded"})
    emit(
        EVENT_PROMOTION_ROLLED_BACK,
        flow_run_id=run_id,
        payload={**common, "reason": "verification failed"},
    )
    emit(EVENT_ENVIRONMENT_DEPLOYED, flow_run_id=run_id, payload=common)
    # two approvals waiting in other runs: one is never resumed, the other goes on at once
    for other in (stuck_run, resumed_run):
        emit(
            EVENT_APPROVAL_WAITING,
            flow_run_id=other,
            payload={
                "version": "v2.0.0",
                "env": "staging",
                "gate": "qa",
                "approvers": ["qa-alice", "qa-bob"],
            },
        )
    emit_event(
        event="prefect.flow-run.Running",
        resource={"prefect.resource.id": f"prefect.flow-run.{resumed_run}"},
    )
    return run_id


@pytest.mark.timeout(240)
def test_events_reach_the_webhook_with_gate_version_approvers_and_link(
    receiver: Receiver,
) -> None:
    ensure_automations(setup(reminder=0.25))
    time.sleep(2)  # the server's trigger service loads the automations
    stuck, resumed = str(uuid.uuid4()), str(uuid.uuid4())
    run_id = emit_events(stuck, resumed)
    link = f"{UI}/runs/flow-run/{run_id}"

    (waiting,) = receiver.wait(lambda m: m["subject"].startswith("Approval waiting: pm gate"))
    assert waiting["subject"] == "Approval waiting: pm gate for v1.0.1 in prod"
    assert "Eligible approvers: pm-carol" in waiting["body"]
    assert f"Open the run and click Resume: {link}" in waiting["body"]

    (rejected,) = receiver.wait(lambda m: m["subject"].startswith("Promotion rejected"))
    assert rejected["body"] == (
        "The promotion of v1.0.1 in prod was rejected at the qa gate: login page broken\n"
        f"Run: {link}"
    )
    (failed,) = receiver.wait(lambda m: m["subject"].startswith("Promotion failed"))
    assert "failed: Degraded" in failed["body"] and link in failed["body"]
    (rolled,) = receiver.wait(lambda m: m["subject"].startswith("Rolled back"))
    assert "prod was rolled back from v1.0.1: verification failed" in rolled["body"]
    (deployed,) = receiver.wait(lambda m: m["subject"] == "Deployed: v1.0.1 in prod")
    assert "v1.0.1 runs in prod (Argo CD Synced and Healthy)." in deployed["body"]

    # the reminder: only for the run that did not go on within 15 s
    reminders = receiver.wait(lambda m: m["subject"].startswith("Reminder:"), timeout=120)
    assert reminders[0]["subject"] == "Reminder: qa approval of v2.0.0 in staging still waiting"
    assert "has waited more than 0.25 minutes" in reminders[0]["body"]
    assert "Eligible approvers: qa-alice, qa-bob" in reminders[0]["body"]
    assert f"{UI}/runs/flow-run/{stuck}" in reminders[0]["body"]
    time.sleep(10)  # the resumed run's window has ended too by now
    bodies = [m["body"] for m in receiver.messages if m["subject"].startswith("Reminder:")]
    assert not any(resumed in b for b in bodies)
    assert not any(run_id in b for b in bodies)  # the emitting run completed: no reminder
    assert len(bodies) == 1
