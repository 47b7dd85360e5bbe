"""A team's smoke-test suite, as a tiny flow served by the verification tests."""

from __future__ import annotations

from prefect import flow

SMOKE_FLOW = "ops-smoke-test"
SMOKE_DEPLOYMENT = f"{SMOKE_FLOW}/ops-smoke"


@flow(name=SMOKE_FLOW)
def smoke(version: str, environment: str) -> str:
    """Fails for a version starting with ``bad``, like a suite that found a broken release."""
    if version.startswith("bad"):
        raise RuntimeError(f"checkout page broken for {version} in {environment}")
    return f"{version} ok in {environment}"


if __name__ == "__main__":
    smoke.serve(name="ops-smoke")
