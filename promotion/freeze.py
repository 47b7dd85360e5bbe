"""Freeze windows: is an environment frozen at a given instant, until when, and who may override.

A recurring window starts at each time its cron expression names, read in the window's time zone
on the wall clock (``0 18 * * FRI`` in Europe/Paris is 18:00 Paris time in winter and summer),
and lasts ``duration`` minutes of elapsed time, so a window that spans a DST change is as long as
configured. On the day clocks go forward, a start in the skipped hour happens at the first valid
minute after it; on the day they go back, a start in the repeated hour happens once, at its first
occurrence (Debian cron's rules, implemented by cronsim). A dated window is its ``start`` and
``end``. Windows are half-open: frozen from the start, open again at the end. Every instant
given to or returned by this module is time-zone aware; results are in UTC.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cronsim import CronSim

from promotion.operations import FreezePolicy, FreezeWindow

__all__ = [
    "ActiveFreeze",
    "FreezeError",
    "FreezeNeverOpens",
    "FreezeOverride",
    "FreezeVerdict",
    "OverrideRefused",
    "WindowStatus",
    "authorize_override",
    "check_freeze",
    "describe_windows",
    "freeze_summary",
    "frozen_at",
    "next_open",
    "occurrences",
]

MAX_STEPS = 2_000  # windows chained back to back before next_open gives up


class FreezeError(Exception):
    """Base of the freeze errors."""


class FreezeNeverOpens(FreezeError):
    """The windows cover every instant next_open looked at (for example ``* * * * *``)."""


class OverrideRefused(FreezeError):
    """An override of a freeze without a reason, or by someone not allowed to override."""


def _utc(at: datetime, what: str = "at") -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be time-zone aware, got {at.isoformat()}")
    return at.astimezone(UTC)


@dataclass(frozen=True)
class ActiveFreeze:
    """A window in force: which one, when this occurrence started and when it ends (UTC)."""

    window: FreezeWindow
    started: datetime
    ends: datetime

    def remaining(self, at: datetime) -> timedelta:
        return max(self.ends - _utc(at), timedelta(0))

    def describe(self) -> str:
        local = self.ends.astimezone(self.window.tz)
        reason = f" ({self.window.reason})" if self.window.reason else ""
        return (
            f"frozen{reason} until {local.isoformat()} [{self.ends.isoformat()}]; "
            f"window {self.window.label()}"
        )


def _last_start(window: FreezeWindow, at: datetime) -> datetime | None:
    """The latest start of a recurring ``window`` at or before ``at`` (UTC), if any."""
    assert window.cron is not None
    tz = window.tz
    # cronsim's reverse iteration steps back one second first: start just after ``at``.
    probe = (at.replace(microsecond=0) + timedelta(seconds=1)).astimezone(tz)
    try:
        for start in CronSim(window.cron, probe, reverse=True):
            start_utc = start.astimezone(UTC)
            if start_utc <= at:  # a DST fix-up may land after ``at``: take an earlier one
                return start_utc
    except StopIteration:  # pragma: no cover - cronsim ends iteration itself
        return None
    return None


def occurrences(window: FreezeWindow, since: datetime) -> Iterator[tuple[datetime, datetime]]:
    """(start, end) in UTC of each occurrence of ``window`` that ends after ``since``, in order."""
    since = _utc(since, "since")
    if not window.recurring:
        start, end = _utc(window.starts_at()), _utc(window.ends_at())
        if end > since:
            yield start, end
        return
    assert window.cron is not None and window.duration is not None
    length = timedelta(minutes=window.duration)
    first = _last_start(window, since)
    if first is not None and first + length > since:
        yield first, first + length
    for start in CronSim(window.cron, since.astimezone(window.tz)):
        start_utc = start.astimezone(UTC)
        if start_utc <= since:
            continue
        yield start_utc, start_utc + length


def _active(window: FreezeWindow, at: datetime) -> ActiveFreeze | None:
    if not window.recurring:
        start, end = _utc(window.starts_at()), _utc(window.ends_at())
        return ActiveFreeze(window, start, end) if start <= at < end else None
    assert window.duration is not None
    last = _last_start(window, at)
    if last is None:
        return None
    ends = last + timedelta(minutes=window.duration)
    # Occurrences all last as long, so the latest start is the one that ends last.
    return ActiveFreeze(window, last, ends) if at < ends else None


def frozen_at(policy: FreezePolicy | None, at: datetime) -> ActiveFreeze | None:
    """The window in force at ``at`` (the one ending last when several are), or None."""
    if policy is None:
        return None
    at = _utc(at)
    active = [a for w in policy.windows if (a := _active(w, at)) is not None]
    return max(active, key=lambda a: a.ends) if active else None


def next_open(policy: FreezePolicy | None, at: datetime) -> datetime:
    """The first instant at or after ``at`` when no window is in force (``at`` if open now)."""
    moment = _utc(at)
    for _ in range(MAX_STEPS):
        active = frozen_at(policy, moment)
        if active is None:
            return moment
        moment = active.ends
    raise FreezeNeverOpens(
        f"the freeze windows never open after {at.isoformat()} (still frozen at "
        f"{moment.isoformat()} after {MAX_STEPS} windows back to back)"
    )


@dataclass(frozen=True)
class WindowStatus:
    """One window as ``status`` shows it: in force now, or when it next starts."""

    window: FreezeWindow
    active: ActiveFreeze | None
    next_start: datetime | None
    next_end: datetime | None

    def line(self) -> str:
        if self.active is not None:
            return f"IN FORCE until {self.active.ends.isoformat()}: {self.window.label()}"
        if self.next_start is not None:
            end = self.next_end.isoformat() if self.next_end else "?"
            return f"next {self.next_start.isoformat()} to {end}: {self.window.label()}"
        return f"over: {self.window.label()}"


def describe_windows(policy: FreezePolicy | None, at: datetime) -> list[WindowStatus]:
    """Every window of ``policy`` with its state at ``at`` (for ``status`` and artifacts)."""
    if policy is None:
        return []
    at = _utc(at)
    out: list[WindowStatus] = []
    for window in policy.windows:
        active = _active(window, at)
        upcoming = next(((s, e) for s, e in occurrences(window, at) if s > at), None)
        out.append(
            WindowStatus(
                window,
                active,
                upcoming[0] if upcoming else None,
                upcoming[1] if upcoming else None,
            )
        )
    return out


def freeze_summary(
    policy: FreezePolicy | None, at: datetime, mark: Callable[[str], str] = str
) -> str:
    """The freeze of an environment at ``at`` in a few words, for a status line or table.

    Args:
        policy: Its freeze windows (None: it has none).
        at: The instant (time-zone aware).
        mark: Emphasis for the word "frozen" (markdown bold in an artifact).
    """
    active = frozen_at(policy, at)
    if active is not None:
        return f"{mark('frozen')} until {active.ends.isoformat(timespec='minutes')}"
    if policy is not None:
        return f"open ({len(policy.windows)} window(s))"
    return "none"


@dataclass(frozen=True)
class FreezeOverride:
    """A merge during a freeze, allowed by ``by`` for ``reason`` (recorded in the summary)."""

    by: str
    reason: str
    freeze: ActiveFreeze

    def describe(self) -> str:
        return f"freeze overridden by {self.by}: {self.reason} ({self.freeze.window.label()})"


def authorize_override(
    policy: FreezePolicy, freeze: ActiveFreeze, by: str, reason: str
) -> FreezeOverride:
    """Allow a merge during ``freeze`` when ``by`` is listed in ``override_by`` and gives a reason.

    Raises ``OverrideRefused`` saying why otherwise.
    """
    if not reason.strip():
        raise OverrideRefused("overriding a freeze needs a reason")
    if by not in policy.override_by:
        allowed = ", ".join(policy.override_by) or "nobody (override_by is empty)"
        raise OverrideRefused(f"{by!r} may not override this freeze; allowed: {allowed}")
    return FreezeOverride(by, reason.strip(), freeze)


@dataclass(frozen=True)
class FreezeVerdict:
    """What a promotion about to merge into a frozen-or-not environment does.

    ``action``: ``merge`` (open, or overridden), ``wait`` (until ``until``), or ``stop``.
    """

    action: str
    until: datetime | None = None
    freeze: ActiveFreeze | None = None
    override: FreezeOverride | None = None

    def describe(self) -> str:
        if self.override is not None:
            return self.override.describe()
        if self.freeze is None:
            return "no freeze window in force"
        if self.action == "wait":
            assert self.until is not None
            return f"{self.freeze.describe()}; waiting until {self.until.isoformat()}"
        return f"{self.freeze.describe()}; stopped (on_freeze: stop)"


def check_freeze(
    policy: FreezePolicy | None,
    at: datetime,
    *,
    override_by: str | None = None,
    override_reason: str | None = None,
) -> FreezeVerdict:
    """Decide whether a merge may happen at ``at``: merge, wait until the windows open, or stop.

    An override (``override_by`` and ``override_reason``) of a window in force is checked with
    ``authorize_override`` and raises ``OverrideRefused`` when it is not allowed.
    """
    active = frozen_at(policy, at)
    if active is None or policy is None:
        return FreezeVerdict("merge")
    if override_by is not None or override_reason is not None:
        override = authorize_override(policy, active, override_by or "", override_reason or "")
        return FreezeVerdict("merge", freeze=active, override=override)
    if policy.on_freeze == "stop":
        return FreezeVerdict("stop", freeze=active)
    return FreezeVerdict("wait", until=next_open(policy, at), freeze=active)
