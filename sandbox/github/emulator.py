"""The GitHub REST emulator: GitHub's behaviour over a real bare git repository.

``GitHubEmulator`` holds what git does not (pull requests, reviews, comments, statuses, check
runs, branch protection) in memory and keeps content and refs in the bare repository. Its
routes answer what PyGithub calls for this project, with GitHub's JSON shapes and errors; a
pull request whose head moves gets the "Kustomize validation" check run in a background thread.
Every URL in a response is built from the base URL given to ``bind``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from sandbox.github.app import build_app
from sandbox.github.routes_checks import CheckRoutes
from sandbox.github.routes_pulls import PullRoutes
from sandbox.github.routes_repo import RepositoryRoutes
from sandbox.github.validation import CHECK_NAME


class GitHubEmulator(RepositoryRoutes, PullRoutes, CheckRoutes):
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
        rulesets: repository rulesets (see ``Core.set_rulesets``); their required checks apply
            to merges and show in ``GET /rules/branches/{branch}``, not in branch protection.
    """

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
        super().__init__(
            bare_repo,
            repository,
            tokens,
            base_branch=base_branch,
            required_checks=required_checks,
            required_approving_reviews=required_approving_reviews,
            check_duration=check_duration,
            rulesets=rulesets,
        )
        self._add_routes()
        self.app: Starlette = build_app(self)

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
        r("GET", p + "/rules/branches/{branch}", self.get_branch_rules)
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
