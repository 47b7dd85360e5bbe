"""The GitHub client: promotion and revert pull requests on the GitOps repository, over PyGithub.

Every write is idempotent so that a task retried after a transient failure, or a flow re-run
from the top after a suspend, converges on the same branch, the same single commit and the same
pull request. Branch names are deterministic (``promote/<env>/<version>``,
``revert/<branch>``); an existing branch is reused when its head commit already holds the wanted
tree on the current base head and is otherwise force-updated to one fresh commit. PyGithub's own
throttling and retries are switched off: retries live in the Prefect task layer only, driven by
``is_transient``. Polls use conditional requests (``If-None-Match``) so unchanged answers are
304s, which do not count against the rate limit. The token never reaches a message: PyGithub
masks it in its debug log and every error message built here is redacted.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar
from urllib.parse import quote

import requests
from github import Auth, Github, GithubException
from github.GitCommit import GitCommit
from github.GitRef import GitRef
from github.GitTree import GitTree
from github.InputGitTreeElement import InputGitTreeElement
from github.PullRequest import PullRequest
from github.Requester import Requester
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from promotion.kustomize import KustomizationError, read_image_tags, set_image_tags
from promotion.models import ImageChangeSet, Release, validate_version

if TYPE_CHECKING:
    from github.Repository import Repository

    from promotion.config import Environment, PromotionConfig, Settings

MARKER_PREFIX = "release-promotion"
PASSING_CONCLUSIONS = frozenset({"success", "neutral", "skipped"})
# GitHub: after a secondary rate limit without Retry-After, "wait for at least one minute".
SECONDARY_RATE_LIMIT_WAIT = 60.0
# The longest a primary rate limit may be waited out before the call fails for good.
MAX_RATE_LIMIT_WAIT = 900.0


# --------------------------------------------------------------------------- errors


def _rebuild(cls: type[GitHubError], message: str, state: dict[str, Any]) -> GitHubError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class GitHubError(Exception):
    """Base of the GitHub client's errors; carries the repository, PR number and branch."""

    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        repository: str | None = None,
        pr_number: int | None = None,
        branch: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.repository = repository
        self.pr_number = pr_number
        self.branch = branch
        self.status = status
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor arguments do not survive the default pickling of exceptions;
        # Prefect persists task failures, so keep them picklable.
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))


_E = TypeVar("_E", bound=GitHubError)


class GitHubUnavailable(GitHubError):
    """A transient failure: 5xx, a connection error or a timeout. Retrying may succeed."""

    transient = True


class GitHubRateLimited(GitHubUnavailable):
    """A rate limit (403 or 429) to wait out; ``retry_after`` holds the seconds to wait.

    Primary (``x-ratelimit-remaining: 0``): until ``x-ratelimit-reset``; secondary: its
    Retry-After, else at least ``SECONDARY_RATE_LIMIT_WAIT``.
    """


class GitHubRequestFailed(GitHubError):
    """A 4xx that retrying will not fix (bad credentials, not found, validation failed...)."""


class GitHubRateLimitExhausted(GitHubRequestFailed):
    """The primary rate limit is used up and resets later than the client may wait."""


class PullRequestNotFound(GitHubRequestFailed):
    """The pull request number does not exist in the repository."""


class OverlayNotEditable(GitHubError):
    """The overlay on the base branch cannot take the new tags (malformed, image missing...)."""


class NothingToPromote(GitHubError):
    """The overlay already holds every tag of the release: no pull request is opened."""


class NothingToRevert(GitHubError):
    """The base branch already holds the content the revert would restore."""


class PullRequestNotMerged(GitHubError):
    """A revert was asked for a pull request that was never merged."""


class ChecksFailed(GitHubError):
    """A required check concluded without success; ``failed`` lists the failing ones."""

    failed: tuple[CheckResult, ...] = ()


class NoRequiredChecks(GitHubError):
    """No check is required at all (configured, branch protection, rulesets): refusing."""


class ChecksTimedOut(GitHubError):
    """The required checks did not all pass in time; ``pending`` lists what was left."""

    pending: tuple[str, ...] = ()


class ReviewTimedOut(GitHubError):
    """No approving review by an allowed login on the current head arrived in time."""


class MergeRefused(GitHubError):
    """GitHub answered 405: the pull request is not mergeable; ``reason`` is GitHub's.

    ``kind`` says which rule refused: ``checks`` (a required check is expected or failing),
    ``review`` (a required review), ``merge_queue`` (the branch takes merges only through its
    merge queue), ``conflict``, or ``other``.
    """

    reason: str = ""
    kind: str = "other"


class MergeRaced(MergeRefused):
    """405 "Base branch was modified": the base moved during the merge; retrying may succeed."""

    transient = True
    kind = "base_modified"


class HeadMoved(GitHubError):
    """GitHub answered 409: the head is no longer the commit the merge was approved for."""


def _header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None


