"""Contract tests: every JSON body the emulator answers validates against GitHub's schemas.

The schemas come from GitHub's official REST description (``tests/data/github/schemas.json``,
made by ``tests/data/github/extract.py``). A scenario drives every implemented route through
PyGithub and raw HTTP with the emulator's journal on; then each recorded answer is validated
against the schema of its operation and status, and error answers against GitHub's error shapes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from github import Github, GithubException, InputGitTreeElement
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from promotion.config import PromotionConfig
from sandbox.seed import seed_repository
from tests.github_emulator.conftest import DEV_TOKEN, PM_TOKEN, REPO, Sandbox, start
from tests.github_emulator.helpers import OVERLAY, open_change_pr, wait_check

SCHEMAS = json.loads(
    (Path(__file__).parent.parent / "data" / "github" / "schemas.json").read_text()
)


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(
        {**schema, "$defs": SCHEMAS["$defs"]}, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def _errors_of(schema: dict[str, Any], body: Any) -> list[ValidationError]:
    return sorted(_validator(schema).iter_errors(body), key=lambda e: list(e.absolute_path))


def drive_every_route(sandbox: Sandbox, gh: Github) -> None:
    emu = sandbox.emu
    api = emu.api_url
    auth = {"Authorization": f"token {DEV_TOKEN}"}
    repo = gh.get_repo(REPO)
    gh.get_user().login  # noqa: B018
    httpx.get(f"{api}/rate_limit", headers=auth)
    list(repo.get_branches())
    branch = repo.get_branch("main")
    branch.get_protection()
    branch.edit_protection(
        strict=False,
        contexts=["Kustomize validation"],
        required_approving_review_count=1,
    )
    emu.set_rulesets(
        [
            {
                "name": "gate",
                "required_checks": [{"context": "Kustomize validation", "integration_id": 15368}],
            },
            {"name": "queue", "branches": ["release/*"], "merge_queue": True},
        ]
    )
    httpx.get(f"{api}/repos/{REPO}/rules/branches/main", headers=auth)
    httpx.get(f"{api}/repos/{REPO}/rules/branches/release/1.0", headers=auth)
    list(repo.get_git_matching_refs("heads/"))
    pr = open_change_pr(repo, "promote/prod/v1.0.1")  # blobs, trees, commits, refs, pulls
    repo.get_git_blob(repo.get_contents(OVERLAY, ref=pr.head.ref).sha)  # type: ignore[union-attr]
    repo.get_contents("kustomize", ref="main")  # a directory listing
    head = repo.get_git_commit(pr.head.sha)
    repo.get_git_tree(head.tree.sha, recursive=True)
    repo.get_commit(pr.head.sha)
    wait_check(repo, pr.head.sha)
    list(repo.get_pulls(state="all", head="acme:promote/prod/v1.0.1"))
    pr.edit(body="frontend: v1.0.0 -> v1.0.1 (edited)")
    list(pr.get_files())
    comparison = repo.compare("main", pr.head.ref)
    assert (comparison.status, comparison.ahead_by) == ("ahead", 1)
    history = [c.sha for c in repo.get_commits(sha=pr.head.ref, path=OVERLAY)]
    assert history == [pr.head.sha, sandbox.seed_sha]
    list(pr.get_commits())
    pr.create_issue_comment("Checks are running")
    list(pr.get_issue_comments())
    issue = repo.get_issue(pr.number)
    assert issue.pull_request is not None
    issue.edit(title=pr.title)
    pm = sandbox.client(PM_TOKEN).get_repo(REPO).get_pull(pr.number)
    pm.create_review(body="Looks right", event="COMMENT")
    pm.create_review(event="APPROVE")
    list(pr.get_reviews())
    commit = repo.get_commit(pr.head.sha)
    commit.create_status("success", "https://ci.example.invalid/1", "lint ok", "ci/lint")
    list(commit.get_statuses())  # GET /statuses/{sha}
    httpx.get(f"{api}/repos/{REPO}/commits/{pr.head.sha}/statuses", headers=auth)
    commit.get_combined_status()
    run = repo.create_check_run("external", pr.head.sha, status="in_progress")
    run.edit(conclusion="success", output={"title": "ok", "summary": "all good"})
    repo.get_check_run(run.id)
    list(commit.get_check_runs())
    # PUT contents, then a branch that only moves by ref update
    readme = repo.get_contents("README.md", ref="main")
    assert not isinstance(readme, list)
    repo.create_git_ref("refs/heads/docs", emu.head("main"))
    repo.update_file("README.md", "Docs", "# docs\n", readme.sha, branch="docs")
    repo.create_file("NOTES.md", "Notes", "notes\n", branch="docs")
    docs_ref = repo.get_git_ref("heads/docs")
    docs_ref.edit(emu.head("docs"))
    pr.merge(merge_method="squash", sha=pr.head.sha)
    # errors: 404, 405, 409, 422 (both shapes), 401
    for call in (
        lambda: repo.get_pull(999),
        lambda: pr.merge(),
        lambda: repo.create_git_ref("refs/heads/docs", emu.head("main")),
        lambda: repo.create_pull(base="main", head="nope", title="x"),
        lambda: pm.create_review(event="APPROVE"),
        lambda: sandbox.client("ghp_wrong").get_repo(REPO),
    ):
        with pytest.raises(GithubException):
            call()
    other = open_change_pr(repo, "stale", content="stale\n", path="README.md")
    blob = repo.create_git_blob(base64.b64encode(b"x\n").decode(), "base64")
    tree = repo.create_git_tree([InputGitTreeElement("x", "100644", "blob", sha=blob.sha)])
    moved = repo.create_git_commit("moved", tree, [repo.get_git_commit(other.head.sha)])
    repo.get_git_ref("heads/stale").edit(moved.sha)
    with pytest.raises(GithubException):
        other.merge(sha=other.head.sha)  # 409
    emu.wait_for_checks()


@pytest.fixture(scope="module")
def driven(tmp_path_factory: pytest.TempPathFactory, config: PromotionConfig) -> Iterator[Sandbox]:
    """An emulator that answered a call on every route, with its journal of answers."""
    bare = tmp_path_factory.mktemp("contract") / "repo.git"
    for sandbox in start(bare, seed_repository(bare, config)):
        sandbox.emu.journal_enabled = True
        drive_every_route(sandbox, sandbox.client())
        yield sandbox


@pytest.fixture(scope="module")
def journal(driven: Sandbox) -> list[tuple[str, int, Any]]:
    return driven.emu.journal


def test_every_answer_matches_githubs_schema(journal: list[tuple[str, int, Any]]) -> None:
    operations = SCHEMAS["operations"]
    problems: list[str] = []
    covered: set[str] = set()
    for key, status, body in journal:
        if status >= 400 or body is None:
            continue
        schemas = operations.get(key, {})
        schema = schemas.get(str(status))
        if schema is None:
            if key in operations:
                problems.append(f"{key}: answered {status}, GitHub documents {sorted(schemas)}")
            continue
        covered.add(key)
        for error in _errors_of(schema, body)[:3]:
            where = "/".join(str(p) for p in error.absolute_path)
            problems.append(f"{key} {status} at {where or '(top)'}: {error.message[:200]}")
    assert not problems, "\n".join(problems)
    missing = sorted(set(operations) - covered)
    assert not missing, f"operations never exercised: {missing}"


# Routes the emulator serves that GitHub's description does not list, or that answer no body.
NO_SCHEMA = {
    "GET /repos/{owner}/{repo}/git/refs",  # legacy list form PyGithub's get_git_refs uses
    "GET /repos/{owner}/{repo}/git/refs/{ref}",  # legacy read form (GitHub still answers it)
    "DELETE /repos/{owner}/{repo}/git/refs/{ref}",  # 204
    "DELETE /repos/{owner}/{repo}/branches/{branch}/protection",  # 204
    "GET /repos/{owner}/{repo}/pulls/{pull_number}/merge",  # 204 or 404
}


def test_every_route_has_a_schema(driven: Sandbox) -> None:
    emulator_routes = {route.key for route in driven.emu.router.routes}
    unknown = sorted(emulator_routes - set(SCHEMAS["operations"]) - NO_SCHEMA)
    assert not unknown, f"routes without a GitHub schema: {unknown}"


def test_error_answers_match_githubs_error_shapes(journal: list[tuple[str, int, Any]]) -> None:
    errors = SCHEMAS["errors"]
    seen: set[int] = set()
    for key, status, body in journal:
        if status < 400:
            continue
        seen.add(status)
        if status == 422:
            candidates = [errors["validation-error"], errors["validation-error-simple"]]
        else:
            candidates = [errors["basic-error"]]
        assert any(not _errors_of(c, body) for c in candidates), (key, status, body)
        assert isinstance(body["message"], str) and body["documentation_url"].startswith("https://")
    assert {404, 405, 409, 422} <= seen
