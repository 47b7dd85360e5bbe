"""promote-release: verify the release, then for each environment: propose -> approve -> merge
-> confirm -> approve, in the order and with the approvals that promotion.yaml gives.

Where things happen (one hop from here):
- the registry check and its digests: ``verify_release`` below;
- a PR is opened and its checks waited for: ``flows/environment.py:propose``;
- a person approves (QA after staging runs it, the PM before prod merges): ``approve`` below,
  ``flows/approval.py:request_approval``;
- the merge, under the environment's lock: ``flows/environment.py:merge``;
- Argo CD runs it: ``flows/environment.py:confirm``;
- automatic rollback: ``roll_back`` below, ``flows/rollback.py:run_rollback``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.approval import DEFAULT_APPROVAL_TIMEOUT, ApprovalForm, Verifier, request_approval
from flows.environment import (
    ApprovalVoid,
    PromotionStopped,
    autosync_off,
    changes_markdown,
    close_open_prs,
    confirm,
    environment_lock_held,
    environment_versions,
    merge,
    propose,
    require_locks,
    resume_autosync_hint,
)
from flows.holds import hold, read_holds
from flows.rollback import run_rollback
from flows.runtime import Runtime, load_runtime, notify, publish_report, remember, run_started
from promotion.argocd import Deployed, DeploymentDegraded, DeploymentStuckProgressing
from promotion.config import Approval, ConfigError, Environment, Evidence, When, valid_login
from promotion.freeze import check_freeze, describe_windows
from promotion.kustomize import set_image_tags
from promotion.models import DowngradeRefused, Release
from promotion.names import (
    EVENT_ENVIRONMENT_DEPLOYED,
    EVENT_PROMOTION_FAILED,
    EVENT_PROMOTION_REJECTED,
    EVENT_PROMOTION_ROLLED_BACK,
    PROMOTE_FLOW,
)
from promotion.records import Binding, Decision, MergeRecord, Proposal, ReleaseCheck, digest_of
from promotion.report import RollbackReport, RunReport
from promotion.soak import SoakStatus, healthy_since_history_id, soak_status
from tasks import argocd as argo_tasks
from tasks import github as gh_tasks
from tasks import registry as registry_tasks
from tasks.verify import verify_environment
from tasks.wait import wait_until

AutoRollback = Literal["off", "argocd", "revert"]
MAX_REBUILDS = 5


@dataclass
class Promotion:
    """One run's fixed inputs, validated once, and its report."""

    rt: Runtime
    release: Release
    initiator: str
    parameters_digest: str
    timeout: int
    auto_rollback: AutoRollback
    allow_downgrade: bool
    report: RunReport
    freeze_override_by: str | None = None
    freeze_override_reason: str | None = None
    # Set by verify_release: True when an earlier execution of this run (before a suspend, a
    # crash or a retry) got that far, so PRs of this run may exist already, merged or not.
    resumed: bool = True


