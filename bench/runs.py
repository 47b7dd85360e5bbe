"""What the benches share: start promote-release in this process and answer its approvals.

A bench runs the flow in a thread of its own process (the approvals then pause the run) or as a
deployment run (they suspend it), and answers each approval the moment the run waits for it,
through the same REST call as the UI's Resume form (``deployments.runs.resume_run``).
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deployments.runs import RunView, list_runs, read_run, resume_run

# The approvers of the sandbox's promotion.yaml, per gate (the pause key starts with the gate).
APPROVERS: Mapping[str, str] = {"qa": "qa-alice", "pm": "pm-carol"}
INITIATOR = "bench-runner"


def run_id_named(api: str, name: str, timeout: float = 60.0) -> str:
    """The id of the flow run called ``name`` (a run started in-process has no id up front)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = next((r.id for r in list_runs(api, limit=20) if r.name == name), "")
        if found:
            return found
        time.sleep(0.02)
    raise TimeoutError(f"no flow run named {name} after {timeout:.0f} s")


def wait_paused_at(api: str, run_id: str, gate: str, interval: float = 0.02) -> RunView:
    """Wait until the run waits for an answer at ``gate``."""
    while True:
        view = read_run(api, run_id)
        if view.paused and (view.pause_key or "").startswith(gate):
            return view
        time.sleep(interval)


def approve(api: str, run_id: str, gate: str) -> None:
    """Approve ``gate`` as its listed approver; the server must accept the answer."""
    result = resume_run(api, run_id, {"approved": True, "approver": APPROVERS[gate]})
    if not result.accepted:
        raise RuntimeError(f"run {run_id}: the {gate} approval was refused: {result}")


@dataclass
class Approvals:
    """What ``answer_until_finished`` saw: the final run and the gates it answered, in order."""

    final: RunView
    answered: list[str] = field(default_factory=list)


def answer_until_finished(
    api: str, run_id: str, timeout: float = 300.0, interval: float = 0.05
) -> Approvals:
    """Approve every gate the run waits at, the moment it waits, until the run ends."""
    deadline = time.monotonic() + timeout
    answered: list[str] = []
    while time.monotonic() < deadline:
        view = read_run(api, run_id)
        if view.finished:
            return Approvals(view, answered)
        gate = (view.pause_key or "").split("-", 1)[0]
        if view.paused and gate in APPROVERS:
            approve(api, run_id, gate)
            answered.append(gate)
            # the next read must not see the same pause again
            while (again := read_run(api, run_id)).paused and again.pause_key == view.pause_key:
                time.sleep(interval)
        time.sleep(interval)
    raise TimeoutError(f"run {run_id} did not end in {timeout:.0f} s")


@dataclass
class InProcessRun:
    """promote-release called in a thread of this process; ``state`` once the thread ends."""

    name: str
    thread: threading.Thread
    result: dict[str, Any]

    def join(self, timeout: float | None = 60.0) -> Any:
        self.thread.join(timeout)
        return self.result.get("state")


def promote_in_thread(prefix: str = "bench", **parameters: Any) -> InProcessRun:
    """Start ``promote_release(**parameters)`` (initiator: the bench) under a unique run name."""
    from flows.promote import promote_release

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    result: dict[str, Any] = {}
    parameters.setdefault("initiator", INITIATOR)

    def run() -> None:
        result["state"] = promote_release.with_options(flow_run_name=name)(
            **parameters, return_state=True
        )

    # The caller's context goes along: Prefect's settings (the API URL of a server entered
    # with ``use()``) live in context variables, which a new thread does not inherit.
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(run,), name=name, daemon=True)
    thread.start()
    return InProcessRun(name, thread, result)
