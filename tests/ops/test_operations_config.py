"""The operations part of promotion.yaml: freeze windows, soak, checks, notifications, watch."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from promotion.config import DEFAULT_CONFIG, ConfigError, load_config, parse_config
from promotion.operations import (
    FreezePolicy,
    FreezeWindow,
    Notifications,
    Probe,
    Verification,
    WatchReleases,
)

BASE = DEFAULT_CONFIG.read_text(encoding="utf-8")


def with_environments(staging_extra: str = "", prod_extra: str = "", top: str = "") -> str:
    """The default setup with extra keys under each environment and at the top level."""
    envs = f"""\
environments:
  - name: staging
    overlay: kustomize/staging/kustomization.yaml
    argocd_app: staging-microservices-demo
    approvals: [{{gate: qa, when: after_deploy, approvers: [qa-alice, qa-bob]}}]
{textwrap.indent(textwrap.dedent(staging_extra), "    ")}
  - name: prod
    overlay: kustomize/prod/kustomization.yaml
    argocd_app: prod-microservices-demo
    approvals: [{{gate: pm, when: before_merge, approvers: [pm-carol]}}]
{textwrap.indent(textwrap.dedent(prod_extra), "    ")}
"""
    head, _, _ = BASE.partition("environments:")
    return head + envs + "\n" + textwrap.dedent(top)


def test_the_default_setup_keeps_its_meaning() -> None:
    config = load_config()
    for env in config.environments:
        assert env.freeze is None
        assert env.soak_minutes == 0
        assert env.verify is None
    assert config.notifications == Notifications()
    assert config.notifications.block is None
    assert config.watch.enabled is False  # nothing starts by itself unless asked


def test_a_full_operations_setup_is_read() -> None:
    text = with_environments(
        staging_extra="""\
        soak_minutes: 30
        verify:
          probes:
            - url: http://127.0.0.1:8080/version
              json_field: version
              retries: 5
              interval_seconds: 2
          deployment: smoke-tests/staging
        """,
        prod_extra="""\
        freeze:
          on_freeze: stop
          override_by: [pm-carol]
          windows:
            - cron: "0 18 * * FRI"
              duration: 3840
              timezone: Europe/Paris
              reason: weekend
            - start: "2026-12-24T00:00:00"
              end: "2026-12-27T00:00:00"
              timezone: America/New_York
              reason: holidays
        """,
        top="""\
        notifications:
          block: release-promotion-notify
          reminder_after_minutes: 15
          ui_url: http://127.0.0.1:4200/
        watch:
          enabled: true
          cron: "*/2 * * * *"
          initiator: release-bot
        """,
    )
    config = parse_config(text)
    staging, prod = config.environments
    assert staging.soak_minutes == 30
    assert staging.verify is not None
    probe = staging.verify.probes[0]
    assert (probe.json_field, probe.retries, probe.expected_status) == ("version", 5, 200)
    assert staging.verify.deployment == "smoke-tests/staging"
    assert staging.operations.soak_minutes == 30
    assert prod.freeze is not None
    assert prod.freeze.on_freeze == "stop"
    assert prod.freeze.override_by == ("pm-carol",)
    weekly, dated = prod.freeze.windows
    assert weekly.recurring and weekly.duration == 3840
    assert not dated.recurring
    # a dated window without an offset is read in its time zone
    assert dated.starts_at().utcoffset() == timedelta(hours=-5)
    assert dated.ends_at() - dated.starts_at() == timedelta(days=3)
    assert config.notifications.ui_url == "http://127.0.0.1:4200"  # trailing slash dropped
    assert config.notifications.reminder_after_minutes == 15
    assert config.watch == WatchReleases(enabled=True, cron="*/2 * * * *", initiator="release-bot")


def test_every_problem_is_listed_with_its_location() -> None:
    text = with_environments(
        staging_extra="""\
        soak_minutes: -1
        verify:
          probes:
            - url: not-a-url
              body_pattern: "(["
        """,
        prod_extra="""\
        freeze:
          on_freeze: later
          windows:
            - cron: "0 18 * *"
              duration: 60
            - start: "2026-12-27T00:00:00"
              end: "2026-12-24T00:00:00"
            - cron: "0 18 * * FRI"
              duration: 60
              timezone: Mars/Olympus
        """,
        top="""\
        notifications:
          blok: typo
        watch:
          cron: every minute
        """,
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "promotion.yaml")
    message = str(info.value)
    expected = [
        "environments[0].soak_minutes: Input should be greater than or equal to 0",
        "environments[0].verify.probes[0].url: String should match pattern",
        "environments[0].verify.probes[0].body_pattern: Value error, not a valid regular expression",
        "environments[1].freeze.windows[0].cron: Value error, cron '0 18 * *' must have 5 fields",
        "environments[1].freeze.windows[1]: Value error, end 2026-12-24T00:00:00 is not after start",
        "environments[1].freeze.windows[2].timezone: Value error, unknown time zone 'Mars/Olympus'",
        "environments[1].freeze.on_freeze: Input should be 'wait' or 'stop'",
        "notifications.blok: Extra inputs are not permitted",
        "watch.cron: Value error, cron 'every minute' must have 5 fields",
    ]
    for line in expected:
        assert f"  - {line}" in message, f"missing {line!r} in:\n{message}"
    assert message.startswith(f"promotion.yaml: {len(expected)} problem(s):")


@pytest.mark.parametrize(
    ("window", "error"),
    [
        ({"cron": "0 18 * * FRI"}, "a recurring window needs both cron and duration"),
        ({"duration": 60}, "a recurring window needs both cron and duration"),
        ({"start": datetime(2026, 1, 1)}, "a dated window needs both start and end"),
        (
            {"cron": "0 18 * * FRI", "duration": 60, "start": datetime(2026, 1, 1)},
            r"give either cron \+ duration",
        ),
        ({}, r"give either cron \+ duration"),
        ({"cron": "61 18 * * FRI", "duration": 60}, "is not valid: Bad minute"),
        ({"cron": "0 18 * * FRI", "duration": 0}, "greater than 0"),
    ],
)
def test_bad_freeze_windows(window: dict[str, object], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        FreezeWindow.model_validate(window)


def test_models_are_frozen_and_strict() -> None:
    window = FreezeWindow(cron="0 18 * * 5", duration=60)
    with pytest.raises(ValidationError, match="frozen"):
        window.duration = 5  # type: ignore[misc]
    with pytest.raises(ValidationError, match="windows"):
        FreezePolicy(windows=())
    with pytest.raises(ValidationError, match="Extra inputs"):
        Probe.model_validate({"url": "http://x/", "status": 200})
    with pytest.raises(ValidationError, match="give probes, a deployment"):
        Verification()
    with pytest.raises(ValidationError, match="String should match pattern"):
        Verification(deployment="no-slash")
    with pytest.raises(ValidationError, match="String should match pattern"):
        FreezePolicy(windows=(window,), override_by=("not a login",))
    with pytest.raises(ValidationError, match="at least 10 seconds"):
        Notifications(reminder_after_minutes=0.1)


def test_window_labels_say_what_they_are() -> None:
    weekly = FreezeWindow(cron="0  18 * * FRI", duration=90, timezone="Europe/Paris", reason="wk")
    assert weekly.cron == "0 18 * * FRI"  # spaces normalised
    assert weekly.label() == "cron '0 18 * * FRI' for 90 min (Europe/Paris): wk"
    dated = FreezeWindow(start=datetime(2026, 12, 24), end=datetime(2026, 12, 25))
    assert dated.label() == "2026-12-24T00:00:00+00:00 to 2026-12-25T00:00:00+00:00"