@flow(name=PROMOTE_FLOW, log_prints=True, persist_result=True)
def promote_release(
    version: str,
    initiator: str,
    approval_timeout_seconds: int = DEFAULT_APPROVAL_TIMEOUT,
    auto_rollback: AutoRollback = "off",
    allow_downgrade: bool = False,
    allow_held: bool = False,
    freeze_override_by: str | None = None,
    freeze_override_reason: str | None = None,
    dry_run: bool = False,
    config_file: str | None = None,
    application: str | None = None,
) -> dict[str, object]:
    """Promote a release through every environment, with the approvals promotion.yaml names.

    Checks every image of the release in the registry, then for each environment in order:
    opens its PR and waits for the checks, asks the approvals due before the merge, merges
    under the environment's lock, waits until Argo CD runs it Healthy, and asks the approvals
    due after the deployment. Each approval binds what it approved (version, PR, head, diff).

    Args:
        version: the release tag to promote, for example `v1.0.1` (a valid OCI tag).
        initiator: your login. You may not approve your own release, nor be a listed approver.
        approval_timeout_seconds: how long each approval may wait (default 3 days). An expired
            approval ends the run and merges nothing more.
        auto_rollback: if an environment turns Degraded after the merge, roll back by `argocd`
            (Argo CD rollback) or `revert` (revert PR); `off` only reports it.
        allow_downgrade: allow moving an environment to an older (or non-semver) release.
        allow_held: allow promoting a version that is on hold after a rollback.
        freeze_override_by: merge through a freeze window in force: your login, listed in the
            environment's `freeze.override_by` (recorded in the summary).
        freeze_override_reason: why the freeze is overridden (required with the login).
        dry_run: only show, per environment, the PR it would open (the overlay diff), the
            gates, freeze windows and checks it would meet; change nothing.
        config_file: a promotion setup to use instead of the project's promotion.yaml.
        application: the application to promote, as named in promotion.yaml (may be left
            empty when it describes only one).
    """
    report = RunReport(
        title=f"Promotion of {version}", version=version, initiator=initiator, started=run_started()
    )
    try:
        run = start(
            report,
            version=version,
            initiator=initiator,
            timeout=approval_timeout_seconds,
            auto_rollback=auto_rollback,
            allow_downgrade=allow_downgrade,
            allow_held=allow_held,
            config_file=config_file,
            application=application,
        )
        run.freeze_override_by, run.freeze_override_reason = (
            freeze_override_by,
            freeze_override_reason,
        )
        if dry_run:
            return plan(run)
        require_locks(run.rt.application, run.rt.config.environments)
        checked = verify_release(run)
        previous: Environment | None = None
        for env in run.rt.config.environments:
            proposal = promote_into(run, env, checked, previous)
            for approval in env.approvals_at(When.AFTER_DEPLOY):
                approve(run, env, approval, proposal, checked)  # QA approves what runs there
            previous = env
        report.finish("succeeded")
        return {
            "application": run.rt.application,
            "version": version,
            "outcome": "succeeded",
            "environments": [e.env for e in report.environments],
        }
    except Exception as exc:
        if report.outcome == "running":
            report.finish("failed", str(exc))
        get_run_logger().error("Promotion of %s stopped: %s", version, exc)
        finish_stopped(report, config_file, application)
        if report.outcome == "failed":
            notify(EVENT_PROMOTION_FAILED, version=version, reason=report.reason)
        raise
    finally:
        publish_report(report, "promotion-summary")


def finish_stopped(report: RunReport, config_file: str | None, application: str | None) -> None:
    """Leave nothing half-done: close the run's open promotion PRs, saying why it stopped."""
    if report.version is None or not report.environments:
        return  # stopped before any PR was opened
    try:
        rt = load_runtime(config_file, application)
        key = f"stopped-{report.outcome}-{report.version}"
        why = f"{report.outcome}: {report.reason}"
        for number in close_open_prs(rt, report.version, why, key):
            report.notes.append(f"PR #{number} was closed: the promotion stopped before it merged")
    except Exception as exc:  # the run's own error is what matters; say what was not done
        report.notes.append(f"Could not close the open PRs of this run: {exc}")


def start(
    report: RunReport,
    *,
    version: str,
    initiator: str,
    timeout: int,
    auto_rollback: AutoRollback,
    allow_downgrade: bool,
    allow_held: bool,
    config_file: str | None,
    application: str | None = None,
) -> Promotion:
    """Validate the run's inputs once: the version, the initiator, holds, the setup."""
    release = Release(version)
    who = initiator.strip()
    if not valid_login(who):
        raise ConfigError(
            f"initiator {initiator!r} is not a valid GitHub login (letters, digits and single "
            "hyphens, at most 39 characters)"
        )
    rt = load_runtime(config_file, application)
    report.title = f"Promotion of {release} ({rt.application})"
    if who.lower() in rt.config.approvers():
        gates = [
            a.gate for _, a in rt.config.approvals() if who.lower() in map(str.lower, a.approvers)
        ]
        raise PromotionStopped(
            f"{who} started this release but is a listed approver of {', '.join(gates)}: a "
            "release must be started by someone who does not approve it"
        )
    report.initiator = who
    held = read_holds(rt.application).get(str(release))
    if held is not None and not allow_held:
        raise PromotionStopped(
            f"{release} is on hold: rolled back in {held.get('env')} at {held.get('at')} "
            f"({held.get('reason')}); start the run with allow_held on to promote it anyway"
        )
    if held is not None:
        report.notes.append(
            f"{release} is on hold ({held.get('reason')}); promoted with allow_held"
        )
    parameters = digest_of(
        {
            "version": str(release),
            "initiator": who,
            "allow_downgrade": allow_downgrade,
            "allow_held": allow_held,
            "config_file": config_file,
            "application": rt.application,
        }
    )
    return Promotion(rt, release, who, parameters, timeout, auto_rollback, allow_downgrade, report)


