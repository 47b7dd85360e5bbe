"""The emulator's core: its state, the JSON shapes of GitHub's objects, and pull request
logic (mergeability, the validation check). The route handlers build on it (``routes_*``)."""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from starlette.applications import Starlette

from sandbox.github.faults import Faults, Stats
from sandbox.github.githttp import CgiResponse, http_backend
from sandbox.github.gitrepo import CommitInfo, FileChange, GitRepo, Person
from sandbox.github.models import (
    CheckRun,
    Comment,
    MergeState,
    Protection,
    PullRequest,
    Review,
    Ruleset,
    Status,
    app_id_for,
    iso,
    node_id,
    now,
    user_id,
)
from sandbox.github.routing import (
    ApiError,
    Handler,
    Reply,
    Request,
    Router,
    not_found,
)
from sandbox.github.validation import CHECK_NAME, run_validation
from sandbox.http import RunningServer, serve_in_thread


class Core:
    """State, URLs, JSON shapes and pull request logic shared by the route handlers.

    ``GitHubEmulator`` (in ``sandbox.github.emulator``) adds the routes and the ASGI ``app``.
    """

    app: Starlette

    def __init__(
        self,
        bare_repo: Path,
        repository: str,
        tokens: dict[str, str],
        base_branch: str = "main",
        required_checks: Iterable[str | Mapping[str, Any]] = (CHECK_NAME,),
        required_approving_reviews: int = 0,
        check_duration: float = 0.0,
        rulesets: Iterable[Mapping[str, Any]] = (),
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
        self._rulesets: list[Ruleset] = []
        self._base_url: str | None = None
        self.set_protection(
            base_branch,
            list(required_checks),
            required_approving_reviews if required_approving_reviews > 0 else None,
        )
        self.set_rulesets(rulesets)
        self.router = Router()

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

    def set_rulesets(self, rulesets: Iterable[Mapping[str, Any]]) -> list[Ruleset]:
        """Replace the repository's rulesets. Each: ``{"name", "branches": [fnmatch patterns or
        "~DEFAULT_BRANCH" / "~ALL"], "enforcement": "active"|"evaluate"|"disabled",
        "required_checks": [name or {"context", "integration_id"?}], "merge_queue": bool}``."""
        built = []
        for number, spec in enumerate(rulesets, start=1):
            checks = [
                {"context": c} if isinstance(c, str) else dict(c)
                for c in spec.get("required_checks", [])
            ]
            built.append(
                Ruleset(
                    id=int(spec.get("id", 4_000_000 + number)),
                    name=str(spec.get("name", f"ruleset {number}")),
                    branches=list(spec.get("branches", ["~DEFAULT_BRANCH"])),
                    enforcement=str(spec.get("enforcement", "active")),
                    required_checks=checks,
                    merge_queue=bool(spec.get("merge_queue", False)),
                )
            )
        with self._lock:
            self._rulesets = built
        return built

    def rulesets_for(self, branch: str) -> list[Ruleset]:
        """The active rulesets whose branch patterns match ``branch``."""

        def matches(pattern: str) -> bool:
            if pattern == "~ALL":
                return True
            if pattern == "~DEFAULT_BRANCH":
                return branch == self.base_branch
            return fnmatchcase(branch, pattern.removeprefix("refs/heads/"))

        with self._lock:
            rulesets = list(self._rulesets)
        return [r for r in rulesets if r.enforcement == "active" and any(map(matches, r.branches))]

    def required_contexts(self, branch: str) -> list[str]:
        """Every check ``branch`` requires: branch protection's, then the rulesets'."""
        with self._lock:
            names = list(self._protection.get(branch, Protection()).contexts)
        for ruleset in self.rulesets_for(branch):
            for check in ruleset.required_checks:
                if check["context"] not in names:
                    names.append(str(check["context"]))
        return names

    def set_protection(
        self,
        branch: str | None = None,
        required_checks: Iterable[str | Mapping[str, Any]] | None = None,
        required_approving_reviews: int | None = None,
        strict: bool | None = None,
        dismiss_stale_reviews: bool | None = None,
    ) -> None:
        """Change branch protection of ``branch`` (default: the base branch).

        ``None`` leaves a setting as it is; ``required_checks=[]`` and
        ``required_approving_reviews=0`` remove the requirement. A required check is a context
        name or ``{"context", "app_id"}`` (the app that must post it).
        """
        with self._lock:
            prot = self._protection.setdefault(branch or self.base_branch, Protection())
            if required_checks is not None:
                prot.contexts, prot.check_apps = [], {}
                for check in required_checks:
                    if isinstance(check, str):
                        prot.contexts.append(check)
                        continue
                    prot.contexts.append(str(check["context"]))
                    if check.get("app_id") is not None:
                        prot.check_apps[str(check["context"])] = int(check["app_id"])
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
                "checks": [{"context": c, "app_id": prot.check_apps.get(c)} for c in prot.contexts],
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
                "checks": [{"context": c, "app_id": prot.check_apps.get(c)} for c in prot.contexts],
            },
        }

    def branch_rules_json(self, branch: str) -> list[dict[str, Any]]:
        """``GET /rules/branches/{branch}``: the rules of every active ruleset for ``branch``."""
        rules: list[dict[str, Any]] = []
        for ruleset in self.rulesets_for(branch):
            source = {
                "ruleset_source_type": "Repository",
                "ruleset_source": self.repository,
                "ruleset_id": ruleset.id,
            }
            if ruleset.required_checks:
                rules.append(
                    {
                        "type": "required_status_checks",
                        "parameters": {
                            "required_status_checks": [dict(c) for c in ruleset.required_checks],
                            "strict_required_status_checks_policy": False,
                        },
                        **source,
                    }
                )
            if ruleset.merge_queue:
                rules.append(
                    {
                        "type": "merge_queue",
                        "parameters": {
                            "check_response_timeout_minutes": 60,
                            "grouping_strategy": "ALLGREEN",
                            "max_entries_to_build": 5,
                            "max_entries_to_merge": 5,
                            "merge_method": "SQUASH",
                            "min_entries_to_merge": 1,
                            "min_entries_to_merge_wait_minutes": 5,
                        },
                        **source,
                    }
                )
        return rules

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
            "id": app_id_for(name),
            "slug": name,
            "client_id": "Iv1.sandbox0000000000",
            "node_id": node_id("A", app_id_for(name)),
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
        for context in self.required_contexts(pr.base_ref):
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

    # -- helpers of the route handlers ----------------------------------------------------

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
