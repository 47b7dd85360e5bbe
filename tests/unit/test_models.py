"""Domain models: release versions, environment order, the image change set."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from promotion.models import (
    OCI_TAG,
    DowngradeRefused,
    EnvironmentOrder,
    EnvironmentOrderError,
    ImageChange,
    ImageChangeSet,
    InvalidVersionError,
    ReleaseVersion,
    validate_version,
)
from promotion.models import Release as ModelRelease


@pytest.mark.parametrize(
    "tag", ["v1.0.1", "1.0.1", "latest", "_x", "1", "v1.0.1-rc.1", "release_2024-11-26", "A" * 128]
)
def test_valid_tags_are_accepted(tag: str) -> None:
    assert validate_version(tag) == tag


@pytest.mark.parametrize(
    "tag",
    [
        "v1.0.1; rm -rf /",
        "",
        "-v1",
        ".v1",
        "v1 0",
        "v1/0",
        "v1:0",
        "v1@sha256",
        "A" * 129,
        "v1\n",
        "v1.0.1\u00e9",
        "$(whoami)",
    ],
)
def test_invalid_tags_are_refused_with_a_clear_message(tag: str) -> None:
    with pytest.raises(InvalidVersionError) as info:
        validate_version(tag)
    message = str(info.value)
    assert repr(tag) in message
    assert "is not a valid OCI tag" in message
    assert "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}" in message


def test_a_non_string_is_refused() -> None:
    with pytest.raises(InvalidVersionError, match="must be a string, got int"):
        validate_version(101)  # type: ignore[arg-type]


@given(st.from_regex(OCI_TAG, fullmatch=True))
def test_every_oci_tag_is_accepted(tag: str) -> None:
    assert validate_version(tag) == tag


@given(st.text(max_size=140))
def test_validate_version_agrees_with_the_oci_grammar(text: str) -> None:
    valid = (
        0 < len(text) <= 128
        and all(c.isascii() and (c.isalnum() or c in "_.-") for c in text)
        and text[0] not in ".-"
    )
    if valid:
        assert validate_version(text) == text
    else:
        with pytest.raises(InvalidVersionError):
            validate_version(text)


class Release(BaseModel):
    version: ReleaseVersion


def test_release_version_validates_in_pydantic_models() -> None:
    assert Release(version="v1.0.1").version == "v1.0.1"
    with pytest.raises(ValidationError, match="is not a valid OCI tag"):
        Release(version="v1.0.1; rm -rf /")


ORDER = EnvironmentOrder(("dev", "staging", "prod"))


def test_an_order_names_its_environments() -> None:
    assert ORDER.index("staging") == 1
    with pytest.raises(EnvironmentOrderError, match="unknown environment 'qa'"):
        ORDER.index("qa")


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("v1.0.0", "v1.0.1"),
        ("v1.0.9", "v1.0.10"),  # numbers, not text
        ("1.9.0", "1.10.0"),
        ("v1.0.1-rc.1", "v1.0.1"),  # a pre-release comes before its release
        ("v1.0.1-rc.2", "v1.0.1-rc.10"),
        ("v1.0.1-alpha", "v1.0.1-beta"),
        ("v1.0.1-rc.1", "v1.0.1-rc.a"),  # numeric identifiers sort before alphanumeric ones
        ("v2.0.0", "v10.0.0"),
    ],
)
def test_releases_are_ordered_by_semantic_version(older: str, newer: str) -> None:
    assert ModelRelease(newer).newer_than(ModelRelease(older)) is True
    assert ModelRelease(older).newer_than(ModelRelease(newer)) is False
    ModelRelease(newer).check_forward([older], "prod", allow_downgrade=False)
    with pytest.raises(DowngradeRefused, match=f"prod runs {newer}, which is newer than {older}"):
        ModelRelease(older).check_forward([newer], "prod", allow_downgrade=False)
    ModelRelease(older).check_forward([newer], "prod", allow_downgrade=True)


def test_the_same_release_again_is_no_move() -> None:
    assert ModelRelease("v1.0.1").newer_than(ModelRelease("v1.0.1")) is False
    ModelRelease("v1.0.1").check_forward(["v1.0.1"], "prod", allow_downgrade=False)


@pytest.mark.parametrize(("running", "target"), [("latest", "v1.0.1"), ("v1.0.1", "main-abc123")])
def test_tags_without_an_order_need_allow_downgrade(running: str, target: str) -> None:
    assert ModelRelease(target).newer_than(ModelRelease(running)) is None
    with pytest.raises(DowngradeRefused, match="not both semantic versions"):
        ModelRelease(target).check_forward([running], "staging", allow_downgrade=False)
    ModelRelease(target).check_forward([running], "staging", allow_downgrade=True)


def test_a_release_is_validated_once_where_it_enters() -> None:
    with pytest.raises(InvalidVersionError):
        ModelRelease("v1.0.1; rm -rf /")
    assert str(ModelRelease("v1.0.1")) == "v1.0.1"


@pytest.mark.parametrize(
    ("names", "expected"),
    [((), "at least one environment"), (("a", "b", "a"), "environments listed twice: a")],
)
def test_invalid_orders(names: tuple[str, ...], expected: str) -> None:
    with pytest.raises(EnvironmentOrderError, match=expected):
        EnvironmentOrder(names)


IMAGES = {"frontend": "reg/frontend", "cartservice": "reg/cartservice", "adservice": "reg/ads"}


def test_change_set_lists_every_image_and_the_pending_ones() -> None:
    changes = ImageChangeSet.build(
        "prod", "v1.0.1", IMAGES, {"reg/frontend": "v1.0.0", "reg/cartservice": "v1.0.1"}
    )
    assert changes.changes == (
        ImageChange("adservice", "reg/ads", None, "v1.0.1"),
        ImageChange("cartservice", "reg/cartservice", "v1.0.1", "v1.0.1"),
        ImageChange("frontend", "reg/frontend", "v1.0.0", "v1.0.1"),
    )
    assert [c.service for c in changes.pending] == ["adservice", "frontend"]
    assert changes.new_tags() == {"reg/ads": "v1.0.1", "reg/frontend": "v1.0.1"}
    table = changes.markdown_table().splitlines()
    assert table[0] == "| service | from | to | image |"
    assert "| cartservice | `v1.0.1` | `v1.0.1` (unchanged) | `reg/cartservice` |" in table
    assert "| adservice | `-` | `v1.0.1` | `reg/ads` |" in table


def test_change_set_refuses_an_invalid_version() -> None:
    with pytest.raises(InvalidVersionError, match="rm -rf"):
        ImageChangeSet.build("prod", "v1.0.1; rm -rf /", IMAGES, {})
