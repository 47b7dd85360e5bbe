"""Promote a release into one environment: PR, checks, merge (when the gate allows), deployed."""

from __future__ import annotations

import time
from dataclasses import dataclass

from prefect import flow, get_run_logger

from flows.runtime import Runtime, load_runtime
from promotion.config import Environment, Gate
from promotion.github import NothingToPromote
from promotion.models import validate_version
from tasks import argocd as argo_tasks
from tasks import github as gh_tasks


class GateNotPassed(RuntimeError):
    """An environment whose gate needs an approval was asked to merge without one."""


@dataclass(frozen=True)
class EnvironmentOutcome:
    """Where one environment stands after ``promote_environment``."""

    env: str
    version: str
    pr_number: int | None
    pr_url: str | None
    pr_reused: bool
    head_sha: str | None
    checks: str
    merged: bool
    merge_sha: str | None
    deployed_revision: str | None
    sync: str
    health: str
    history_id: int | None
    seconds: float
    note: str = ""


def run_environment(
    rt: Runtime,
    env: Environment,
    version: str,
    *,
    merge: bool,
    approved_by: str | None = None,
    checks_timeout: float = 900.0,
    deploy_timeout: float = 600.0,
) -> EnvironmentOutcome:
    """The steps of one environment; every step is idempotent, so a re-run finds its own work."""
    logger = get_run_logger()
    started = time.monotonic()
    if merge and env.gate is Gate.PM_APPROVAL and not approved_by:
        raise GateNotPassed(
            f"{env.name} is gated by PM approval: it cannot be merged without an approver"
        )
    gh = rt.github()
    try:
        pr = gh_tasks.open_promotion_pr(gh, env, version, rt.config.images())
    except NothingToPromote:
        existing = gh_tasks.find_promotion_pr(gh, env.name, version)
        if existing is None or not existing.merged:
            # The overlay already holds this version and no PR of ours merged it:
            # nothing to merge; still confirm Argo CD runs what the branch says.
            head = gh_tasks.branch_head(gh)
            deployed = argo_tasks.confirm_deployed(
                rt.argocd(), env.argocd_app, head, timeout=deploy_timeout
            )
            return EnvironmentOutcome(
                env.name,
                version,
                None,
                None,
                False,
                head,
                "-",
                False,
                None,
                deployed.revision,
                "Synced",
                deployed.health,
                deployed.history_id,
                time.monotonic() - started,
                f"already at {version}",
            )
        pr = existing
    logger.info("%s: PR #%s %s", env.name, pr.number, "found" if not pr.created else "opened")
    if pr.merged:
        checks = "passed (before merge)"
        merge_sha = pr.merge_commit_sha
    else:
        result = gh_tasks.wait_for_checks(
            gh, pr.number, rt.config.github.required_checks, timeout=checks_timeout
        )
        checks = result.describe()
        if not merge:
            return EnvironmentOutcome(
                env.name,
                version,
                pr.number,
                pr.url,
                not pr.created,
                pr.head_sha,
                checks,
                False,
                None,
                None,
                "-",
                "-",
                None,
                time.monotonic() - started,
                "waiting for approval",
            )
        merged = gh_tasks.merge(
            gh, pr.number, rt.config.github.merge_method, expected_head_sha=pr.head_sha
        )
        merge_sha = merged.sha
    assert merge_sha is not None
    deployed = argo_tasks.confirm_deployed(
        rt.argocd(), env.argocd_app, merge_sha, timeout=deploy_timeout
    )
    return EnvironmentOutcome(
        env.name,
        version,
        pr.number,
        pr.url,
        not pr.created,
        pr.head_sha,
        checks,
        True,
        merge_sha,
        deployed.revision,
        "Synced",
        deployed.health,
        deployed.history_id,
        time.monotonic() - started,
    )


@flow(name="promote-environment", log_prints=True, persist_result=True)
def promote_environment(
    env: str,
    version: str,
    merge: bool = True,
    approved_by: str | None = None,
    config_file: str | None = None,
) -> EnvironmentOutcome:
    """Promote one release into one environment.

    Opens (or finds) the promotion pull request that sets every image of the release in the
    environment's overlay, waits for the required checks, merges it when the environment's gate
    allows, and waits until Argo CD runs the merge commit and reports it Healthy.

    Args:
        env: the environment, as named in promotion.yaml (for example `staging`).
        version: the release tag, for example `v1.0.1` (a valid OCI tag).
        merge: merge the pull request once its checks pass; off to stop after the checks.
        approved_by: the approver of a gated environment (prod needs the PM's approval).
        config_file: the promotion setup to use instead of the project's promotion.yaml.
    """
    validate_version(version)
    rt = load_runtime(config_file)
    return run_environment(
        rt, rt.config.environment(env), version, merge=merge, approved_by=approved_by
    )
