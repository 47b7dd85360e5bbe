"""Wait without holding a process: reschedule the current flow run for later, then exit.

A freeze window that ends on Monday, or a soak time of 30 minutes, must not keep a worker's
process alive. ``wait_until(until, reason)`` (called from flow code, not from a task) sets the
current run of a deployment to ``Scheduled`` at ``until`` (state name ``AwaitingWindow``, the
reason as its message) and ends this process the way ``suspend_flow_run`` does (Prefect's
``Pause`` signal: the engine exits 0, the worker does not mark it crashed). At ``until`` a worker
picks the run up again and the flow starts from the top, under the same run id, exactly as after
a suspend: every step before the wait must be idempotent and the flow re-checks the freeze or the
soak, which then lets it through. A run without a deployment (a local call, a test) has nothing
to pick it up later, so it sleeps in process instead.

A worker starts a scheduled run up to ``PREFECT_WORKER_PREFETCH_SECONDS`` (10 s by default)
before its time, so the run comes back a little early: a wait no longer than that margin sleeps
in process too (rescheduling it would only come back early again, and wait twice).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext
from prefect.exceptions import Pause
from prefect.logging import get_run_logger
from prefect.settings import PREFECT_WORKER_PREFETCH_SECONDS
from prefect.states import Scheduled

__all__ = ["WAIT_STATE_NAME", "wait_until"]

WAIT_STATE_NAME = "AwaitingWindow"


def wait_until(until: datetime, reason: str) -> None:
    """Come back at ``until`` without holding this process (see the module docstring).

    Args:
        until: When to run again (time-zone aware).
        reason: Shown as the Scheduled state's message (for example the freeze window).

    Returns only when ``until`` has passed (in-process sleep, or nothing to wait for); under a
    deployment it does not return: the process ends and the run starts again at ``until``.
    """
    if until.tzinfo is None:
        raise ValueError(f"until must be time-zone aware, got {until.isoformat()}")
    remaining = (until - datetime.now(UTC)).total_seconds()
    if remaining <= 0:
        return
    context = FlowRunContext.get()
    flow_run = context.flow_run if context is not None else None
    logger = get_run_logger()
    early = float(PREFECT_WORKER_PREFETCH_SECONDS.value()) + 1.0
    if flow_run is None or flow_run.deployment_id is None or remaining <= early:
        why = "no deployment" if flow_run is None or flow_run.deployment_id is None else "soon"
        logger.info("%s: waiting in process until %s (%s)", reason, until.isoformat(), why)
        time.sleep(remaining)
        return
    state: State[Any] = Scheduled(scheduled_time=until, name=WAIT_STATE_NAME, message=reason)
    with get_client(sync_client=True) as client:
        result = client.set_flow_run_state(flow_run.id, state, force=True)
    logger.info(
        "%s: run rescheduled for %s; this process ends now (the run starts again then)",
        reason,
        until.isoformat(),
    )
    raise Pause(state=result.state if result.state is not None else state)
