"""Golden-text tests of the image-tag editor: realistic overlays in, byte-exact overlays out."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from promotion.config import PromotionConfig
from promotion.kustomize import read_image_tags, set_image_tags
from sandbox.seed import overlay_kustomization

DATA = Path(__file__).parent / "data"
PREFIX = "registry.digitalocean.com/microservices-demo"
SERVICES = (
    "cartservice",
    "checkoutservice",
    "currencyservice",
    "emailservice",
    "frontend",
    "paymentservice",
    "productcatalogservice",
    "recommendationservice",
    "shippingservice",
)

# Golden case -> the tags set on `<case>.input.yaml`; the result must be `<case>.expected.yaml`.
GOLDEN: dict[str, dict[str, str]] = {
    "seed_prod": {f"{PREFIX}/{s}": "v1.0.1" for s in SERVICES},
    "commented": {
        f"{PREFIX}/frontend": "v1.0.1",
        f"{PREFIX}/cartservice": "v1.0.1",
        f"{PREFIX}/checkoutservice": "v1.0.1",
        f"{PREFIX}/emailservice": "v1.0.1",
        f"{PREFIX}/currencyservice": "v1.0.1",
        f"{PREFIX}/shippingservice": "1.10",
    },
    "flow": {"a": "v9", "b": "v8", "c": "1.10"},
    "crlf": {"web": "v2", "api": "v2", "worker": "2.0"},
    "numeric": {"plain": "1.10", "double": "1.10", "single": "1.10", "keep": "v1.9"},
}


def read(name: str) -> str:
    # Bytes, decoded without newline translation: CRLF must reach the editor as CRLF.
    return (DATA / name).read_bytes().decode("utf-8")


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    """(old, new) pairs of the lines that differ; fails if lines were added or removed."""
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    pairs: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        assert op == "replace" and i2 - i1 == j2 - j1, f"lines added or removed: {op}"
        pairs += zip(old[i1:i2], new[j1:j2], strict=True)
    return pairs


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_set_image_tags_matches_golden_file(case: str) -> None:
    result = set_image_tags(read(f"{case}.input.yaml"), GOLDEN[case])
    assert result == read(f"{case}.expected.yaml")


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_golden_result_reads_back_the_new_tags(case: str) -> None:
    before = read_image_tags(read(f"{case}.input.yaml"))
    after = read_image_tags(read(f"{case}.expected.yaml"))
    assert after == {**before, **GOLDEN[case]}


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_only_newtag_lines_change(case: str) -> None:
    before, after = read(f"{case}.input.yaml"), read(f"{case}.expected.yaml")
    for old, new in changed_lines(before, after):
        assert "newTag" in old and "newTag" in new
        # Same line apart from the tag: same prefix up to the value, same line ending.
        assert old.split("newTag")[0] == new.split("newTag")[0]
        assert old.endswith("\r\n") == new.endswith("\r\n")


def test_seed_prod_fixture_is_the_seed_overlay(config: PromotionConfig) -> None:
    assert read("seed_prod.input.yaml") == overlay_kustomization("prod", config.images(), "v1.0.0")


def test_v1_0_1_for_all_nine_services_changes_exactly_nine_lines(
    config: PromotionConfig,
) -> None:
    before = overlay_kustomization("prod", config.images(), "v1.0.0")
    after = set_image_tags(before, dict.fromkeys(config.images().values(), "v1.0.1"))
    pairs = changed_lines(before, after)
    assert len(pairs) == 9
    assert all((old, new) == ("    newTag: v1.0.0\n", "    newTag: v1.0.1\n") for old, new in pairs)
    diff = [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="")
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    assert len(diff) == 18


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_setting_the_current_tags_returns_the_identical_text(case: str) -> None:
    text = read(f"{case}.input.yaml")
    assert set_image_tags(text, read_image_tags(text)) == text


def test_setting_no_tags_returns_the_identical_text() -> None:
    text = read("commented.input.yaml")
    assert set_image_tags(text, {}) == text


@pytest.mark.parametrize(
    ("tag", "written"),
    [
        ("1.10", '"1.10"'),  # a float to YAML: 1.1
        ("10", '"10"'),
        ("1e5", '"1e5"'),
        ("0x1F", '"0x1F"'),
        ("0o17", '"0o17"'),
        ("1_000", '"1_000"'),  # YAML 1.1 (kustomize's go-yaml v2): the int 1000
        ("2024-01-01", '"2024-01-01"'),
        ("true", '"true"'),
        ("on", '"on"'),  # YAML 1.1 booleans: kustomize refuses a bool newTag
        ("y", '"y"'),
        ("No", '"No"'),
        ("null", '"null"'),
        ("v1.10", "v1.10"),
        ("1.0.1", "1.0.1"),
        ("NaN", "NaN"),
        ("latest", "latest"),
    ],
)
def test_tags_yaml_would_not_read_as_strings_are_quoted(tag: str, written: str) -> None:
    text = "images:\n  - name: app\n    newTag: v1.0.0\n"
    result = set_image_tags(text, {"app": tag})
    assert result == f"images:\n  - name: app\n    newTag: {written}\n"
    assert read_image_tags(result) == {"app": tag}


def test_quoted_tag_keeps_its_quote_style() -> None:
    text = "images:\n- name: a\n  newTag: 'v1'\n- name: b\n  newTag: \"v1\"\n"
    assert set_image_tags(text, {"a": "1.10", "b": "on"}) == (
        "images:\n- name: a\n  newTag: '1.10'\n- name: b\n  newTag: \"on\"\n"
    )


def test_read_image_tags_returns_the_tag_as_written() -> None:
    text = (
        "images:\n- name: a\n  newTag: 1.10\n- name: b\n  newTag: true\n"
        "- name: c\n  newTag: 'x''y'\n- name: d\n  digest: sha256:00\n- name: e\n  newTag:\n"
    )
    assert read_image_tags(text) == {"a": "1.10", "b": "true", "c": "x'y"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "kind: Kustomization\rimages:\r- name: a\r  newTag: v1 # x\r",
            "kind: Kustomization\rimages:\r- name: a\r  newTag: v2 # x\r",
            id="lone-cr-line-endings",
        ),
        pytest.param(
            "\ufeff---\r\nimages:\r\n- name: a\r\n  newTag: 'v1'\r\n",
            "\ufeff---\r\nimages:\r\n- name: a\r\n  newTag: 'v2'\r\n",
            id="byte-order-mark",
        ),
        pytest.param(
            "# ünïcödé 🎉\nimages:\n- name: a # 🎉\n  newTag: v1 # 🎉\n",
            "# ünïcödé 🎉\nimages:\n- name: a # 🎉\n  newTag: v2 # 🎉\n",
            id="non-ascii-comments",
        ),
        pytest.param(
            "images: [\n  {name: a,\n   newTag: v1},\n]\n",
            "images: [\n  {name: a,\n   newTag: v2},\n]\n",
            id="flow-over-several-lines",
        ),
        pytest.param(
            'images:\n- {"name": a, "newTag": v1}\n',
            'images:\n- {"name": a, "newTag": v2}\n',
            id="quoted-keys",
        ),
        pytest.param(
            "images:\n    -   name: a\n        newTag:   v1   \n...\n",
            "images:\n    -   name: a\n        newTag:   v2   \n...\n",
            id="wide-indent-trailing-spaces-document-end",
        ),
        pytest.param(
            "kind: Component\nimages:\n- name: a\n  newTag: v1\n",
            "kind: Component\nimages:\n- name: a\n  newTag: v2\n",
            id="component",
        ),
    ],
)
def test_unusual_layouts_keep_every_other_byte(text: str, expected: str) -> None:
    assert set_image_tags(text, {"a": "v2"}) == expected
