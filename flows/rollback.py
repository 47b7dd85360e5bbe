"""rollback-release: undo a release in one environment, by Argo CD rollback or by a revert PR."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from prefect import flow, get_run_logger

from flows.environment import environment_lock_held, environment_versions
from flows.holds import hold
from flows.runtime import Runtime, load_runtime, publish_report, run_started
from promotion.config import Environment
from promotion.names import RESUME_AUTOSYNC_FLOW, ROLLBACK_FLOW
from promotion.report import RollbackReport, RunReport
from tasks import argocd as argo_tasks
from tasks import github as gh_tasks


@dataclass(frozen=True)
class RollbackOutcome:
    env: str
    method: str
    from_revision: str | None
    to_revision: str | None
    seconds: float
    detail: str


def run_rollback(
    rt: Runtime,
    env: Environment,
    method: str,
    to: str = "previous",
) -> RollbackOutcome:
    """Roll ``env`` back by ``method`` (``argocd`` or ``revert``) and confirm it is Healthy.

    The caller holds the environment's lock. ``to`` is ``previous`` (for ``revert``: the
    promotion PR merged last, by ``merged_at``) or a history id (``argocd``) / PR number
    (``revert``); a revert undoes exactly that PR's tag changes.
    """
    logger = get_run_logger()
    deploy_timeout = rt.settings.deploy_timeout
    started = time.monotonic()
    argo = rt.argocd()
    if method == "argocd":
        if to != "previous" and not to.isdigit():
            raise ValueError(f"an Argo CD rollback needs 'previous' or a history id, not {to!r}")
        rolled = argo_tasks.rollback(
            argo,
            env.argocd_app,
            int(to) if to.isdigit() else "previous",
            timeout=deploy_timeout,
            poll_interval=rt.settings.poll_interval,
        )
        detail = (
            f"Argo CD rollback to history id {rolled.history_id}; auto-sync is now OFF for "
            f"{env.argocd_app} (resume it once Git holds the version you want)"
        )
        for warning in rolled.warnings:
            detail += f". WARNING: {warning}"
        logger.warning(detail)
        return RollbackOutcome(
            env.name,
            method,
            rolled.from_revision,
            rolled.to_revision,
            time.monotonic() - started,
            detail,
        )
    if method == "revert":
        gh = rt.github()
        if to == "previous":
            merged = gh_tasks.latest_merged_promotion_pr(gh, env.name)
            if merged is None:
                raise ValueError(f"no merged promotion PR for {env.name} to revert")
            number = merged.number
        elif to.isdigit():
            number = int(to)
        else:
            raise ValueError(f"revert needs 'previous' or a PR number, not {to!r}")
        before = argo_tasks.get_revision(argo, env.argocd_app)
        pr = gh_tasks.open_revert_pr(gh, number)
        if not pr.merged:
            gh_tasks.wait_for_checks(
                gh,
                pr.number,
                rt.config.github.required_checks,
                poll_interval=rt.settings.poll_interval,
                head_sha=pr.head_sha,
                check_apps=rt.config.github.check_apps,
            )
            merge_sha: str | None = gh_tasks.merge(
                gh, pr.number, rt.config.github.merge_method, expected_head_sha=pr.head_sha
            ).sha
        else:
            merge_sha = pr.merge_commit_sha
        if merge_sha is None:
            raise RuntimeError(f"revert PR #{pr.number} is merged but GitHub gives no merge sha")
        deployed = argo_tasks.confirm_deployed(
            argo,
            env.argocd_app,
            merge_sha,
            timeout=deploy_timeout,
            poll_interval=rt.settings.poll_interval,
            repository=gh,
        )
        return RollbackOutcome(
            env.name,
            method,
            before,
            deployed.revision,
            time.monotonic() - started,
            f"revert PR #{pr.number} ({pr.url}) of PR #{number} merged as {merge_sha[:12]}",
        )
    raise ValueError(f"unknown rollback method {method!r}: use 'argocd' or 'revert'")


@flow(name=ROLLBACK_FLOW, log_prints=True, persist_result=True)
def rollback_release(
    env: str,
    method: Literal["argocd", "revert"] = "revert",
    to: str = "previous",
    config_file: str | None = None,
    application: str | None = None,
) -> dict[str, object]:
    """Roll a release back in one environment and confirm the environment is Healthy again.

    Args:
        env: the environment to roll back, as named in promotion.yaml (for example `prod`).
        method: `revert` opens a revert PR of the last promotion, waits for its checks, merges it
            and confirms the deployment (Git stays the truth); `argocd` turns the application's
            auto-sync off and uses Argo CD's own rollback (fast, but Git no longer matches what
            runs until someone reverts in Git and resumes auto-sync).
        to: `previous`, or for `argocd` an Argo CD history id, for `revert` a PR number.
        config_file: a promotion setup to use instead of the project's promotion.yaml.
        application: the application, as named in promotion.yaml (may be left empty when it
            describes only one).
    """
    report = RunReport(title=f"Rollback of {env} by {method}", started=run_started())
    try:
        rt = load_runtime(config_file, application)
        report.title = f"Rollback of {rt.application} {env} by {method}"
        environment = rt.config.environment(env)
        # never in the middle of a promotion's merge
        with environment_lock_held(
            rt.config.application, environment, rt.settings.lock_lease_seconds
        ):
            running = environment_versions(rt, environment)
            outcome = run_rollback(rt, environment, method, to)
        for version in sorted(running):
            hold(rt.application, version, env, f"rolled back by {method} ({outcome.detail})")
            report.notes.append(f"{version} is on hold: promoting it again needs allow_held")
        report.rollbacks.append(
            RollbackReport(
                env,
                method,
                outcome.from_revision,
                outcome.to_revision,
                outcome.seconds,
                outcome.detail,
            )
        )
        report.finish("rolled back", f"{env} rolled back by {method} in {outcome.seconds:.1f} s")
        return {
            "application": rt.application,
            "env": env,
            "method": method,
            "from": outcome.from_revision,
            "to": outcome.to_revision,
            "seconds": outcome.seconds,
        }
    except Exception as exc:
        if report.outcome == "running":
            report.finish("failed", str(exc))
        raise
    finally:
        publish_report(report, "rollback-summary")


@flow(name=RESUME_AUTOSYNC_FLOW, log_prints=True, persist_result=True)
def resume_autosync(
    env: str, config_file: str | None = None, application: str | None = None
) -> dict[str, object]:
    """Turn Argo CD auto-sync back on for an environment after an Argo CD rollback.

    Do this once Git holds what should run there (for instance after a revert): from then on
    Argo CD syncs the branch head again, and promotions into the environment may merge.

    Args:
        env: the environment, as named in promotion.yaml (for example `prod`).
        config_file: a promotion setup to use instead of the project's promotion.yaml.
        application: the application, as named in promotion.yaml (may be left empty when it
            describes only one).
    """
    rt = load_runtime(config_file, application)
    environment = rt.config.environment(env)
    with environment_lock_held(rt.config.application, environment, rt.settings.lock_lease_seconds):
        on = argo_tasks.resume_autosync(rt.argocd(), environment.argocd_app)
    get_run_logger().info("auto-sync of %s is %s", environment.argocd_app, "on" if on else "OFF")
    return {
        "application": rt.application,
        "env": env,
        "app": environment.argocd_app,
        "autosync": on,
    }
