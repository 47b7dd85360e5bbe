"""promote-release: registry -> staging -> QA -> prod PR + checks -> PM -> merge -> live in prod."""

from __future__ import annotations

import difflib
from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.concurrency.sync import concurrency

from flows.approval import (
    DEFAULT_APPROVAL_TIMEOUT,
    ApprovalForm,
    Decision,
    Verifier,
    request_approval,
)
from flows.environment import EnvironmentOutcome, run_environment
from flows.rollback import run_rollback
from flows.runtime import Runtime, load_runtime, publish_report, run_started
from promotion.argocd import DeploymentDegraded
from promotion.config import Environment, Gate
from promotion.kustomize import read_image_tags, set_image_tags
from promotion.models import ImageChangeSet, validate_version
from promotion.report import ApprovalReport, RollbackReport, RunReport, now
from tasks import github as gh_tasks
from tasks import registry as registry_tasks

PROD_LOCK = "prod-promotion"


class PromotionStopped(RuntimeError):
    """The promotion ended before prod: rejected, refused, or a step failed. Nothing more merges."""


def _record(report: RunReport, outcome: EnvironmentOutcome, app: str) -> None:
    outcome.record_into(report.environment(outcome.env), app)


def _record_decision(report: RunReport, decision: Decision, review: str | None = None) -> None:
    report.approvals.append(
        ApprovalReport(
            decision.gate,
            decision.approved,
            decision.approver,
            decision.comment,
            at=decision.at or now(),
            github_review=review,
        )
    )


def _links(rt: Runtime, env: Environment, pr_url: str | None) -> str:
    argo = (rt.settings.argocd_ui_url or rt.settings.argocd_url).rstrip("/")
    lines = [f"- Argo CD application: [{env.argocd_app}]({argo}/applications/{env.argocd_app})"]
    if pr_url:
        lines.insert(0, f"- Pull request: {pr_url}")
    return "\n".join(lines)


def _prod_diff(rt: Runtime, env: Environment, version: str) -> str:
    gh = rt.github()
    before = gh_tasks.read_file(gh, env.overlay)
    images = rt.config.images()
    current = read_image_tags(before)
    after = set_image_tags(
        before, {i: version for i in images.values() if current.get(i) != version}
    )
    diff = "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            f"a/{env.overlay}",
            f"b/{env.overlay}",
        )
    )
    return diff or "(no change)"


@flow(name="promote-release", log_prints=True, persist_result=True)
def promote_release(
    version: str,
    initiator: str,
    approval_timeout_seconds: int = DEFAULT_APPROVAL_TIMEOUT,
    auto_rollback: Literal["off", "argocd", "revert"] = "off",
    config_file: str | None = None,
) -> dict[str, object]:
    """Promote a release through every environment, with the QA and PM approvals.

    Checks that every image of the release is in the registry, promotes staging (PR, checks,
    automatic merge, confirmed deployed by Argo CD), waits for QA's approval, opens the prod PR
    and waits for its checks, shows the prod overlay diff, waits for the PM's approval, then merges
    and waits until Argo CD runs it Healthy in prod. One prod promotion runs at a time.

    Args:
        version: the release tag to promote, for example `v1.0.1` (a valid OCI tag).
        initiator: your login. You may not approve your own release at either gate.
        approval_timeout_seconds: how long each approval may wait (default 3 days). An expired
            approval ends the run and merges nothing more.
        auto_rollback: if prod turns Degraded after the merge, roll back by `argocd` (Argo CD
            rollback) or `revert` (revert PR); `off` only reports it. The run then ends Failed.
        config_file: a promotion setup to use instead of the project's promotion.yaml.
    """
    logger = get_run_logger()
    validate_version(version)
    report = RunReport(
        title=f"Promotion of {version}", version=version, initiator=initiator, started=run_started()
    )
    try:
        rt = load_runtime(config_file)
        cfg = rt.config
        images = cfg.images()
        registry_tasks.check_release(rt.registry(), rt.registry_repositories(), version)
        report.notes.append(f"All {len(images)} images of {version} are in the registry.")
        done: list[str] = []
        qa: Decision | None = None
        for env in cfg.environments:
            cfg.order.require_after(env.name, done)
            if env.gate is Gate.AUTO:
                outcome = run_environment(rt, env, version, merge=True)
                _record(report, outcome, env.argocd_app)
                done.append(env.name)
                if qa is None:
                    qa = _qa_gate(
                        rt, env, version, initiator, outcome, approval_timeout_seconds, report
                    )
                continue
            if qa is None:
                raise PromotionStopped(
                    f"{env.name} needs a QA approval of a prior environment first"
                )
            _promote_gated(
                rt, env, version, initiator, approval_timeout_seconds, auto_rollback, report
            )
            done.append(env.name)
        report.finish("succeeded")
        return {"version": version, "outcome": "succeeded", "environments": done}
    except Exception as exc:
        if report.outcome == "running":
            report.finish("failed", str(exc))
        logger.error("Promotion of %s stopped: %s", version, exc)
        raise
    finally:
        publish_report(report, "promotion-summary")


