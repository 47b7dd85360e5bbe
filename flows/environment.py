"""Promote a release into one environment: PR, checks, merge (when the gate allows), deployed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prefect import flow, get_run_logger

from flows.runtime import Runtime, load_runtime
from promotion.config import Environment, Gate
from promotion.github import HeadMoved, MergeRefused, PullRequestInfo
from promotion.models import validate_version
from promotion.report import EnvironmentReport
from tasks import argocd as argo_tasks
from tasks import github as gh_tasks

MERGE_ATTEMPTS = 3


class GateNotPassed(RuntimeError):
    """An environment whose gate needs an approval was asked to merge without one."""


@dataclass
class EnvironmentOutcome:
    """Where one environment stands after ``run_environment`` (filled as the steps happen)."""

    env: str
    version: str
    pr: PullRequestInfo | None = None
    checks: str = "-"
    merged: bool = False
    merge_sha: str | None = None
    deployed_revision: str | None = None
    sync: str = "-"
    health: str = "-"
    history_id: int | None = None
    seconds: float | None = None  # None: the work was done by an earlier execution
    notes: list[str] = field(default_factory=list)

    @property
    def pr_number(self) -> int | None:
        return self.pr.number if self.pr else None

    @property
    def pr_url(self) -> str | None:
        return self.pr.url if self.pr else None

    @property
    def head_sha(self) -> str | None:
        return self.pr.head_sha if self.pr else None

    def record_into(self, report: EnvironmentReport, app: str) -> None:
        report.pr_number, report.pr_url = self.pr_number, self.pr_url
        report.checks, report.merge_sha, report.argocd_app = self.checks, self.merge_sha, app
        report.sync, report.health, report.history_id = self.sync, self.health, self.history_id
        report.seconds, report.note = self.seconds, "; ".join(self.notes)


def run_environment(
    rt: Runtime,
    env: Environment,
    version: str,
    *,
    merge: bool,
    approved_by: str | None = None,
    outcome: EnvironmentOutcome | None = None,
    checked_pr: PullRequestInfo | None = None,
    checks_timeout: float = 900.0,
    deploy_timeout: float = 600.0,
) -> EnvironmentOutcome:
    """The steps of one environment; every step is idempotent, so a re-run finds its own work.

    ``outcome`` is filled as the steps happen, so that a caller that catches a failure (a
    Degraded deployment, say) still knows which PR merged as which commit. ``checked_pr`` is a
    PR whose checks this run already saw pass (the proposal before an approval): it is merged at
    exactly that head, and only rebuilt and re-checked if GitHub refuses the merge.
    """
    logger = get_run_logger()
    started = time.monotonic()
    out = outcome if outcome is not None else EnvironmentOutcome(env.name, version)
    if merge and env.gate is Gate.PM_APPROVAL and not approved_by:
        raise GateNotPassed(
            f"{env.name} is gated by PM approval: it cannot be merged without an approver"
        )
    gh, argo, poll = rt.github(), rt.argocd(), rt.settings.poll_interval
    required = rt.config.github.required_checks
    pr = checked_pr or gh_tasks.ensure_promotion_pr(gh, env, version, rt.config.images())
    if pr is None:
        # The overlay already holds this version and no PR of ours merged it: nothing to
        # merge; still confirm that Argo CD runs what the branch says.
        out.notes.append(f"{env.name} was already at {version}; no PR needed")
    if pr is not None:
        out.pr = pr
        logger.info("%s: PR #%s %s", env.name, pr.number, "opened" if pr.created else "found")
    if pr is not None and not pr.merged:
        checked = checked_pr is not None
        for attempt in range(1, MERGE_ATTEMPTS + 1):
            if not checked:
                checks = gh_tasks.wait_for_checks(
                    gh,
                    pr.number,
                    required,
                    timeout=checks_timeout,
                    poll_interval=poll,
                    head_sha=pr.head_sha,
                )
                out.checks = checks.describe()
            if not merge:
                out.notes.append("waiting for approval")
                out.seconds = time.monotonic() - started
                return out
            try:
                merged = gh_tasks.merge(
                    gh, pr.number, rt.config.github.merge_method, expected_head_sha=pr.head_sha
                )
            except (HeadMoved, MergeRefused) as exc:
                # The base moved under the PR (another promotion merged first): rebuild the
                # branch on the new base, re-check, and merge that; never merge a stale tree.
                refreshed = gh_tasks.open_promotion_pr(gh, env, version, rt.config.images())
                if refreshed.head_sha == pr.head_sha or attempt == MERGE_ATTEMPTS:
                    raise
                out.notes.append(f"PR rebuilt on the new base after: {exc}")
                pr = refreshed
                out.pr = pr
                checked = False
                continue
            out.merged, out.merge_sha = True, merged.sha
            break
        revision = out.merge_sha
    elif pr is not None:
        # Merged by an earlier attempt of this run (a re-run after a suspend or a crash).
        out.checks, out.merged, out.merge_sha = "passed before the merge", True, pr.merge_commit_sha
        out.notes.append(
            "merged by an earlier execution of this run (it runs again from the top after an "
            "approval or a retry); deployment confirmed again now"
        )
        revision = gh_tasks.branch_head(gh)
    else:
        revision = gh_tasks.branch_head(gh)
    assert revision is not None
    # With the repository, a later commit on the branch that contains ours also confirms it.
    deployed = argo_tasks.confirm_deployed(
        argo, env.argocd_app, revision, timeout=deploy_timeout, poll_interval=poll, repository=gh
    )
    if deployed.revision != revision:
        out.notes.append(
            f"Argo CD runs the later commit {deployed.revision[:12]}, which contains "
            f"{revision[:12]} (another merge landed first)"
        )
    out.deployed_revision, out.sync, out.health = deployed.revision, "Synced", deployed.health
    out.history_id = deployed.history_id
    if not (pr is not None and pr.merged):
        out.seconds = time.monotonic() - started
    return out


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
