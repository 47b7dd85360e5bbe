"""The GitHub REST emulator: GitHub's behaviour over a real bare git repository.

``GitHubEmulator`` holds what git does not (pull requests, reviews, comments, statuses, check
runs, branch protection) in memory and keeps content and refs in the bare repository. Its
routes answer what PyGithub calls for this project, with GitHub's JSON shapes and errors; a
pull request whose head moves gets the "Kustomize validation" check run in a background thread.
Every URL in a response is built from the base URL given to ``bind``.
"""

from __future__ import annotations

import base64
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from starlette.applications import Starlette

from sandbox.github.app import build_app
from sandbox.github.faults import Faults, Stats
from sandbox.github.githttp import CgiResponse, http_backend
from sandbox.github.gitrepo import CommitInfo, FileChange, GitError, GitRepo, Person
from sandbox.github.routing import (
    ApiError,
    Handler,
    Reply,
    Request,
    Router,
    not_found,
    validation_failed,
)
from sandbox.github.validation import CHECK_NAME, run_validation
from sandbox.http import RunningServer, serve_in_thread

SANDBOX_APP_ID = 15368
GITHUB_PERSON = ("GitHub", "noreply@github.com")
MERGE_METHODS = ("merge", "squash", "rebase")


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str | None) -> datetime:
    if not value:
        return now()
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def node_id(kind: str, ident: int | str) -> str:
    return base64.b64encode(f"0:{kind}{ident}".encode()).decode().rstrip("=")


def user_id(login: str) -> int:
    return 1000 + zlib.crc32(login.lower().encode()) % 10_000_000


@dataclass
class PullRequest:
    number: int
    id: int
    title: str
    body: str | None
    head_ref: str
    base_ref: str
    user: str
    head_sha: str
    created_at: datetime
    updated_at: datetime
    state: str = "open"
    draft: bool = False
    maintainer_can_modify: bool = False
    closed_at: datetime | None = None
    merged_at: datetime | None = None
    merged_by: str | None = None
    merge_commit_sha: str | None = None
    base_sha_at_close: str | None = None


@dataclass
class Comment:
    id: int
    number: int
    user: str
    body: str
    created_at: datetime
    updated_at: datetime


@dataclass
class Review:
    id: int
    number: int
    user: str
    body: str
    state: str
    commit_id: str
    submitted_at: datetime | None


@dataclass
class Status:
    id: int
    sha: str
    state: str
    context: str
    description: str | None
    target_url: str | None
    creator: str
    created_at: datetime


@dataclass
class CheckRun:
    id: int
    name: str
    head_sha: str
    status: str
    conclusion: str | None
    started_at: datetime | None
    completed_at: datetime | None
    title: str | None = None
    summary: str | None = None
    text: str | None = None
    external_id: str | None = None
    details_url: str | None = None
    app_name: str = "sandbox-ci"


@dataclass
class Protection:
    contexts: list[str] = field(default_factory=list)
    strict: bool = False
    required_reviews: int | None = None
    dismiss_stale_reviews: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.contexts) or self.required_reviews is not None


@dataclass
class MergeState:
    mergeable: bool | None
    state: str
    reasons: list[str]
    tree: str | None


