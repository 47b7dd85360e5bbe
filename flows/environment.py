"""The steps of one environment: propose (PR + checks), merge, confirm deployed.

Each step returns its own record (``promotion.records``). Every step is idempotent: a re-run of
the flow (a resume after a suspend, a retry) finds the PR it opened and the merge it made, and
never promotes an environment again that its own PR already merged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound

from flows.runtime import Runtime, recall, remember
from promotion.argocd import AUTOSYNC_DISABLED_ANNOTATION, Deployed
from promotion.config import Environment
from promotion.github import HeadMoved, MergeRefused, PullRequestInfo
from promotion.kustomize import read_image_tags, set_image_tags
from promotion.models import ImageChangeSet, Release
from promotion.names import environment_lock
from promotion.records import MergeRecord, Proposal, ReleaseCheck, digest_of
from tasks import argocd as argo_tasks
from tasks import github as gh_tasks
from tasks import registry as registry_tasks

LOCK_TIMEOUT = 3600.0


class PromotionStopped(RuntimeError):
    """The promotion ended early: rejected, refused, or a step failed. Nothing more merges."""


class ApprovalVoid(RuntimeError):
    """What an approval approved changed before the merge: the gate must ask again."""


_NO_LOCK = (
    "run `release-promotion deploy` (it creates one lock per environment of the promotion "
    "setup) and start again"
)


def require_locks(application: str, environments: Sequence[Environment]) -> None:
    """Refuse to start when an environment's lock is missing or lets two runs in at once.

    The locks are Prefect global concurrency limits that ``release-promotion deploy`` creates;
    without this check a setup with a new environment would fail only at its merge.
    """
    problems = []
    with get_client(sync_client=True) as client:
        locks = {}
        for env in environments:
            name = environment_lock(application, env.name)
            try:
                locks[env.name] = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                problems.append(f"{env.name}: the Prefect server has no lock {name}")
    for env_name, lock in locks.items():
        name = environment_lock(application, env_name)
        if lock.limit != 1 or not lock.active:
            problems.append(
                f"{env_name}: the lock {name} must be active with a limit of 1 (it is "
                f"{'active' if lock.active else 'inactive'}, limit {lock.limit})"
            )
    if problems:
        raise PromotionStopped(f"{'; '.join(problems)}: {_NO_LOCK}")


@contextmanager
def environment_lock_held(
    application: str, env: Environment, lease_seconds: float = 300.0
) -> Iterator[None]:
    """One promotion (or rollback) at a time writes to ``application``'s ``env``: a Prefect
    global limit per application and environment.

    ``lease_seconds`` (``Settings.lock_lease_seconds``): how long the lock outlives a holder
    that died without releasing it.
    """
    name = environment_lock(application, env.name)
    logger = get_run_logger()
    logger.info("Waiting for the %s lock", name)
    asked = time.monotonic()
    with ExitStack() as held:
        try:
            held.enter_context(
                concurrency(
                    name,
                    occupy=1,
                    strict=True,
                    timeout_seconds=LOCK_TIMEOUT,
                    lease_duration=lease_seconds,
                )
            )
        except ConcurrencySlotAcquisitionError as exc:
            raise PromotionStopped(
                f"{env.name}: cannot take the lock {name} ({exc}): {_NO_LOCK}"
            ) from exc
        # how long another promotion or rollback of this environment kept this one waiting
        logger.info("Took the %s lock after %.1fs", name, time.monotonic() - asked)
        yield


def environment_versions(
    rt: Runtime, env: Environment, ref: str | None = None, overlay: str | None = None
) -> set[str]:
    """The tags the environment's overlay sets for the release's images (on the base branch).

    ``overlay``: the overlay's text when the caller has read it already.
    """
    images = set(rt.config.images().values())
    text = overlay if overlay is not None else gh_tasks.read_file(rt.github(), env.overlay, ref)
    return {tag for image, tag in read_image_tags(text).items() if image in images}


def _proposal(rt: Runtime, env: Environment, pr: PullRequestInfo, started: float) -> Proposal:
    gh = rt.github()
    change = gh_tasks.pr_change(gh, pr.number, pr.head_sha)
    checks = None
    if not pr.merged:
        checks = gh_tasks.wait_for_checks(
            gh,
            pr.number,
            rt.config.github.required_checks,
            timeout=rt.settings.checks_timeout,
            poll_interval=rt.settings.poll_interval,
            head_sha=pr.head_sha,
            check_apps=rt.config.github.check_apps,
            protected=pr.base_checks,
        )
    return Proposal(env.name, pr, change.diff, change.digest, checks, time.monotonic() - started)


def _merge_key(env: Environment, release: Release) -> str:
    return f"merged-{digest_of([env.name, str(release)])[:16]}"


def _merged_earlier(rt: Runtime, env: Environment, release: Release, ours: PullRequestInfo) -> bool:
    """A merged PR of this release: the environment must still run it, else the run stops.

    Returns whether this run merged it (an earlier execution of it, remembered in the run),
    rather than another promotion of the same release before this run started.
    """
    mine = recall(_merge_key(env, release))
    by_us = mine is not None and mine.get("pr") == ours.number
    running = environment_versions(rt, env)
    if running != {str(release)}:
        who = "this run" if by_us else "an earlier promotion"
        raise PromotionStopped(
            f"{env.name} has moved on since {who} merged {release} there (PR "
            f"#{ours.number}); it now runs {', '.join(sorted(running))}. What was approved "
            "there no longer runs: start a new promotion"
        )
    return by_us


def propose(
    rt: Runtime, env: Environment, release: Release, *, allow_downgrade: bool, resumed: bool = True
) -> Proposal:
    """Open (or find) the PR that sets every image of ``release`` in ``env``, and its checks.

    A PR of this release that already merged is returned as it is, and never opened again: if
    the environment has moved on to another version since, the run stops, because what was
    approved there no longer runs. One that another promotion merged before this run is marked
    ``by_another_run``: there is nothing to merge or approve before a merge here.

    ``resumed``: an earlier execution of this run may have opened or merged the PR (False only
    on a run's first execution, which then looks for a merged PR only when there is nothing to
    promote: one GitHub call less per environment).
    """
    started = time.monotonic()
    gh = rt.github()
    pr: PullRequestInfo | None = None
    if resumed:
        pr = gh_tasks.find_promotion_pr(gh, env.name, str(release))
    if pr is None or not pr.merged:
        # Opening it checks, on the overlay it edits, that the environment only moves forward.
        pr = gh_tasks.ensure_promotion_pr(
            gh,
            env,
            str(release),
            rt.config.images(),
            allow_downgrade=allow_downgrade,
            fresh=not resumed,
        )
    if pr is None:
        raise PromotionStopped(
            f"{env.name} already runs {release}, but not through a promotion PR of this "
            "release: nothing to propose or approve there"
        )
    if pr.merged and not _merged_earlier(rt, env, release, pr):
        return replace(_proposal(rt, env, pr, started), by_another_run=True)
    return _proposal(rt, env, pr, started)


def autosync_off(rt: Runtime, env: Environment) -> str | None:
    """None when ``env``'s Argo CD application syncs automatically; else a phrase saying it is
    off (and when a rollback turned it off, from the mark our rollbacks leave)."""
    app = argo_tasks.get_app(rt.argocd(), env.argocd_app)
    if app.autosync_enabled:
        return None
    since = app.metadata.annotations.get(AUTOSYNC_DISABLED_ANNOTATION)
    return f"auto-sync of {env.argocd_app} is off" + (
        f" (turned off by a rollback at {since})" if since else ""
    )


def resume_autosync_hint(env: Environment) -> str:
    return (
        "Resume it once Git holds what should run: "
        f"`release-promotion resume-autosync {env.name}` (the resume-autosync flow)"
    )


def _refuse_autosync_off(rt: Runtime, env: Environment) -> None:
    off = autosync_off(rt, env)
    if off is not None:
        raise PromotionStopped(
            f"{env.name}: {off}, so a merge would not deploy. {resume_autosync_hint(env)}"
        )


def _check_images_unchanged(rt: Runtime, release: ReleaseCheck) -> None:
    now = registry_tasks.check_release(rt.registry(), rt.registry_repositories(), release.version)
    moved = release.moved(now)
    if moved:
        raise PromotionStopped(
            f"the tag {release.version} moved in the registry since it was checked (what was "
            f"tested and approved is not what would deploy): {'; '.join(moved)}"
        )


def _merge_result_is_approved(
    rt: Runtime, env: Environment, release: Release, proposal: Proposal, base: str
) -> None:
    """The base's overlay with our tags must be exactly the PR head's overlay, else rebuild."""
    gh = rt.github()
    head = proposal.pr.content.get(env.overlay)  # known when this execution opened the PR
    if head is None:
        head = gh_tasks.read_file(gh, env.overlay, proposal.pr.head_sha)
    if set_image_tags(base, read_image_tags(head)) != head:
        rebuilt = gh_tasks.open_promotion_pr(gh, env, str(release), rt.config.images())
        raise ApprovalVoid(
            f"{env.overlay} changed on {rt.config.github.base_branch} since PR "
            f"#{proposal.pr.number} was approved; the PR was rebuilt (head "
            f"{proposal.pr.head_sha[:12]} -> {rebuilt.head_sha[:12]}) and needs a new approval"
        )


def merge(
    rt: Runtime,
    env: Environment,
    release: Release,
    proposal: Proposal,
    checked: ReleaseCheck,
    *,
    allow_downgrade: bool,
) -> MergeRecord:
    """Merge exactly the proposed (and approved) head; the caller holds the environment lock.

    Before the merge, under the lock: the environment still only moves forward, its Argo CD
    application has auto-sync on, the release's images are the ones checked, and merging the
    PR produces exactly the overlay its diff shows (else the PR is rebuilt and ``ApprovalVoid``
    raised: the approval must be given again).
    """
    started = time.monotonic()
    pr = proposal.pr
    if pr.merged:
        if pr.merge_commit_sha is None:
            raise PromotionStopped(f"PR #{pr.number} is merged but GitHub gives no merge commit")
        return MergeRecord(env.name, pr.number, pr.merge_commit_sha, earlier=True)
    gh = rt.github()
    base = gh_tasks.read_file(gh, env.overlay)
    release.check_forward(
        sorted(environment_versions(rt, env, overlay=base)),
        env.name,
        allow_downgrade=allow_downgrade,
    )
    _refuse_autosync_off(rt, env)
    _check_images_unchanged(rt, checked)
    _merge_result_is_approved(rt, env, release, proposal, base)
    # Written before the merge, so that a crash right after it still knows the PR is ours.
    remember(_merge_key(env, release), {"pr": pr.number})
    try:
        merged = gh_tasks.merge(
            gh, pr.number, rt.config.github.merge_method, expected_head_sha=pr.head_sha
        )
    except (HeadMoved, MergeRefused) as exc:
        rebuilt = gh_tasks.open_promotion_pr(gh, env, str(release), rt.config.images())
        if rebuilt.head_sha == pr.head_sha:
            raise PromotionStopped(
                f"{env.name}: GitHub refused to merge PR #{pr.number}: {exc}"
            ) from exc
        raise ApprovalVoid(
            f"GitHub refused to merge PR #{pr.number} at {pr.head_sha[:12]} ({exc}); the PR "
            f"was rebuilt on the current base as {rebuilt.head_sha[:12]}"
        ) from exc
    return MergeRecord(env.name, pr.number, merged.sha, seconds=time.monotonic() - started)


def confirm(rt: Runtime, env: Environment, release: Release, merged: MergeRecord) -> Deployed:
    """Wait until Argo CD runs our merge (or a later commit containing it) with our images."""
    # Our change set these tags: a later commit that contains our merge but runs other tags
    # (a newer release, a revert) does not confirm ours.
    expected = {image: str(release) for image in rt.config.images().values()}
    return argo_tasks.confirm_deployed(
        rt.argocd(),
        env.argocd_app,
        merged.sha,
        timeout=rt.settings.deploy_timeout,
        poll_interval=rt.settings.poll_interval,
        repository=rt.github(),
        expected_images=expected,
    )


def close_open_prs(rt: Runtime, version: str, why: str, key: str) -> list[int]:
    """Close the open promotion PRs of ``version`` with one comment each (idempotent by ``key``).

    A stopped promotion leaves nothing half-done: a PR nobody will merge is closed, saying why.
    A re-run opens it again. Returns the numbers closed.
    """
    gh = rt.github()
    closed = []
    for env in rt.config.environments:
        pr = gh_tasks.find_promotion_pr(gh, env.name, version)
        if pr is None or pr.merged or pr.state != "open":
            continue
        gh_tasks.comment(
            gh,
            pr.number,
            f"Promotion of {version} stopped before this PR merged: {why}\n\n"
            "The PR is closed; a new promotion opens it again.",
            key=key,
        )
        gh_tasks.close(gh, pr.number)
        closed.append(pr.number)
    return closed


def changes_markdown(rt: Runtime, env: Environment, release: Release) -> str:
    """The table of what promoting ``release`` to ``env`` changes, from the base branch now."""
    now_running = read_image_tags(gh_tasks.read_file(rt.github(), env.overlay))
    return ImageChangeSet.build(
        env.name, str(release), rt.config.images(), now_running
    ).markdown_table()