def plan(run: Promotion) -> dict[str, object]:
    """The dry run: what the promotion would do in each environment, read-only.

    Reads the registry, the overlays on the base branch and the Argo CD applications; writes
    nothing to Git, GitHub, Argo CD or the registry, takes no lock and asks no approval.
    """
    rt, release, report = run.rt, str(run.release), run.report
    report.title = f"Dry run: promotion of {release}"
    lines = [f"# Dry run: promotion of {release}", "", "Nothing was changed.", ""]
    try:
        digests = registry_tasks.check_release(rt.registry(), rt.registry_repositories(), release)
        lines.append(f"- Registry: all {len(digests)} images of {release} are there.")
    except Exception as exc:  # a dry run reports what a run would stop on
        lines.append(f"- Registry: **the run would stop here**: {exc}")
    checks = ", ".join(rt.config.github.required_checks) or "(none configured)"
    lines.append(f"- Checks each PR must pass: {checks}, and what GitHub requires on the base.")
    images = rt.config.images().values()
    previous: Environment | None = None
    for env in rt.config.environments:
        before = gh_tasks.read_file(rt.github(), env.overlay)
        after = set_image_tags(before, dict.fromkeys(images, release))
        diff = "".join(
            difflib.unified_diff(
                before.splitlines(keepends=True),
                after.splitlines(keepends=True),
                f"a/{env.overlay}",
                f"b/{env.overlay}",
            )
        )
        lines += ["", f"## {env.name} ({env.argocd_app})", ""]
        try:
            run.release.check_forward(
                sorted(environment_versions(rt, env, overlay=before)),
                env.name,
                allow_downgrade=run.allow_downgrade,
            )
        except DowngradeRefused as exc:
            lines.append(f"- **The run would stop here:** {exc}")
        app = argo_tasks.get_app(rt.argocd(), env.argocd_app)
        if not app.autosync_enabled:
            lines.append(
                f"- **The merge would be refused:** auto-sync of {env.argocd_app} is off "
                f"(`release-promotion resume-autosync {env.name}`)"
            )
        for approval in env.approvals:
            lines.append(
                f"- Gate **{approval.gate}** ({approval.when.value}): "
                f"{', '.join(approval.approvers)}; GitHub evidence: {approval.github_evidence.value}"
            )
        if not env.approvals_at(When.BEFORE_MERGE):
            lines.append("- Merged automatically once the checks pass.")
        if previous is not None and previous.soak_minutes > 0:
            lines.append(f"- Soak: {previous.soak_minutes:g} min Healthy in {previous.name} first.")
        verdict = check_freeze(env.freeze, datetime.now(UTC))
        lines.append(f"- Freeze: {verdict.describe()}.")
        for window in describe_windows(env.freeze, datetime.now(UTC)):
            lines.append(f"  - {window.line()}")
        if env.verify is not None:
            probes = ", ".join(p.url for p in env.verify.probes) or "no probes"
            smoke = f"; smoke test {env.verify.deployment}" if env.verify.deployment else ""
            lines.append(f"- Verification after deploy: {probes}{smoke}.")
        lines += ["", "The PR it would open:", "", f"```diff\n{diff or '(no change)'}```"]
        previous = env
    create_markdown_artifact(
        markdown="\n".join(lines) + "\n", key="promotion-dry-run", description=report.title
    )
    report.notes.append("Dry run: see the promotion-dry-run artifact; nothing was changed.")
    report.finish("dry run")
    return {"version": release, "outcome": "dry run", "plan": "\n".join(lines)}


def verify_release(run: Promotion) -> ReleaseCheck:
    """Every image of the release is in the registry; record each manifest digest."""
    rt = run.rt
    digests = registry_tasks.check_release(
        rt.registry(), rt.registry_repositories(), str(run.release)
    )
    checked = ReleaseCheck(str(run.release), digests)
    # What the first execution of this run saw is what QA tested: a resumed run compares.
    stored, stored_now = remember(
        f"release-digests-{digest_of(str(run.release))[:16]}", dict(digests)
    )
    run.resumed = not stored_now
    first = ReleaseCheck(str(run.release), stored)
    run.report.release = first
    moved = first.moved(digests)
    if moved:
        raise PromotionStopped(
            f"the tag {run.release} moved in the registry since this run checked it (what was "
            f"tested and approved is not what would deploy): {'; '.join(moved)}"
        )
    return checked


