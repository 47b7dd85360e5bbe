"""Bad inputs that need the real Prefect server and the sandbox (issue 13, item 5).

A bad answer to a waiting approval is refused by the Prefect server itself (the form's model
is the run's input schema): ``resume_run`` gets ``REJECT`` with a reason naming the field, and
the run keeps waiting at the same gate. A bad version or a bad setup given to the flow ends the
run with a message naming the value or the location. In every case nothing was written to Git
(no branch, PR or commit besides main) or changed in Argo CD.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deployments.local import LocalPrefect
from deployments.runs import resume_run
from flows.promote import promote_release
from pipeline.conftest import BackgroundRun
from pipeline.helpers import INITIATOR, PROD, STAGING, argo, decide, pulls, tags
from sandbox.launcher import Sandbox

APPS = ("staging-microservices-demo", "prod-microservices-demo")


def _argocd(box: Sandbox) -> dict[str, tuple[str, int, frozenset[str]]]:
    """Per application: the synced revision, the length of its history, the live images."""
    with argo(box) as client:
        apps = {name: client.get_app(name) for name in APPS}
    return {
        name: (
            app.status.sync.revision,
            len(app.status.history),
            frozenset(app.status.summary.images),
        )
        for name, app in apps.items()
    }


def _assert_nothing_written(box: Sandbox, main: str, argocd: dict[str, Any]) -> None:
    assert box.github.branches().keys() == {"main"}, box.github.branches()
    assert box.github.head("main") == main, "no commit on main"
    assert pulls(box) == []
    assert _argocd(box) == argocd, "Argo CD unchanged"


BAD_ANSWERS = {
    # name: (run input, the field the reason must name, more words it must hold)
    "missing approver": ({"approved": True, "comment": "ok"}, "approver", "required"),
    "unlisted approver": ({"approved": True, "approver": "mallory"}, "approver", "qa-alice"),
    "approved is a word": ({"approved": "maybe", "approver": "qa-alice"}, "approved", "boolean"),
}


def test_bad_answers_at_a_gate_are_rejected_naming_the_field(
    sandbox: Sandbox, prefect_server: LocalPrefect, run_in_background: Callable[..., BackgroundRun]
) -> None:
    api = prefect_server.api_url
    run = run_in_background(promote_release, version="v1.0.1", initiator=INITIATOR)
    waiting = run.wait_paused("qa-approval")
    assert waiting.paused, waiting
    main, argocd = sandbox.github.head("main"), _argocd(sandbox)
    branches = sandbox.github.branches()
    for name, (run_input, field, words) in BAD_ANSWERS.items():
        result = resume_run(api, run.run_id, run_input)
        assert result.status == "REJECT", (name, result)
        reason = result.reason.lower()
        assert f"'{field}'" in reason and words in reason, (name, result.reason)
        again = run.wait_paused("qa-approval")
        assert again.paused and again.pause_key == waiting.pause_key, (name, again)
    # Nothing moved on after the refused answers: no prod branch, no commit, Argo CD as it was.
    assert sandbox.github.branches() == branches
    assert sandbox.github.head("main") == main and _argocd(sandbox) == argocd
    assert tags(sandbox, PROD) == {"v1.0.0"} and tags(sandbox, STAGING) == {"v1.0.1"}
    decide(api, run, "qa", "qa-bob", approved=False, comment="end of test")
    assert run.join().state_type == "FAILED"
    assert not [p for p in pulls(sandbox) if p["head"]["ref"].startswith("promote/prod/")]


@pytest.mark.parametrize("version", ["v1.0.1; rm -rf /", "../v1.0.1"], ids=["shell", "path escape"])
def test_a_bad_version_ends_the_run_before_anything_is_written(
    version: str,
    sandbox: Sandbox,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
) -> None:
    main, argocd = sandbox.github.head("main"), _argocd(sandbox)
    final = run_in_background(promote_release, version=version, initiator=INITIATOR).join()
    assert final.state_type == "FAILED", final
    assert repr(version) in (final.message or ""), final.message
    _assert_nothing_written(sandbox, main, argocd)


def test_a_bad_setup_ends_the_run_naming_each_problem(
    sandbox: Sandbox,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
    tmp_path: Path,
) -> None:
    from promotion.config import DEFAULT_CONFIG

    bad = tmp_path / "promotion.yaml"
    bad.write_text(
        DEFAULT_CONFIG.read_text(encoding="utf-8")
        .replace("when: after_deploy", "when: after_merge")
        .replace("gate: pm", "gate: qa"),
        encoding="utf-8",
    )
    main, argocd = sandbox.github.head("main"), _argocd(sandbox)
    final = run_in_background(
        promote_release, version="v1.0.1", initiator=INITIATOR, config_file=str(bad)
    ).join()
    assert final.state_type == "FAILED", final
    message = final.message or ""
    assert "environments[0].approvals[0].when" in message, message
    assert "listed twice: qa" in message, message
    _assert_nothing_written(sandbox, main, argocd)


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"env": "qa-eu"}, ["unknown environment 'qa-eu'", "staging, prod"]),
        ({"env": "prod", "method": "revert", "to": "last-week"}, ["'last-week'"]),
    ],
    ids=["unknown env", "bad to"],
)
def test_a_bad_rollback_ends_the_run_before_anything_is_written(
    parameters: dict[str, str],
    expected: list[str],
    sandbox: Sandbox,
    prefect_server: LocalPrefect,
    run_in_background: Callable[..., BackgroundRun],
) -> None:
    """What the CLI cannot know (the worker's setup) the flow refuses, naming it."""
    from flows.rollback import rollback_release

    main, argocd = sandbox.github.head("main"), _argocd(sandbox)
    final = run_in_background(rollback_release, **parameters).join()
    assert final.state_type == "FAILED", final
    for words in expected:
        assert words in (final.message or ""), final.message
    _assert_nothing_written(sandbox, main, argocd)
