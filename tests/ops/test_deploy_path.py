"""The deploy path of issue 12: what `release-promotion deploy` and `status` add."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from deployments.cli import app, freeze_lines
from deployments.local import LocalPrefect
from deployments.notifications import ensure_on_deploy
from promotion.config import DEFAULT_CONFIG


def test_status_lists_the_freeze_windows(tmp_path: Path) -> None:
    text = DEFAULT_CONFIG.read_text(encoding="utf-8").replace(
        "    argocd_app: prod-microservices-demo\n",
        "    argocd_app: prod-microservices-demo\n    freeze:\n      windows:\n"
        '        - {start: "2020-01-01T00:00:00", end: "2099-01-01T00:00:00", reason: audit}\n'
        '        - {cron: "0 18 * * FRI", duration: 60, timezone: Europe/Paris}\n',
    )
    setup = tmp_path / "promotion.yaml"
    setup.write_text(text, encoding="utf-8")
    lines = freeze_lines(setup)
    assert list(lines) == ["prod"]
    assert lines["prod"][0] == (
        "IN FORCE until 2099-01-01T00:00:00+00:00: "
        "2020-01-01T00:00:00+00:00 to 2099-01-01T00:00:00+00:00: audit"
    )
    assert lines["prod"][1].startswith("next ")
    assert lines["prod"][1].endswith("cron '0 18 * * FRI' for 60 min (Europe/Paris)")
    assert freeze_lines(DEFAULT_CONFIG) == {}


def test_deploy_without_a_notification_block_says_so(prefect_server: LocalPrefect) -> None:
    api_url = prefect_server.api_url
    assert ensure_on_deploy(api_url, DEFAULT_CONFIG) == (
        "Notifications: none (no notifications.block in promotion.yaml)."
    )


def test_deploy_help_still_works() -> None:
    result = CliRunner().invoke(app, ["deploy", "--help"])
    assert result.exit_code == 0
    assert "--config-file" in result.output
