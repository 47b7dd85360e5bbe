"""Prefect tasks of the verification after deploy: the HTTP probes, and a smoke-test deployment.

``verify_probes`` runs the environment's probes (``promotion.verify``) and returns their
outcome; a failed probe is a verdict, returned, never retried by Prefect (the probe has its own
retries); only a crash of the HTTP layer is retried. ``run_smoke_test`` starts the configured
Prefect deployment (a team's own smoke-test suite) with ``version`` and ``environment``
parameters, waits for its end and says whether it Completed. ``verify_environment`` does both,
in that order, and is what a flow calls once Argo CD reports the release Healthy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment

from promotion.operations import Probe, Verification
from promotion.verify import (
    SmokeTestResult,
    VerificationResult,
    is_transient,
    run_probes,
)
from tasks.retry import transient_retries

__all__ = ["run_smoke_test", "verify_environment", "verify_probes"]


@task(
    name="verify-probes",
    task_run_name="verify-probes-{env}-{version}",
    **transient_retries(is_transient),
)
def verify_probes(probes: Sequence[Probe], version: str, env: str) -> VerificationResult:
    """Run the HTTP probes of an environment after deploy.

    Args:
        probes: The environment's probes (``verify.probes`` in promotion.yaml).
        version: The release that must be served.
        env: The environment.

    Returns:
        Every probe's outcome; ``.ok`` is False when one failed (``.describe()`` says why).
    """
    result = run_probes(probes, version, env=env)
    logger = get_run_logger()
    for probe in result.probes:
        (logger.info if probe.ok else logger.error)("%s: %s", env, probe.line())
    return result


@task(name="smoke-test", task_run_name="smoke-test-{env}-{version}", cache_policy=NO_CACHE)
def run_smoke_test(
    deployment: str,
    version: str,
    env: str,
    timeout_seconds: float = 900.0,
    parameters: dict[str, Any] | None = None,
) -> SmokeTestResult:
    """Run a Prefect deployment as a smoke test and wait for its end.

    Args:
        deployment: ``flow-name/deployment-name``.
        version: Passed to the run as the ``version`` parameter (unless ``parameters`` is given).
        env: Passed as the ``environment`` parameter (unless ``parameters`` is given).
        timeout_seconds: How long to wait for the run to finish; still running then fails.
        parameters: The run's parameters instead of ``{version, environment}``.

    Returns:
        ``ok`` only when the run ended Completed.
    """
    params = parameters if parameters is not None else {"version": version, "environment": env}
    try:
        run = cast(
            FlowRun,
            run_deployment(deployment, parameters=params, timeout=timeout_seconds, poll_interval=2),
        )
    except Exception as exc:  # unknown deployment, server error: the check did not pass
        return SmokeTestResult(deployment, None, "NotStarted", False, f"could not start: {exc}")
    state = run.state
    name = str(state.name) if state is not None else "Unknown"
    if state is not None and state.is_completed():
        message = f"run {run.name} completed"
        ok = True
    elif state is not None and not state.is_final():
        message = f"run {run.name} still {name} after {timeout_seconds:g} s"
        ok = False
    else:
        reason = (state.message or "").strip() if state is not None else ""
        message = f"run {run.name} ended {name}" + (f": {reason}" if reason else "")
        ok = False
    result = SmokeTestResult(deployment, str(run.id), name, ok, message)
    (get_run_logger().info if ok else get_run_logger().error)("%s: %s", env, result.line())
    return result


def verify_environment(verification: Verification, version: str, env: str) -> VerificationResult:
    """Every check of ``env`` after deploy: the probes, then the smoke-test deployment (if any).

    Call from a flow once Argo CD reports ``version`` Synced and Healthy in ``env``; a result
    that is not ``ok`` should fail the environment (``result.raise_for_failure()``) and, with
    ``auto_rollback``, roll it back.
    """
    result = (
        verify_probes(verification.probes, version, env)
        if verification.probes
        else VerificationResult(env, version)
    )
    if verification.deployment is not None and result.ok:
        smoke = run_smoke_test(
            verification.deployment, version, env, verification.deployment_timeout_seconds
        )
        result = result.with_smoke_test(smoke)
    return result
