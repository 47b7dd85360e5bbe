"""The record of one promotion or rollback run, and its markdown summary.

The flows fill a ``RunReport`` as they go and publish ``to_markdown()`` as the run's summary
artifact, also when the run fails, so that the artifact always says what did and did not happen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else "-"


def _seconds(value: float | None) -> str:
    return f"{value:.1f} s" if value is not None else "-"


@dataclass
class EnvironmentReport:
    env: str
    pr_number: int | None = None
    pr_url: str | None = None
    checks: str = "-"
    merge_sha: str | None = None
    argocd_app: str | None = None
    sync: str = "-"
    health: str = "-"
    history_id: int | None = None
    seconds: float | None = None
    note: str = ""


@dataclass
class ApprovalReport:
    gate: str
    approved: bool
    approver: str
    comment: str
    at: datetime = field(default_factory=now)
    github_review: str | None = None


@dataclass
class RollbackReport:
    env: str
    method: str
    from_revision: str | None
    to_revision: str | None
    seconds: float | None
    detail: str = ""


@dataclass
class RunReport:
    """What one run did, step by step; rendered as the run's markdown summary."""

    title: str
    version: str | None = None
    initiator: str | None = None
    started: datetime = field(default_factory=now)
    finished: datetime | None = None
    outcome: str = "running"
    reason: str = ""
    changes_markdown: str = ""
    environments: list[EnvironmentReport] = field(default_factory=list)
    approvals: list[ApprovalReport] = field(default_factory=list)
    rollbacks: list[RollbackReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def environment(self, env: str) -> EnvironmentReport:
        for report in self.environments:
            if report.env == env:
                return report
        report = EnvironmentReport(env)
        self.environments.append(report)
        return report

    def finish(self, outcome: str, reason: str = "") -> None:
        self.outcome = outcome
        self.reason = reason
        self.finished = now()

    def to_markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        lines.append(f"**Outcome:** {self.outcome}" + (f": {self.reason}" if self.reason else ""))
        if self.version:
            lines.append(f"**Version:** `{self.version}`")
        if self.initiator:
            lines.append(f"**Started by:** {self.initiator}")
        lines.append(f"**Started:** {_when(self.started)}  ")
        lines.append(f"**Finished:** {_when(self.finished)}")
        if self.changes_markdown:
            lines += ["", "## Image changes", "", self.changes_markdown]
        if self.environments:
            lines += [
                "",
                "## Environments",
                "",
                "| environment | pull request | checks | merge sha | Argo CD sync | health | history id | duration | note |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for e in self.environments:
                pr = f"[#{e.pr_number}]({e.pr_url})" if e.pr_number else "-"
                sha = f"`{e.merge_sha[:12]}`" if e.merge_sha else "-"
                lines.append(
                    f"| {e.env} | {pr} | {e.checks} | {sha} | {e.sync} | {e.health} | "
                    f"{e.history_id if e.history_id is not None else '-'} | {_seconds(e.seconds)} | {e.note} |"
                )
        if self.approvals:
            lines += [
                "",
                "## Approvals",
                "",
                "| gate | decision | by | when | comment | GitHub review |",
                "|---|---|---|---|---|---|",
            ]
            for a in self.approvals:
                decision = "approved" if a.approved else "rejected"
                comment = a.comment.replace("|", "\\|").replace("\n", " ") or "-"
                lines.append(
                    f"| {a.gate} | {decision} | {a.approver} | {_when(a.at)} | {comment} | {a.github_review or '-'} |"
                )
        if self.rollbacks:
            lines += [
                "",
                "## Rollbacks",
                "",
                "| environment | method | from | to | duration | detail |",
                "|---|---|---|---|---|---|",
            ]
            for r in self.rollbacks:
                lines.append(
                    f"| {r.env} | {r.method} | `{(r.from_revision or '-')[:12]}` | "
                    f"`{(r.to_revision or '-')[:12]}` | {_seconds(r.seconds)} | {r.detail} |"
                )
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"
