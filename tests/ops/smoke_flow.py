"""A team's smoke-test suite, as a tiny flow served by the verification tests."""

from __future__ import annotations

from datetime import datetime

from prefect import flow, serve
from prefect.context import FlowRunContext

from tasks.wait import wait_until

SMOKE_FLOW = "ops-smoke-test"
SMOKE_DEPLOYMENT = f"{SMOKE_FLOW}/ops-smoke"


@flow(name=SMOKE_FLOW)
def smoke(version: str, environment: str) -> str:
    """Fails for a version starting with ``bad``, like a suite that found a broken release."""
    if version.startswith("bad"):
        raise RuntimeError(f"checkout page broken for {version} in {environment}")
    return f"{version} ok in {environment}"


WAIT_FLOW = "ops-wait-until"
WAIT_DEPLOYMENT = f"{WAIT_FLOW}/ops-wait"


@flow(name=WAIT_FLOW)
def wait_flow(until: str) -> int:
    """Waits for ``until`` (an ISO datetime) like a promotion meeting a freeze window."""
    wait_until(datetime.fromisoformat(until), "frozen: test window")
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    return context.flow_run.run_count


if __name__ == "__main__":
    serve(smoke.to_deployment(name="ops-smoke"), wait_flow.to_deployment(name="ops-wait"))
