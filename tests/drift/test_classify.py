"""Drift classification, version ordering and report rendering (pure, no servers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from promotion.drift import (
    DesiredState,
    DriftAudit,
    DriftKind,
    LiveApp,
    ReleaseInfo,
    classify,
    desired_from_overlay,
    newest_version,
    split_image,
    version_key,
)

DATA = Path(__file__).resolve().parent.parent / "unit" / "data"
PREFIX = "registry.example.com/demo"
SERVICES = {f"{PREFIX}/frontend": "frontend", f"{PREFIX}/cartservice": "cartservice"}
RELEASE = ReleaseInfo("v1.0.1", tuple(SERVICES))


def live(**overrides: object) -> LiveApp:
    fields: dict[str, object] = {
        "name": "staging-app",
        "environment": "staging",
        "sync_status": "Synced",
        "sync_revision": "a" * 40,
        "health_status": "Healthy",
        "health_message": "",
        "autosync_enabled": True,
        "images": (f"{PREFIX}/frontend:v1.0.1", f"{PREFIX}/cartservice:v1.0.1"),
    }
    fields.update(overrides)
    return LiveApp(**fields)  # type: ignore[arg-type]


def desired(**tags: str) -> DesiredState:
    images = {f"{PREFIX}/frontend": "v1.0.1", f"{PREFIX}/cartservice": "v1.0.1"}
    images.update({f"{PREFIX}/{k}": v for k, v in tags.items()})
    return DesiredState("apps/x/kustomization.yaml", "b" * 40, images)


def kinds(app_live: LiveApp | None, want: DesiredState | None, **kw: object) -> set[DriftKind]:
    result = classify("staging-app", "staging", app_live, want, RELEASE, SERVICES, **kw)  # type: ignore[arg-type]
    return set(result.kinds)


def test_semver_order_is_numeric_not_lexical() -> None:
    tags = ["v1.0.9", "v1.0.10", "v1.0.2", "latest", "sha-abc", "v1.0.11-rc.1"]
    assert newest_version(tags) == "v1.0.10"
    assert newest_version(tags, include_prereleases=True) == "v1.0.11-rc.1"
    key = version_key
    assert key("1.2.3") == key("v1.2.3")
    assert key("v1.0.0-alpha") < key("v1.0.0-alpha.1") < key("v1.0.0-beta.2")  # type: ignore[operator]
    assert key("v1.0.0-beta.2") < key("v1.0.0-beta.11") < key("v1.0.0")  # type: ignore[operator]
    assert key("v1.0") is None and key("latest") is None


def test_newest_release_needs_every_image() -> None:
    info = ReleaseInfo.from_tags(
        {"a": ["v1.0.0", "v1.0.1", "v1.0.2"], "b": ["v1.0.0", "v1.0.1"], "c": ["v1.0.1", "x"]}
    )
    assert info.version == "v1.0.1"
    assert info.newest_partial == "v1.0.2"
    assert info.incomplete == ("b", "c")
    assert ReleaseInfo.from_tags({"a": [], "b": ["v1.0.0"]}).version is None


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("reg:5000/a/b:v1", ("reg:5000/a/b", "v1")),
        ("reg:5000/a/b", ("reg:5000/a/b", "latest")),
        ("a/b@sha256:abc", ("a/b", "@sha256:abc")),
        ("a/b:v2@sha256:abc", ("a/b", "v2")),
    ],
)
def test_split_image(ref: str, expected: tuple[str, str]) -> None:
    assert split_image(ref) == expected


def test_in_sync_has_no_drift() -> None:
    result = classify("staging-app", "staging", live(), desired(), RELEASE, SERVICES)
    assert result.kinds == () and not result.drifting
    assert [r.status for r in result.rows] == ["ok", "ok"]
    assert result.labels == "in sync"


def test_out_of_sync() -> None:
    assert kinds(live(sync_status="OutOfSync"), desired()) == {DriftKind.OUT_OF_SYNC}


def test_image_mismatch_names_service_desired_and_live() -> None:
    result = classify(
        "staging-app", "staging", live(), desired(frontend="v1.0.2"), RELEASE, SERVICES
    )
    assert set(result.kinds) == {DriftKind.IMAGE_MISMATCH}
    assert "frontend: Git wants v1.0.2, Argo CD runs v1.0.1" in result.findings
    row = next(r for r in result.rows if r.service == "frontend")
    assert (row.desired, row.live, row.status) == ("v1.0.2", "v1.0.1", "mismatch")


def test_degraded_and_missing() -> None:
    assert kinds(live(health_status="Degraded", health_message="pull"), desired()) == {
        DriftKind.DEGRADED
    }
    missing = kinds(live(health_status="Missing", images=(), sync_status="Unknown"), desired())
    assert missing == {DriftKind.MISSING, DriftKind.OUT_OF_SYNC}
    assert kinds(None, desired()) == {DriftKind.MISSING}


def test_autosync_disabled_mentions_the_rollback_mark() -> None:
    result = classify(
        "staging-app",
        "staging",
        live(autosync_enabled=False, autosync_disabled_at="2026-11-26T10:00:00Z"),
        desired(),
        RELEASE,
        SERVICES,
    )
    assert result.kinds == (DriftKind.AUTOSYNC_DISABLED,)
    assert "rollback" in result.findings[0] and "2026-11-26T10:00:00Z" in result.findings[0]


def test_behind_the_newest_release_uses_what_runs() -> None:
    old = live(images=(f"{PREFIX}/frontend:v1.0.0", f"{PREFIX}/cartservice:v1.0.0"))
    result = classify(
        "staging-app",
        "staging",
        old,
        desired(frontend="v1.0.0", cartservice="v1.0.0"),
        RELEASE,
        SERVICES,
    )
    assert result.kinds == (DriftKind.BEHIND_RELEASE,)
    assert result.findings == (
        "behind the newest release v1.0.1: frontend, cartservice run v1.0.0",
    )
    assert (
        kinds(old, desired(frontend="v1.0.0", cartservice="v1.0.0"), behind_is_drift=False) == set()
    )
    # v1.0.10 is newer than v1.0.9: not behind.
    ten = ReleaseInfo("v1.0.9")
    newer = live(images=(f"{PREFIX}/frontend:v1.0.10", f"{PREFIX}/cartservice:v1.0.10"))
    got = classify(
        "a", "staging", newer, desired(frontend="v1.0.10", cartservice="v1.0.10"), ten, SERVICES
    )
    assert got.kinds == ()


def test_unreadable_overlay() -> None:
    state = desired_from_overlay("apps/x/kustomization.yaml", "images: [", "c" * 40)
    assert state.images is None and state.error
    assert DriftKind.DESIRED_UNKNOWN in kinds(live(), state)
    assert desired_from_overlay(None, None, "c" * 40).images is None


def test_report_table_and_event() -> None:
    drifting = classify(
        "app-b", "staging", live(sync_status="OutOfSync"), desired(), RELEASE, SERVICES
    )
    clean = classify("app-a", "staging", live(), desired(), RELEASE, SERVICES)
    audit = DriftAudit(("staging",), (clean, drifting), RELEASE, {"repo@main": "d" * 40})
    assert audit.drift_count == 1
    rows = audit.table_rows()
    assert len(rows) == 4 and {r["application"] for r in rows} == {"app-a", "app-b"}
    assert {r["drift"] for r in rows if r["application"] == "app-b"} == {"OutOfSync"}
    text = audit.markdown()
    assert "**1 of 2 applications drift.**" in text and "`app-b`" in text
    assert "## In sync (1)" in text
    resource = drifting.event_resource()
    assert resource["prefect.resource.id"] == "release-promotion.argocd-app.app-b"
    assert resource["release-promotion.environment"] == "staging"
    payload = drifting.event_payload()
    assert payload["kinds"] == ["out_of_sync"] and payload["sync"] == "OutOfSync"
    clean_audit = DriftAudit(("staging",), (clean,), RELEASE)
    assert "**No drift**" in clean_audit.markdown()


TRICKY = [
    "images:\n  - name: a\n    newTag: 1.10\n  - name: b\n    newTag: '1.10'\n",
    'images:\n  - {name: a, newTag: "on"}\n  - name: b\n    digest: sha256:abc\n',
    "images:\n  - name: a\n    newTag:\n  - name: b\n    newTag: v1 # why\n",
    "images:\n  - name: a\n    newTag: null\n",
    "kind: Kustomization\nimages:\n  - name: a\n    newTag: &t v1\n  - name: b\n    newTag: *t\n",
    "images:\n  - name: a\n    newTag: v1\n  - name: a\n    newTag: v2\n",
    "a: 1\n---\nb: 2\n",
    "kind: Deployment\nimages: []\n",
    "images: [\n",
]


@pytest.mark.parametrize("text", TRICKY + [p.read_text() for p in sorted(DATA.glob("*.yaml"))])
def test_fast_overlay_reader_agrees_with_the_editor(text: str) -> None:
    from promotion.drift import overlay_images
    from promotion.kustomize import KustomizationError, read_image_tags

    try:
        expected: object = read_image_tags(text)
    except KustomizationError as exc:
        expected = type(exc)
    try:
        got: object = overlay_images(text)
    except KustomizationError as exc:
        got = type(exc)
    assert got == expected