def _qa_gate(
    rt: Runtime,
    env: Environment,
    version: str,
    initiator: str,
    outcome: EnvironmentOutcome,
    timeout: int,
    report: RunReport,
) -> Decision:
    order = rt.config.order.names
    following = (
        rt.config.environment(order[order.index(env.name) + 1]) if env.name != order[-1] else None
    )
    table = ""
    if following is not None:
        now_running = read_image_tags(gh_tasks.read_file(rt.github(), following.overlay))
        changes = ImageChangeSet.build(following.name, version, rt.config.images(), now_running)
        table = f"Approving lets {version} go on to **{following.name}**, which runs:\n\n"
        table += changes.markdown_table()
    description = (
        f"## QA approval: {version} in {env.name}\n\n"
        f"{version} runs in **{env.name}** (Argo CD: {outcome.sync}, {outcome.health}, "
        f"revision `{(outcome.deployed_revision or '-')[:12]}`).\n\n"
        f"{_links(rt, env, outcome.pr_url)}\n\n{table}"
    )
    decision = request_approval(
        "qa",
        listed=rt.config.approvers.qa,
        initiator=initiator,
        description=description,
        timeout_seconds=timeout,
        poll_interval=rt.settings.poll_interval,
    )
    _record_decision(report, decision)
    if not decision.approved:
        report.finish(
            "rejected",
            f"QA ({decision.approver}) rejected {version}: {decision.comment or 'no reason given'}",
        )
        raise PromotionStopped(report.reason)
    return decision


def _github_review_check(rt: Runtime, pr_number: int) -> Verifier:
    """The PM's approval must also be an approving review of the PR on GitHub, by the same PM."""

    def verify(answer: ApprovalForm) -> tuple[str | None, str | None]:
        review = gh_tasks.find_approving_review(rt.github(), pr_number, [answer.approver])
        if review is None:
            return (
                f"{answer.approver} has not approved PR #{pr_number} on GitHub (the PM gate "
                "needs an approving review on the PR's current head by the same person)",
                None,
            )
        return None, f"{review.login} approved PR #{pr_number} on GitHub"

    return verify


def _promote_gated(
    rt: Runtime,
    env: Environment,
    version: str,
    initiator: str,
    timeout: int,
    auto_rollback: str,
    report: RunReport,
) -> None:
    gh = rt.github()
    proposal = run_environment(rt, env, version, merge=False)
    _record(report, proposal, env.argocd_app)
    if proposal.merged:  # a re-run after the merge: nothing left to approve
        return
    diff = _prod_diff(rt, env, version)
    create_markdown_artifact(
        markdown=f"# {env.name} overlay change for {version}\n\n```diff\n{diff}```\n",
        key=f"{env.name}-overlay-diff",
        description=f"Diff of the {env.name} overlay proposed in PR #{proposal.pr_number}",
    )
    description = (
        f"## PM approval: {version} to {env.name}\n\n"
        f"QA approved {version}. Merging PR #{proposal.pr_number} deploys it to **{env.name}**. "
        f"Checks: {proposal.checks}.\n\n{_links(rt, env, proposal.pr_url)}\n\n```diff\n{diff}```"
    )
    verify = None
    if rt.config.approvers.pm_requires_github_review and proposal.pr_number is not None:
        verify = _github_review_check(rt, proposal.pr_number)
    decision = request_approval(
        "pm",
        verify=verify,
        listed=rt.config.approvers.pm,
        initiator=initiator,
        description=description,
        timeout_seconds=timeout,
        poll_interval=rt.settings.poll_interval,
    )
    _record_decision(report, decision, decision.evidence)
    if not decision.approved:
        reason = (
            f"PM ({decision.approver}) rejected {version}: {decision.comment or 'no reason given'}"
        )
        assert proposal.pr_number is not None
        gh_tasks.comment(gh, proposal.pr_number, f"Promotion rejected at the PM gate. {reason}")
        gh_tasks.close(gh, proposal.pr_number)
        report.finish("rejected", reason)
        raise PromotionStopped(reason)
    outcome = EnvironmentOutcome(env.name, version, checks=proposal.checks)
    with concurrency(PROD_LOCK, occupy=1, strict=True, timeout_seconds=3600):
        try:
            run_environment(
                rt,
                env,
                version,
                merge=True,
                approved_by=decision.approver,
                outcome=outcome,
                checked_pr=proposal.pr,
            )
        except DeploymentDegraded as exc:
            _record(report, outcome, env.argocd_app)
            report.environment(env.name).health = "Degraded"
            if auto_rollback == "off":
                report.finish("failed", f"{env.name} is Degraded after the merge: {exc}")
                raise
            report.notes.append(f"{env.name} turned Degraded after the merge: {exc}")
            rolled = run_rollback(rt, env, auto_rollback, to="previous")
            report.rollbacks.append(
                RollbackReport(
                    env.name,
                    auto_rollback,
                    rolled.from_revision,
                    rolled.to_revision,
                    rolled.seconds,
                    rolled.detail,
                )
            )
            report.finish(
                "rolled back",
                f"{env.name} was Degraded after the merge and was rolled back by "
                f"{auto_rollback}: {exc}",
            )
            raise PromotionStopped(report.reason) from exc
    if outcome.head_sha != proposal.head_sha:
        outcome.notes.append(
            f"PR #{outcome.pr_number} was rebuilt on the current {rt.config.github.base_branch} "
            f"after the approval (approved head {str(proposal.head_sha)[:12]}, merged head "
            f"{str(outcome.head_sha)[:12]}, same new tags); its checks ran again"
        )
    _record(report, outcome, env.argocd_app)
