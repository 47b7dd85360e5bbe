"""Soak time: when a release went live (from Argo CD history) and when it may move on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promotion.soak import healthy_since_from_history, healthy_since_history_id, soak_status


@dataclass(frozen=True)
class Entry:
    """A parsed history entry, as promotion.argocd's model holds one."""

    id: int
    revision: str
    deployed_at: datetime


T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)

HISTORY = [
    # Argo CD JSON, oldest first; c1 holds v1.0.0, c2 and c3 hold v1.0.1 (c3 touched prod only)
    {"id": 3, "revision": "c3", "deployedAt": "2026-12-02T10:20:00Z"},
    {"id": 1, "revision": "c1", "deployedAt": "2026-12-01T09:00:00Z"},
    {"id": 2, "revision": "c2", "deployedAt": "2026-12-02T10:00:00Z"},
]


def test_healthy_since_is_the_start_of_the_current_run_of_deployments() -> None:
    assert healthy_since_from_history(HISTORY, {"c2", "c3"}) == T0
    # the same from the parsed models, with a predicate
    models = [
        Entry(int(e["id"]), str(e["revision"]), datetime.fromisoformat(str(e["deployedAt"])))
        for e in HISTORY
    ]
    assert healthy_since_from_history(models, lambda rev: rev in {"c2", "c3"}) == T0


def test_a_rollback_in_between_restarts_the_clock() -> None:
    history = [
        *HISTORY,
        {"id": 4, "revision": "c1", "deployedAt": "2026-12-02T11:00:00Z"},  # rolled back
        {"id": 5, "revision": "c3", "deployedAt": "2026-12-02T12:00:00Z"},  # forward again
    ]
    assert healthy_since_from_history(history, {"c2", "c3"}) == T0 + timedelta(hours=2)


def test_healthy_since_the_deployment_confirm_deployed_reported() -> None:
    assert healthy_since_history_id(HISTORY, 2) == T0  # c2, then c3 on top of it
    rolled_back = [*HISTORY, {"id": 4, "revision": "c1", "deployedAt": "2026-12-02T11:00:00Z"}]
    assert healthy_since_history_id(rolled_back, 2) is None
    assert healthy_since_history_id(HISTORY, 9) is None  # unknown (beyond the history limit)


def test_not_running_the_release_is_none() -> None:
    assert healthy_since_from_history(HISTORY, {"c2"}) is None  # newest (c3) lacks it
    assert healthy_since_from_history([], {"c2"}) is None


def test_soak_before_and_after_the_required_time() -> None:
    waiting = soak_status("staging", "v1.0.1", T0, 30, T0 + timedelta(minutes=12))
    assert waiting.soaked == timedelta(minutes=12)
    assert not waiting.ready
    assert waiting.remaining == timedelta(minutes=18)
    assert waiting.ready_at == T0 + timedelta(minutes=30)
    assert waiting.describe() == (
        "v1.0.1 has run in staging for 12 min (since 2026-12-02T10:00:00+00:00); "
        "soak time 30 min: 18 min to go, may move on at 2026-12-02T10:30:00+00:00"
    )
    done = soak_status("staging", "v1.0.1", T0, 30, T0 + timedelta(minutes=30))
    assert done.ready and done.remaining == timedelta(0)
    assert done.describe().endswith("soak time of 30 min reached")
    long = soak_status("staging", "v1.0.1", T0, 90, T0 + timedelta(hours=2, minutes=5))
    assert "for 2 h 5 min" in long.describe()


def test_no_soak_required_and_not_live() -> None:
    none = soak_status("staging", "v1.0.1", T0, 0, T0)
    assert none.ready and none.describe().endswith("no soak time required")
    absent = soak_status("staging", "v1.0.1", None, 30, T0)
    assert not absent.ready and absent.ready_at is None
    assert absent.describe() == "v1.0.1 does not run in staging: it has not soaked (needs 30 min)"
    assert soak_status("staging", "v1.0.1", None, 0, T0).ready


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="time-zone aware"):
        soak_status("staging", "v1", datetime(2026, 1, 1), 5, T0)
    with pytest.raises(ValueError, match="soak_minutes must be >= 0"):
        soak_status("staging", "v1", T0, -1, T0)


@given(
    soaked=st.integers(min_value=0, max_value=10_000),
    required=st.integers(min_value=0, max_value=10_000),
)
def test_ready_exactly_when_soaked_long_enough(soaked: int, required: int) -> None:
    paris = T0.astimezone(ZoneInfo("Europe/Paris"))
    status = soak_status("staging", "v1", paris, required, T0 + timedelta(minutes=soaked))
    assert status.ready == (soaked >= required)
    assert status.soaked + status.remaining >= status.required
    assert status.healthy_since == T0 and status.healthy_since.tzinfo == UTC