def promote_into(
    run: Promotion, env: Environment, checked: ReleaseCheck, previous: Environment | None
) -> Proposal:
    """Propose, approve before the merge, wait out soak and freeze, merge, confirm and verify;
    again if the PR had to be rebuilt."""
    record = run.report.environment(env.name, env.argocd_app)
    for _ in range(MAX_REBUILDS):
        proposal = propose(
            run.rt, env, run.release, allow_downgrade=run.allow_downgrade, resumed=run.resumed
        )
        record.proposal = proposal
        if not proposal.merged:
            create_markdown_artifact(
                markdown=f"# {env.name}: PR #{proposal.pr.number} for {run.release}\n\n"
                f"The PR's own diff at head `{proposal.pr.head_sha[:12]}`, as GitHub shows it "
                f"(sha256 `{proposal.diff_digest[:16]}`):\n\n```diff\n{proposal.diff}```\n",
                key=f"{env.name}-overlay-diff",
                description=f"Diff of PR #{proposal.pr.number} into {env.name}",
            )
        if proposal.by_another_run:
            record.notes.append(
                f"{env.name} already ran {run.release}: PR #{proposal.pr.number} was merged by "
                "an earlier promotion, not by this run; nothing to merge or approve before a "
                "merge here"
            )
        soak = soaked_in(run, previous) if not proposal.merged else None
        record.soak = soak.describe() if soak is not None else None
        for approval in env.approvals_at(When.BEFORE_MERGE):
            if not proposal.by_another_run:
                approve(run, env, approval, proposal, checked)  # the PM approves the PR
        if soak is not None and not soak.ready and soak.ready_at is not None:
            wait_until(soak.ready_at, f"soak in {soak.env}: {soak.describe()}")
        if not proposal.merged:
            outside_freeze(run, env)
        try:
            with environment_lock_held(
                run.rt.config.application, env, run.rt.settings.lock_lease_seconds
            ):
                merged = merge(
                    run.rt, env, run.release, proposal, checked, allow_downgrade=run.allow_downgrade
                )
                record.merge = merged
                record.deployed = confirm_or_roll_back(run, env, merged)
                verified_or_rolled_back(run, env, merged)
            notify(EVENT_ENVIRONMENT_DEPLOYED, version=str(run.release), env=env.name)
            return proposal
        except ApprovalVoid as exc:
            record.notes.append(str(exc))
            get_run_logger().warning("%s: %s; asking again", env.name, exc)
    raise PromotionStopped(f"{env.name}: the PR was rebuilt {MAX_REBUILDS} times; giving up")


def soaked_in(run: Promotion, previous: Environment | None) -> SoakStatus | None:
    """How long the release has run Healthy in the previous environment, when that one asks
    for a soak time; stops the run when it no longer runs there (rolled back past it)."""
    if previous is None or previous.soak_minutes <= 0:
        return None
    deployed = run.report.environment(previous.name).deployed
    app = argo_tasks.get_app(run.rt.argocd(), previous.argocd_app)
    since = (
        healthy_since_history_id(app.status.history, deployed.history_id)
        if deployed is not None and deployed.history_id is not None
        else None
    )
    soak = soak_status(
        previous.name, str(run.release), since, previous.soak_minutes, datetime.now(UTC)
    )
    if soak.ready_at is None:
        raise PromotionStopped(soak.describe())
    return soak


def outside_freeze(run: Promotion, env: Environment) -> None:
    """Merge only outside the environment's freeze windows: wait (without holding a process)
    until they end, stop, or go on with an authorized override, as promotion.yaml says."""
    verdict = check_freeze(
        env.freeze,
        datetime.now(UTC),
        override_by=run.freeze_override_by,
        override_reason=run.freeze_override_reason,
    )
    record = run.report.environment(env.name)
    if verdict.freeze is not None:
        record.freeze = verdict.describe()
    if verdict.action == "stop":
        raise PromotionStopped(f"{env.name}: {verdict.describe()}")
    if verdict.action == "wait" and verdict.until is not None:
        wait_until(verdict.until, f"{env.name}: {verdict.describe()}")


