"""The record of one promotion or rollback run, and its markdown summary.

The flows fill a ``RunReport`` as they go and publish ``to_markdown()`` as the run's summary
artifact, also when the run fails, so that the artifact always says what did and did not happen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from promotion.records import Decision, EnvironmentRecord, ReleaseCheck


def now() -> datetime:
    return datetime.now(UTC)


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else "-"


def _seconds(value: float | None) -> str:
    return f"{value:.1f} s" if value is not None else "-"


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
    release: ReleaseCheck | None = None
    environments: list[EnvironmentRecord] = field(default_factory=list)
    rollbacks: list[RollbackReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def environment(self, env: str, argocd_app: str = "") -> EnvironmentRecord:
        for record in self.environments:
            if record.env == env:
                return record
        record = EnvironmentRecord(env, argocd_app)
        self.environments.append(record)
        return record

    @property
    def approvals(self) -> list[Decision]:
        return [d for e in self.environments for d in e.decisions]

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
        if self.release is not None:
            lines += ["", "## Release images", "", "| service | manifest digest |", "|---|---|"]
            lines += [f"| {svc} | `{d}` |" for svc, d in sorted(self.release.digests.items())]
        if self.environments:
            lines += [
                "",
                "## Environments",
                "",
                "| environment | pull request | checks | merge sha | Argo CD | health | history id | duration | note |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for e in self.environments:
                p, m, d = e.proposal, e.merge, e.deployed
                pr = f"[#{p.pr.number}]({p.pr.url})" if p else "-"
                sha = f"`{m.sha[:12]}`" if m else "-"
                notes = [x for x in (e.soak, e.freeze) if x] + list(e.notes)
                if e.verification is not None:
                    notes.append(e.verification.describe())
                if m is not None and m.earlier and not (p is not None and p.by_another_run):
                    notes.append("merged by an earlier execution of this run; confirmed again")
                seconds = None
                if not (m is not None and m.earlier):
                    parts = [x for x in (p.seconds if p else None, m.seconds if m else None) if x]
                    seconds = sum(parts) + (d.seconds if d else 0.0) if parts or d else None
                lines.append(
                    f"| {e.env} | {pr} | {p.describe_checks() if p else '-'} | {sha} | "
                    f"{e.argocd_app}: {'Synced at `' + d.revision[:12] + '`' if d else '-'} | "
                    f"{d.health if d else (e.health or '-')} | "
                    f"{d.history_id if d and d.history_id is not None else '-'} | "
                    f"{_seconds(seconds)} | {'; '.join(notes)} |"
                )
        for e in self.environments:
            if e.verification is not None:
                lines += ["", f"## Verification in {e.env}", "", e.verification.to_markdown()]
        if self.approvals:
            lines += [
                "",
                "## Approvals",
                "",
                "| gate | decision | by | when | approved | identity | comment |",
                "|---|---|---|---|---|---|---|",
            ]
            for a in self.approvals:
                decision = "approved" if a.approved else "rejected"
                comment = a.comment.replace("|", "\\|").replace("\n", " ") or "-"
                b = a.binding
                what = (
                    f"{b.version} in {b.environment}, PR #{b.pr_number} at `{b.head_sha[:12]}`, "
                    f"diff `{b.diff_digest[:12]}`"
                )
                lines.append(
                    f"| {a.gate} | {decision} | {a.approver} | {_when(a.at)} | {what} | "
                    f"{a.identity} | {comment} |"
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