def _retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if there is one."""
    value = _header(headers, "retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _github_message(exc: GithubException) -> str:
    data = exc.data
    if isinstance(data, dict):
        message = str(data.get("message") or "")
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            details = [
                str(e.get("message") or e.get("code") or e) if isinstance(e, dict) else str(e)
                for e in errors
            ]
            message = f"{message} ({'; '.join(details)})" if message else "; ".join(details)
        if message:
            return message
    return exc.message or f"HTTP {exc.status}"


def rate_limit_wait(
    exc: GithubException,
    *,
    now: float | None = None,
    secondary_wait: float = SECONDARY_RATE_LIMIT_WAIT,
) -> tuple[Literal["primary", "secondary"], float, float | None] | None:
    """``(kind, seconds to wait, reset epoch)`` when ``exc`` is a rate limit, else None.

    GitHub's rules: a 403 or 429 with ``x-ratelimit-remaining: 0`` is the primary limit, to be
    waited out until ``x-ratelimit-reset`` (UTC epoch seconds); a 403 or 429 with the secondary
    message (or a Retry-After) is a secondary limit: honour Retry-After, else wait at least a
    minute. A 403 that is neither (missing permission) is not a rate limit.
    """
    if exc.status not in (403, 429):
        return None
    now = time.time() if now is None else now
    retry_after = _retry_after(exc.headers)
    message = _github_message(exc).lower()
    if _header(exc.headers, "x-ratelimit-remaining") == "0":
        reset_header = _header(exc.headers, "x-ratelimit-reset")
        try:
            reset: float | None = float(reset_header) if reset_header is not None else None
        except ValueError:
            reset = None
        if retry_after is not None:
            return "primary", retry_after, reset
        if reset is None:
            return "primary", secondary_wait, None
        # The reset is in whole seconds: one more so the retry lands after it.
        return "primary", max(0.0, reset - now) + 1.0, reset
    secondary = (
        Requester.isSecondaryRateLimitError(message)
        or Requester.isPrimaryRateLimitError(message)
        or retry_after is not None
        or exc.status == 429
    )
    if not secondary:
        return None
    return "secondary", retry_after if retry_after is not None else secondary_wait, None


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: 5xx, rate limits we may wait out, connection errors.

    Accepts this module's errors, PyGithub's ``GithubException`` and ``requests`` errors; other
    4xx and logic errors (checks failed, merge refused...) are never transient. A primary rate
    limit that resets later than ``MAX_RATE_LIMIT_WAIT`` is not transient either.
    """
    if isinstance(exc, GitHubError):
        return exc.transient
    if isinstance(exc, GithubException):
        if exc.status >= 500:
            return True
        limit = rate_limit_wait(exc)
        return limit is not None and limit[1] <= MAX_RATE_LIMIT_WAIT
    return isinstance(
        exc, requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError
    )


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _merge_refusal(reason: str) -> tuple[str, str]:
    """``(kind, what it means)`` of a 405 merge refusal, from GitHub's message."""
    text = reason.lower()
    if "base branch was modified" in text:
        return "base_modified", "the base branch moved during the merge: a race, worth retrying"
    if "merge queue" in text:
        return "merge_queue", "the base branch only takes merges through its merge queue"
    if "status check" in text or "is expected" in text:
        return "checks", "a required check has not passed on the head"
    if "review" in text or "changes were requested" in text:
        return "review", "a required approving review is missing"
    if "conflict" in text or "not mergeable" in text or "rebased" in text:
        return "conflict", "the head does not merge cleanly into the base"
    return "other", "GitHub's rules for the base branch refuse the merge"


# --------------------------------------------------------------------------- results


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class PullRequestInfo(_Frozen):
    """A pull request as the flows need it (serializable, persisted by the flows)."""

    number: int
    url: str
    head_branch: str
    head_sha: str
    base_branch: str
    state: str
    merged: bool
    merge_commit_sha: str | None = None
    title: str
    created: bool = False
    # Path -> text of the files this client wrote (or verified) in the head commit; only set
    # by ``open_promotion_pr``, so a merge need not read the head's overlay again.
    content: dict[str, str] = Field(default_factory=dict)
    # The checks the base branch's protection required when ``open_promotion_pr`` read it.
    base_checks: dict[str, int | None] | None = None


class CheckResult(_Frozen):
    """One required check on a commit: a check run (by name) or a commit status (by context)."""

    name: str
    kind: Literal["check_run", "status"]
    status: str  # queued | in_progress | completed (check runs); pending | completed (statuses)
    conclusion: str | None = None  # success, failure, ... (statuses: success, failure, error)
    url: str | None = None
    summary: str | None = None
    app_id: int | None = None  # the GitHub App that posted a check run


class ChecksSummary(_Frozen):
    """The required checks of a pull request's head, all passed."""

    pr_number: int
    head_sha: str
    checks: tuple[CheckResult, ...]

    def describe(self) -> str:
        """One line for summaries: ``name=conclusion`` of each check."""
        return ", ".join(f"{c.name}={c.conclusion}" for c in self.checks) or "none required"


class ReviewInfo(_Frozen):
    """An approving review."""

    id: int
    login: str
    state: str
    commit_id: str
    submitted_at: str | None = None
    url: str | None = None


class MergeResult(_Frozen):
    """The outcome of a merge; ``already_merged`` when an earlier call had merged it."""

    pr_number: int
    sha: str
    method: str
    already_merged: bool = False


class PullChange(_Frozen):
    """A pull request's own diff, as GitHub lists its files, and the sha256 of that text."""

    number: int
    head_sha: str
    diff: str
    digest: str


class IssueComment(_Frozen):
    """A comment on a pull request, with the GitHub login that wrote it."""

    id: int
    login: str
    body: str
    url: str
    created_at: str | None = None


class CommentInfo(_Frozen):
    """A pull request comment; ``created`` is False when a comment with the marker existed."""

    id: int
    url: str
    created: bool


# --------------------------------------------------------------------------- the client


def marker(*parts: str) -> str:
    """The hidden HTML comment that identifies text this project wrote."""
    return f"<!-- {MARKER_PREFIX}: {' '.join(parts)} -->"


def promotion_branch(env: str, version: str) -> str:
    return f"promote/{env}/{validate_version(version)}"


