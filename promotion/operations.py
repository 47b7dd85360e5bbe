"""How a release team runs promotions: freeze windows, soak time, checks after deploy, notices.

These are the parts of ``promotion.yaml`` beyond *what* is promoted (``promotion.config``): per
environment, the windows during which nothing is merged (``freeze``), how long a release must run
Healthy before the next environment may take it (``soak_minutes``) and the checks that run once
Argo CD reports it Healthy (``verify``); at the top level, where notifications go
(``notifications``) and whether new registry tags start promotions by themselves (``watch``).
Every model is frozen and refuses unknown keys, so a typo is an error with its location, not a
silently ignored setting. This module is pure: it only validates; ``promotion.freeze``,
``promotion.soak`` and ``promotion.verify`` compute with these values.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

__all__ = [
    "EnvironmentOperations",
    "FreezePolicy",
    "FreezeWindow",
    "Notifications",
    "Probe",
    "Verification",
    "WatchReleases",
    "validate_cron",
    "zone",
]

# The same grammar as ``promotion.config.Login`` (a GitHub login); config imports this module.
Login = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]([A-Za-z0-9-]{0,38})$")]
DeploymentName = Annotated[
    str, StringConstraints(pattern=r"^[^/\s][^/]*/[^/\s][^/]*$", max_length=200)
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def validate_cron(expr: str) -> str:
    """Return ``expr`` if it is a 5-field cron expression cronsim accepts, else ``ValueError``."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(
            f"cron {expr!r} must have 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(fields)}"
        )
    try:
        CronSim(expr, datetime(2026, 1, 1))
    except CronSimError as exc:
        raise ValueError(f"cron {expr!r} is not valid: {exc}") from None
    return " ".join(fields)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``ValueError`` naming it when unknown)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as UTC or Europe/Paris"
        ) from None


class FreezeWindow(_Strict):
    """A period during which nothing is merged into an environment.

    Either recurring (``cron``: when each window starts, in ``timezone``'s wall-clock time, and
    ``duration`` in minutes of elapsed time) or dated (``start`` and ``end``: ISO datetimes; one
    without an offset is read in ``timezone``).
    """

    cron: str | None = None
    duration: float | None = Field(default=None, gt=0, le=60 * 24 * 366)
    start: datetime | None = None
    end: datetime | None = None
    timezone: str = "UTC"
    reason: str = Field(default="", max_length=500)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else validate_cron(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        zone(value)
        return value

    @model_validator(mode="after")
    def _kind(self) -> FreezeWindow:
        recurring = self.cron is not None or self.duration is not None
        dated = self.start is not None or self.end is not None
        if recurring and dated:
            raise ValueError("give either cron + duration (recurring) or start + end (dated)")
        if recurring and (self.cron is None or self.duration is None):
            raise ValueError("a recurring window needs both cron and duration (minutes)")
        if dated:
            if self.start is None or self.end is None:
                raise ValueError("a dated window needs both start and end")
            if self.starts_at() >= self.ends_at():
                raise ValueError(f"end {self.end.isoformat()} is not after start")
        if not recurring and not dated:
            raise ValueError("give either cron + duration (recurring) or start + end (dated)")
        return self

    @property
    def recurring(self) -> bool:
        return self.cron is not None

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.timezone)

    def _aware(self, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=self.tz)

    def starts_at(self) -> datetime:
        """The start of a dated window, time-zone aware (``ValueError`` for a recurring one)."""
        if self.start is None:
            raise ValueError("a recurring window has no single start")
        return self._aware(self.start)

    def ends_at(self) -> datetime:
        """The end of a dated window, time-zone aware (``ValueError`` for a recurring one)."""
        if self.end is None:
            raise ValueError("a recurring window has no single end")
        return self._aware(self.end)

    def label(self) -> str:
        """A one-line description: ``cron '0 18 * * FRI' for 3840 min (Europe/Paris)``."""
        if self.cron is not None:
            text = f"cron '{self.cron}' for {self.duration:g} min ({self.timezone})"
        else:
            text = f"{self.starts_at().isoformat()} to {self.ends_at().isoformat()}"
        return f"{text}: {self.reason}" if self.reason else text


class FreezePolicy(_Strict):
    """The freeze windows of an environment and what a promotion does when it meets one."""

    windows: tuple[FreezeWindow, ...] = Field(min_length=1)
    on_freeze: Literal["wait", "stop"] = "wait"
    override_by: tuple[Login, ...] = ()


class Probe(_Strict):
    """An HTTP check run after Argo CD reports the release Healthy.

    Passes when the answer has ``expected_status``, its body matches ``body_pattern`` (a regular
    expression searched in the text; ``{version}`` is replaced by the escaped version first) and
    the JSON value at ``json_field`` (a dotted path such as ``build.version``; list items by
    index, ``items.0.tag``) equals the version. Tried ``retries + 1`` times, ``interval_seconds``
    apart, until it passes.
    """

    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    expected_status: int = Field(default=200, ge=100, le=599)
    body_pattern: str | None = None
    json_field: (
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")] | None
    ) = None
    retries: int = Field(default=3, ge=0, le=100)
    interval_seconds: float = Field(default=5.0, ge=0, le=600)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @field_validator("body_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value.replace("{version}", "v0"))
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class Verification(_Strict):
    """Checks after deploy: HTTP probes, and optionally a Prefect deployment (a smoke suite)."""

    probes: tuple[Probe, ...] = ()
    deployment: DeploymentName | None = None
    deployment_timeout_seconds: float = Field(default=900.0, gt=0)

    @model_validator(mode="after")
    def _something(self) -> Verification:
        if not self.probes and self.deployment is None:
            raise ValueError("give probes, a deployment ('flow/deployment') or both")
        return self


class EnvironmentOperations(_Strict):
    """The operational settings of one environment (all optional)."""

    freeze: FreezePolicy | None = None
    soak_minutes: float = Field(default=0, ge=0, le=60 * 24 * 90)
    verify: Verification | None = None


class Notifications(_Strict):
    """Where the automations send their notifications."""

    block: str | None = Field(default=None, min_length=1, max_length=200)
    reminder_after_minutes: float | None = Field(default=None, gt=0, le=60 * 24 * 30)
    ui_url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")] | None = None

    @field_validator("ui_url")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _reminder_floor(self) -> Notifications:
        if self.reminder_after_minutes is not None and self.reminder_after_minutes * 60 < 10:
            raise ValueError("reminder_after_minutes must be at least 10 seconds (0.17)")
        return self


class WatchReleases(_Strict):
    """Release detection: a scheduled run that starts ``promote-release`` for new tags."""

    enabled: bool = False  # off unless promotion.yaml turns it on: nothing starts by itself
    cron: str = "*/5 * * * *"
    timezone: str = "UTC"
    initiator: Login = "release-watcher"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return validate_cron(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        zone(value)
        return value
