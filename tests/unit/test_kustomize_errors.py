"""Bad input of every kind gives a KustomizationError naming the entry and the reason."""

from __future__ import annotations

import pytest

from promotion.kustomize import KustomizationError, read_image_tags, set_image_tags

OVERLAY = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
images:
  - name: registry.example/frontend
    newTag: v1.0.0
  - name: registry.example/cartservice
    digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  - name: registry.example/adservice
    newName: registry.example/ads
  - name: registry.example/emailservice
    newTag:
"""


@pytest.mark.parametrize(
    ("text", "tags", "expected"),
    [
        pytest.param(
            OVERLAY,
            {"registry.example/nosuchservice": "v1.0.1"},
            ["'registry.example/nosuchservice'", "is not in images:", "registry.example/frontend"],
            id="unknown-image",
        ),
        pytest.param(
            OVERLAY,
            {"registry.example/cartservice": "v1.0.1"},
            ["'registry.example/cartservice'", "pinned by digest", "sha256:0123"],
            id="pinned-by-digest",
        ),
        pytest.param(
            OVERLAY,
            {"registry.example/frontend": "v1.0.1; rm -rf /"},
            ["'registry.example/frontend'", "'v1.0.1; rm -rf /'", "not a valid OCI tag"],
            id="invalid-tag",
        ),
        pytest.param(
            OVERLAY,
            {"registry.example/adservice": "v1.0.1"},
            ["'registry.example/adservice'", "has no newTag"],
            id="entry-without-newtag",
        ),
        pytest.param(
            OVERLAY,
            {"registry.example/emailservice": "v1.0.1"},
            ["'registry.example/emailservice'", "has no newTag"],
            id="entry-with-empty-newtag",
        ),
        pytest.param(
            "images:\n  - name: a\n    newTag: [v1\n",
            {"a": "v2"},
            ["malformed YAML"],
            id="malformed-yaml",
        ),
        pytest.param(
            "images:\n\t- name: a\n",
            {"a": "v2"},
            ["malformed YAML"],
            id="malformed-yaml-tab",
        ),
        pytest.param(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\n",
            {"a": "v2"},
            ["not a Kustomization", "'Deployment'"],
            id="a-deployment",
        ),
        pytest.param(
            "- name: a\n  newTag: v1\n",
            {"a": "v2"},
            ["not a Kustomization", "list"],
            id="a-list",
        ),
        pytest.param(
            "kind: Kustomization\nimages: []\n---\nkind: Kustomization\nimages: []\n",
            {"a": "v2"},
            ["not a Kustomization", "found 2"],
            id="two-documents",
        ),
        pytest.param("", {"a": "v2"}, ["not a Kustomization", "found 0"], id="empty-file"),
        pytest.param(
            "kind: Kustomization\nresources: [../base]\n",
            {"a": "v2"},
            ["no images: list"],
            id="missing-images",
        ),
        pytest.param(
            "kind: Kustomization\nimages: {name: a}\n",
            {"a": "v2"},
            ["images: is a", "not a list"],
            id="images-not-a-list",
        ),
        pytest.param(
            "images:\n  - newTag: v1\n",
            {"a": "v2"},
            ["images[0] has no name"],
            id="entry-without-name",
        ),
        pytest.param(
            "images:\n  - name: a\n    newTag: v1\n  - name: a\n    newTag: v2\n",
            {"a": "v3"},
            ["'a'", "listed twice"],
            id="duplicate-entry",
        ),
        pytest.param(
            "images:\n  - name: a\n    newTag: &t v1\n  - name: b\n    newTag: *t\n",
            {"b": "v2"},
            ["'b'", "anchor or alias"],
            id="alias",
        ),
        pytest.param(
            "images:\n  - name: a\n    newTag: !!str v1\n",
            {"a": "v2"},
            ["'a'", "YAML tag"],
            id="explicit-yaml-tag",
        ),
        pytest.param(
            "images:\n  - name: a\n    newTag: v1\n      continued\n",
            {"a": "v2"},
            ["'a'", "spans several lines"],
            id="multi-line-plain-scalar",
        ),
    ],
)
def test_bad_input_raises_kustomization_error(
    text: str, tags: dict[str, str], expected: list[str]
) -> None:
    with pytest.raises(KustomizationError) as info:
        set_image_tags(text, tags)
    for fragment in expected:
        assert fragment in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(KustomizationError) as info:
        set_image_tags(
            OVERLAY,
            {"registry.example/nosuch": "v1", "registry.example/cartservice": "v1", "x": "-v"},
        )
    message = str(info.value)
    assert "'registry.example/nosuch' is not in images:" in message
    assert "'registry.example/cartservice' is pinned by digest" in message
    assert "'-v' is not a valid OCI tag" in message


def test_an_anchor_elsewhere_does_not_block_other_entries() -> None:
    text = "images:\n  - name: a\n    newTag: &t v1\n  - name: b\n    newTag: *t\n  - name: c\n    newTag: v1\n"
    assert set_image_tags(text, {"c": "v2"}) == text.replace("newTag: v1\n", "newTag: v2\n")


def test_a_refused_edit_leaves_nothing_half_done() -> None:
    # The valid frontend edit is not applied when another entry of the same call is refused.
    with pytest.raises(KustomizationError):
        set_image_tags(OVERLAY, {"registry.example/frontend": "v2", "registry.example/nope": "v2"})


@pytest.mark.parametrize(
    "text",
    [
        "images: [\n",
        "apiVersion: apps/v1\nkind: Deployment\n",
        "- a\n- b\n",
        "kind: Kustomization\n",
    ],
)
def test_read_image_tags_refuses_what_set_refuses(text: str) -> None:
    with pytest.raises(KustomizationError):
        read_image_tags(text)


def test_kustomization_error_is_a_value_error_with_cause() -> None:
    with pytest.raises(KustomizationError) as info:
        set_image_tags("images: [\n", {"a": "v1"})
    assert isinstance(info.value, ValueError)
    assert info.value.__cause__ is not None
