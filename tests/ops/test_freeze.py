"""Freeze windows: golden instants (DST included) and properties against a brute-force oracle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st

from promotion.freeze import (
    FreezeNeverOpens,
    OverrideRefused,
    authorize_override,
    check_freeze,
    describe_windows,
    frozen_at,
    next_open,
    occurrences,
)
from promotion.operations import FreezePolicy, FreezeWindow

BERLIN = ZoneInfo("Europe/Berlin")


def policy(*windows: FreezeWindow, **kw: object) -> FreezePolicy:
    return FreezePolicy(windows=windows, **kw)  # type: ignore[arg-type]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


WEEKEND = FreezeWindow(
    cron="0 18 * * FRI", duration=3840, timezone="Europe/Paris", reason="weekend"
)


def test_weekend_window_golden() -> None:
    weekend = policy(WEEKEND)
    # Friday 2026-12-04 18:00 Paris (CET, UTC+1) = 17:00 UTC, for 64 h: Monday 10:00 Paris.
    assert frozen_at(weekend, utc(2026, 12, 4, 16, 59, 59)) is None
    active = frozen_at(weekend, utc(2026, 12, 4, 17, 0, 0))  # the start is frozen
    assert active is not None
    assert active.started == utc(2026, 12, 4, 17)
    assert active.ends == utc(2026, 12, 7, 9)
    assert active.remaining(utc(2026, 12, 7, 8, 30)) == timedelta(minutes=30)
    assert "frozen (weekend) until 2026-12-07T10:00:00+01:00" in active.describe()
    assert frozen_at(weekend, utc(2026, 12, 5, 12)) == active
    assert frozen_at(weekend, utc(2026, 12, 7, 9)) is None  # the end is open again
    assert next_open(weekend, utc(2026, 12, 5, 12)) == utc(2026, 12, 7, 9)
    assert next_open(weekend, utc(2026, 12, 8)) == utc(2026, 12, 8)
    # the same instant given in another zone means the same
    paris_noon = datetime(2026, 12, 5, 13, tzinfo=ZoneInfo("Europe/Paris"))
    assert frozen_at(weekend, paris_noon) == active


def test_summer_time_follows_the_wall_clock() -> None:
    # July: Paris is UTC+2, so Friday 18:00 Paris is 16:00 UTC.
    active = frozen_at(policy(WEEKEND), utc(2026, 7, 3, 16, 0))
    assert active is not None
    assert active.started == utc(2026, 7, 3, 16)


def test_a_window_spanning_the_spring_change_lasts_its_elapsed_minutes() -> None:
    # Saturday 2026-03-28 18:00 CET (17:00 UTC) for 24 h: Sunday 17:00 UTC = 19:00 CEST.
    window = FreezeWindow(cron="0 18 * * SAT", duration=1440, timezone="Europe/Berlin")
    active = frozen_at(policy(window), utc(2026, 3, 29, 12))
    assert active is not None
    assert active.ends == utc(2026, 3, 29, 17)
    assert active.ends.astimezone(BERLIN).hour == 19


def test_a_start_in_the_skipped_hour_happens_at_the_first_valid_minute() -> None:
    # 2026-03-29 02:30 does not exist in Berlin: the window starts at 03:00 CEST = 01:00 UTC.
    nightly = policy(FreezeWindow(cron="30 2 * * *", duration=60, timezone="Europe/Berlin"))
    assert frozen_at(nightly, utc(2026, 3, 29, 0, 59)) is None
    active = frozen_at(nightly, utc(2026, 3, 29, 1, 10))
    assert active is not None
    assert (active.started, active.ends) == (utc(2026, 3, 29, 1), utc(2026, 3, 29, 2))
    assert frozen_at(nightly, utc(2026, 3, 29, 2)) is None


def test_a_start_in_the_repeated_hour_happens_once() -> None:
    # 2026-10-25 02:30 happens twice in Berlin (00:30 UTC in CEST, 01:30 UTC in CET): once.
    nightly = policy(FreezeWindow(cron="30 2 * * *", duration=30, timezone="Europe/Berlin"))
    active = frozen_at(nightly, utc(2026, 10, 25, 0, 45))
    assert active is not None
    assert active.started == utc(2026, 10, 25, 0, 30)
    assert frozen_at(nightly, utc(2026, 10, 25, 1, 40)) is None


def test_dated_window_in_its_time_zone() -> None:
    holidays = policy(
        FreezeWindow(
            start=datetime(2026, 12, 24),
            end=datetime(2026, 12, 27),
            timezone="America/New_York",
            reason="holidays",
        )
    )
    assert frozen_at(holidays, utc(2026, 12, 24, 4, 59)) is None  # 23:59 in New York
    active = frozen_at(holidays, utc(2026, 12, 24, 5))
    assert active is not None and active.ends == utc(2026, 12, 27, 5)
    assert next_open(holidays, utc(2026, 12, 25)) == utc(2026, 12, 27, 5)
    assert list(occurrences(holidays.windows[0], utc(2027, 1, 1))) == []


def test_next_open_chains_overlapping_windows() -> None:
    chained = policy(
        FreezeWindow(cron="0 18 * * *", duration=60),
        FreezeWindow(cron="30 18 * * *", duration=120),
        FreezeWindow(start=datetime(2026, 6, 1, 20, 15), end=datetime(2026, 6, 1, 21)),
    )
    # 18:00-19:00, 18:30-20:30, 20:15-21:00 on 2026-06-01: open at 21:00.
    assert next_open(chained, utc(2026, 6, 1, 18, 10)) == utc(2026, 6, 1, 21)
    # the day after, the dated window is over: open at 20:30
    assert next_open(chained, utc(2026, 6, 2, 18, 10)) == utc(2026, 6, 2, 20, 30)
    # the window ending last is the one reported
    active = frozen_at(chained, utc(2026, 6, 1, 18, 45))
    assert active is not None and active.ends == utc(2026, 6, 1, 20, 30)


def test_windows_that_never_open_say_so() -> None:
    always = policy(FreezeWindow(cron="* * * * *", duration=5))
    with pytest.raises(FreezeNeverOpens, match="never open"):
        next_open(always, utc(2026, 1, 1))


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="time-zone aware"):
        frozen_at(policy(WEEKEND), datetime(2026, 1, 1))


def test_no_policy_is_never_frozen() -> None:
    assert frozen_at(None, utc(2026, 1, 1)) is None
    assert next_open(None, utc(2026, 1, 1)) == utc(2026, 1, 1)
    assert describe_windows(None, utc(2026, 1, 1)) == []


def test_describe_windows_for_status() -> None:
    holidays = FreezeWindow(start=datetime(2026, 12, 24), end=datetime(2026, 12, 27))
    past = FreezeWindow(start=datetime(2025, 1, 1), end=datetime(2025, 1, 2), reason="old")
    rows = describe_windows(policy(WEEKEND, holidays, past), utc(2026, 12, 5, 12))
    lines = [r.line() for r in rows]
    assert lines[0].startswith("IN FORCE until 2026-12-07T09:00:00+00:00: cron '0 18 * * FRI'")
    assert rows[0].next_start == utc(2026, 12, 11, 17)
    assert lines[1] == (
        "next 2026-12-24T00:00:00+00:00 to 2026-12-27T00:00:00+00:00: "
        "2026-12-24T00:00:00+00:00 to 2026-12-27T00:00:00+00:00"
    )
    assert lines[2].startswith("over: ")


def test_override_needs_a_listed_person_and_a_reason() -> None:
    weekend = policy(WEEKEND, override_by=("pm-carol",))
    active = frozen_at(weekend, utc(2026, 12, 5, 12))
    assert active is not None
    with pytest.raises(OverrideRefused, match=r"'qa-alice' may not override.*allowed: pm-carol"):
        authorize_override(weekend, active, "qa-alice", "hotfix")
    with pytest.raises(OverrideRefused, match="needs a reason"):
        authorize_override(weekend, active, "pm-carol", "  ")
    override = authorize_override(weekend, active, "pm-carol", " CVE hotfix ")
    assert override.describe().startswith("freeze overridden by pm-carol: CVE hotfix (cron")
    with pytest.raises(OverrideRefused, match="nobody"):
        authorize_override(policy(WEEKEND), active, "pm-carol", "x")


def test_check_freeze_merges_waits_stops_or_overrides() -> None:
    chained = policy(
        WEEKEND,
        FreezeWindow(cron="0 9 * * MON", duration=120, timezone="Europe/Paris"),
        override_by=("pm-carol",),
    )
    saturday = utc(2026, 12, 5, 12)
    assert check_freeze(chained, utc(2026, 12, 8)).action == "merge"
    assert check_freeze(None, saturday).describe() == "no freeze window in force"
    wait = check_freeze(chained, saturday)
    # the weekend ends Monday 10:00 Paris, inside the Monday 09:00-11:00 window: wait for both
    assert (wait.action, wait.until) == ("wait", utc(2026, 12, 7, 10))
    assert wait.describe().endswith("waiting until 2026-12-07T10:00:00+00:00")
    stopping = policy(WEEKEND, on_freeze="stop")
    stop = check_freeze(stopping, saturday)
    assert stop.action == "stop" and stop.until is None
    assert stop.describe().endswith("stopped (on_freeze: stop)")
    over = check_freeze(chained, saturday, override_by="pm-carol", override_reason="CVE fix")
    assert over.action == "merge" and over.override is not None
    assert over.describe().startswith("freeze overridden by pm-carol: CVE fix")
    with pytest.raises(OverrideRefused):
        check_freeze(chained, saturday, override_by="qa-alice", override_reason="please")


# -- properties --------------------------------------------------------------------------------

CRONS = ["0 18 * * FRI", "30 2 * * *", "*/45 * * * *", "0 9-17 * * MON-FRI", "15 1 1 * *"]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)
windows = st.builds(
    FreezeWindow,
    cron=st.sampled_from(CRONS),
    duration=st.integers(min_value=1, max_value=3 * 24 * 60).map(float),
    timezone=st.sampled_from(ZONES),
)


def brute_force_frozen(window: FreezeWindow, at: datetime) -> bool:
    """Frozen per forward iteration from well before ``at`` (the oracle)."""
    assert window.cron is not None and window.duration is not None
    length = timedelta(minutes=window.duration)
    since = (at - length - timedelta(days=32)).astimezone(window.tz)
    for start in CronSim(window.cron, since):
        s = start.astimezone(UTC)
        if s > at:
            return False
        if s <= at < s + length:
            return True
    return False


@settings(max_examples=60, deadline=None)
@given(window=windows, at=instants)
def test_frozen_at_matches_forward_iteration(window: FreezeWindow, at: datetime) -> None:
    assert (frozen_at(policy(window), at) is not None) == brute_force_frozen(window, at)


@settings(max_examples=40, deadline=None)
@given(ws=st.lists(windows, min_size=1, max_size=3), at=instants)
def test_next_open_is_the_first_open_instant(ws: list[FreezeWindow], at: datetime) -> None:
    p = policy(*ws)
    if any("*/45" in (w.cron or "") and (w.duration or 0) >= 45 for w in ws):
        return  # back to back for ever: covered by test_windows_that_never_open_say_so
    try:
        opened = next_open(p, at)
    except FreezeNeverOpens:
        return
    assert opened >= at
    assert frozen_at(p, opened) is None
    if opened > at:
        # frozen all the way: at the start, in the middle and a second before it opens
        for moment in (at, at + (opened - at) / 2, opened - timedelta(seconds=1)):
            assert frozen_at(p, moment) is not None, moment