def verified_or_rolled_back(run: Promotion, env: Environment, merged: MergeRecord) -> None:
    """The checks after deploy (probes, a smoke-test deployment); a failure fails the
    environment and, with auto_rollback, rolls it back. The lock is held."""
    if env.verify is None:
        return
    result = verify_environment(env.verify, str(run.release), env.name)
    record = run.report.environment(env.name)
    record.verification = result
    if result.ok:
        return
    if run.auto_rollback == "off":
        run.report.finish("failed", f"{env.name}: {result.describe()}")
        raise PromotionStopped(run.report.reason)
    roll_back(run, env, merged, result.describe())
    raise PromotionStopped(run.report.reason)


def confirm_or_roll_back(run: Promotion, env: Environment, merged: MergeRecord) -> Deployed:
    """Confirm the deployment; if it turns Degraded (or stays Progressing), roll it back."""
    if merged.earlier:
        rolled_back_before(run, env, merged)
    try:
        return confirm(run.rt, env, run.release, merged)
    except (DeploymentDegraded, DeploymentStuckProgressing) as exc:
        stuck = isinstance(exc, DeploymentStuckProgressing)
        record = run.report.environment(env.name)
        record.health = "Progressing" if stuck else "Degraded"
        if run.auto_rollback == "off" or (
            stuck and not run.rt.settings.rollback_when_stuck_progressing
        ):
            run.report.finish("failed", f"{env.name} is {record.health} after the merge: {exc}")
            raise
        roll_back(run, env, merged, str(exc))
        raise PromotionStopped(run.report.reason) from exc


def rolled_back_before(run: Promotion, env: Environment, merged: MergeRecord) -> None:
    """Stop a run whose merge was made by an earlier execution when auto-sync is off since:
    Argo CD will not deploy that merge (waiting would last the whole deploy timeout).

    An earlier execution killed during its rollback (after Argo CD's rollback, before the run
    recorded it), or a person, rolled ``env`` back. With ``auto_rollback`` on, this run
    records the rollback and puts the release on hold, as if it had finished it itself.
    """
    off = autosync_off(run.rt, env)
    if off is None:
        return
    why = (
        f"{env.name}: {off} since PR #{merged.pr_number} was merged (before this execution), "
        "so that merge will not deploy: the environment was rolled back"
    )
    if run.auto_rollback != "off":
        hold(run.rt.application, str(run.release), env.name, why)
        run.report.finish("rolled back", why)
        notify(EVENT_PROMOTION_ROLLED_BACK, version=str(run.release), env=env.name, reason=why)
    raise PromotionStopped(f"{why}. {resume_autosync_hint(env)}")


def roll_back(run: Promotion, env: Environment, merged: MergeRecord, why: str) -> None:
    """Roll ``env`` back (the lock is held) and put the release on hold."""
    method = run.auto_rollback
    to = str(merged.pr_number) if method == "revert" else "previous"
    rolled = run_rollback(run.rt, env, method, to=to)
    run.report.rollbacks.append(
        RollbackReport(
            env.name,
            method,
            rolled.from_revision,
            rolled.to_revision,
            rolled.seconds,
            rolled.detail,
        )
    )
    hold(
        run.rt.application,
        str(run.release),
        env.name,
        f"{env.name} was unhealthy after the merge: {why}",
    )
    run.report.finish(
        "rolled back",
        f"{env.name} was unhealthy after the merge and was rolled back by {method}: {why}",
    )
    notify(
        EVENT_PROMOTION_ROLLED_BACK,
        version=str(run.release),
        env=env.name,
        reason=run.report.reason,
    )


def approve(
    run: Promotion,
    env: Environment,
    approval: Approval,
    proposal: Proposal,
    checked: ReleaseCheck,
) -> Decision:
    """Ask ``approval``'s gate for a decision bound to ``proposal``; stop on a rejection."""
    rt = run.rt
    binding = Binding(
        gate=approval.gate,
        version=str(run.release),
        environment=env.name,
        pr_number=proposal.pr.number,
        head_sha=proposal.pr.head_sha,
        diff_digest=proposal.diff_digest,
        images_digest=checked.digest,
        parameters_digest=run.parameters_digest,
    )
    decision = request_approval(
        binding,
        listed=approval.approvers,
        initiator=run.initiator,
        description=_description(run, env, approval, proposal),
        timeout_seconds=run.timeout,
        poll_interval=rt.settings.poll_interval,
        verify=_evidence(run, approval, proposal),
    )
    run.report.environment(env.name).decisions.append(decision)
    if not decision.approved:
        reason = (
            f"{approval.gate} ({decision.approver}) rejected {run.release} in {env.name}: "
            f"{decision.comment or 'no reason given'}"
        )
        gh = rt.github()
        key = f"rejected-{approval.gate}-{run.release}"
        gh_tasks.comment(gh, proposal.pr.number, f"Promotion rejected. {reason}", key=key)
        if not proposal.pr.merged:
            gh_tasks.close(gh, proposal.pr.number)
        run.report.finish("rejected", reason)
        notify(
            EVENT_PROMOTION_REJECTED,
            gate=approval.gate,
            version=str(run.release),
            env=env.name,
            reason=reason,
        )
        raise PromotionStopped(reason)
    return decision