class GitHubEmulator:
    """A GitHub REST API for one repository, over the bare git repository ``bare_repo``.

    Args:
        bare_repo: path of an existing bare repository (e.g. from ``sandbox.seed``).
        repository: "owner/name" as the API shows it.
        tokens: token -> login; any other token gets 401.
        base_branch: the default branch.
        required_checks: check or status contexts branch protection requires on ``base_branch``.
        required_approving_reviews: approving reviews required on ``base_branch`` (0: none).
        check_duration: seconds the "Kustomize validation" check takes from queued to completed
            (at least as long as the real rendering).
    """

    def __init__(
        self,
        bare_repo: Path,
        repository: str,
        tokens: dict[str, str],
        base_branch: str = "main",
        required_checks: Iterable[str] = (CHECK_NAME,),
        required_approving_reviews: int = 0,
        check_duration: float = 0.0,
    ) -> None:
        if repository.count("/") != 1:
            raise ValueError(f"repository must be owner/name, got {repository!r}")
        self.repo = GitRepo(Path(bare_repo))
        self.repository = repository
        self.owner, self.name = repository.split("/")
        self.tokens = dict(tokens)
        self.base_branch = base_branch
        self.check_duration = check_duration
        self.faults = Faults()
        self.stats = Stats()
        self.journal: list[tuple[str, int, Any]] = []
        self.journal_enabled = False
        self.repo_id = 700_000_000 + zlib.crc32(repository.encode()) % 100_000_000
        self.created_at = now()
        self._lock = threading.RLock()
        self._ids = 1_000_000
        self._pulls: dict[int, PullRequest] = {}
        self._comments: list[Comment] = []
        self._reviews: list[Review] = []
        self._statuses: list[Status] = []
        self._checks: dict[int, CheckRun] = {}
        self._check_threads: list[threading.Thread] = []
        self._protection: dict[str, Protection] = {}
        self._base_url: str | None = None
        self.set_protection(
            base_branch,
            list(required_checks),
            required_approving_reviews if required_approving_reviews > 0 else None,
        )
        self.router = Router()
        self._add_routes()
        self.app: Starlette = build_app(self)

    # -- binding and URLs ------------------------------------------------------------------

    def bind(self, base_url: str) -> None:
        """Tell the emulator the URL it is served at (``RunningServer.url``)."""
        self._base_url = base_url.rstrip("/")

    def start(self, port: int | None = None) -> RunningServer:
        """Serve the emulator on 127.0.0.1 (``port`` or a free one) in a thread and bind it."""
        server = serve_in_thread(self.app, port=port)
        self.bind(server.url)
        return server

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("GitHubEmulator.bind(server.url) was not called")
        return self._base_url

    @property
    def api_url(self) -> str:
        """What PyGithub takes as ``base_url``."""
        return f"{self.base_url}/api/v3"

    @property
    def git_url(self) -> str:
        """The smart-HTTP clone URL of the repository."""
        return f"{self.base_url}/{self.repository}.git"

    @property
    def html_url(self) -> str:
        return f"{self.base_url}/{self.repository}"

    @property
    def repo_url(self) -> str:
        return f"{self.api_url}/repos/{self.repository}"

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def record(self, key: str, status: int, body: Any) -> None:
        if self.journal_enabled:
            with self._lock:
                self.journal.append((key, status, body))

    # -- helpers for tests and other processes ---------------------------------------------

    def head(self, branch: str) -> str:
        """The sha ``branch`` points at (KeyError if there is no such branch)."""
        sha = self.repo.ref_sha(f"refs/heads/{branch}")
        if sha is None:
            raise KeyError(f"no branch {branch!r} in {self.repository}")
        return sha

    def branches(self) -> dict[str, str]:
        return {
            name.removeprefix("refs/heads/"): sha for name, sha in self.repo.refs("refs/heads/")
        }

    def read_file(self, ref: str, path: str) -> str:
        """The text of ``path`` at ``ref`` (a branch, tag or sha); KeyError if absent."""
        data = self.repo.read_path(ref, path)
        if data is None:
            raise KeyError(f"no {path!r} at {ref!r} in {self.repository}")
        return data.decode("utf-8")

    def add_status(
        self,
        sha: str,
        context: str,
        state: str,
        description: str | None = None,
        target_url: str | None = None,
        creator: str | None = None,
    ) -> dict[str, Any]:
        """Post a commit status as if a CI system did; returns its JSON."""
        if state not in {"error", "failure", "pending", "success"}:
            raise ValueError(f"state must be error, failure, pending or success, not {state!r}")
        full = self.repo.resolve(sha, "commit")
        if full is None:
            raise KeyError(f"no commit {sha}")
        status = Status(
            self._next_id(),
            full,
            state,
            context,
            description,
            target_url,
            creator or self.owner,
            now(),
        )
        with self._lock:
            self._statuses.append(status)
        return self._status_json(status)

    def set_protection(
        self,
        branch: str | None = None,
        required_checks: Iterable[str] | None = None,
        required_approving_reviews: int | None = None,
        strict: bool | None = None,
        dismiss_stale_reviews: bool | None = None,
    ) -> None:
        """Change branch protection of ``branch`` (default: the base branch).

        ``None`` leaves a setting as it is; ``required_checks=[]`` and
        ``required_approving_reviews=0`` remove the requirement.
        """
        with self._lock:
            prot = self._protection.setdefault(branch or self.base_branch, Protection())
            if required_checks is not None:
                prot.contexts = list(required_checks)
            if required_approving_reviews is not None:
                prot.required_reviews = required_approving_reviews or None
            if strict is not None:
                prot.strict = strict
            if dismiss_stale_reviews is not None:
                prot.dismiss_stale_reviews = dismiss_stale_reviews

    def check_runs(self, sha: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            runs = [c for c in self._checks.values() if sha is None or c.head_sha == sha]
            return [self._check_json(c) for c in runs]

    def wait_for_checks(self, timeout: float = 30.0) -> bool:
        """Wait until no validation check is running; True if idle within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                threads = [t for t in self._check_threads if t.is_alive()]
                self._check_threads = threads
            if not threads:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            threads[0].join(remaining)

    def close(self) -> None:
        """Wait for the running checks (call before the repository directory goes away)."""
        self.wait_for_checks(60.0)

    # -- git over HTTP ----------------------------------------------------------------------

    def serve_git(
        self,
        method: str,
        rest: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        pushing: bool,
    ) -> CgiResponse:
        if not pushing:
            return http_backend(self.repo.path, method, rest, query, headers, body)
        with self._lock:
            result = http_backend(self.repo.path, method, rest, query, headers, body, "sandbox")
            self._refs_changed()
        return result

    # -- JSON shapes -----------------------------------------------------------------------

    def user_json(self, login: str) -> dict[str, Any]:
        url = f"{self.api_url}/users/{login}"
        kind = "Bot" if login.endswith("[bot]") else "User"
        if login == self.owner and login not in self.tokens.values():
            kind = "Organization"
        return {
            "login": login,
            "id": user_id(login),
            "node_id": node_id("U", user_id(login)),
            "avatar_url": f"{self.base_url}/avatars/u/{user_id(login)}?v=4",
            "gravatar_id": "",
            "url": url,
            "html_url": f"{self.base_url}/{login}",
            "followers_url": f"{url}/followers",
            "following_url": f"{url}/following{{/other_user}}",
            "gists_url": f"{url}/gists{{/gist_id}}",
            "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{url}/subscriptions",
            "organizations_url": f"{url}/orgs",
            "repos_url": f"{url}/repos",
            "events_url": f"{url}/events{{/privacy}}",
            "received_events_url": f"{url}/received_events",
            "type": kind,
            "user_view_type": "public",
            "site_admin": False,
        }

    def repo_json(self, full: bool = False) -> dict[str, Any]:
        u = self.repo_url
        pushed = self.created_at
        with self._lock:
            open_count = sum(1 for p in self._pulls.values() if p.state == "open")
        data: dict[str, Any] = {
            "id": self.repo_id,
            "node_id": node_id("R", self.repo_id),
            "name": self.name,
            "full_name": self.repository,
            "private": True,
            "owner": self.user_json(self.owner),
            "html_url": self.html_url,
            "description": "GitOps desired state (sandbox)",
            "fork": False,
            "url": u,
            "forks_url": f"{u}/forks",
            "keys_url": f"{u}/keys{{/key_id}}",
            "collaborators_url": f"{u}/collaborators{{/collaborator}}",
            "teams_url": f"{u}/teams",
            "hooks_url": f"{u}/hooks",
            "issue_events_url": f"{u}/issues/events{{/number}}",
            "events_url": f"{u}/events",
            "assignees_url": f"{u}/assignees{{/user}}",
            "branches_url": f"{u}/branches{{/branch}}",
            "tags_url": f"{u}/tags",
            "blobs_url": f"{u}/git/blobs{{/sha}}",
            "git_tags_url": f"{u}/git/tags{{/sha}}",
            "git_refs_url": f"{u}/git/refs{{/sha}}",
            "trees_url": f"{u}/git/trees{{/sha}}",
            "statuses_url": f"{u}/statuses/{{sha}}",
            "languages_url": f"{u}/languages",
            "stargazers_url": f"{u}/stargazers",
            "contributors_url": f"{u}/contributors",
            "subscribers_url": f"{u}/subscribers",
            "subscription_url": f"{u}/subscription",
            "commits_url": f"{u}/commits{{/sha}}",
            "git_commits_url": f"{u}/git/commits{{/sha}}",
            "comments_url": f"{u}/comments{{/number}}",
            "issue_comment_url": f"{u}/issues/comments{{/number}}",
            "contents_url": f"{u}/contents/{{+path}}",
            "compare_url": f"{u}/compare/{{base}}...{{head}}",
            "merges_url": f"{u}/merges",
            "archive_url": f"{u}/{{archive_format}}{{/ref}}",
            "downloads_url": f"{u}/downloads",
            "issues_url": f"{u}/issues{{/number}}",
            "pulls_url": f"{u}/pulls{{/number}}",
            "milestones_url": f"{u}/milestones{{/number}}",
            "notifications_url": f"{u}/notifications{{?since,all,participating}}",
            "labels_url": f"{u}/labels{{/name}}",
            "releases_url": f"{u}/releases{{/id}}",
            "deployments_url": f"{u}/deployments",
            "created_at": iso(self.created_at),
            "updated_at": iso(self.created_at),
            "pushed_at": iso(pushed),
            "git_url": self.git_url.replace("http://", "git://").replace("https://", "git://"),
            "ssh_url": f"git@{self.base_url.split('://', 1)[1]}:{self.repository}.git",
            "clone_url": self.git_url,
            "svn_url": self.html_url,
            "homepage": None,
            "size": 64,
            "stargazers_count": 0,
            "watchers_count": 0,
            "language": None,
            "has_issues": True,
            "has_projects": False,
            "has_downloads": True,
            "has_wiki": False,
            "has_pages": False,
            "has_discussions": False,
            "forks_count": 0,
            "mirror_url": None,
            "archived": False,
            "disabled": False,
            "open_issues_count": open_count,
            "license": None,
            "allow_forking": False,
            "is_template": False,
            "web_commit_signoff_required": False,
            "topics": [],
            "visibility": "private",
            "forks": 0,
            "open_issues": open_count,
            "watchers": 0,
            "default_branch": self.base_branch,
            "permissions": {
                "admin": True,
                "maintain": True,
                "push": True,
                "triage": True,
                "pull": True,
            },
        }
        if full:
            data.update(
                {
                    "allow_squash_merge": True,
                    "allow_merge_commit": True,
                    "allow_rebase_merge": True,
                    "allow_auto_merge": False,
                    "delete_branch_on_merge": False,
                    "allow_update_branch": True,
                    "use_squash_pr_title_as_default": False,
                    "squash_merge_commit_title": "COMMIT_OR_PR_TITLE",
                    "squash_merge_commit_message": "COMMIT_MESSAGES",
                    "merge_commit_title": "MERGE_MESSAGE",
                    "merge_commit_message": "PR_TITLE",
                    "network_count": 0,
                    "subscribers_count": 1,
                }
            )
        return data

    def _person_json(self, person: Person) -> dict[str, Any]:
        return {"name": person.name, "email": person.email, "date": iso(person.date)}

    def _verification(self) -> dict[str, Any]:
        return {
            "verified": False,
            "reason": "unsigned",
            "signature": None,
            "payload": None,
            "verified_at": None,
        }

    def git_commit_json(self, info: CommitInfo) -> dict[str, Any]:
        u = self.repo_url
        return {
            "sha": info.sha,
            "node_id": node_id("C", info.sha),
            "url": f"{u}/git/commits/{info.sha}",
            "html_url": f"{self.html_url}/commit/{info.sha}",
            "author": self._person_json(info.author),
            "committer": self._person_json(info.committer),
            "tree": {"sha": info.tree, "url": f"{u}/git/trees/{info.tree}"},
            "message": info.message,
            "parents": [
                {
                    "sha": p,
                    "url": f"{u}/git/commits/{p}",
                    "html_url": f"{self.html_url}/commit/{p}",
                }
                for p in info.parents
            ],
            "verification": self._verification(),
        }

    def _login_for(self, email: str) -> str | None:
        for login in set(self.tokens.values()):
            if email.lower() in {
                f"{login}@users.noreply.github.com".lower(),
                f"{login}@example.com".lower(),
            }:
                return login
        return None

    def commit_json(self, sha: str, files: bool = False) -> dict[str, Any]:
        info = self.repo.read_commit(sha)
        u = self.repo_url
        author_login = self._login_for(info.author.email)
        committer_login = self._login_for(info.committer.email)
        data: dict[str, Any] = {
            "sha": sha,
            "node_id": node_id("C", sha),
            "commit": {
                "author": self._person_json(info.author),
                "committer": self._person_json(info.committer),
                "message": info.message,
                "tree": {"sha": info.tree, "url": f"{u}/git/trees/{info.tree}"},
                "url": f"{u}/git/commits/{sha}",
                "comment_count": 0,
                "verification": self._verification(),
            },
            "url": f"{u}/commits/{sha}",
            "html_url": f"{self.html_url}/commit/{sha}",
            "comments_url": f"{u}/commits/{sha}/comments",
            "author": self.user_json(author_login) if author_login else None,
            "committer": self.user_json(committer_login) if committer_login else None,
            "parents": [
                {"sha": p, "url": f"{u}/commits/{p}", "html_url": f"{self.html_url}/commit/{p}"}
                for p in info.parents
            ],
        }
        if files:
            old = info.parents[0] if info.parents else "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
            changes = self.repo.diff(old, sha)
            adds = sum(c.additions for c in changes)
            dels = sum(c.deletions for c in changes)
            data["stats"] = {"total": adds + dels, "additions": adds, "deletions": dels}
            data["files"] = [self._file_json(c, sha) for c in changes]
        return data

    def _file_json(self, change: FileChange, ref: str) -> dict[str, Any]:
        path = quote(change.filename)
        data: dict[str, Any] = {
            "sha": change.sha or "0" * 40,
            "filename": change.filename,
            "status": change.status,
            "additions": change.additions,
            "deletions": change.deletions,
            "changes": change.additions + change.deletions,
            "blob_url": f"{self.html_url}/blob/{ref}/{path}",
            "raw_url": f"{self.html_url}/raw/{ref}/{path}",
            "contents_url": f"{self.repo_url}/contents/{path}?ref={ref}",
            "patch": change.patch,
        }
        if change.previous_filename:
            data["previous_filename"] = change.previous_filename
        return data

    def _ref_json(self, ref: str, sha: str) -> dict[str, Any]:
        kind = self.repo.object_type(sha) or "commit"
        plural = {"commit": "commits", "tag": "tags", "tree": "trees", "blob": "blobs"}[kind]
        return {
            "ref": ref,
            "node_id": node_id("REF", ref),
            "url": f"{self.repo_url}/git/{ref}",
            "object": {"sha": sha, "type": kind, "url": f"{self.repo_url}/git/{plural}/{sha}"},
        }

    def protection_json(self, branch: str) -> dict[str, Any]:
        with self._lock:
            prot = self._protection.get(branch, Protection())
        url = f"{self.repo_url}/branches/{quote(branch)}/protection"
        data: dict[str, Any] = {
            "url": url,
            "enforce_admins": {"url": f"{url}/enforce_admins", "enabled": False},
            "required_linear_history": {"enabled": False},
            "allow_force_pushes": {"enabled": False},
            "allow_deletions": {"enabled": False},
            "block_creations": {"enabled": False},
            "required_conversation_resolution": {"enabled": False},
            "lock_branch": {"enabled": False},
            "allow_fork_syncing": {"enabled": False},
            "required_signatures": {"url": f"{url}/required_signatures", "enabled": False},
        }
        if prot.contexts:
            data["required_status_checks"] = {
                "url": f"{url}/required_status_checks",
                "strict": prot.strict,
                "contexts": list(prot.contexts),
                "contexts_url": f"{url}/required_status_checks/contexts",
                "checks": [{"context": c, "app_id": None} for c in prot.contexts],
            }
        if prot.required_reviews is not None:
            data["required_pull_request_reviews"] = {
                "url": f"{url}/required_pull_request_reviews",
                "dismiss_stale_reviews": prot.dismiss_stale_reviews,
                "require_code_owner_reviews": False,
                "required_approving_review_count": prot.required_reviews,
                "require_last_push_approval": False,
            }
        return data

    def _branch_protection_summary(self, branch: str) -> dict[str, Any]:
        with self._lock:
            prot = self._protection.get(branch, Protection())
        return {
            "enabled": prot.enabled,
            "required_status_checks": {
                "enforcement_level": "non_admins" if prot.contexts else "off",
                "contexts": list(prot.contexts),
                "checks": [{"context": c, "app_id": None} for c in prot.contexts],
            },
        }

    def _status_json(self, status: Status) -> dict[str, Any]:
        return {
            "url": f"{self.repo_url}/statuses/{status.sha}",
            "avatar_url": f"{self.base_url}/avatars/u/{user_id(status.creator)}?v=4",
            "id": status.id,
            "node_id": node_id("SC", status.id),
            "state": status.state,
            "description": status.description,
            "target_url": status.target_url,
            "context": status.context,
            "created_at": iso(status.created_at),
            "updated_at": iso(status.created_at),
            "creator": self.user_json(status.creator),
        }

    def _app_json(self, name: str) -> dict[str, Any]:
        return {
            "id": SANDBOX_APP_ID,
            "slug": name,
            "client_id": "Iv1.sandbox0000000000",
            "node_id": node_id("A", SANDBOX_APP_ID),
            "owner": self.user_json(self.owner),
            "name": name,
            "description": "The sandbox's CI: renders and validates Kustomize overlays.",
            "external_url": self.base_url,
            "html_url": f"{self.base_url}/apps/{name}",
            "created_at": iso(self.created_at),
            "updated_at": iso(self.created_at),
            "permissions": {"checks": "write", "contents": "read", "pull_requests": "read"},
            "events": ["pull_request", "push"],
        }

    def _check_json(self, run: CheckRun) -> dict[str, Any]:
        url = f"{self.repo_url}/check-runs/{run.id}"
        with self._lock:
            pulls = [p for p in self._pulls.values() if p.state == "open"]
        return {
            "id": run.id,
            "head_sha": run.head_sha,
            "node_id": node_id("CR", run.id),
            "external_id": run.external_id or "",
            "url": url,
            "html_url": f"{self.html_url}/runs/{run.id}",
            "details_url": run.details_url or f"{self.html_url}/runs/{run.id}",
            "status": run.status,
            "conclusion": run.conclusion,
            "started_at": iso(run.started_at),
            "completed_at": iso(run.completed_at),
            "output": {
                "title": run.title,
                "summary": run.summary,
                "text": run.text,
                "annotations_count": 0,
                "annotations_url": f"{url}/annotations",
            },
            "name": run.name,
            "check_suite": {"id": 10_000_000 + run.id},
            "app": self._app_json(run.app_name),
            "pull_requests": [
                self._pr_minimal(p) for p in pulls if self._pr_head_sha(p) == run.head_sha
            ],
        }

    def _pr_minimal(self, pr: PullRequest) -> dict[str, Any]:
        repo = {"id": self.repo_id, "url": self.repo_url, "name": self.name}
        return {
            "id": pr.id,
            "number": pr.number,
            "url": f"{self.repo_url}/pulls/{pr.number}",
            "head": {"ref": pr.head_ref, "sha": self._pr_head_sha(pr), "repo": repo},
            "base": {"ref": pr.base_ref, "sha": self._branch_sha(pr.base_ref) or "", "repo": repo},
        }

    def _comment_json(self, comment: Comment) -> dict[str, Any]:
        u = self.repo_url
        return {
            "id": comment.id,
            "node_id": node_id("IC", comment.id),
            "url": f"{u}/issues/comments/{comment.id}",
            "html_url": f"{self.html_url}/pull/{comment.number}#issuecomment-{comment.id}",
            "body": comment.body,
            "user": self.user_json(comment.user),
            "created_at": iso(comment.created_at),
            "updated_at": iso(comment.updated_at),
            "issue_url": f"{u}/issues/{comment.number}",
            "author_association": self._association(comment.user),
        }

    def _review_json(self, review: Review) -> dict[str, Any]:
        pr_url = f"{self.repo_url}/pulls/{review.number}"
        html = f"{self.html_url}/pull/{review.number}#pullrequestreview-{review.id}"
        data: dict[str, Any] = {
            "id": review.id,
            "node_id": node_id("PRR", review.id),
            "user": self.user_json(review.user),
            "body": review.body,
            "state": review.state,
            "html_url": html,
            "pull_request_url": pr_url,
            "author_association": self._association(review.user),
            "_links": {"html": {"href": html}, "pull_request": {"href": pr_url}},
            "commit_id": review.commit_id,
        }
        if review.submitted_at is not None:
            data["submitted_at"] = iso(review.submitted_at)
        return data

    def _association(self, login: str) -> str:
        return "OWNER" if login == self.owner else "COLLABORATOR"

    def _branch_sha(self, branch: str) -> str | None:
        return self.repo.ref_sha(f"refs/heads/{branch}")

    def _pr_head_sha(self, pr: PullRequest) -> str:
        if pr.state == "open":
            current = self._branch_sha(pr.head_ref)
            if current is not None:
                return current
        return pr.head_sha

    def _pr_base_sha(self, pr: PullRequest) -> str:
        if pr.state != "open" and pr.base_sha_at_close:
            return pr.base_sha_at_close
        return self._branch_sha(pr.base_ref) or pr.base_sha_at_close or "0" * 40

    def pull_json(self, pr: PullRequest, full: bool = True) -> dict[str, Any]:
        u = self.repo_url
        n = pr.number
        head_sha = self._pr_head_sha(pr)
        base_sha = self._pr_base_sha(pr)
        repo = self.repo_json()
        owner = self.user_json(self.owner)
        data: dict[str, Any] = {
            "url": f"{u}/pulls/{n}",
            "id": pr.id,
            "node_id": node_id("PR", pr.id),
            "html_url": f"{self.html_url}/pull/{n}",
            "diff_url": f"{self.html_url}/pull/{n}.diff",
            "patch_url": f"{self.html_url}/pull/{n}.patch",
            "issue_url": f"{u}/issues/{n}",
            "commits_url": f"{u}/pulls/{n}/commits",
            "review_comments_url": f"{u}/pulls/{n}/comments",
            "review_comment_url": f"{u}/pulls/comments{{/number}}",
            "comments_url": f"{u}/issues/{n}/comments",
            "statuses_url": f"{u}/statuses/{head_sha}",
            "number": n,
            "state": pr.state,
            "locked": False,
            "title": pr.title,
            "user": self.user_json(pr.user),
            "body": pr.body,
            "labels": [],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": iso(pr.created_at),
            "updated_at": iso(pr.updated_at),
            "closed_at": iso(pr.closed_at),
            "merged_at": iso(pr.merged_at),
            "merge_commit_sha": pr.merge_commit_sha,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": {
                "label": f"{self.owner}:{pr.head_ref}",
                "ref": pr.head_ref,
                "sha": head_sha,
                "user": owner,
                "repo": repo,
            },
            "base": {
                "label": f"{self.owner}:{pr.base_ref}",
                "ref": pr.base_ref,
                "sha": base_sha,
                "user": owner,
                "repo": repo,
            },
            "_links": {
                "self": {"href": f"{u}/pulls/{n}"},
                "html": {"href": f"{self.html_url}/pull/{n}"},
                "issue": {"href": f"{u}/issues/{n}"},
                "comments": {"href": f"{u}/issues/{n}/comments"},
                "review_comments": {"href": f"{u}/pulls/{n}/comments"},
                "review_comment": {"href": f"{u}/pulls/comments{{/number}}"},
                "commits": {"href": f"{u}/pulls/{n}/commits"},
                "statuses": {"href": f"{u}/statuses/{head_sha}"},
            },
            "author_association": self._association(pr.user),
            "auto_merge": None,
            "draft": pr.draft,
        }
        if not full:
            return data
        merge = self._merge_state(pr)
        changes = self._pr_changes(pr)
        with self._lock:
            comments = sum(1 for c in self._comments if c.number == n)
        data.update(
            {
                "merged": pr.merged_at is not None,
                "mergeable": merge.mergeable,
                "rebaseable": merge.mergeable,
                "mergeable_state": merge.state,
                "merged_by": self.user_json(pr.merged_by) if pr.merged_by else None,
                "comments": comments,
                "review_comments": 0,
                "maintainer_can_modify": pr.maintainer_can_modify,
                "commits": len(self._pr_commits(pr)),
                "additions": sum(c.additions for c in changes),
                "deletions": sum(c.deletions for c in changes),
                "changed_files": len(changes),
            }
        )
        return data

    # -- pull request logic ----------------------------------------------------------------

    def _pr_commits(self, pr: PullRequest) -> list[str]:
        return self.repo.rev_list(self._pr_base_sha(pr), self._pr_head_sha(pr))

    def _pr_changes(self, pr: PullRequest, patches: bool = False) -> list[FileChange]:
        head = self._pr_head_sha(pr)
        base = self.repo.merge_base(self._pr_base_sha(pr), head)
        if base is None:
            return []
        return self.repo.diff(base, head, patches=patches)

    def _pr(self, number: str) -> PullRequest:
        with self._lock:
            pr = self._pulls.get(int(number)) if number.isdigit() else None
        if pr is None:
            raise not_found()
        return pr

    def _context_states(self, sha: str) -> dict[str, str]:
        """Context -> success | failure | pending, from check runs and statuses on ``sha``."""
        states: dict[str, str] = {}
        with self._lock:
            runs = sorted(
                (c for c in self._checks.values() if c.head_sha == sha), key=lambda c: c.id
            )
            statuses = sorted((s for s in self._statuses if s.sha == sha), key=lambda s: s.id)
        from_checks: dict[str, str] = {}
        for run in runs:  # the latest run of a name decides
            if run.status != "completed":
                from_checks[run.name] = "pending"
            elif run.conclusion in {"success", "neutral", "skipped"}:
                from_checks[run.name] = "success"
            else:
                from_checks[run.name] = "failure"
        from_statuses: dict[str, str] = {}
        for status in statuses:
            from_statuses[status.context] = "failure" if status.state == "error" else status.state
        for name in {*from_checks, *from_statuses}:
            found = {from_checks.get(name), from_statuses.get(name)} - {None}
            if "success" in found:
                states[name] = "success"
            elif "failure" in found:
                states[name] = "failure"
            else:
                states[name] = "pending"
        return states

    def _merge_state(self, pr: PullRequest) -> MergeState:
        if pr.state != "open":
            return MergeState(None, "unknown", [], None)
        head = self._pr_head_sha(pr)
        base = self._pr_base_sha(pr)
        tree = self.repo.merge_tree(base, head)
        if tree is None:
            return MergeState(False, "dirty", ["Pull Request is not mergeable"], None)
        with self._lock:
            prot = self._protection.get(pr.base_ref, Protection())
            reviews = sorted(
                (r for r in self._reviews if r.number == pr.number), key=lambda r: r.id
            )
        reasons: list[str] = []
        states = self._context_states(head)
        for context in prot.contexts:
            state = states.get(context)
            if state == "failure":
                reasons.append(f'Required status check "{context}" is failing.')
            elif state != "success":
                reasons.append(f'Required status check "{context}" is expected.')
        if prot.required_reviews:
            latest: dict[str, str] = {}
            for review in reviews:
                if review.state in {"APPROVED", "CHANGES_REQUESTED", "DISMISSED"}:
                    latest[review.user] = review.state
            approvals = sum(1 for s in latest.values() if s == "APPROVED")
            requesting = sorted(u for u, s in latest.items() if s == "CHANGES_REQUESTED")
            if requesting:
                reasons.append(f"Changes were requested by {', '.join(requesting)}.")
            elif approvals < prot.required_reviews:
                count = prot.required_reviews
                reasons.append(
                    f"At least {count} approving review{' is' if count == 1 else 's are'} "
                    "required by reviewers with write access."
                )
        if pr.draft:
            return MergeState(True, "draft", ["Pull Request is still a draft"], tree)
        if reasons:
            return MergeState(True, "blocked", reasons, tree)
        if prot.strict and not self.repo.is_ancestor(base, head):
            return MergeState(True, "behind", ["Head branch is out of date."], tree)
        if any(s == "failure" for s in states.values()):
            return MergeState(True, "unstable", [], tree)
        return MergeState(True, "clean", [], tree)

    def _refs_changed(self) -> None:
        """After any ref write: follow moved PR heads and start their validation checks."""
        with self._lock:
            open_prs = [p for p in self._pulls.values() if p.state == "open"]
            if not open_prs:
                return
            heads = self.branches()
            for pr in open_prs:
                current = heads.get(pr.head_ref)
                if current is not None and current != pr.head_sha:
                    pr.head_sha = current
                    pr.updated_at = now()
                    if self._protection.get(pr.base_ref, Protection()).dismiss_stale_reviews:
                        for review in self._reviews:
                            if review.number == pr.number and review.state == "APPROVED":
                                review.state = "DISMISSED"
                    self.repo.update_ref(f"refs/pull/{pr.number}/head", current)
                    self._start_check(pr)

    def call(self, handler: Handler, request: Request) -> Reply:
        """Serve one API call; refs written behind the API's back (git push, plain git in the
        bare repository) are noticed first, as GitHub notices pushes."""
        self._refs_changed()
        return handler(request)

    def _start_check(self, pr: PullRequest) -> None:
        head = pr.head_sha
        with self._lock:
            if any(c.head_sha == head and c.name == CHECK_NAME for c in self._checks.values()):
                return
            run = CheckRun(self._next_id(), CHECK_NAME, head, "queued", None, None, None)
            self._checks[run.id] = run
            base = self._pr_base_sha(pr)
            thread = threading.Thread(
                target=self._run_check, args=(run, base), name=f"check-{run.id}", daemon=True
            )
            self._check_threads.append(thread)
        thread.start()

    def _run_check(self, run: CheckRun, base: str) -> None:
        started = time.monotonic()
        time.sleep(self.check_duration * 0.2)
        with self._lock:
            run.status = "in_progress"
            run.started_at = now()
        try:
            merge_base = self.repo.merge_base(base, run.head_sha) or base
            diff = self.repo.diff(merge_base, run.head_sha, patches=False)
            changed = [c.filename for c in diff]
            changed += [c.previous_filename for c in diff if c.previous_filename]
            outcome = run_validation(self.repo, run.head_sha, changed)
            conclusion, title, summary = outcome.conclusion, outcome.title, outcome.summary
        except Exception as exc:  # the check reports, it never kills the server
            conclusion, title, summary = "failure", "The check could not run", str(exc)
        remaining = self.check_duration - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(remaining)
        with self._lock:
            run.status = "completed"
            run.conclusion = conclusion
            run.completed_at = now()
            run.title = title
            run.summary = summary

    # -- routes ----------------------------------------------------------------------------

    def _add_routes(self) -> None:
        r = self.router.add
        p = "/repos/{owner}/{repo}"
        r("GET", "/user", self.get_user)
        r("GET", "/rate_limit", self.get_rate_limit)
        r("GET", p, self.get_repo)
        r("GET", p + "/branches", self.list_branches)
        r("GET", p + "/branches/{branch}/protection", self.get_protection)
        r("PUT", p + "/branches/{branch}/protection", self.put_protection)
        r("DELETE", p + "/branches/{branch}/protection", self.delete_protection)
        r("GET", p + "/branches/{branch}", self.get_branch)
        r("GET", p + "/git/ref/{ref}", self.get_ref)
        r("GET", p + "/git/matching-refs/{ref}", self.matching_refs)
        r("GET", p + "/git/refs", self.list_refs)
        r("GET", p + "/git/refs/{ref}", self.get_ref)
        r("POST", p + "/git/refs", self.create_ref)
        r("PATCH", p + "/git/refs/{ref}", self.update_ref)
        r("DELETE", p + "/git/refs/{ref}", self.delete_ref)
        r("POST", p + "/git/blobs", self.create_blob)
        r("GET", p + "/git/blobs/{file_sha}", self.get_blob)
        r("POST", p + "/git/trees", self.create_tree)
        r("GET", p + "/git/trees/{tree_sha}", self.get_tree)
        r("POST", p + "/git/commits", self.create_commit)
        r("GET", p + "/git/commits/{commit_sha}", self.get_git_commit)
        r("GET", p + "/contents/{path}", self.get_contents)
        r("PUT", p + "/contents/{path}", self.put_contents)
        r("GET", p + "/commits", self.list_commits)
        r("GET", p + "/compare/{basehead}", self.compare)
        r("GET", p + "/commits/{ref}/statuses", self.list_statuses)
        r("GET", p + "/commits/{ref}/status", self.combined_status)
        r("GET", p + "/commits/{ref}/check-runs", self.list_check_runs)
        r("GET", p + "/commits/{ref}", self.get_commit)
        r("POST", p + "/statuses/{sha}", self.create_status)
        r("GET", p + "/statuses/{sha}", self.list_statuses)
        r("POST", p + "/check-runs", self.create_check_run)
        r("GET", p + "/check-runs/{check_run_id}", self.get_check_run)
        r("PATCH", p + "/check-runs/{check_run_id}", self.update_check_run)
        r("GET", p + "/pulls", self.list_pulls)
        r("POST", p + "/pulls", self.create_pull)
        r("GET", p + "/pulls/{pull_number}", self.get_pull)
        r("PATCH", p + "/pulls/{pull_number}", self.update_pull)
        r("PUT", p + "/pulls/{pull_number}/merge", self.merge_pull)
        r("GET", p + "/pulls/{pull_number}/merge", self.is_merged)
        r("GET", p + "/pulls/{pull_number}/files", self.pull_files)
        r("GET", p + "/pulls/{pull_number}/commits", self.pull_commits)
        r("GET", p + "/pulls/{pull_number}/reviews", self.list_reviews)
        r("POST", p + "/pulls/{pull_number}/reviews", self.create_review)
        r("GET", p + "/issues/{issue_number}", self.get_issue)
        r("PATCH", p + "/issues/{issue_number}", self.update_issue)
        r("GET", p + "/issues/{issue_number}/comments", self.list_comments)
        r("POST", p + "/issues/{issue_number}/comments", self.create_comment)

    def _check_repo(self, req: Request) -> None:
        owner, name = req.params.get("owner"), req.params.get("repo")
        if owner is None:
            return
        if f"{owner}/{name}".lower() != self.repository.lower():
            raise not_found()

    def _page(self, req: Request, items: list[Any]) -> Reply:
        try:
            per_page = max(1, min(int(req.query.get("per_page", 30)), 100))
            page = max(1, int(req.query.get("page", 1)))
        except ValueError:
            per_page, page = 30, 1
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        links = []

        def link(number: int, rel: str) -> str:
            query = {**req.query, "per_page": str(per_page), "page": str(number)}
            return f'<{self.api_url}{req.path}?{urlencode(query)}>; rel="{rel}"'

        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(1, "first"), link(page - 1, "prev")]
        headers = {"Link": ", ".join(links)} if links else {}
        return Reply(200, chunk, headers)

    def _body(self, req: Request) -> dict[str, Any]:
        if req.body is None:
            return {}
        if not isinstance(req.body, dict):
            raise ApiError(400, "Problems parsing JSON")
        return req.body

    def _commit_sha(self, ref: str) -> str:
        sha = self.repo.resolve(ref, "commit")
        if sha is None:
            raise ApiError(422, f"No commit found for SHA: {ref}")
        return sha

    # users, repository, branches

    def get_user(self, req: Request) -> Reply:
        data = self.user_json(req.login)
        data.update(
            {
                "name": req.login,
                "company": None,
                "blog": "",
                "location": None,
                "email": None,
                "hireable": None,
                "bio": None,
                "twitter_username": None,
                "public_repos": 1,
                "public_gists": 0,
                "followers": 0,
                "following": 0,
                "created_at": iso(self.created_at),
                "updated_at": iso(self.created_at),
                "private_gists": 0,
                "total_private_repos": 1,
                "owned_private_repos": 1,
                "disk_usage": 1,
                "collaborators": 0,
                "two_factor_authentication": True,
                "plan": {
                    "name": "free",
                    "space": 976562499,
                    "private_repos": 10000,
                    "collaborators": 0,
                },
            }
        )
        return Reply(200, data)

    def get_rate_limit(self, req: Request) -> Reply:
        reset = int(time.time()) + 3600
        core = {"limit": 5000, "used": 0, "remaining": 5000, "reset": reset}
        small = {"limit": 30, "used": 0, "remaining": 30, "reset": reset}
        return Reply(
            200,
            {
                "resources": {"core": core, "search": small, "graphql": core},
                "rate": core,
            },
        )

    def get_repo(self, req: Request) -> Reply:
        self._check_repo(req)
        return Reply(200, self.repo_json(full=True))

    def _short_branch(self, name: str, sha: str) -> dict[str, Any]:
        with self._lock:
            protected = self._protection.get(name, Protection()).enabled
        return {
            "name": name,
            "commit": {"sha": sha, "url": f"{self.repo_url}/commits/{sha}"},
            "protected": protected,
            "protection": self._branch_protection_summary(name),
            "protection_url": f"{self.repo_url}/branches/{quote(name)}/protection",
        }

    def list_branches(self, req: Request) -> Reply:
        self._check_repo(req)
        items = [self._short_branch(n, s) for n, s in sorted(self.branches().items())]
        return self._page(req, items)

    def get_branch(self, req: Request) -> Reply:
        self._check_repo(req)
        name = req.params["branch"]
        sha = self._branch_sha(name)
        if sha is None:
            raise ApiError(404, "Branch not found")
        with self._lock:
            prot = self._protection.get(name, Protection())
        return Reply(
            200,
            {
                "name": name,
                "commit": self.commit_json(sha),
                "_links": {
                    "self": f"{self.repo_url}/branches/{quote(name)}",
                    "html": f"{self.html_url}/tree/{quote(name)}",
                },
                "protected": prot.enabled,
                "protection": self._branch_protection_summary(name),
                "protection_url": f"{self.repo_url}/branches/{quote(name)}/protection",
            },
        )

    def get_protection(self, req: Request) -> Reply:
        self._check_repo(req)
        name = req.params["branch"]
        if self._branch_sha(name) is None:
            raise ApiError(404, "Branch not found")
        with self._lock:
            prot = self._protection.get(name)
        if prot is None or not prot.enabled:
            raise ApiError(404, "Branch not protected")
        return Reply(200, self.protection_json(name))

    def put_protection(self, req: Request) -> Reply:
        self._check_repo(req)
        name = req.params["branch"]
        if self._branch_sha(name) is None:
            raise ApiError(404, "Branch not found")
        body = self._body(req)
        missing = [
            k
            for k in (
                "required_status_checks",
                "enforce_admins",
                "required_pull_request_reviews",
                "restrictions",
            )
            if k not in body
        ]
        if missing:
            raise validation_failed(
                *[f"{k} is missing" for k in missing],
                message="Invalid request.\n\n"
                + ", ".join(f'"{k}"' for k in missing)
                + " wasn't supplied.",
            )
        checks = body.get("required_status_checks")
        reviews = body.get("required_pull_request_reviews")
        contexts: list[str] = []
        strict = False
        if isinstance(checks, dict):
            strict = bool(checks.get("strict", False))
            contexts = [str(c) for c in checks.get("contexts") or []]
            contexts += [
                str(c["context"])
                for c in checks.get("checks") or []
                if c.get("context") not in contexts
            ]
        with self._lock:
            prot = Protection(contexts=contexts, strict=strict)
            if isinstance(reviews, dict):
                prot.required_reviews = int(reviews.get("required_approving_review_count", 1))
                prot.dismiss_stale_reviews = bool(reviews.get("dismiss_stale_reviews", False))
            self._protection[name] = prot
        return Reply(200, self.protection_json(name))

    def delete_protection(self, req: Request) -> Reply:
        self._check_repo(req)
        name = req.params["branch"]
        with self._lock:
            if name not in self._protection or not self._protection[name].enabled:
                raise ApiError(404, "Branch not protected")
            self._protection[name] = Protection()
        return Reply(204, None)

    # git refs

    def _full_ref(self, ref: str) -> str:
        return ref if ref.startswith("refs/") else f"refs/{ref}"

    def get_ref(self, req: Request) -> Reply:
        self._check_repo(req)
        ref = self._full_ref(req.params["ref"])
        sha = self.repo.ref_sha(ref)
        if sha is None:
            raise not_found()
        return Reply(200, self._ref_json(ref, sha))

    def matching_refs(self, req: Request) -> Reply:
        self._check_repo(req)
        prefix = self._full_ref(req.params["ref"])
        items = [
            self._ref_json(name, sha)
            for name, sha in self.repo.refs("refs/")
            if name.startswith(prefix) and not name.startswith("refs/pull/")
        ]
        return self._page(req, items)

    def list_refs(self, req: Request) -> Reply:
        self._check_repo(req)
        items = [
            self._ref_json(name, sha)
            for name, sha in self.repo.refs("refs/")
            if not name.startswith("refs/pull/")
        ]
        return self._page(req, items)

    def create_ref(self, req: Request) -> Reply:
        self._check_repo(req)
        body = self._body(req)
        ref, sha = body.get("ref"), body.get("sha")
        if not isinstance(ref, str) or not isinstance(sha, str):
            raise validation_failed(message='Invalid request.\n\n"ref" and "sha" must be given.')
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise ApiError(
                422, "Reference name must start with 'refs/' and have at least two slashes."
            )
        with self._lock:
            if self.repo.object_type(sha) is None:
                raise ApiError(422, "Object does not exist")
            if self.repo.ref_sha(ref) is not None:
                raise ApiError(422, "Reference already exists")
            try:
                self.repo.update_ref(ref, sha, "0" * 40)
            except GitError as exc:
                raise ApiError(422, "Reference update failed") from exc
            self._refs_changed()
        return Reply(201, self._ref_json(ref, sha), {"Location": f"{self.repo_url}/git/{ref}"})

    def update_ref(self, req: Request) -> Reply:
        self._check_repo(req)
        ref = self._full_ref(req.params["ref"])
        body = self._body(req)
        sha = body.get("sha")
        if not isinstance(sha, str):
            raise validation_failed(message='Invalid request.\n\n"sha" wasn\'t supplied.')
        force = bool(body.get("force", False))
        with self._lock:
            old = self.repo.ref_sha(ref)
            if old is None:
                raise ApiError(422, "Reference does not exist")
            if self.repo.object_type(sha) is None:
                raise ApiError(422, "Object does not exist")
            if not force and not self.repo.is_ancestor(old, sha):
                raise ApiError(422, "Update is not a fast forward")
            self.repo.update_ref(ref, sha, old)
            self._refs_changed()
        return Reply(200, self._ref_json(ref, sha))

    def delete_ref(self, req: Request) -> Reply:
        self._check_repo(req)
        ref = self._full_ref(req.params["ref"])
        with self._lock:
            if self.repo.ref_sha(ref) is None:
                raise ApiError(422, "Reference does not exist")
            self.repo.delete_ref(ref)
            if ref.startswith("refs/heads/"):
                branch = ref.removeprefix("refs/heads/")
                for pr in self._pulls.values():
                    if pr.state == "open" and pr.head_ref == branch:
                        pr.state = "closed"
                        pr.closed_at = pr.updated_at = now()
                        pr.base_sha_at_close = self._branch_sha(pr.base_ref)
        return Reply(204, None)

    # git data

    def create_blob(self, req: Request) -> Reply:
        self._check_repo(req)
        body = self._body(req)
        content = body.get("content")
        encoding = body.get("encoding", "utf-8")
        if not isinstance(content, str):
            raise validation_failed(message='Invalid request.\n\n"content" wasn\'t supplied.')
        if encoding == "base64":
            try:
                data = base64.b64decode(content, validate=False)
            except ValueError as exc:
                raise ApiError(422, "content is not valid Base64") from exc
        elif encoding in {"utf-8", "utf8"}:
            data = content.encode()
        else:
            raise ApiError(422, f"encoding must be utf-8 or base64, not {encoding!r}")
        with self._lock:
            sha = self.repo.hash_blob(data)
        url = f"{self.repo_url}/git/blobs/{sha}"
        return Reply(201, {"url": url, "sha": sha}, {"Location": url})

    def get_blob(self, req: Request) -> Reply:
        self._check_repo(req)
        sha = req.params["file_sha"]
        if self.repo.object_type(sha) != "blob":
            raise not_found()
        data = self.repo.read_object(sha)
        encoded = base64.encodebytes(data).decode()
        return Reply(
            200,
            {
                "sha": self.repo.resolve(sha) or sha,
                "node_id": node_id("B", sha),
                "size": len(data),
                "url": f"{self.repo_url}/git/blobs/{sha}",
                "content": encoded,
                "encoding": "base64",
            },
        )

    def _tree_json(self, sha: str, recursive: bool) -> dict[str, Any]:
        entries = []
        for entry in self.repo.ls_tree(sha, recursive=recursive):
            item: dict[str, Any] = {
                "path": entry.path,
                "mode": entry.mode,
                "type": entry.type,
                "sha": entry.sha,
                "url": f"{self.repo_url}/git/{entry.type}s/{entry.sha}",
            }
            if entry.size is not None:
                item["size"] = entry.size
            entries.append(item)
        return {
            "sha": sha,
            "url": f"{self.repo_url}/git/trees/{sha}",
            "tree": entries,
            "truncated": False,
        }

    def create_tree(self, req: Request) -> Reply:
        self._check_repo(req)
        body = self._body(req)
        items = body.get("tree")
        if not isinstance(items, list):
            raise validation_failed(message='Invalid request.\n\n"tree" wasn\'t supplied.')
        base_tree = body.get("base_tree")
        with self._lock:
            base = None
            if base_tree is not None:
                base = self.repo.resolve(str(base_tree), "tree")
                if base is None:
                    raise ApiError(422, "base_tree is not a valid tree oid")
            changes: list[tuple[str, str | None, str | None, str]] = []
            for item in items:
                path, mode, kind = item.get("path"), item.get("mode"), item.get("type", "blob")
                if (
                    not isinstance(path, str)
                    or not path
                    or mode
                    not in {
                        "100644",
                        "100755",
                        "040000",
                        "160000",
                        "120000",
                    }
                ):
                    raise ApiError(422, "tree.path and tree.mode are required")
                if "content" in item and item["content"] is not None:
                    sha: str | None = self.repo.hash_blob(str(item["content"]).encode())
                    kind = "blob"
                else:
                    sha = item.get("sha")
                    if sha is not None:
                        actual = self.repo.object_type(sha)
                        if actual is None:
                            raise ApiError(422, f"tree.sha {sha} is not a valid {kind}")
                        kind = actual
                changes.append((path, mode, sha, kind))
            tree = self.repo.build_tree(base, changes)
        data = self._tree_json(tree, recursive=False)
        return Reply(201, data, {"Location": data["url"]})

    def get_tree(self, req: Request) -> Reply:
        self._check_repo(req)
        sha = self.repo.resolve(req.params["tree_sha"], "tree")
        if sha is None:
            raise not_found()
        recursive = req.query.get("recursive", "") not in {"", "0", "false"}
        return Reply(200, self._tree_json(sha, recursive))

    def _person(self, data: Any, login: str, default_date: datetime) -> Person:
        if isinstance(data, dict) and data.get("name") and data.get("email"):
            return Person(str(data["name"]), str(data["email"]), parse_iso(data.get("date")))
        return Person(login, f"{login}@users.noreply.github.com", default_date)

    def create_commit(self, req: Request) -> Reply:
        self._check_repo(req)
        body = self._body(req)
        message, tree = body.get("message"), body.get("tree")
        parents = body.get("parents", [])
        if not isinstance(message, str) or not isinstance(tree, str):
            raise validation_failed(
                message='Invalid request.\n\n"message" and "tree" are required.'
            )
        with self._lock:
            if self.repo.object_type(tree) != "tree":
                raise ApiError(422, "Tree SHA does not exist")
            for parent in parents:
                if self.repo.object_type(str(parent)) != "commit":
                    raise ApiError(422, "Parent SHA does not exist or is not a commit object")
            stamp = now()
            author = self._person(body.get("author"), req.login, stamp)
            committer = self._person(body.get("committer"), req.login, stamp)
            if body.get("committer") is None and body.get("author") is not None:
                committer = author
            sha = self.repo.commit_tree(tree, [str(p) for p in parents], message, author, committer)
        data = self.git_commit_json(self.repo.read_commit(sha))
        return Reply(201, data, {"Location": data["url"]})

    def get_git_commit(self, req: Request) -> Reply:
        self._check_repo(req)
        sha = req.params["commit_sha"]
        if self.repo.object_type(sha) != "commit":
            raise not_found()
        full = self.repo.resolve(sha) or sha
        return Reply(200, self.git_commit_json(self.repo.read_commit(full)))

    def get_commit(self, req: Request) -> Reply:
        self._check_repo(req)
        sha = self.repo.resolve(req.params["ref"], "commit")
        if sha is None:
            raise ApiError(422, f"No commit found for SHA: {req.params['ref']}")
        return Reply(200, self.commit_json(sha, files=True))

    def list_commits(self, req: Request) -> Reply:
        self._check_repo(req)
        start = req.query.get("sha") or self.base_branch
        sha = self.repo.resolve(start, "commit")
        if sha is None:
            raise ApiError(404, f"No commit found for SHA: {start}")
        shas = self.repo.log(
            sha,
            path=req.query.get("path") or None,
            since=req.query.get("since"),
            until=req.query.get("until"),
            author=req.query.get("author"),
        )
        page = self._page(req, shas)
        return Reply(200, [self.commit_json(c) for c in page.body], page.headers)

    def compare(self, req: Request) -> Reply:
        self._check_repo(req)
        basehead = req.params["basehead"]
        if "..." not in basehead:
            raise not_found()
        base_name, head_name = basehead.split("...", 1)
        base = self.repo.resolve(base_name.split(":")[-1], "commit")
        head = self.repo.resolve(head_name.split(":")[-1], "commit")
        if base is None or head is None:
            raise not_found()
        merge_base = self.repo.merge_base(base, head)
        if merge_base is None:
            raise ApiError(404, f"No common ancestor between {base_name} and {head_name}.")
        ahead = self.repo.rev_list(base, head)
        behind = self.repo.rev_list(head, base)
        if not ahead and not behind:
            status = "identical"
        elif ahead and behind:
            status = "diverged"
        else:
            status = "ahead" if ahead else "behind"
        changes = self.repo.diff(merge_base, head)
        html = f"{self.html_url}/compare/{basehead}"
        return Reply(
            200,
            {
                "url": f"{self.repo_url}/compare/{basehead}",
                "html_url": html,
                "permalink_url": f"{self.html_url}/compare/{self.owner}:{base[:7]}...{self.owner}:{head[:7]}",
                "diff_url": f"{html}.diff",
                "patch_url": f"{html}.patch",
                "base_commit": self.commit_json(base),
                "merge_base_commit": self.commit_json(merge_base),
                "status": status,
                "ahead_by": len(ahead),
                "behind_by": len(behind),
                "total_commits": len(ahead),
                "commits": [self.commit_json(c) for c in ahead[:250]],
                "files": [self._file_json(c, head) for c in changes],
            },
        )

    # contents

    def _content_json(
        self, path: str, ref: str, entry_type: str, sha: str, size: int
    ) -> dict[str, Any]:
        q = quote(path)
        url = f"{self.repo_url}/contents/{q}?ref={quote(ref)}"
        git_url = f"{self.repo_url}/git/{'trees' if entry_type == 'dir' else 'blobs'}/{sha}"
        html = f"{self.html_url}/{'tree' if entry_type == 'dir' else 'blob'}/{ref}/{q}"
        return {
            "type": entry_type,
            "size": size,
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "url": url,
            "git_url": git_url,
            "html_url": html,
            "download_url": f"{self.base_url}/raw/{self.repository}/{ref}/{q}"
            if entry_type == "file"
            else None,
            "_links": {"self": url, "git": git_url, "html": html},
        }

    def get_contents(self, req: Request) -> Reply:
        self._check_repo(req)
        path = req.params["path"].strip("/")
        ref = req.query.get("ref") or self.base_branch
        commit = self.repo.resolve(ref, "commit")
        if commit is None:
            raise ApiError(404, f"No commit found for the ref {ref}")
        sha = self.repo.resolve(f"{commit}:{path}")
        kind = self.repo.object_type(sha) if sha else None
        if sha is None or kind is None:
            raise not_found()
        if kind == "tree":
            items = []
            for entry in self.repo.ls_tree(sha):
                entry_type = {"tree": "dir", "commit": "submodule"}.get(entry.type, "file")
                items.append(
                    self._content_json(
                        f"{path}/{entry.path}", ref, entry_type, entry.sha, entry.size or 0
                    )
                )
            return Reply(200, items)
        data = self.repo.read_object(sha)
        body = self._content_json(path, ref, "file", sha, len(data))
        body["content"] = base64.encodebytes(data).decode()
        body["encoding"] = "base64"
        return Reply(200, body)

    def put_contents(self, req: Request) -> Reply:
        self._check_repo(req)
        path = req.params["path"].strip("/")
        body = self._body(req)
        message, content = body.get("message"), body.get("content")
        if not isinstance(message, str) or not isinstance(content, str):
            raise validation_failed(
                message='Invalid request.\n\n"message" and "content" wasn\'t supplied.'
            )
        branch = str(body.get("branch") or self.base_branch)
        with self._lock:
            head = self._branch_sha(branch)
            if head is None:
                raise ApiError(404, f"Branch {branch} not found")
            existing = self.repo.resolve(f"{head}:{path}")
            given = body.get("sha")
            if existing is not None and given is None:
                raise ApiError(422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
            if existing is not None and given != existing:
                raise ApiError(409, f"{path} does not match {given}")
            blob = self.repo.hash_blob(base64.b64decode(content))
            tree = self.repo.build_tree(
                self.repo.resolve(head, "tree"), [(path, "100644", blob, "blob")]
            )
            stamp = now()
            author = self._person(body.get("author"), req.login, stamp)
            committer = self._person(body.get("committer"), req.login, stamp)
            sha = self.repo.commit_tree(tree, [head], message, author, committer)
            self.repo.update_ref(f"refs/heads/{branch}", sha, head)
            self._refs_changed()
        size = len(base64.b64decode(content))
        info = self.repo.read_commit(sha)
        commit = self.git_commit_json(info)
        return Reply(
            200 if existing is not None else 201,
            {"content": self._content_json(path, branch, "file", blob, size), "commit": commit},
        )

    # statuses and checks

    def create_status(self, req: Request) -> Reply:
        self._check_repo(req)
        body = self._body(req)
        state = body.get("state")
        if state not in {"error", "failure", "pending", "success"}:
            raise validation_failed(
                {
                    "resource": "Status",
                    "field": "state",
                    "code": "custom",
                    "message": "state is not included in the list",
                }
            )
        sha = self._commit_sha(req.params["sha"])
        data = self.add_status(
            sha,
            str(body.get("context") or "default"),
            state,
            description=body.get("description"),
            target_url=body.get("target_url"),
            creator=req.login,
        )
        return Reply(201, data, {"Location": data["url"]})

    def list_statuses(self, req: Request) -> Reply:
        self._check_repo(req)
        ref = req.params.get("ref") or req.params["sha"]
        sha = self.repo.resolve(ref, "commit")
        if sha is None:
            return self._page(req, [])
        with self._lock:
            statuses = sorted((s for s in self._statuses if s.sha == sha), key=lambda s: -s.id)
        return self._page(req, [self._status_json(s) for s in statuses])

    def combined_status(self, req: Request) -> Reply:
        self._check_repo(req)
        sha = self.repo.resolve(req.params["ref"], "commit")
        if sha is None:
            raise ApiError(422, f"No commit found for SHA: {req.params['ref']}")
        with self._lock:
            statuses = sorted((s for s in self._statuses if s.sha == sha), key=lambda s: -s.id)
        latest: dict[str, Status] = {}
        for status in statuses:
            latest.setdefault(status.context, status)
        states = {s.state for s in latest.values()}
        if states & {"error", "failure"}:
            state = "failure"
        elif not states or "pending" in states:
            state = "pending"
        else:
            state = "success"
        simple = []
        for status in latest.values():
            item = self._status_json(status)
            item.pop("creator")
            item["required"] = (
                status.context in self._protection.get(self.base_branch, Protection()).contexts
            )
            simple.append(item)
        return Reply(
            200,
            {
                "state": state,
                "statuses": simple,
                "sha": sha,
                "total_count": len(simple),
                "repository": self.repo_json(),
                "commit_url": f"{self.repo_url}/commits/{sha}",
                "url": f"{self.repo_url}/commits/{sha}/status",
            },
        )

    def list_check_runs(self, req: Request) -> Reply:
        self._check_repo(req)
        sha = self.repo.resolve(req.params["ref"], "commit")
        if sha is None:
            raise ApiError(422, f"No commit found for SHA: {req.params['ref']}")
        with self._lock:
            runs = sorted(
                (c for c in self._checks.values() if c.head_sha == sha), key=lambda c: -c.id
            )
        name = req.query.get("check_name")
        status = req.query.get("status")
        if name:
            runs = [c for c in runs if c.name == name]
        if status:
            runs = [c for c in runs if c.status == status]
        if req.query.get("filter", "latest") == "latest":
            seen: set[str] = set()
            latest = []
            for run in runs:
                if run.name not in seen:
                    seen.add(run.name)
                    latest.append(run)
            runs = latest
        page = self._page(req, [self._check_json(c) for c in runs])
        return Reply(200, {"total_count": len(runs), "check_runs": page.body}, page.headers)

    def create_check_run(self, req: Request) -> Reply:
        self._check_repo(req)
        body = self._body(req)
        name, head = body.get("name"), body.get("head_sha")
        if not isinstance(name, str) or not isinstance(head, str):
            raise validation_failed(
                message='Invalid request.\n\n"name" and "head_sha" are required.'
            )
        sha = self._commit_sha(head)
        run = CheckRun(self._next_id(), name, sha, "queued", None, None, None, app_name=req.login)
        self._apply_check_update(run, body)
        with self._lock:
            self._checks[run.id] = run
        return Reply(201, self._check_json(run))

    def _apply_check_update(self, run: CheckRun, body: dict[str, Any]) -> None:
        status = body.get("status")
        conclusion = body.get("conclusion")
        if conclusion is not None:
            status = "completed"
        if status is not None:
            if status not in {
                "queued",
                "in_progress",
                "completed",
                "waiting",
                "requested",
                "pending",
            }:
                raise validation_failed(message=f"status {status!r} is not valid")
            run.status = status
            if status == "in_progress" and run.started_at is None:
                run.started_at = now()
        if run.status == "completed":
            if conclusion is None and run.conclusion is None:
                raise validation_failed(message="conclusion is required when status is completed")
            run.conclusion = conclusion or run.conclusion
            run.completed_at = (
                parse_iso(body.get("completed_at")) if body.get("completed_at") else now()
            )
        if body.get("started_at"):
            run.started_at = parse_iso(body["started_at"])
        elif run.started_at is None and run.status != "queued":
            run.started_at = now()
        output = body.get("output")
        if isinstance(output, dict):
            run.title = output.get("title", run.title)
            run.summary = output.get("summary", run.summary)
            run.text = output.get("text", run.text)
        if "external_id" in body:
            run.external_id = body["external_id"]
        if "details_url" in body:
            run.details_url = body["details_url"]
        if "name" in body and isinstance(body["name"], str):
            run.name = body["name"]

    def _check_run(self, ident: str) -> CheckRun:
        with self._lock:
            run = self._checks.get(int(ident)) if ident.isdigit() else None
        if run is None:
            raise not_found()
        return run

    def get_check_run(self, req: Request) -> Reply:
        self._check_repo(req)
        return Reply(200, self._check_json(self._check_run(req.params["check_run_id"])))

    def update_check_run(self, req: Request) -> Reply:
        self._check_repo(req)
        run = self._check_run(req.params["check_run_id"])
        with self._lock:
            self._apply_check_update(run, self._body(req))
        return Reply(200, self._check_json(run))

    # pulls

    def list_pulls(self, req: Request) -> Reply:
        self._check_repo(req)
        state = req.query.get("state", "open")
        head = req.query.get("head")
        base = req.query.get("base")
        with self._lock:
            pulls = sorted(self._pulls.values(), key=lambda p: -p.number)
        if state != "all":
            pulls = [p for p in pulls if p.state == state]
        if head:
            owner, _, branch = head.partition(":")
            if not branch:
                owner, branch = self.owner, owner
            pulls = [
                p for p in pulls if owner.lower() == self.owner.lower() and p.head_ref == branch
            ]
        if base:
            pulls = [p for p in pulls if p.base_ref == base]
        if req.query.get("direction") == "asc":
            pulls.reverse()
        return self._page(req, [self.pull_json(p, full=False) for p in pulls])

    def create_pull(self, req: Request) -> Reply:
        self._check_repo(req)
        body = self._body(req)
        title, head, base = body.get("title"), body.get("head"), body.get("base")
        if not isinstance(head, str) or not isinstance(base, str):
            raise validation_failed(message='Invalid request.\n\n"head" and "base" are required.')
        if not isinstance(title, str) or not title:
            raise validation_failed(
                {"resource": "PullRequest", "field": "title", "code": "missing_field"}
            )
        owner, _, branch = head.partition(":")
        if not branch:
            owner, branch = self.owner, owner
        with self._lock:
            head_sha = self._branch_sha(branch) if owner.lower() == self.owner.lower() else None
            if head_sha is None:
                raise validation_failed(
                    {"resource": "PullRequest", "field": "head", "code": "invalid"}
                )
            base_sha = self._branch_sha(base)
            if base_sha is None:
                raise validation_failed(
                    {"resource": "PullRequest", "field": "base", "code": "invalid"}
                )
            for other in self._pulls.values():
                if other.state == "open" and other.head_ref == branch and other.base_ref == base:
                    raise validation_failed(
                        {
                            "resource": "PullRequest",
                            "code": "custom",
                            "message": f"A pull request already exists for {self.owner}:{branch}.",
                        }
                    )
            if not self.repo.rev_list(base_sha, head_sha):
                raise validation_failed(
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": f"No commits between {base} and {branch}",
                    }
                )
            number = max(self._pulls, default=0) + 1
            stamp = now()
            pr = PullRequest(
                number=number,
                id=self._next_id(),
                title=title,
                body=body.get("body"),
                head_ref=branch,
                base_ref=base,
                user=req.login,
                head_sha=head_sha,
                created_at=stamp,
                updated_at=stamp,
                draft=bool(body.get("draft", False)),
                maintainer_can_modify=bool(body.get("maintainer_can_modify", False)),
            )
            self._pulls[number] = pr
            self.repo.update_ref(f"refs/pull/{number}/head", head_sha)
            self._start_check(pr)
        data = self.pull_json(pr)
        return Reply(201, data, {"Location": data["url"]})

    def get_pull(self, req: Request) -> Reply:
        self._check_repo(req)
        return Reply(200, self.pull_json(self._pr(req.params["pull_number"])))

    def update_pull(self, req: Request) -> Reply:
        self._check_repo(req)
        pr = self._pr(req.params["pull_number"])
        body = self._body(req)
        with self._lock:
            if "title" in body and isinstance(body["title"], str):
                pr.title = body["title"]
            if "body" in body:
                pr.body = body["body"]
            if "base" in body and isinstance(body["base"], str):
                if self._branch_sha(body["base"]) is None:
                    raise validation_failed(
                        {"resource": "PullRequest", "field": "base", "code": "invalid"}
                    )
                pr.base_ref = body["base"]
            state = body.get("state")
            if state == "closed" and pr.state == "open":
                pr.state = "closed"
                pr.closed_at = now()
                pr.head_sha = self._branch_sha(pr.head_ref) or pr.head_sha
                pr.base_sha_at_close = self._branch_sha(pr.base_ref)
            elif state == "open" and pr.state == "closed":
                if pr.merged_at is not None:
                    raise ApiError(422, "Cannot reopen a merged pull request")
                if self._branch_sha(pr.head_ref) is None:
                    raise ApiError(422, "Cannot reopen: the head branch was deleted")
                pr.state = "open"
                pr.closed_at = None
                self._refs_changed()
            elif state not in {None, "open", "closed"}:
                raise validation_failed(
                    {"resource": "PullRequest", "field": "state", "code": "invalid"}
                )
            pr.updated_at = now()
        return Reply(200, self.pull_json(pr))

    def is_merged(self, req: Request) -> Reply:
        self._check_repo(req)
        pr = self._pr(req.params["pull_number"])
        if pr.merged_at is None:
            raise not_found()
        return Reply(204, None)

    def merge_pull(self, req: Request) -> Reply:
        self._check_repo(req)
        pr = self._pr(req.params["pull_number"])
        body = self._body(req)
        method = body.get("merge_method", "merge")
        if method not in MERGE_METHODS:
            raise validation_failed(
                message=f'Invalid request.\n\n"{method}" is not a member of ["merge", "squash", "rebase"].'
            )
        with self._lock:
            if pr.state != "open":
                raise ApiError(405, "Pull Request is not mergeable")
            head = self._pr_head_sha(pr)
            expected = body.get("sha")
            if expected is not None and expected != head:
                raise ApiError(409, "Head branch was modified. Review and try the merge again.")
            state = self._merge_state(pr)
            if state.state in {"dirty", "blocked", "behind", "draft"} or state.tree is None:
                raise ApiError(
                    405, state.reasons[0] if state.reasons else "Pull Request is not mergeable"
                )
            base = self._pr_base_sha(pr)
            sha = self._make_merge_commit(pr, method, base, head, state.tree, body, req.login)
            if sha is None:
                raise ApiError(405, "This branch can't be rebased")
            self.repo.update_ref(f"refs/heads/{pr.base_ref}", sha, base)
            stamp = now()
            pr.state = "closed"
            pr.merged_at = pr.closed_at = pr.updated_at = stamp
            pr.merged_by = req.login
            pr.merge_commit_sha = sha
            pr.head_sha = head
            pr.base_sha_at_close = base
            self._refs_changed()
        return Reply(
            200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}
        )

    def _make_merge_commit(
        self,
        pr: PullRequest,
        method: str,
        base: str,
        head: str,
        tree: str,
        body: dict[str, Any],
        login: str,
    ) -> str | None:
        stamp = now()
        github = Person(*GITHUB_PERSON, stamp)
        merger = Person(login, f"{login}@users.noreply.github.com", stamp)
        title = body.get("commit_title")
        extra = body.get("commit_message")
        if method == "merge":
            title = title or f"Merge pull request #{pr.number} from {self.owner}/{pr.head_ref}"
            message = f"{title}\n\n{extra if extra is not None else pr.title}\n"
            return self.repo.commit_tree(tree, [base, head], message, merger, github)
        commits = self.repo.rev_list(base, head)
        if method == "squash":
            title = title or f"{pr.title} (#{pr.number})"
            if extra is None:
                subjects = [self.repo.read_commit(c).message.strip() for c in commits]
                extra = "\n\n".join(f"* {s}" for s in subjects) if len(subjects) > 1 else ""
            message = f"{title}\n\n{extra}\n" if extra else f"{title}\n"
            author = Person(pr.user, f"{pr.user}@users.noreply.github.com", stamp)
            return self.repo.commit_tree(tree, [base], message, author, github)
        current = base
        for commit in commits:
            info = self.repo.read_commit(commit)
            if len(info.parents) != 1:
                continue  # merge commits are dropped, as a rebase does
            new_tree = self.repo.cherry_pick_tree(current, commit, info.parents[0])
            if new_tree is None:
                return None
            current = self.repo.commit_tree(new_tree, [current], info.message, info.author, github)
        return current

    def pull_files(self, req: Request) -> Reply:
        self._check_repo(req)
        pr = self._pr(req.params["pull_number"])
        head = self._pr_head_sha(pr)
        changes = self._pr_changes(pr, patches=True)
        return self._page(req, [self._file_json(c, head) for c in changes])

    def pull_commits(self, req: Request) -> Reply:
        self._check_repo(req)
        pr = self._pr(req.params["pull_number"])
        return self._page(req, [self.commit_json(c) for c in self._pr_commits(pr)])

    def list_reviews(self, req: Request) -> Reply:
        self._check_repo(req)
        pr = self._pr(req.params["pull_number"])
        with self._lock:
            reviews = sorted(
                (r for r in self._reviews if r.number == pr.number), key=lambda r: r.id
            )
        visible = [r for r in reviews if r.state != "PENDING" or r.user == req.login]
        return self._page(req, [self._review_json(r) for r in visible])

    def create_review(self, req: Request) -> Reply:
        self._check_repo(req)
        pr = self._pr(req.params["pull_number"])
        body = self._body(req)
        event = body.get("event")
        text = body.get("body") or ""
        states = {
            "APPROVE": "APPROVED",
            "REQUEST_CHANGES": "CHANGES_REQUESTED",
            "COMMENT": "COMMENTED",
            None: "PENDING",
        }
        if event not in states:
            raise validation_failed(message=f'Invalid request.\n\n"{event}" is not a valid event.')
        if pr.state != "open" and event is not None:
            raise ApiError(
                422, "Unprocessable Entity", errors=["Can not review a closed pull request"]
            )
        if req.login == pr.user and event in {"APPROVE", "REQUEST_CHANGES"}:
            verb = "approve" if event == "APPROVE" else "request changes on"
            raise ApiError(
                422, "Unprocessable Entity", errors=[f"Can not {verb} your own pull request"]
            )
        if event in {"REQUEST_CHANGES", "COMMENT"} and not text:
            raise ApiError(
                422,
                "Unprocessable Entity",
                errors=[f"Review Can not {event.lower().replace('_', ' ')} without a body"],
            )
        commit_id = str(body.get("commit_id") or self._pr_head_sha(pr))
        review = Review(
            self._next_id(),
            pr.number,
            req.login,
            text,
            states[event],
            commit_id,
            None if event is None else now(),
        )
        with self._lock:
            self._reviews.append(review)
        return Reply(200, self._review_json(review))

    # pull requests are issues: the issue view and its comments

    def _issue_json(self, pr: PullRequest) -> dict[str, Any]:
        u = self.repo_url
        n = pr.number
        with self._lock:
            comments = sum(1 for c in self._comments if c.number == n)
        return {
            "id": pr.id + 500_000_000,
            "node_id": node_id("I", pr.id),
            "url": f"{u}/issues/{n}",
            "repository_url": u,
            "labels_url": f"{u}/issues/{n}/labels{{/name}}",
            "comments_url": f"{u}/issues/{n}/comments",
            "events_url": f"{u}/issues/{n}/events",
            "html_url": f"{self.html_url}/pull/{n}",
            "number": n,
            "state": pr.state,
            "state_reason": None,
            "title": pr.title,
            "body": pr.body,
            "user": self.user_json(pr.user),
            "labels": [],
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "locked": False,
            "active_lock_reason": None,
            "comments": comments,
            "pull_request": {
                "url": f"{u}/pulls/{n}",
                "html_url": f"{self.html_url}/pull/{n}",
                "diff_url": f"{self.html_url}/pull/{n}.diff",
                "patch_url": f"{self.html_url}/pull/{n}.patch",
                "merged_at": iso(pr.merged_at),
            },
            "closed_at": iso(pr.closed_at),
            "created_at": iso(pr.created_at),
            "updated_at": iso(pr.updated_at),
            "closed_by": None,
            "author_association": self._association(pr.user),
        }

    def get_issue(self, req: Request) -> Reply:
        self._check_repo(req)
        return Reply(200, self._issue_json(self._pr(req.params["issue_number"])))

    def update_issue(self, req: Request) -> Reply:
        """Title, body and state of the pull request, through its issue (as PyGithub's
        ``Issue.edit`` does)."""
        self._check_repo(req)
        number = req.params["issue_number"]
        body = {k: v for k, v in self._body(req).items() if k in {"title", "body", "state"}}
        self.update_pull(
            Request(req.method, req.path, {"pull_number": number}, req.query, body, req.login)
        )
        return Reply(200, self._issue_json(self._pr(number)))

    def list_comments(self, req: Request) -> Reply:
        self._check_repo(req)
        pr = self._pr(req.params["issue_number"])
        with self._lock:
            comments = sorted(
                (c for c in self._comments if c.number == pr.number), key=lambda c: c.id
            )
        return self._page(req, [self._comment_json(c) for c in comments])

    def create_comment(self, req: Request) -> Reply:
        self._check_repo(req)
        pr = self._pr(req.params["issue_number"])
        text = self._body(req).get("body")
        if not isinstance(text, str) or not text:
            raise validation_failed(
                {"resource": "IssueComment", "field": "body", "code": "missing_field"}
            )
        stamp = now()
        comment = Comment(self._next_id(), pr.number, req.login, text, stamp, stamp)
        with self._lock:
            self._comments.append(comment)
        data = self._comment_json(comment)
        return Reply(201, data, {"Location": data["url"]})
