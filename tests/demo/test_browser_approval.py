"""A person approves a paused release in the Prefect UI, in a real (headless) Chromium.

Debian's chromium, driven by Playwright for Python: open the paused run's page, open the Resume
form, switch "Approved" on, fill approver and comment, submit; then the run must go on and its
summary artifact must name that approver. Screenshots of the filled form and of the finished run
are kept in the test's temporary directory (and in docs/images/ with SAVE_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from deployments.local import PROJECT_ROOT, LocalPrefect, Worker
from deployments.runs import read_artifact, start_run, wait_for_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian chromium is not installed (/usr/bin/chromium); `make test` installs it as root",
)


def approve_in_browser(
    run_url: str, approver: str, comment: str, screenshot: Path, timeout_ms: float = 30_000
) -> None:
    """Open ``run_url``, fill the Resume form as a person would, save a screenshot, submit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(timeout_ms)
            page.goto(run_url)
            page.get_by_role("button", name="Resume").click()
            form = page.locator(".p-modal__card")
            form.get_by_text("Resume Flow Run").wait_for()

            def field(label: str):  # type: ignore[no-untyped-def]
                title = page.locator(".schema-form-property__label", has_text=label)
                return form.locator(".schema-form-property").filter(has=title).first

            toggle = field("Approved").get_by_role("switch")
            if toggle.get_attribute("aria-checked") != "true":
                toggle.click()
            approver_field = field("Approver")
            text_box = approver_field.locator("textarea, input:not([type=checkbox])")
            if text_box.count():
                text_box.first.fill(approver)
            else:  # an enum of eligible logins renders as a select
                approver_field.locator(".p-select, [role=combobox], button").first.click()
                page.get_by_role("option", name=approver).click()
            field("Comment").locator("textarea, input").first.fill(comment)
            page.screenshot(path=str(screenshot))
            form.get_by_role("button", name="Submit").click()
            form.wait_for(state="hidden")
        finally:
            browser.close()


def screenshot_finished_run(run_url: str, screenshot: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(run_url)
            page.get_by_text("Completed").first.wait_for()
            page.get_by_role("tab", name="Artifacts").or_(
                page.get_by_text("Artifacts")
            ).first.click()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()


def _keep(screenshots: list[Path]) -> None:
    if os.environ.get("SAVE_SCREENSHOTS") == "1":
        target = PROJECT_ROOT / "docs" / "images"
        target.mkdir(parents=True, exist_ok=True)
        for shot in screenshots:
            shutil.copy(shot, target / shot.name)


def test_approval_given_in_the_prefect_ui_resumes_the_run(
    local_prefect: LocalPrefect, toy_worker: Worker, tmp_path: Path
) -> None:
    api = local_prefect.api_url
    run = start_run(api, "toy-release/toy-release", {"version": "v1.0.1"})
    paused = wait_for_run(api, run.id, timeout=90)
    assert paused.paused, toy_worker.log_tail()

    form_shot = tmp_path / "approval-form.png"
    approve_in_browser(
        local_prefect.flow_run_url(run.id), "qa-alice", "staging looks good", form_shot
    )
    assert form_shot.stat().st_size > 10_000

    done = wait_for_run(api, run.id, until=lambda r: r.finished, timeout=90)
    assert done.state_type == "COMPLETED", toy_worker.log_tail()
    summary = read_artifact(api, run.id, "promotion-summary")
    assert summary is not None and "qa-alice" in summary and "staging looks good" in summary

    run_shot = tmp_path / "finished-run.png"
    screenshot_finished_run(local_prefect.flow_run_url(run.id), run_shot)
    assert run_shot.stat().st_size > 10_000
    _keep([form_shot, run_shot])
