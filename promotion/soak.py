"""Soak time: how long a release has run in an environment, and when the next one may take it.

A release soaks in an environment from the moment it went live there: the ``deployedAt`` of the
oldest Argo CD history entry of the current uninterrupted run of deployments that contain it
(a later commit that leaves the release in place does not restart the clock; a rollback to a
revision without it does), or a timestamp the caller observed (when ``confirm_deployed`` saw it
Synced and Healthy). ``soak_minutes`` of the environment is the minimum before the *next*
environment may merge it (Kargo's "soak time" on a stage's verification). Pure; all instants
are time-zone aware.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "SoakStatus",
    "healthy_since_from_history",
    "healthy_since_history_id",
    "live_since",
    "soak_status",
]


def _utc(at: datetime, what: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be time-zone aware, got {at.isoformat()}")
    return at.astimezone(UTC)


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def _fields(entry: Any) -> tuple[int, str, datetime | None]:
    """(id, revision, deployedAt) of an Argo CD history entry: its JSON or a parsed model."""
    if isinstance(entry, Mapping):
        return (
            int(entry.get("id", 0)),
            str(entry.get("revision", "")),
            _parse_time(entry.get("deployedAt")),
        )
    return (
        int(getattr(entry, "id", 0)),
        str(getattr(entry, "revision", "")),
        _parse_time(getattr(entry, "deployed_at", None)),
    )


def healthy_since_from_history(
    history: Sequence[Any], contains: Callable[[str], bool] | Collection[str]
) -> datetime | None:
    """When the release went live, from an Application's ``status.history``.

    Args:
        history: The entries (Argo CD JSON mappings with ``id``, ``revision``, ``deployedAt``,
            or objects with ``id``, ``revision``, ``deployed_at``), in any order.
        contains: Whether a revision (commit SHA) holds the release: a predicate, or the
            collection of such revisions.

    Returns:
        The ``deployedAt`` of the oldest entry of the newest uninterrupted run of entries that
        contain the release, or None when the newest entry does not contain it.
    """
    check = contains if callable(contains) else contains.__contains__
    entries = sorted((_fields(e) for e in history), key=lambda e: e[0])
    since: datetime | None = None
    for _, revision, deployed_at in reversed(entries):
        if not check(revision):
            break
        since = deployed_at if deployed_at is not None else since
    return _utc(since, "deployedAt") if since is not None else None


def healthy_since_history_id(history: Sequence[Any], history_id: int) -> datetime | None:
    """When the deployment ``history_id`` (what ``confirm_deployed`` reports) went live, if the
    environment still runs it or a later revision deployed after it without going back to one
    deployed before it (a rollback); else None."""
    entries = sorted((_fields(e) for e in history), key=lambda e: e[0])
    before = {rev for id_, rev, _ in entries if id_ < history_id}
    after = {rev for id_, rev, _ in entries if id_ >= history_id} - before
    if not any(id_ == history_id for id_, _, _ in entries):
        return None
    return healthy_since_from_history(history, after)


def live_since(history: Sequence[Any], health: str) -> datetime | None:
    """Since when an environment runs what it runs now, Healthy, from its Application alone.

    Without Git, the history does not say which revisions hold a release: this is the run of
    deployments of the newest entry's revision (``healthy_since_from_history``), so a later
    commit that leaves the release in place restarts it here, never lengthens it (a status
    view, not a gate: ``healthy_since_history_id`` is what the promotion waits on).

    Args:
        history: The Application's ``status.history`` (as ``healthy_since_from_history``).
        health: Its ``status.health.status``.

    Returns:
        The ``deployedAt`` of that run, or None when it is not Healthy or has no history.
    """
    entries = sorted((_fields(e) for e in history), key=lambda e: e[0])
    if health != "Healthy" or not entries:
        return None
    return healthy_since_from_history(history, {entries[-1][1]})


@dataclass(frozen=True)
class SoakStatus:
    """How long ``version`` has soaked in ``env`` at ``at``, against what is required."""

    env: str
    version: str
    healthy_since: datetime | None
    required: timedelta
    at: datetime

    @property
    def soaked(self) -> timedelta:
        if self.healthy_since is None:
            return timedelta(0)
        return max(self.at - self.healthy_since, timedelta(0))

    @property
    def ready_at(self) -> datetime | None:
        """When it may move on (None: it does not run there, so it never will by waiting)."""
        if self.healthy_since is None:
            return None if self.required > timedelta(0) else self.at
        return self.healthy_since + self.required

    @property
    def ready(self) -> bool:
        ready_at = self.ready_at
        return ready_at is not None and ready_at <= self.at

    @property
    def remaining(self) -> timedelta:
        ready_at = self.ready_at
        if ready_at is None:
            return self.required
        return max(ready_at - self.at, timedelta(0))

    def describe(self) -> str:
        """One line for a log, a summary or the PM form."""
        need = _minutes(self.required)
        if self.healthy_since is None:
            return f"{self.version} does not run in {self.env}: it has not soaked (needs {need})"
        head = (
            f"{self.version} has run in {self.env} for {_minutes(self.soaked)} "
            f"(since {self.healthy_since.isoformat()})"
        )
        if self.required <= timedelta(0):
            return f"{head}; no soak time required"
        if self.ready:
            return f"{head}; soak time of {need} reached"
        assert self.ready_at is not None
        return (
            f"{head}; soak time {need}: {_minutes(self.remaining)} to go, "
            f"may move on at {self.ready_at.isoformat()}"
        )

    def brief(self) -> str:
        """The soak in a few words, for a status table (when it began is shown beside it)."""
        if self.required <= timedelta(0):
            return "no soak time required"
        need = _minutes(self.required)
        if self.healthy_since is None:
            return f"{need} required; not soaking (not running Healthy)"
        if self.ready:
            return f"{need} required; reached"
        assert self.ready_at is not None
        return (
            f"{need} required; {_minutes(self.remaining)} to go "
            f"(until {self.ready_at.isoformat(timespec='seconds')})"
        )


def _minutes(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 3600:
        return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds / 60:.1f} min"
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min" if rest >= 60 else f"{hours} h"


def soak_status(
    env: str,
    version: str,
    healthy_since: datetime | None,
    soak_minutes: float,
    at: datetime,
) -> SoakStatus:
    """The soak of ``version`` in ``env`` at ``at`` given when it went live (None: not live)."""
    if soak_minutes < 0:
        raise ValueError(f"soak_minutes must be >= 0, got {soak_minutes}")
    return SoakStatus(
        env=env,
        version=version,
        healthy_since=_utc(healthy_since, "healthy_since") if healthy_since else None,
        required=timedelta(minutes=soak_minutes),
        at=_utc(at, "at"),
    )
