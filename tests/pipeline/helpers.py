"""Shared steps of the pipeline tests: read the sandbox, give approvals, set up a merged release."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from deployments.runs import resume_run
from pipeline.conftest import BackgroundRun
from promotion.argocd import ArgoCDClient
from promotion.config import DEFAULT_CONFIG
from promotion.github import GitHubClient, PullRequestInfo
from promotion.kustomize import read_image_tags
from sandbox.launcher import Sandbox

PROD = "kustomize/prod/kustomization.yaml"
STAGING = "kustomize/staging/kustomization.yaml"
INITIATOR = "rel-eng-dave"


def tags(box: Sandbox, path: str, ref: str = "main") -> set[str]:
    return set(read_image_tags(box.github.read_file(ref, path)).values())


def decide(
    api: str, run: BackgroundRun, gate: str, approver: str, approved: bool = True, comment: str = ""
) -> None:
    """Wait for ``gate`` and give the decision; the server must accept it."""
    run.wait_paused(f"{gate}-approval")
    result = resume_run(
        api, run.run_id, {"approved": approved, "approver": approver, "comment": comment}
    )
    assert result.status == "ACCEPT", result


def promoted(
    api: str, start: Callable[..., BackgroundRun], version: str = "v1.0.1", **parameters: Any
) -> BackgroundRun:
    """Promote ``version`` through staging and prod (QA, then PM approve); it must complete."""
    from flows.promote import promote_release

    run = start(promote_release, version=version, initiator=INITIATOR, **parameters)
    decide(api, run, "qa", "qa-alice")
    decide(api, run, "pm", "pm-carol")
    final = run.join()
    assert final.state_type == "COMPLETED", final.message
    return run


def pulls(box: Sandbox, state: str = "all") -> list[dict[str, Any]]:
    response = httpx.get(
        f"{box.info.github_url}/repos/{box.info.repo}/pulls",
        params={"state": state, "per_page": 100},
        headers={"Authorization": f"token {box.info.github_token}"},
    )
    response.raise_for_status()
    return list(response.json())


def comments(box: Sandbox, number: int) -> list[str]:
    response = httpx.get(
        f"{box.info.github_url}/repos/{box.info.repo}/issues/{number}/comments",
        headers={"Authorization": f"token {box.info.github_token}"},
    )
    response.raise_for_status()
    return [str(c["body"]) for c in response.json()]


def argo(box: Sandbox) -> ArgoCDClient:
    return ArgoCDClient(box.info.argocd_url, box.info.argocd_token)


def github(box: Sandbox) -> GitHubClient:
    return GitHubClient(box.info.github_url, box.info.github_token, box.info.repo)


def merged_promotion(box: Sandbox, env: str, version: str) -> PullRequestInfo:
    """Promote ``version`` into ``env`` with the clients alone (no flow): PR, checks, merge, live."""
    environment = box.config.environment(env)
    with github(box) as gh:
        pr = gh.open_promotion_pr(environment, version, box.config.images())
        gh.wait_for_checks(pr.number, box.config.github.required_checks, timeout=60)
        merged = gh.merge(pr.number, "squash", expected_head_sha=pr.head_sha)
        info = gh.get_pr(pr.number)
    with argo(box) as client:
        client.confirm_deployed(environment.argocd_app, merged.sha, timeout=60, poll_interval=0.2)
    return info


def setup_with_pm_review(tmp_path: Path) -> str:
    """A copy of the default setup whose PM gate also needs an approving GitHub review."""
    setup = tmp_path / "promotion.yaml"
    setup.write_text(
        DEFAULT_CONFIG.read_text().replace(
            "approvers: [pm-carol]\n        github_evidence: none",
            "approvers: [pm-carol]\n        github_evidence: review",
        )
    )
    assert "github_evidence: review" in setup.read_text()
    return str(setup)


def approve_on_github(box: Sandbox, pr_number: int, login: str) -> None:
    """``login`` submits an approving review of the PR's current head, with its own token."""
    review = httpx.post(
        f"{box.info.github_url}/repos/{box.info.repo}/pulls/{pr_number}/reviews",
        json={"event": "APPROVE", "body": "LGTM"},
        headers={"Authorization": f"token {box.info.reviewer_tokens[login]}"},
    )
    assert review.status_code == 200, review.text
