"""The records the steps of a promotion return, composed (not copied) into the run's summary.

Each step of ``promote-release`` returns one of these: ``ReleaseCheck`` (the registry),
``Proposal`` (the PR and its checks), ``Decision`` (an approval, with the ``Binding`` of what it
approved), ``MergeRecord`` (the merge) and ``argocd.Deployed`` (Argo CD runs it). An
``EnvironmentRecord`` holds the records of one environment as they arrive.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime

from promotion.argocd import Deployed
from promotion.github import ChecksSummary, PullRequestInfo
from promotion.verify import VerificationResult


def digest_of(value: object) -> str:
    """sha256 hex of a JSON-able value in canonical form."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ReleaseCheck:
    """Every image of the release is in the registry; ``digests``: service -> manifest digest."""

    version: str
    digests: Mapping[str, str]

    @property
    def digest(self) -> str:
        return digest_of(dict(self.digests))

    def moved(self, now: Mapping[str, str]) -> list[str]:
        """``service: old -> new`` for every image whose tag now names another manifest."""
        return [
            f"{service}: {self.digests[service]} -> {now.get(service, '(missing)')}"
            for service in sorted(self.digests)
            if now.get(service) != self.digests[service]
        ]


@dataclass(frozen=True)
class Proposal:
    """The environment's promotion PR, its own diff (read from the PR) and its passed checks."""

    env: str
    pr: PullRequestInfo
    diff: str
    diff_digest: str
    checks: ChecksSummary | None  # None: merged by an earlier execution of this run
    seconds: float | None = None
    # Merged before this run started, by another promotion of the same release: nothing to
    # merge or approve before a merge here (this run only confirms it runs).
    by_another_run: bool = False

    @property
    def merged(self) -> bool:
        return self.pr.merged

    def describe_checks(self) -> str:
        return self.checks.describe() if self.checks is not None else "passed before the merge"


@dataclass(frozen=True)
class Binding:
    """What an approval approves; any change voids it."""

    gate: str
    version: str
    environment: str
    pr_number: int
    head_sha: str
    diff_digest: str
    images_digest: str
    parameters_digest: str

    @property
    def digest(self) -> str:
        return digest_of(asdict(self))

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def why_void(self, earlier: Mapping[str, object]) -> str:
        """Why an answer given for ``earlier`` (a binding as a dict) does not hold for this one."""
        reasons = []
        if earlier.get("parameters_digest") != self.parameters_digest or (
            earlier.get("version") != self.version
        ):
            reasons.append(
                f"the run's parameters changed (version {earlier.get('version')} -> {self.version})"
                if earlier.get("version") != self.version
                else "the run's parameters changed"
            )
        if earlier.get("pr_number") != self.pr_number:
            reasons.append(f"the PR changed (#{earlier.get('pr_number')} -> #{self.pr_number})")
        elif earlier.get("head_sha") != self.head_sha:
            reasons.append(
                f"the PR's head moved ({str(earlier.get('head_sha'))[:12]} -> "
                f"{self.head_sha[:12]}: the base moved and the PR was rebuilt)"
            )
        elif earlier.get("diff_digest") != self.diff_digest:
            reasons.append("the PR's diff changed")
        if earlier.get("images_digest") != self.images_digest:
            reasons.append("an image of the release now names another manifest digest")
        return "; ".join(reasons) or "what it approved changed"


@dataclass(frozen=True)
class Decision:
    """A person's answer at a gate, accepted for exactly ``binding``."""

    gate: str
    approved: bool
    approver: str
    comment: str
    at: datetime
    binding: Binding
    evidence: str | None = None  # the GitHub act that confirmed it; None: the form only

    @property
    def identity(self) -> str:
        return self.evidence or "Prefect form only (Prefect OSS has no user identity)"


@dataclass(frozen=True)
class MergeRecord:
    """The PR merged as ``sha``; ``earlier`` when an earlier execution of this run merged it."""

    env: str
    pr_number: int
    sha: str
    earlier: bool = False
    seconds: float | None = None


@dataclass
class EnvironmentRecord:
    """What happened in one environment, step by step (each field a step's own record)."""

    env: str
    argocd_app: str
    proposal: Proposal | None = None
    decisions: list[Decision] = field(default_factory=list)
    merge: MergeRecord | None = None
    deployed: Deployed | None = None
    health: str | None = None  # a health that ended the step (Degraded, Progressing)
    soak: str | None = None  # how long the release soaked in the previous environment
    freeze: str | None = None  # a freeze window met before the merge (waited, overridden)
    verification: VerificationResult | None = None  # the checks after deploy
    notes: list[str] = field(default_factory=list)
