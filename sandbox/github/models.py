"""The emulator's own records: pull requests, comments, reviews, statuses, check runs and
branch protection (what GitHub keeps beside git), and the small helpers their JSON needs."""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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
    # context -> the app id that must post it (branch protection's ``checks[].app_id``)
    check_apps: dict[str, int] = field(default_factory=dict)
    strict: bool = False
    required_reviews: int | None = None
    dismiss_stale_reviews: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.contexts) or self.required_reviews is not None


@dataclass
class Ruleset:
    """A repository ruleset: its rules for the branches it targets (fnmatch patterns;
    ``~DEFAULT_BRANCH`` and ``~ALL`` as on GitHub). Only ``active`` rulesets are enforced and
    served by ``GET /rules/branches/{branch}``; ``evaluate`` and ``disabled`` ones are not."""

    id: int
    name: str
    branches: list[str] = field(default_factory=lambda: ["~DEFAULT_BRANCH"])
    enforcement: str = "active"
    # [{"context": name, "integration_id": app id (optional)}]
    required_checks: list[dict[str, Any]] = field(default_factory=list)
    merge_queue: bool = False


def app_id_for(name: str) -> int:
    """The id of the GitHub App that posts check runs as ``name`` (the sandbox CI is fixed)."""
    return SANDBOX_APP_ID if name == "sandbox-ci" else 2_000_000 + user_id(name)


@dataclass
class MergeState:
    mergeable: bool | None
    state: str
    reasons: list[str]
    tree: str | None