def _description(run: Promotion, env: Environment, approval: Approval, proposal: Proposal) -> str:
    rt = run.rt
    argo = (rt.settings.argocd_ui_url or rt.settings.argocd_url).rstrip("/")
    links = (
        f"- Pull request: {proposal.pr.url}\n"
        f"- Argo CD application: [{env.argocd_app}]({argo}/applications/{env.argocd_app})"
    )
    record = run.report.environment(env.name)
    if approval.when is When.BEFORE_MERGE:
        head = (
            f"## {approval.gate.upper()} approval: merge {run.release} into {env.name}\n\n"
            f"Merging PR #{proposal.pr.number} deploys {run.release} to **{env.name}**. "
            f"Checks: {proposal.describe_checks()}."
        )
        if record.soak:
            head += f"\n\n**Soak:** {record.soak}."
    else:
        d = record.deployed
        head = (
            f"## {approval.gate.upper()} approval: {run.release} in {env.name}\n\n"
            f"{run.release} runs in **{env.name}**"
            + (f" (Argo CD: Synced, {d.health}, revision `{d.revision[:12]}`)" if d else "")
            + "."
        )
        order = [e.name for e in rt.config.environments]
        if env.name != order[-1]:
            following = rt.config.environment(order[order.index(env.name) + 1])
            head += (
                f"\n\nApproving lets {run.release} go on to **{following.name}**, which runs:\n\n"
                + changes_markdown(rt, following, run.release)
            )
    evidence = {
        Evidence.NONE: "",
        Evidence.REVIEW: (
            f"\n\nThis gate also needs your approving review of PR #{proposal.pr.number} on "
            f"GitHub at head `{proposal.pr.head_sha[:12]}`."
        ),
        Evidence.COMMENT: (
            f"\n\nThis gate also needs your comment `/approve {run.release}` on PR "
            f"#{proposal.pr.number} on GitHub."
        ),
    }[approval.github_evidence]
    diff = proposal.diff if len(proposal.diff) < 20000 else proposal.diff[:20000] + "\n(cut)\n"
    return (
        f"{head}{evidence}\n\n{links}\n\nThe PR's own diff, as GitHub shows it:\n\n"
        f"```diff\n{diff}```"
    )


def _evidence(run: Promotion, approval: Approval, proposal: Proposal) -> Verifier | None:
    """The GitHub act the setup requires beside the form, checked for the approver."""
    gh = run.rt.github()
    number, head = proposal.pr.number, proposal.pr.head_sha
    if approval.github_evidence is Evidence.REVIEW:

        def review(answer: ApprovalForm) -> tuple[str | None, str | None]:
            found = gh_tasks.find_approving_review(gh, number, [answer.approver], head)
            if found is None:
                return (
                    f"{answer.approver} has not approved PR #{number} on GitHub at head "
                    f"{head[:12]} (this gate needs an approving review by the same person)",
                    None,
                )
            return None, f"GitHub review by {found.login} at {head[:12]}"

        return review
    if approval.github_evidence is Evidence.COMMENT:
        wanted = f"/approve {run.release}"

        def comment(answer: ApprovalForm) -> tuple[str | None, str | None]:
            for c in gh_tasks.issue_comments(gh, number):
                first = (c.body.strip().splitlines() or [""])[0].strip()
                if c.login.lower() == answer.approver.lower() and first == wanted:
                    return None, f"GitHub comment by {c.login}: {c.url}"
            return (
                f"{answer.approver} has not commented `{wanted}` on PR #{number} on GitHub",
                None,
            )

        return comment
    return None
