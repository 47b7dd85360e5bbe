"""A team's smoke-test suite, as a tiny flow served by the verification tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect import flow, serve
from prefect.context import FlowRunContext
from prefect.variables import Variable

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
def wait_flow(seconds: float) -> str:
    """Waits ``seconds`` from its first execution, like a promotion meeting a freeze window.

    The end of the wait is fixed at the first execution (kept in a Variable of this run), so
    the re-run after the wait finds it passed. Returns the end of the wait, ISO.
    """
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    name = f"ops-wait-{context.flow_run.id}"
    until_text = Variable.get(name, default=None)
    if until_text is None:
        until_text = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
        Variable.set(name, until_text)
    wait_until(datetime.fromisoformat(str(until_text)), "frozen: test window")
    return str(until_text)


if __name__ == "__main__":
    serve(smoke.to_deployment(name="ops-smoke"), wait_flow.to_deployment(name="ops-wait"))
