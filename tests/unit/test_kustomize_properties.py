"""Property tests of the editor: for any tag map only the asked newTag lines move, and the real
kustomize renders the new image references."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from promotion.config import PromotionConfig, load_config
from promotion.kustomize import read_image_tags, set_image_tags
from promotion.models import OCI_TAG
from sandbox.kustomize_render import render
from sandbox.seed import overlay_kustomization

from .conftest import SEED_VERSION
from .test_kustomize_golden import changed_lines

IMAGES = load_config().images()  # module level: hypothesis strategies are built at import
PROD = overlay_kustomization("prod", IMAGES, SEED_VERSION)

oci_tags = st.from_regex(OCI_TAG, fullmatch=True)
tag_maps = st.dictionaries(st.sampled_from(sorted(IMAGES.values())), oci_tags, max_size=9)


def rendered_images(rendered: str) -> dict[str, str]:
    """Image name -> tag of every container image in rendered manifests."""
    refs = [
        container["image"]
        for doc in YAML(typ="safe", pure=True).load_all(rendered)
        if doc["kind"] == "Deployment"
        for container in doc["spec"]["template"]["spec"]["containers"]
    ]
    assert len(refs) == len(IMAGES)
    return dict(ref.rsplit(":", 1) for ref in refs)


@given(tags=tag_maps)
@settings(max_examples=200, deadline=None)
def test_only_the_asked_newtag_lines_differ(tags: dict[str, str]) -> None:
    result = set_image_tags(PROD, tags)
    moved = {name for name, tag in tags.items() if tag != SEED_VERSION}
    pairs = changed_lines(PROD, result)
    assert len(pairs) == len(moved)
    for old, new in pairs:
        assert old == f"    newTag: {SEED_VERSION}\n"
        assert new.startswith("    newTag: ") and new.endswith("\n")
    assert read_image_tags(result) == {**dict.fromkeys(IMAGES.values(), SEED_VERSION), **tags}


@pytest.fixture(scope="module")
def overlay_dir(seed_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the seeded tree whose prod overlay the property test rewrites per example."""
    root = tmp_path_factory.mktemp("render") / "repo"
    shutil.copytree(seed_tree, root)
    return root / "kustomize" / "prod"


@given(tags=tag_maps)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_render_shows_the_new_image_references(overlay_dir: Path, tags: dict[str, str]) -> None:
    # The module-scoped overlay is rewritten whole on every example, so examples do not leak.
    (overlay_dir / "kustomization.yaml").write_text(set_image_tags(PROD, tags), encoding="utf-8")
    images = rendered_images(render(overlay_dir))
    assert images == {**dict.fromkeys(IMAGES.values(), SEED_VERSION), **tags}


@pytest.mark.parametrize(
    "tag", ["1.10", "on", "y", "No", "1_000", "0o17", "1e5", "2024-01-01", "true", "null", "10"]
)
def test_render_keeps_tags_yaml_would_read_as_other_types(
    overlay_dir: Path, config: PromotionConfig, tag: str
) -> None:
    image = config.image("frontend")
    (overlay_dir / "kustomization.yaml").write_text(set_image_tags(PROD, {image: tag}), "utf-8")
    assert rendered_images(render(overlay_dir))[image] == tag


@given(tag=oci_tags)
@settings(max_examples=300, deadline=None)
def test_any_tag_reads_back_as_the_same_string_in_yaml_1_1_and_1_2(tag: str) -> None:
    # kustomize reads with go-yaml v2 (YAML 1.1); other tools read YAML 1.2.
    result = set_image_tags("images:\n  - name: app\n    newTag: v1\n", {"app": tag})
    for version in ((1, 1), (1, 2)):
        yaml = YAML(typ="safe", pure=True)
        yaml.version = version
        assert yaml.load(result)["images"][0]["newTag"] == tag