class GitHubClient:
    """A client for one GitOps repository on GitHub (or anything that speaks its REST API).

    Args:
        base_url: The REST API root (``https://api.github.com``, or the sandbox's ``api_url``).
        token: A token with contents and pull request write access.
        repository: ``owner/name``.
        base_branch: The branch the environments follow.
        timeout: Seconds per HTTP request.
        secondary_rate_limit_wait: Seconds to wait after a secondary rate limit that gave no
            Retry-After (GitHub asks for at least a minute; tests lower it).
        max_rate_limit_wait: The longest wait for a primary rate limit's reset; a later reset
            fails with ``GitHubRateLimitExhausted`` naming the reset time.
        clock: Epoch seconds, to turn ``x-ratelimit-reset`` into a wait.
    """

    def __init__(
        self,
        base_url: str,
        token: SecretStr | str,
        repository: str,
        *,
        base_branch: str = "main",
        timeout: float = 15.0,
        secondary_rate_limit_wait: float = SECONDARY_RATE_LIMIT_WAIT,
        max_rate_limit_wait: float = MAX_RATE_LIMIT_WAIT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secondary_rate_limit_wait = secondary_rate_limit_wait
        self.max_rate_limit_wait = max_rate_limit_wait
        self._clock = clock
        secret = token if isinstance(token, SecretStr) else SecretStr(token)
        if not secret.get_secret_value():
            raise GitHubError(f"[{repository}] an empty GitHub token was given")
        self._token = secret
        self.repository = repository
        self.base_branch = base_branch
        self.base_url = base_url.rstrip("/")
        self._gh = Github(
            auth=Auth.Token(secret.get_secret_value()),
            base_url=self.base_url,
            timeout=max(1, math.ceil(timeout)),
            retry=None,
            seconds_between_requests=None,
            seconds_between_writes=None,
            lazy=True,
        )
        self._repo: Repository = self._gh.get_repo(repository)
        self._etags: dict[str, tuple[str, Any]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, config: PromotionConfig) -> GitHubClient:
        """Build the client from the endpoint settings and the promotion setup."""
        return cls(
            settings.github_url,
            settings.secret("github_token"),
            config.github.repository,
            base_branch=config.github.base_branch,
        )

    def __repr__(self) -> str:
        return f"GitHubClient({self.base_url!r}, repository={self.repository!r})"

    def close_session(self) -> None:
        """Release the HTTP connections (``close(n)`` closes a pull request)."""
        self._gh.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close_session()

    # ----------------------------------------------------------------- error translation

    def _redact(self, text: str) -> str:
        token = self._token.get_secret_value()
        return text.replace(token, "***") if token else text

    def _fail(
        self,
        cls: type[_E],
        what: str,
        *,
        pr_number: int | None = None,
        branch: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> _E:
        where = self.repository
        if pr_number is not None:
            where += f"#{pr_number}"
        if branch is not None:
            where += f" {branch}"
        return cls(
            self._redact(f"[{where}] {what}"),
            repository=self.repository,
            pr_number=pr_number,
            branch=branch,
            status=status,
            retry_after=retry_after,
        )

    def _translate(
        self,
        exc: BaseException,
        action: str,
        *,
        pr_number: int | None = None,
        branch: str | None = None,
    ) -> GitHubError:
        if isinstance(exc, GithubException):
            message = f"{action}: GitHub answered {exc.status}: {_github_message(exc)}"
            retry_after = _retry_after(exc.headers)
            cls: type[GitHubError]
            limit = rate_limit_wait(
                exc, now=self._clock(), secondary_wait=self.secondary_rate_limit_wait
            )
            if limit is not None:
                which, retry_after, reset = limit
                when = f"it resets at {_utc(reset)}, " if reset is not None else ""
                message += f" ({which} rate limit; {when}wait {retry_after:.0f} s)"
                cls = GitHubRateLimited
                if retry_after > self.max_rate_limit_wait:
                    cls = GitHubRateLimitExhausted
                    message += (
                        f": longer than the {self.max_rate_limit_wait:g} s this client may wait;"
                        " run again after the reset"
                    )
            elif exc.status >= 500:
                cls = GitHubUnavailable
            elif exc.status == 404 and pr_number is not None:
                cls = PullRequestNotFound
            else:
                cls = GitHubRequestFailed
            return self._fail(
                cls,
                message,
                pr_number=pr_number,
                branch=branch,
                status=exc.status,
                retry_after=retry_after,
            )
        if isinstance(exc, requests.RequestException):
            kind = GitHubUnavailable if is_transient(exc) else GitHubError
            return self._fail(
                kind,
                f"{action}: {type(exc).__name__}: {exc}",
                pr_number=pr_number,
                branch=branch,
            )
        return self._fail(GitHubError, f"{action}: {exc}", pr_number=pr_number, branch=branch)

    @contextmanager
    def _calling(
        self, action: str, *, pr_number: int | None = None, branch: str | None = None
    ) -> Iterator[None]:
        try:
            yield
        except GitHubError:
            raise
        except (GithubException, requests.RequestException) as exc:
            raise self._translate(exc, action, pr_number=pr_number, branch=branch) from exc

    def _raise(self, exc: BaseException, action: str, *, pr_number: int | None = None) -> NoReturn:
        raise self._translate(exc, action, pr_number=pr_number) from exc

    # ----------------------------------------------------------------- low-level helpers

    def _conditional_get(self, path: str, action: str, *, pr_number: int | None = None) -> Any:
        """GET ``path`` with ``If-None-Match``; a 304 returns the body remembered with the ETag."""
        cached = self._etags.get(path)
        headers = {"If-None-Match": cached[0]} if cached else {}
        try:
            status, response_headers, body = self._gh.requester.requestJson(
                "GET", path, headers=headers
            )
        except requests.RequestException as exc:
            self._raise(exc, action, pr_number=pr_number)
        if status == 304 and cached is not None:
            return cached[1]
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = {"message": body[:200]}
        if status >= 400:
            error = Requester.createException(
                status, response_headers, data if isinstance(data, dict) else {}
            )
            self._raise(error, action, pr_number=pr_number)
        etag = _header(response_headers, "etag")
        if etag:
            self._etags[path] = (etag, data)
        return data

    def _repo_path(self, suffix: str) -> str:
        return f"/repos/{self.repository}{suffix}"

    def _git_tree(self, sha: str) -> GitTree:
        return GitTree(self._gh.requester, {}, {"sha": sha}, completed=True)

    def _git_commit(self, sha: str) -> GitCommit:
        return GitCommit(self._gh.requester, {}, {"sha": sha}, completed=True)

    @staticmethod
    def _info(pr: PullRequest, created: bool = False) -> PullRequestInfo:
        return PullRequestInfo(
            number=pr.number,
            url=pr.html_url,
            head_branch=pr.head.ref,
            head_sha=pr.head.sha,
            base_branch=pr.base.ref,
            state=pr.state,
            merged=bool(pr.merged),
            merge_commit_sha=pr.merge_commit_sha if pr.merged else None,
            title=pr.title,
            created=created,
        )

    def _pull(self, number: int) -> PullRequest:
        with self._calling(f"read pull request #{number}", pr_number=number):
            pr = self._repo.get_pull(number)
            pr.complete()
            return pr

    def _base_branch(self) -> dict[str, Any]:
        """The base branch as GitHub gives it: head commit (and tree), protection."""
        with self._calling("read the base branch", branch=self.base_branch):
            return dict(self._repo.get_branch(self.base_branch).raw_data)

    def _base_head(self) -> tuple[str, str]:
        """The base branch's head commit sha and its tree sha (one request)."""
        commit = self._base_branch()["commit"]
        return str(commit["sha"]), str(commit["commit"]["tree"]["sha"])

    @staticmethod
    def _protected_checks(branch: Mapping[str, Any]) -> dict[str, int | None]:
        """The checks a branch's protection requires (name -> app id or None), from the branch."""
        found: dict[str, int | None] = {}
        required = (branch.get("protection") or {}).get("required_status_checks") or {}
        for check in required.get("checks") or []:
            found[str(check["context"])] = check.get("app_id")
        for context in required.get("contexts") or []:
            found.setdefault(str(context), None)
        return found

    def _branch_ref(self, branch: str) -> GitRef | None:
        """The completed ref of ``branch``, or None when it does not exist.

        Completed, because a lazy ``GitRef`` carries PyGithub's read URL (``/git/ref/...``);
        edits must go to the URL the server returns (``/git/refs/...``).
        """
        try:
            ref = self._repo.get_git_ref(f"heads/{branch}")
            ref.complete()
            return ref
        except GithubException as exc:
            if exc.status == 404:
                return None
            raise self._translate(exc, "read the branch", branch=branch) from exc
        except requests.RequestException as exc:
            raise self._translate(exc, "read the branch", branch=branch) from exc

    def _open_pr_for(self, branch: str) -> PullRequest | None:
        owner = self.repository.split("/", 1)[0]
        with self._calling("list pull requests", branch=branch):
            for pr in self._repo.get_pulls(state="open", head=f"{owner}:{branch}"):
                if pr.head.ref == branch:
                    return pr
        return None

    # ----------------------------------------------------------------- reads

    def get_pr(self, number: int) -> PullRequestInfo:
        """The pull request ``number``; raises ``PullRequestNotFound``."""
        return self._info(self._pull(number))

    def find_pr(self, branch: str, *, state: str = "open") -> PullRequestInfo | None:
        """The pull request whose head is ``branch``, if any.

        With ``state="all"``: the open one, else the latest merged one, else the latest closed.
        """
        if state == "open":
            pr = self._open_pr_for(branch)
            return self._info(pr) if pr is not None else None
        owner = self.repository.split("/", 1)[0]
        with self._calling("list pull requests", branch=branch):
            pulls = [
                p
                for p in self._repo.get_pulls(state=state, head=f"{owner}:{branch}")
                if p.head.ref == branch
            ]
            if not pulls:
                return None
            best = max(pulls, key=lambda p: (p.state == "open", bool(p.merged_at), p.number))
            return self._info(best)

    def latest_merged_pr(self, branch_prefix: str) -> PullRequestInfo | None:
        """The pull request merged last (by ``merged_at``) whose head branch starts with the prefix.

        GitHub cannot sort pull requests by merge time, and ``updated_at`` moves with any
        comment or label, so the pick is by ``merged_at`` here. The list is scanned newest
        update first only to stop early: a pull request's ``updated_at`` is never before its
        ``merged_at``, so once updates are older than the best merge found, none can beat it.
        """
        best: PullRequest | None = None
        with self._calling("list merged pull requests"):
            for pr in self._repo.get_pulls(
                state="closed", sort="updated", direction="desc", base=self.base_branch
            ):
                if (
                    best is not None
                    and best.merged_at is not None
                    and pr.updated_at is not None
                    and pr.updated_at < best.merged_at
                ):
                    break
                if pr.merged_at is None or not pr.head.ref.startswith(branch_prefix):
                    continue
                if best is None or (pr.merged_at, pr.number) > (best.merged_at, best.number):
                    best = pr
        return self._info(best) if best is not None else None

    def base_head_sha(self) -> str:
        """The commit the base branch points at now."""
        return self._base_head()[0]

    def contains(self, commit: str, ancestor: str) -> bool:
        """Whether ``commit`` is ``ancestor`` or comes after it on its history (compare API)."""
        if commit == ancestor:
            return True
        with self._calling(f"compare {ancestor[:12]}...{commit[:12]}"):
            return self._repo.compare(ancestor, commit).status in {"ahead", "identical"}

    def read_file(self, path: str, ref: str | None = None) -> tuple[str, str]:
        """Return ``(text, blob sha)`` of ``path`` at ``ref`` (default: the base branch)."""
        with self._calling(f"read {path} at {ref or self.base_branch}"):
            content = self._repo.get_contents(path, ref=ref or self.base_branch)
            if isinstance(content, list):
                raise self._fail(GitHubRequestFailed, f"{path} is a directory, not a file")
            return content.decoded_content.decode("utf-8"), content.sha

    # ----------------------------------------------------------------- branch + PR core

    def _ensure_pr(
        self,
        *,
        branch: str,
        base_sha: str,
        tree_sha: str,
        message: str,
        title: str,
        body: str,
        labels: Sequence[str] = (),
        fresh: bool = False,
        keep: Callable[[str], bool] | None = None,
        still_wanted: Callable[[], None] | None = None,
    ) -> PullRequestInfo:
        """Make ``branch`` one commit (``tree_sha`` on ``base_sha``) and give it one open PR.

        ``fresh``: the branch most likely does not exist (a run's first execution), so create
        it at once, one read less; when it does exist (GitHub answers 422), go on as usual.
        ``keep``: asked about an existing head that is not exactly that commit (the base moved
        on); True keeps it as it is (it still makes the same change), else it is rebuilt.
        ``still_wanted``: called before a PR is opened for an existing branch that has none
        open; it raises when the change is no longer wanted, such as when another run merged
        this branch's PR after ``base_sha`` was read.
        """
        made: str | None = None  # a commit made for the branch and not yet on it
        if fresh:
            made = self._create_commit(message, tree_sha, base_sha, branch)
            if self._create_branch(branch, made):
                return self._create_pr(branch, title, body, labels, made)
        ref = self._branch_ref(branch)
        if ref is None:
            commit_sha = made or self._create_commit(message, tree_sha, base_sha, branch)
            with self._calling("create the branch", branch=branch):
                try:
                    self._repo.create_git_ref(f"refs/heads/{branch}", commit_sha)
                except GithubException as exc:
                    if exc.status != 422:  # 422: created meanwhile; force it below
                        raise
                    raced = self._branch_ref(branch)
                    if raced is None:
                        raise
                    raced.edit(commit_sha, force=True)
            return self._create_pr(branch, title, body, labels, commit_sha)
        head = ref.object.sha

        pr = self._open_pr_for(branch)
        if pr is None and still_wanted is not None:
            still_wanted()
        with self._calling("read the branch head", branch=branch):
            current = self._repo.get_git_commit(head)
            good = current.tree.sha == tree_sha and [p.sha for p in current.parents] == [base_sha]
        if not good and keep is not None and keep(head):
            good = True
        if not good:
            # Stale (the base moved) or wrong content: one fresh commit replaces the branch.
            head = made or self._create_commit(message, tree_sha, base_sha, branch)
            with self._calling("update the branch", branch=branch):
                ref.edit(head, force=True)
        if pr is None:
            return self._create_pr(branch, title, body, labels, head)
        if pr.title != title or (pr.body or "") != body:
            with self._calling("update the pull request", pr_number=pr.number, branch=branch):
                pr.edit(title=title, body=body)
        info = self._info(pr)
        return info.model_copy(update={"head_sha": head, "created": False})

    def _same_change(self, head: str, base_sha: str, path: str, base_text: str, text: str) -> bool:
        """Whether ``head``, though not on the base's current head ``base_sha``, is one commit
        that changes only ``path``, to exactly ``text`` (what a rebuilt head would set), from
        the ``path`` the base has now (``base_text``).

        Commits that land on the base without touching ``path`` (a README, another
        environment, another team's app) then leave the PR, its checks and the approval bound
        to its head alone: merging it gives what merging a rebuilt head would. A change of
        ``path`` on the base, even one whose lines the head sets anyway (another release's
        tags), would conflict (GitHub: 405 "not mergeable"): the head is rebuilt and approved
        again.
        """
        with self._calling(f"compare {base_sha[:12]}...{head[:12]}"):
            compared = self._repo.compare(base_sha, head)
            if compared.ahead_by != 1 or [f.filename for f in compared.files] != [path]:
                return False
            fork = compared.merge_base_commit.sha
        return self.read_file(path, head)[0] == text and self.read_file(path, fork)[0] == base_text

    def _create_branch(self, branch: str, sha: str) -> bool:
        """Create ``branch`` at ``sha``; False when it exists (422 "Reference already exists")."""
        with self._calling("create the branch", branch=branch):
            try:
                self._repo.create_git_ref(f"refs/heads/{branch}", sha)
            except GithubException as exc:
                if exc.status != 422:
                    raise
                return False
        return True

    def _create_commit(self, message: str, tree_sha: str, base_sha: str, branch: str) -> str:
        with self._calling("create the commit", branch=branch):
            commit = self._repo.create_git_commit(
                message, self._git_tree(tree_sha), [self._git_commit(base_sha)]
            )
            return commit.sha

    def _create_pr(
        self, branch: str, title: str, body: str, labels: Sequence[str], head_sha: str
    ) -> PullRequestInfo:
        with self._calling("open the pull request", branch=branch):
            try:
                pr = self._repo.create_pull(
                    base=self.base_branch, head=branch, title=title, body=body
                )
            except GithubException as exc:
                # 422 "A pull request already exists": a retry after a lost response.
                if exc.status != 422:
                    raise
                existing = self._open_pr_for(branch)
                if existing is None:
                    raise
                return self._info(existing).model_copy(update={"head_sha": head_sha})
            if labels:
                pr.add_to_labels(*labels)
        return self._info(pr, created=True)

    def _tree_with(self, base_tree: str, files: Mapping[str, str | None], branch: str) -> str:
        """Create a tree: ``base_tree`` with each path set to its text (None deletes it)."""
        elements = [
            InputGitTreeElement(path, "100644", "blob", content=text)
            if text is not None
            else InputGitTreeElement(path, "100644", "blob", sha=None)
            for path, text in sorted(files.items())
        ]
        with self._calling("create the tree", branch=branch):
            return self._repo.create_git_tree(elements, self._git_tree(base_tree)).sha

    # ----------------------------------------------------------------- promotion

    def open_promotion_pr(
        self,
        env: Environment,
        version: str,
        images: Mapping[str, str],
        *,
        labels: Sequence[str] = (),
        allow_downgrade: bool = True,
        fresh: bool = False,
    ) -> PullRequestInfo:
        """Open (or find, or correct) the pull request that promotes ``version`` to ``env``.

        One commit on the current base head changes the overlay's tag of every image at once.
        Raises ``NothingToPromote`` when the overlay already holds every tag, and, without
        ``allow_downgrade``, ``DowngradeRefused`` when the overlay it would edit runs a newer
        (or a non-semver) release. ``fresh``: the branch most likely does not exist yet (a
        run's first execution). The result carries the overlay's new text and the checks the
        base's protection requires, read with the base head (``content``, ``base_checks``).
        """
        validate_version(version)
        branch = promotion_branch(env.name, version)
        base = self._base_branch()
        base_sha = str(base["commit"]["sha"])
        base_tree = str(base["commit"]["commit"]["tree"]["sha"])
        with self._calling(f"read {env.overlay}", branch=self.base_branch):
            content = self._repo.get_contents(env.overlay, ref=base_sha)
            if isinstance(content, list):
                raise self._fail(GitHubRequestFailed, f"{env.overlay} is a directory")
            text = content.decoded_content.decode("utf-8")
        try:
            current = read_image_tags(text)
            if not allow_downgrade:
                running = {current[i] for i in images.values() if i in current}
                Release(version).check_forward(sorted(running), env.name, allow_downgrade=False)
            changes = ImageChangeSet.build(env.name, version, images, current)
            new_text = set_image_tags(text, changes.new_tags()) if changes.pending else text
        except KustomizationError as exc:
            raise self._fail(
                OverlayNotEditable,
                f"cannot edit {env.overlay} at {base_sha[:12]}: {exc}",
                branch=branch,
            ) from exc
        if not changes.pending:
            raise self._fail(
                NothingToPromote,
                f"{env.name} is already at {version}: every image in {env.overlay} has that tag",
                branch=branch,
            )
        tree_sha = self._tree_with(base_tree, {env.overlay: new_text}, branch)
        title = f"Promote {version} to {env.name}"
        body = (
            f"Promotes release `{version}` to **{env.name}** "
            f"({len(changes.pending)} of {len(changes.changes)} images change).\n\n"
            f"{changes.markdown_table()}\n\n{marker('promote', env.name, version)}\n"
        )
        message = f"{title}\n\n" + "\n".join(
            f"{c.service}: {c.old_tag or '-'} -> {c.new_tag}" for c in changes.pending
        )
        pr = self._ensure_pr(
            branch=branch,
            base_sha=base_sha,
            tree_sha=tree_sha,
            message=message,
            title=title,
            body=body,
            labels=labels,
            fresh=fresh,
            keep=lambda head: self._same_change(head, base_sha, env.overlay, text, new_text),
            still_wanted=lambda: self._still_to_promote(env, version, images, branch),
        )
        # The head's overlay is ``new_text``: made so, or checked by ``_same_change``.
        return pr.model_copy(
            update={
                "content": {env.overlay: new_text},
                "base_checks": self._protected_checks(base),
            }
        )

    def _still_to_promote(
        self, env: Environment, version: str, images: Mapping[str, str], branch: str
    ) -> None:
        """Raise ``NothingToPromote`` when the base's overlay holds ``version`` by now.

        Two promotions of one release race: one reads the base, the other merges the PR, and
        the first finds the branch without an open PR. Opening one again would be a second PR
        on a merged head. One read, only on that rare path (a branch without an open PR).
        """
        text, _ = self.read_file(env.overlay)
        try:
            pending = ImageChangeSet.build(env.name, version, images, read_image_tags(text)).pending
        except KustomizationError:
            return  # opening the PR reports what is wrong with the overlay
        if not pending:
            raise self._fail(
                NothingToPromote,
                f"{env.name} is already at {version}: every image in {env.overlay} has that tag "
                f"(merged on {self.base_branch} while this PR was being opened)",
                branch=branch,
            )

    # ----------------------------------------------------------------- checks

    def required_checks(
        self, branch: str | None = None, protected: Mapping[str, int | None] | None = None
    ) -> dict[str, int | None]:
        """The checks GitHub requires on ``branch``: name -> the app id that must post it.

        Branch protection's (from the branch, readable without admin rights) and every active
        ruleset's ``required_status_checks`` (``GET /rules/branches/{branch}``, which branch
        protection does not show). An app id of None means any poster counts. ``protected``:
        the protection's checks when the caller read the branch already (one request less).
        """
        branch = branch or self.base_branch
        if protected is None:
            with self._calling("read the branch protection", branch=branch):
                protected = self._protected_checks(self._repo.get_branch(branch).raw_data)
        found = dict(protected)
        page = 1
        while True:
            try:
                rules = self._conditional_get(
                    self._repo_path(f"/rules/branches/{quote(branch, safe='')}")
                    + f"?per_page=100&page={page}",
                    f"read the rules of {branch}",
                )
            except GitHubRequestFailed as exc:
                if exc.status == 404:  # no rulesets API (older GitHub Enterprise Server)
                    break
                raise
            for rule in rules or []:
                if rule.get("type") != "required_status_checks":
                    continue
                for check in (rule.get("parameters") or {}).get("required_status_checks") or []:
                    name = str(check["context"])
                    app = check.get("integration_id")
                    found[name] = app if app is not None else found.get(name)
            if len(rules or []) < 100:
                break
            page += 1
        return found

    def _check_run(
        self, sha: str, name: str, app_id: int | None, pr_number: int
    ) -> CheckResult | None:
        """The latest check run ``name`` on ``sha`` (by ``app_id`` if pinned), if any.

        Filtered by ``check_name`` on the server: a busy commit has more check runs than one
        page holds, and the required one need not be on the first.
        """
        query = f"check_name={quote(name, safe='')}&filter=latest&per_page=100"
        if app_id is not None:
            query += f"&app_id={app_id}"
        data = self._conditional_get(
            self._repo_path(f"/commits/{sha}/check-runs?{query}"),
            f"list the check runs named {name!r}",
            pr_number=pr_number,
        )
        runs = [
            r
            for r in (data or {}).get("check_runs", [])
            if r.get("name") == name
            and (app_id is None or (r.get("app") or {}).get("id") == app_id)
        ]
        if not runs:
            return None
        run = max(runs, key=lambda r: (str(r.get("started_at") or ""), int(r.get("id") or 0)))
        output = run.get("output") or {}
        return CheckResult(
            name=name,
            kind="check_run",
            status=str(run.get("status")),
            conclusion=run.get("conclusion"),
            url=run.get("html_url") or run.get("details_url"),
            summary=output.get("summary") or output.get("title"),
            app_id=(run.get("app") or {}).get("id"),
        )

    def _check_results(
        self, sha: str, required: Mapping[str, int | None], pr_number: int
    ) -> dict[str, CheckResult]:
        found: dict[str, CheckResult] = {}
        for name, app_id in required.items():
            result = self._check_run(sha, name, app_id, pr_number)
            if result is not None:
                found[name] = result
        # Contexts without a check run may be commit statuses; a status anyone with write
        # access can post, so it never satisfies a check pinned to an app.
        wanted = [n for n, app in required.items() if n not in found and app is None]
        if not wanted:
            return found
        combined = self._conditional_get(
            self._repo_path(f"/commits/{sha}/status?per_page=100"),
            "read the combined status",
            pr_number=pr_number,
        )
        for status in (combined or {}).get("statuses", []):  # newest first
            name = str(status.get("context"))
            if name in wanted and name not in found:
                state = str(status.get("state"))
                found[name] = CheckResult(
                    name=name,
                    kind="status",
                    status="pending" if state == "pending" else "completed",
                    conclusion=None if state == "pending" else state,
                    url=status.get("target_url"),
                    summary=status.get("description"),
                )
        return found

    def wait_for_checks(
        self,
        pr_number: int,
        required: Sequence[str],
        *,
        timeout: float = 600,
        poll_interval: float = 2.0,
        head_sha: str | None = None,
        check_apps: Mapping[str, int] | None = None,
        protected: Mapping[str, int | None] | None = None,
    ) -> ChecksSummary:
        """Wait until every required check on the PR head passed; fail fast on a failure.

        The checks waited for are the union of ``required`` (check run names or commit status
        contexts), ``check_apps``' names, and what GitHub requires on the base branch (branch
        protection and rulesets). ``check_apps`` pins the GitHub App that must post a check
        (name -> app id; protection's ``app_id`` and rulesets' ``integration_id`` pin too): a
        run by another app or a commit status does not count for it. Pass ``head_sha`` (from
        ``open_promotion_pr``) to save reading the pull request, and ``protected`` (its
        ``base_checks``) to save reading the branch protection again.

        Raises ``NoRequiredChecks`` when that union is empty, ``ChecksFailed`` (with the
        check's output summary) or ``ChecksTimedOut``.
        """
        if head_sha is None:
            pr = self._pull(pr_number)
            sha, base = pr.head.sha, pr.base.ref
        else:
            sha, base = head_sha, self.base_branch
        pins: dict[str, int | None] = {name: None for name in required}
        for name, app in self.required_checks(base, protected).items():
            pins[name] = app if app is not None else pins.get(name)
        for name, app in (check_apps or {}).items():
            pins[name] = app
        if not pins:
            raise self._fail(
                NoRequiredChecks,
                f"no check is required on {base} (none configured, none in branch protection "
                "or rulesets): refusing to treat an unchecked head as passed",
                pr_number=pr_number,
                branch=base,
            )
        names = tuple(pins)
        deadline = time.monotonic() + timeout
        while True:
            found = self._check_results(sha, pins, pr_number)
            failed = tuple(
                r
                for r in found.values()
                if r.status == "completed" and r.conclusion not in PASSING_CONCLUSIONS
            )
            if failed:
                details = "; ".join(
                    f"{r.name} concluded {r.conclusion}: {r.summary or 'no summary'}"
                    for r in failed
                )
                error = self._fail(
                    ChecksFailed,
                    f"required checks failed on {sha[:12]}: {details}",
                    pr_number=pr_number,
                )
                error.failed = failed
                raise error
            pending = tuple(
                name for name in names if name not in found or found[name].status != "completed"
            )
            if not pending:
                return ChecksSummary(
                    pr_number=pr_number,
                    head_sha=sha,
                    checks=tuple(found[name] for name in names),
                )
            if time.monotonic() + poll_interval > deadline:
                states = ", ".join(
                    f"{name} ({found[name].status})"
                    if name in found
                    else f"{name} (not reported"
                    + (f" by app {pins[name]})" if pins[name] is not None else ")")
                    for name in pending
                )
                timed_out = self._fail(
                    ChecksTimedOut,
                    f"checks on {sha[:12]} still pending after {timeout:g}s: {states}",
                    pr_number=pr_number,
                )
                timed_out.pending = pending
                raise timed_out
            time.sleep(poll_interval)

    # ----------------------------------------------------------------- reviews

    def _approving(
        self, reviews: Sequence[Mapping[str, Any]], head_sha: str, allowed: Sequence[str]
    ) -> ReviewInfo | None:
        latest: dict[str, Mapping[str, Any]] = {}
        for review in reviews:  # chronological; comments do not override an approval
            login = str((review.get("user") or {}).get("login", ""))
            if review.get("state") in {"APPROVED", "CHANGES_REQUESTED", "DISMISSED"}:
                latest[login] = review
        approvals = [
            r
            for login, r in latest.items()
            if login in allowed and r.get("state") == "APPROVED" and r.get("commit_id") == head_sha
        ]
        if not approvals:
            return None
        best = max(approvals, key=lambda r: (str(r.get("submitted_at") or ""), int(r["id"])))
        return ReviewInfo(
            id=int(best["id"]),
            login=str(best["user"]["login"]),
            state=str(best["state"]),
            commit_id=str(best["commit_id"]),
            submitted_at=best.get("submitted_at"),
            url=best.get("html_url"),
        )

    def _reviews(self, pr_number: int) -> list[Mapping[str, Any]]:
        data = self._conditional_get(
            self._repo_path(f"/pulls/{pr_number}/reviews?per_page=100"),
            "list reviews",
            pr_number=pr_number,
        )
        return list(data or [])

    def find_approving_review(
        self, pr_number: int, allowed_logins: Sequence[str], head_sha: str | None = None
    ) -> ReviewInfo | None:
        """The latest approving review by an allowed login at ``head_sha``, if any.

        Without ``head_sha``, at the pull request's current head. With it, a review of another
        head never counts, and neither does the approved head once the PR moved on from it.
        """
        current = self._pull(pr_number).head.sha
        if head_sha is not None and head_sha != current:
            return None
        return self._approving(self._reviews(pr_number), current, allowed_logins)

    def pr_change(self, pr_number: int, head_sha: str | None = None) -> PullChange:
        """The pull request's own diff (``GET .../pulls/{n}/files``), read from GitHub.

        This is what the PR merges, as GitHub shows it, not a diff recomputed from the base.
        ``head_sha``: the head the caller knows (one request less). Should the head move
        before the files are listed, the diff is the newer head's, but a merge that expects
        ``head_sha`` is then refused (409), so a diff never passes for another head's.
        """
        if head_sha is None:
            pr = self._pull(pr_number)
            head_sha = pr.head.sha
        else:
            pr = self._repo.get_pull(pr_number)  # lazy: no request
        with self._calling("read the pull request's files", pr_number=pr_number):
            parts = []
            for f in sorted(pr.get_files(), key=lambda f: f.filename):
                old = f.previous_filename or f.filename
                parts.append(
                    f"diff --git a/{old} b/{f.filename}\n--- a/{old}\n+++ b/{f.filename}\n"
                    f"{(f.patch or '(no textual diff)').rstrip()}\n"
                )
        diff = "".join(parts) or "(no change)\n"
        digest = hashlib.sha256(diff.encode("utf-8")).hexdigest()
        return PullChange(number=pr_number, head_sha=head_sha, diff=diff, digest=digest)

    def issue_comments(self, pr_number: int) -> list[IssueComment]:
        """Every comment on the pull request's conversation, oldest first."""
        data = self._conditional_get(
            self._repo_path(f"/issues/{pr_number}/comments?per_page=100"),
            "list comments",
            pr_number=pr_number,
        )
        return [
            IssueComment(
                id=int(c["id"]),
                login=str((c.get("user") or {}).get("login", "")),
                body=str(c.get("body") or ""),
                url=str(c.get("html_url") or ""),
                created_at=c.get("created_at"),
            )
            for c in (data or [])
        ]

    def wait_for_approving_review(
        self,
        pr_number: int,
        allowed_logins: Sequence[str],
        *,
        timeout: float = 3600,
        poll_interval: float = 10.0,
    ) -> ReviewInfo:
        """Poll (conditionally) until ``find_approving_review`` finds one; else ``ReviewTimedOut``."""
        deadline = time.monotonic() + timeout
        while True:
            pr = self._conditional_get(
                self._repo_path(f"/pulls/{pr_number}"), "read the pull request", pr_number=pr_number
            )
            head = str(pr["head"]["sha"])
            found = self._approving(self._reviews(pr_number), head, allowed_logins)
            if found is not None:
                return found
            if time.monotonic() + poll_interval > deadline:
                raise self._fail(
                    ReviewTimedOut,
                    f"no approving review by {', '.join(allowed_logins)} on {head[:12]} "
                    f"after {timeout:g}s",
                    pr_number=pr_number,
                )
            time.sleep(poll_interval)

    # ----------------------------------------------------------------- merge, comment, close

    def merge(
        self, pr_number: int, method: str = "squash", expected_head_sha: str | None = None
    ) -> MergeResult:
        """Merge the pull request; an already merged one returns its merge sha.

        Raises ``MergeRefused`` (405, with GitHub's reason) or ``HeadMoved`` (409).
        """
        pr = self._repo.get_pull(pr_number)  # lazy: no request
        try:
            if expected_head_sha is None:
                status = pr.merge(merge_method=method)
            else:
                status = pr.merge(merge_method=method, sha=expected_head_sha)
            return MergeResult(pr_number=pr_number, sha=status.sha, method=method)
        except GithubException as exc:
            if exc.status not in (405, 409):
                self._raise(exc, "merge", pr_number=pr_number)
            current = self._pull(pr_number)
            if current.merged:
                return MergeResult(
                    pr_number=pr_number,
                    sha=current.merge_commit_sha,
                    method=method,
                    already_merged=True,
                )
            reason = _github_message(exc)
            if exc.status == 409:
                raise self._fail(
                    HeadMoved,
                    f"merge refused (409): the head is {current.head.sha[:12]}, not "
                    f"{(expected_head_sha or '?')[:12]}: {reason}",
                    pr_number=pr_number,
                    branch=current.head.ref,
                    status=409,
                ) from exc
            kind, meaning = _merge_refusal(reason)
            refusal: type[MergeRefused] = MergeRaced if kind == "base_modified" else MergeRefused
            refused = self._fail(
                refusal,
                f"merge refused (405): {reason} ({meaning})",
                pr_number=pr_number,
                branch=current.head.ref,
                status=405,
            )
            refused.reason = reason
            refused.kind = kind
            raise refused from exc
        except requests.RequestException as exc:
            self._raise(exc, "merge", pr_number=pr_number)

    def comment(self, pr_number: int, text: str, *, key: str | None = None) -> CommentInfo:
        """Comment on the pull request; with ``key``, one comment per key (edited, not repeated)."""
        issue = self._repo.get_issue(pr_number)  # lazy: no request
        with self._calling("comment", pr_number=pr_number):
            if key is None:
                created = issue.create_comment(text)
                return CommentInfo(id=created.id, url=created.html_url, created=True)
            tag = marker("comment", key)
            body = f"{text}\n\n{tag}"
            for existing in issue.get_comments():
                if tag in (existing.body or ""):
                    if existing.body != body:
                        existing.edit(body)
                    return CommentInfo(id=existing.id, url=existing.html_url, created=False)
            created = issue.create_comment(body)
            return CommentInfo(id=created.id, url=created.html_url, created=True)

    def close(self, pr_number: int) -> PullRequestInfo:
        """Close the pull request without merging (a no-op when it is closed already)."""
        pr = self._pull(pr_number)
        if pr.state != "closed":
            with self._calling("close the pull request", pr_number=pr_number):
                pr.edit(state="closed")
        return self._info(pr)

    # ----------------------------------------------------------------- revert

    def open_revert_pr(self, merged_pr_number: int) -> PullRequestInfo:
        """Open (or find) the pull request that reverts exactly the tag changes of a merged one.

        For each kustomization the merged PR changed, every ``newTag`` it changed is set back to
        its value in the merge commit's first parent, on the current base head, and nothing else
        is touched: a later change to another image, or any other line, stays. An image whose tag
        moved again since (a later promotion) is left alone and listed in the PR body. A changed
        file that is not a kustomization is refused (a promotion PR only changes tags).
        """
        original = self._pull(merged_pr_number)
        if not original.merged or not original.merge_commit_sha:
            raise self._fail(
                PullRequestNotMerged,
                "cannot revert: the pull request was not merged",
                pr_number=merged_pr_number,
            )
        merge_sha = original.merge_commit_sha
        branch = f"revert/{original.head.ref}"
        done = self.find_pr(branch, state="closed")
        if done is not None and done.merged:
            return done  # reverted by an earlier execution: nothing to do twice
        with self._calling("read the merged changes", pr_number=merged_pr_number):
            files = list(original.get_files())
            parent = self._repo.get_git_commit(merge_sha).parents[0].sha
        restore: dict[str, str | None] = {}
        reverted: list[str] = []
        skipped: list[str] = []
        for f in files:
            if f.status != "modified":
                raise self._fail(
                    NothingToRevert,
                    f"cannot revert {f.filename} ({f.status}): a revert only sets image tags "
                    "back, and this pull request did more than change tags",
                    pr_number=merged_pr_number,
                )
            try:
                before = read_image_tags(self.read_file(f.filename, parent)[0])
                after = read_image_tags(self.read_file(f.filename, merge_sha)[0])
                current_text = self.read_file(f.filename)[0]
                current = read_image_tags(current_text)
            except KustomizationError as exc:
                raise self._fail(
                    NothingToRevert,
                    f"cannot revert {f.filename}: not a kustomization with image tags ({exc})",
                    pr_number=merged_pr_number,
                ) from exc
            back: dict[str, str] = {}
            for image, tag in sorted(after.items()):
                if before.get(image) in (None, tag):
                    continue
                if current.get(image) != tag:
                    skipped.append(
                        f"`{image}` in `{f.filename}`: now {current.get(image)}, not {tag}"
                    )
                    continue
                back[image] = before[image]
                reverted.append(f"`{image}` in `{f.filename}`: {tag} -> {before[image]}")
            if back:
                restore[f.filename] = set_image_tags(current_text, back)
        base_sha, base_tree = self._base_head()
        tree_sha = self._tree_with(base_tree, restore, branch)
        if tree_sha == base_tree:
            raise self._fail(
                NothingToRevert,
                f"{self.base_branch} already holds the content before {merge_sha[:12]}",
                pr_number=merged_pr_number,
                branch=branch,
            )
        title = f'Revert "{original.title}"'
        listed = "\n".join(f"- {line}" for line in reverted)
        kept = "".join(f"\n- {line}" for line in skipped)
        body = (
            f"Reverts #{merged_pr_number} ({original.html_url}), merge commit `{merge_sha}`.\n\n"
            f"Sets back the image tags it changed:\n{listed}\n\n"
            + (f"Left alone (changed again since):{kept}\n\n" if skipped else "")
            + f"{marker('revert', str(merged_pr_number), merge_sha)}\n"
        )
        message = f"{title}\n\nThis reverts merge commit {merge_sha} (#{merged_pr_number})."
        return self._ensure_pr(
            branch=branch,
            base_sha=base_sha,
            tree_sha=tree_sha,
            message=message,
            title=title,
            body=body,
        )
