"""A person approves a paused release in the Prefect UI, in a real (headless) Chromium.

The real ``promote-release`` deployment runs against the sandbox. When it waits for QA,
Debian's chromium (driven by Playwright for Python) opens the run's page, opens the Resume form,
switches "Approved" on, picks the approver, writes a comment and submits. At the PM gate the
command line first answers as someone who is not a PM (``release-promotion approve``: refused,
the run keeps waiting), then the PM approves in the browser (a one-option select). The run must finish with prod at the version
and a summary naming the QA approver and comment. Screenshots of the filled form and of the
finished run go to the test's temporary directory (and to docs/images/ with SAVE_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from deployments.cli import app
from deployments.local import PROJECT_ROOT, LocalPrefect, Worker
from deployments.runs import find_artifact, read_artifact, read_run, start_run, wait_for_run
from sandbox.launcher import Sandbox

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VERSION = "v1.0.1"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian chromium is not installed (/usr/bin/chromium); `make test` installs it as root",
)


def _field(page: Any, form: Any, label: str) -> Any:
    title = page.locator(".schema-form-property__label", has_text=label)
    return form.locator(".schema-form-property").filter(has=title).first


def approve_in_browser(
    run_url: str, approver: str, comment: str, screenshot: Path, timeout_ms: float = 60_000
) -> None:
    """Open ``run_url``, fill the Resume form as a person would, save a screenshot, submit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(timeout_ms)
            page.goto(run_url)
            page.get_by_role("button", name="Resume").click()
            form = page.locator(".p-modal__card")
            form.get_by_text("Resume Flow Run").wait_for()

            toggle = _field(page, form, "Approved").get_by_role("switch")
            if toggle.get_attribute("aria-checked") != "true":
                toggle.click()
            approver_field = _field(page, form, "Approver")
            # The eligible logins render as a select (one option when one person may approve).
            select = approver_field.locator(".p-select-button__control")
            select.click()
            listbox = page.get_by_role("listbox")
            if not listbox.is_visible():
                select.press("ArrowDown")
            listbox.get_by_role("option", name=approver, exact=True).click()
            comment_box = _field(page, form, "Comment").locator("textarea, input").first
            comment_box.fill(comment)
            comment_box.scroll_into_view_if_needed()
            page.screenshot(path=str(screenshot))
            form.get_by_role("button", name="Submit").click()
            form.wait_for(state="hidden")
        finally:
            browser.close()


def screenshot_finished_run(
    run_url: str, artifact_url: str, screenshot: Path, summary_shot: Path
) -> None:
    """The finished run's page on its Artifacts tab, and the summary artifact's page."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(30_000)
            page.goto(run_url)
            page.get_by_text("Completed").first.wait_for()
            page.get_by_text("Artifacts", exact=True).first.click()
            page.get_by_text("promotion-summary").first.wait_for()
            page.screenshot(path=str(screenshot), full_page=True)
            page.goto(artifact_url)
            page.get_by_text("pm-carol").first.wait_for()
            page.screenshot(path=str(summary_shot), full_page=True)
        finally:
            browser.close()


def _keep(screenshots: list[Path]) -> None:
    if os.environ.get("SAVE_SCREENSHOTS") == "1":
        target = PROJECT_ROOT / "docs" / "images"
        target.mkdir(parents=True, exist_ok=True)
        for shot in screenshots:
            shutil.copy(shot, target / shot.name)


def _prod_tags(sandbox: Sandbox) -> set[str]:
    info = sandbox.info
    app_ = httpx.get(
        f"{info.argocd_url}/api/v1/applications/prod-microservices-demo",
        headers={"Authorization": f"Bearer {info.argocd_token}"},
    ).json()
    return {image.rsplit(":", 1)[1] for image in app_["status"]["summary"]["images"]}


def test_qa_and_pm_approve_in_the_prefect_ui(
    local_prefect: LocalPrefect, demo_sandbox: Sandbox, worker: Worker, tmp_path: Path
) -> None:
    api = local_prefect.api_url
    cli = CliRunner()
    run = start_run(
        api, "promote-release/promote-release", {"version": VERSION, "initiator": "dev-dave"}
    )
    qa_wait = wait_for_run(api, run.id, timeout=180)
    assert qa_wait.paused and (qa_wait.pause_key or "").startswith("qa-"), worker.log_tail()

    form_shot = tmp_path / "approval-form.png"
    approve_in_browser(
        local_prefect.flow_run_url(run.id), "qa-alice", "staging looks good", form_shot
    )
    assert form_shot.stat().st_size > 10_000

    pm_wait = wait_for_run(
        api,
        run.id,
        until=lambda r: r.finished or (r.paused and r.pause_key != qa_wait.pause_key),
        timeout=180,
    )
    assert pm_wait.paused and (pm_wait.pause_key or "").startswith("pm-"), worker.log_tail()

    status = cli.invoke(app, ["status", VERSION, "--api-url", api], env=_argocd_env(demo_sandbox))
    assert status.exit_code == 0, status.output
    assert "waiting: PM approval of v1.0.1" in status.output
    assert local_prefect.flow_run_url(run.id) in status.output

    refused = cli.invoke(app, ["approve", run.id, "--approver", "qa-alice", "--api-url", api])
    assert refused.exit_code == 1
    assert "REJECT" in refused.output and "approver" in refused.output
    assert read_run(api, run.id).paused

    # The PM gate has one eligible approver: the form must still offer and submit it.
    pm_shot = tmp_path / "pm-approval-form.png"
    approve_in_browser(local_prefect.flow_run_url(run.id), "pm-carol", "ship it", pm_shot)

    done = wait_for_run(api, run.id, until=lambda r: r.finished, timeout=180)
    assert done.state_type == "COMPLETED", worker.log_tail()
    summary = read_artifact(api, run.id, "promotion-summary")
    assert summary is not None
    assert "qa-alice" in summary and "staging looks good" in summary
    assert "pm-carol" in summary and "ship it" in summary
    assert _prod_tags(demo_sandbox) == {VERSION}

    run_shot = tmp_path / "finished-run.png"
    summary_shot = tmp_path / "summary-artifact.png"
    artifact = find_artifact(api, run.id, "promotion-summary")
    assert artifact is not None
    artifact_url = f"{local_prefect.ui_url}/artifacts/artifact/{artifact['id']}"
    screenshot_finished_run(
        local_prefect.flow_run_url(run.id), artifact_url, run_shot, summary_shot
    )
    assert run_shot.stat().st_size > 10_000 and summary_shot.stat().st_size > 10_000
    _keep([form_shot, run_shot, summary_shot])


def _argocd_env(sandbox: Sandbox) -> dict[str, str]:
    return {
        "RELEASE_PROMOTION_ARGOCD_URL": sandbox.info.argocd_url,
        "RELEASE_PROMOTION_ARGOCD_TOKEN": sandbox.info.argocd_token,
    }
