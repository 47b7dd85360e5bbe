"""Prefect tasks over the GitHub client: build the client from plain values, call, log.

Each task takes a ``GitHubTarget`` (a plain, serializable value: API URL, repository, base
branch, and the token as a ``SecretStr`` or the name of a Prefect Secret block) rather than a
live client, builds a ``promotion.github.GitHubClient``, makes one call and closes it. Retries
happen here and only here, with backoff and jitter, for failures ``promotion.github.is_transient``
accepts (5xx, 429, secondary rate limits honouring Retry-After, connection errors); logic errors
(checks failed, merge refused, nothing to promote) fail the task at once. Every task writes or
polls, so none is cached.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel, ConfigDict, SecretStr

from promotion.config import Environment, PromotionConfig, Settings
from promotion.github import (
    MAX_RATE_LIMIT_WAIT,
    SECONDARY_RATE_LIMIT_WAIT,
    ChecksSummary,
    CommentInfo,
    GitHubClient,
    GitHubError,
    IssueComment,
    MergeResult,
    NothingToPromote,
    PullChange,
    PullRequestInfo,
    ReviewInfo,
    is_transient,
    promotion_branch,
)
from tasks.retry import transient_retries
from tasks.secrets import read_secret_block

DEFAULT_TOKEN_BLOCK: str = Settings.SECRET_BLOCKS["github_token"]

__all__ = [
    "GitHubConnection",
    "GitHubTarget",
    "branch_head",
    "close",
    "comment",
    "find_approving_review",
    "find_pr",
    "find_promotion_pr",
    "get_pr",
    "latest_merged_promotion_pr",
    "merge",
    "open_promotion_pr",
    "open_revert_pr",
    "read_file",
    "wait_for_approving_review",
    "wait_for_checks",
]


class GitHubTarget(BaseModel):
    """Where the GitOps repository is and how to authenticate (safe to pass to tasks).

    Give ``token`` (kept as a ``SecretStr``: it prints as ``**********``) or the name of a
    Prefect Secret block in ``token_block``. ``secondary_rate_limit_wait`` (GitHub asks for at
    least 60 s after a secondary rate limit without Retry-After) and ``max_rate_limit_wait`` (the
    longest wait for a primary rate limit's reset) keep GitHub's defaults unless lowered.
    """

    model_config = ConfigDict(frozen=True)

    base_url: str
    repository: str
    base_branch: str = "main"
    token: SecretStr | None = None
    token_block: str | None = None
    timeout: float = 15.0
    secondary_rate_limit_wait: float = SECONDARY_RATE_LIMIT_WAIT
    max_rate_limit_wait: float = MAX_RATE_LIMIT_WAIT

    @classmethod
    def from_settings(cls, settings: Settings, config: PromotionConfig) -> GitHubTarget:
        """Build from the endpoint settings and the promotion setup.

        Without a token in the settings, the default Secret block is named instead.
        """
        return cls(
            base_url=settings.github_url,
            repository=config.github.repository,
            base_branch=config.github.base_branch,
            token=settings.github_token,
            token_block=None if settings.github_token is not None else DEFAULT_TOKEN_BLOCK,
        )

    @classmethod
    def from_runtime(cls, settings: Settings, config: PromotionConfig) -> GitHubTarget:
        """Alias of ``from_settings`` (the flows' runtime holds both)."""
        return cls.from_settings(settings, config)

    def resolve_token(self) -> SecretStr:
        if self.token is not None:
            return self.token
        if self.token_block is None:
            raise GitHubError(f"[{self.repository}] no GitHub token and no Secret block given")
        return read_secret_block(self.token_block, f"GitHub token for {self.repository}")

    def client(self) -> GitHubClient:
        return GitHubClient(
            self.base_url,
            self.resolve_token(),
            self.repository,
            base_branch=self.base_branch,
            timeout=self.timeout,
            secondary_rate_limit_wait=self.secondary_rate_limit_wait,
            max_rate_limit_wait=self.max_rate_limit_wait,
        )


GitHubConnection = GitHubTarget


@contextmanager
def _client(connection: GitHubTarget) -> Iterator[GitHubClient]:
    client = connection.client()
    try:
        yield client
    finally:
        client.close_session()


_RETRYING = transient_retries(is_transient)


def _log_pr(pr: PullRequestInfo, version: str, env: str) -> None:
    get_run_logger().info(
        "%s pull request #%s for %s -> %s (head %s): %s",
        "Opened" if pr.created else "Reusing",
        pr.number,
        version,
        env,
        pr.head_sha[:12],
        pr.url,
    )


@task(name="open-promotion-pr", **_RETRYING)
def open_promotion_pr(
    connection: GitHubTarget,
    env: Environment,
    version: str,
    images: Mapping[str, str],
    labels: Sequence[str] = (),
) -> PullRequestInfo:
    """Open, find or correct the pull request promoting a release to one environment.

    Args:
        connection: The GitOps repository and its credentials.
        env: The target environment (its overlay gets the new tags).
        version: The release version (an OCI tag such as ``v1.0.1``).
        images: Service name -> image name as the overlay lists it.
        labels: Labels to put on a newly opened pull request.

    Returns:
        The pull request; ``created`` is False when an existing one was reused.
    """
    with _client(connection) as client:
        pr = client.open_promotion_pr(env, version, images, labels=labels)
    _log_pr(pr, version, env.name)
    return pr


@task(name="ensure-promotion-pr", **_RETRYING)
def ensure_promotion_pr(
    connection: GitHubTarget,
    env: Environment,
    version: str,
    images: Mapping[str, str],
    allow_downgrade: bool = True,
    fresh: bool = False,
) -> PullRequestInfo | None:
    """Open (or find) the promotion pull request; find it too when it has already merged.

    For a re-run: when the overlay already holds ``version``, returns this release's
    promotion PR if it merged (an earlier attempt of the run), or None when the environment
    got there without one. The task does not fail for that, so the run shows no red step.

    Args:
        connection: The GitOps repository and its credentials.
        env: The target environment.
        version: The release version.
        images: Service name -> image name as the overlay lists it.
        allow_downgrade: False refuses (``DowngradeRefused``) when the overlay it edits runs
            a newer or a non-semver release.
        fresh: The branch most likely does not exist yet (a run's first execution).

    Returns:
        The pull request, or None when there is nothing to promote and no PR of this release.
    """
    logger = get_run_logger()
    with _client(connection) as client:
        try:
            pr = client.open_promotion_pr(
                env, version, images, allow_downgrade=allow_downgrade, fresh=fresh
            )
        except NothingToPromote as exc:
            found = client.find_pr(promotion_branch(env.name, version), state="all")
            merged = found if found is not None and found.merged else None
            logger.info(
                "%s; %s",
                exc,
                f"merged as PR #{merged.number}" if merged else "no merged PR of ours",
            )
            return merged
    _log_pr(pr, version, env.name)
    return pr


@task(name="wait-for-checks", **_RETRYING)
def wait_for_checks(
    connection: GitHubTarget,
    pr_number: int,
    required: Sequence[str],
    timeout: float = 600,
    poll_interval: float = 2.0,
    head_sha: str | None = None,
    check_apps: Mapping[str, int] | None = None,
    protected: Mapping[str, int | None] | None = None,
) -> ChecksSummary:
    """Wait until every required check on the pull request's head has passed.

    The checks are the union of ``required``, ``check_apps``' names and what GitHub requires
    on the base branch (branch protection and rulesets); an empty union fails at once.

    Args:
        connection: The GitOps repository and its credentials.
        pr_number: The pull request.
        required: Names of the required check runs or commit status contexts.
        timeout: Seconds to wait before failing with ``ChecksTimedOut``.
        poll_interval: Seconds between (conditional) polls.
        head_sha: The head commit, when known, to save one request.
        check_apps: Check name -> id of the GitHub App that must post it (a commit status or
            another app's run does not count).
        protected: The checks the base's protection requires, when read already (the PR's
            ``base_checks``), to save one request.

    Returns:
        The passed checks with their conclusions and links.
    """
    logger = get_run_logger()
    logger.info(
        "Waiting for %s (and what GitHub requires) on pull request #%s",
        ", ".join(required) or "no configured checks",
        pr_number,
    )
    with _client(connection) as client:
        summary = client.wait_for_checks(
            pr_number,
            required,
            timeout=timeout,
            poll_interval=poll_interval,
            head_sha=head_sha,
            check_apps=check_apps,
            protected=protected,
        )
    logger.info(
        "Checks passed on #%s (%s): %s",
        pr_number,
        summary.head_sha[:12],
        summary.describe(),
    )
    return summary


@task(name="find-approving-review", **_RETRYING)
def find_approving_review(
    connection: GitHubTarget,
    pr_number: int,
    allowed_logins: Sequence[str],
    head_sha: str | None = None,
) -> ReviewInfo | None:
    """Find the latest approving review by an allowed login on the pull request's head.

    Args:
        connection: The GitOps repository and its credentials.
        pr_number: The pull request.
        allowed_logins: GitHub logins whose approval counts.
        head_sha: The head that must be approved (and still be the PR's head); default the
            current head.

    Returns:
        The approving review, or None.
    """
    with _client(connection) as client:
        review = client.find_approving_review(pr_number, allowed_logins, head_sha)
    get_run_logger().info(
        "Pull request #%s: %s",
        pr_number,
        f"approved by {review.login}" if review else "no approving review yet",
    )
    return review


@task(name="wait-for-approving-review", **_RETRYING)
def wait_for_approving_review(
    connection: GitHubTarget,
    pr_number: int,
    allowed_logins: Sequence[str],
    timeout: float = 3600,
    poll_interval: float = 10.0,
) -> ReviewInfo:
    """Wait for an approving review by an allowed login on the pull request's head.

    Args:
        connection: The GitOps repository and its credentials.
        pr_number: The pull request.
        allowed_logins: GitHub logins whose approval counts.
        timeout: Seconds to wait before failing with ``ReviewTimedOut``.
        poll_interval: Seconds between (conditional) polls.

    Returns:
        The approving review.
    """
    logger = get_run_logger()
    logger.info("Waiting for a review by %s on #%s", ", ".join(allowed_logins), pr_number)
    with _client(connection) as client:
        review = client.wait_for_approving_review(
            pr_number, allowed_logins, timeout=timeout, poll_interval=poll_interval
        )
    logger.info("Pull request #%s approved by %s", pr_number, review.login)
    return review


@task(name="merge-pr", **_RETRYING)
def merge(
    connection: GitHubTarget,
    pr_number: int,
    method: str = "squash",
    expected_head_sha: str | None = None,
) -> MergeResult:
    """Merge the pull request (an already merged one returns its merge commit).

    Args:
        connection: The GitOps repository and its credentials.
        pr_number: The pull request.
        method: ``merge``, ``squash`` or ``rebase``.
        expected_head_sha: Refuse (``HeadMoved``) if the head is no longer this commit.

    Returns:
        The merge commit sha.
    """
    with _client(connection) as client:
        result = client.merge(pr_number, method=method, expected_head_sha=expected_head_sha)
    get_run_logger().info(
        "Pull request #%s %s as %s",
        pr_number,
        "was already merged" if result.already_merged else f"merged ({method})",
        result.sha[:12],
    )
    return result


@task(name="comment-on-pr", **_RETRYING)
def comment(
    connection: GitHubTarget, pr_number: int, text: str, key: str | None = None
) -> CommentInfo:
    """Comment on a pull request.

    Args:
        connection: The GitOps repository and its credentials.
        pr_number: The pull request.
        text: Markdown text.
        key: With a key, a re-run edits the earlier comment instead of adding one.

    Returns:
        The comment.
    """
    with _client(connection) as client:
        info = client.comment(pr_number, text, key=key)
    get_run_logger().info("Commented on #%s: %s", pr_number, info.url)
    return info


@task(name="read-pr-change", **_RETRYING)
def pr_change(connection: GitHubTarget, pr_number: int, head_sha: str | None = None) -> PullChange:
    """Read a pull request's own diff from GitHub (its files' patches) and its digest.

    Args:
        connection: The GitOps repository and its credentials.
        pr_number: The pull request.
        head_sha: The head the caller knows (saves reading the pull request).

    Returns:
        The diff text, its sha256 and the head it belongs to.
    """
    with _client(connection) as client:
        return client.pr_change(pr_number, head_sha)


@task(name="list-pr-comments", **_RETRYING)
def issue_comments(connection: GitHubTarget, pr_number: int) -> list[IssueComment]:
    """List the comments of a pull request's conversation, oldest first.

    Args:
        connection: The GitOps repository and its credentials.
        pr_number: The pull request.

    Returns:
        The comments, each with its author's login.
    """
    with _client(connection) as client:
        return client.issue_comments(pr_number)


@task(name="close-pr", **_RETRYING)
def close(connection: GitHubTarget, pr_number: int) -> PullRequestInfo:
    """Close a pull request without merging it (no-op when closed already).

    Args:
        connection: The GitOps repository and its credentials.
        pr_number: The pull request.

    Returns:
        The pull request.
    """
    with _client(connection) as client:
        info = client.close(pr_number)
    get_run_logger().info("Closed pull request #%s", pr_number)
    return info


@task(name="get-pr", **_RETRYING)
def get_pr(connection: GitHubTarget, pr_number: int) -> PullRequestInfo:
    """Read a pull request.

    Args:
        connection: The GitOps repository and its credentials.
        pr_number: The pull request.

    Returns:
        The pull request.
    """
    with _client(connection) as client:
        return client.get_pr(pr_number)


@task(name="find-pr", **_RETRYING)
def find_pr(connection: GitHubTarget, branch: str) -> PullRequestInfo | None:
    """Find the open pull request whose head is ``branch``.

    Args:
        connection: The GitOps repository and its credentials.
        branch: The head branch, for example ``promote/prod/v1.0.1``.

    Returns:
        The pull request, or None.
    """
    with _client(connection) as client:
        return client.find_pr(branch)


@task(name="read-file", **_RETRYING)
def read_file(connection: GitHubTarget, path: str, ref: str | None = None) -> str:
    """Read a file of the GitOps repository.

    Args:
        connection: The GitOps repository and its credentials.
        path: Path inside the repository.
        ref: A branch, tag or commit sha (default: the base branch).

    Returns:
        The file's text (the client's ``read_file`` also gives the blob sha).
    """
    with _client(connection) as client:
        return client.read_file(path, ref)[0]


@task(name="find-promotion-pr", **_RETRYING)
def find_promotion_pr(connection: GitHubTarget, env: str, version: str) -> PullRequestInfo | None:
    """Find the promotion pull request of a release for an environment, in any state.

    Args:
        connection: The GitOps repository and its credentials.
        env: The environment name.
        version: The release version.

    Returns:
        The open one, else the latest merged, else the latest closed; None when there is none.
    """
    with _client(connection) as client:
        return client.find_pr(promotion_branch(env, version), state="all")


@task(name="latest-merged-promotion-pr", **_RETRYING)
def latest_merged_promotion_pr(connection: GitHubTarget, env: str) -> PullRequestInfo | None:
    """Find the most recently merged promotion pull request of an environment.

    Args:
        connection: The GitOps repository and its credentials.
        env: The environment name.

    Returns:
        The pull request, or None.
    """
    with _client(connection) as client:
        return client.latest_merged_pr(f"promote/{env}/")


@task(name="base-branch-head", **_RETRYING)
def branch_head(connection: GitHubTarget) -> str:
    """Read the commit the base branch points at.

    Args:
        connection: The GitOps repository and its credentials.

    Returns:
        The commit sha.
    """
    with _client(connection) as client:
        return client.base_head_sha()


@task(name="open-revert-pr", **_RETRYING)
def open_revert_pr(connection: GitHubTarget, merged_pr_number: int) -> PullRequestInfo:
    """Open (or find) the pull request that reverts a merged pull request.

    Args:
        connection: The GitOps repository and its credentials.
        merged_pr_number: The merged pull request to revert.

    Returns:
        The revert pull request; ``created`` is False when an existing one was reused.
    """
    with _client(connection) as client:
        pr = client.open_revert_pr(merged_pr_number)
    get_run_logger().info(
        "%s revert pull request #%s for #%s: %s",
        "Opened" if pr.created else "Reusing",
        pr.number,
        merged_pr_number,
        pr.url,
    )
    return pr
