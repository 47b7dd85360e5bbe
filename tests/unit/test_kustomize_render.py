"""render() runs the real kustomize and validate() runs kubernetes-validate; errors carry their messages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sandbox.kustomize_render import KustomizeRenderFailed, ManifestInvalid, render, validate


@pytest.fixture
def repo(seed_tree: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(seed_tree, copy)
    return copy


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_seed_overlays_render_and_validate(seed_tree: Path, env: str) -> None:
    rendered = render(seed_tree / "kustomize" / env)
    assert f"namespace: {env}" in rendered
    assert "image: registry.digitalocean.com/microservices-demo/frontend:v1.0.0" in rendered
    assert validate(rendered) == 18  # 9 Deployments and 9 Services


def test_render_of_a_missing_resource_carries_kustomizes_message(repo: Path) -> None:
    (repo / "kustomize" / "base" / "frontend.yaml").unlink()
    with pytest.raises(KustomizeRenderFailed) as info:
        render(repo / "kustomize" / "prod")
    message = str(info.value)
    assert str(repo / "kustomize" / "prod") in message
    assert "frontend.yaml" in message  # kustomize's own words about the missing file


def test_render_of_an_unknown_field_carries_kustomizes_message(repo: Path) -> None:
    overlay = repo / "kustomize" / "prod" / "kustomization.yaml"
    overlay.write_text(overlay.read_text() + "imagez: []\n")
    with pytest.raises(KustomizeRenderFailed, match="imagez"):
        render(overlay.parent)


def test_render_of_a_directory_without_kustomization(tmp_path: Path) -> None:
    with pytest.raises(KustomizeRenderFailed, match="unable to find one of"):
        render(tmp_path)


INVALID_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: frontend
spec:
  replicas: "three"
  selector:
    matchLabels:
      app: frontend
  template:
    metadata:
      labels:
        app: frontend
    spec:
      containers:
        - name: server
          image: registry.example/frontend:v1.0.1
          imagePullPolicy: Always
          portz: []
"""


def test_validate_carries_kubernetes_validates_message() -> None:
    with pytest.raises(ManifestInvalid) as info:
        validate(INVALID_DEPLOYMENT)
    assert "Deployment/frontend: spec.replicas: 'three' is not of type 'integer'" in str(info.value)


def test_validate_is_strict_about_unknown_fields() -> None:
    with pytest.raises(ManifestInvalid, match="portz"):
        validate(INVALID_DEPLOYMENT.replace('"three"', "3"))


def test_validate_lists_every_invalid_resource(seed_tree: Path) -> None:
    rendered = render(seed_tree / "kustomize" / "prod")
    broken = rendered.replace("replicas: 1", 'replicas: "one"')
    with pytest.raises(ManifestInvalid) as info:
        validate(broken)
    assert str(info.value).count("is not of type 'integer'") == 9
    assert "Deployment/cartservice" in str(info.value)
    assert "Deployment/shippingservice" in str(info.value)


def test_validate_refuses_text_that_is_not_yaml() -> None:
    with pytest.raises(ManifestInvalid, match="not YAML"):
        validate("kind: [\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "apiVersion: example.com/v1\nkind: Frobnicator\nmetadata:\n  name: x\n",
            "Frobnicator/x: Couldn't find schema for kind Frobnicator",
        ),
        ("kind: Service\nmetadata:\n  name: s\n", "Service/s: no apiVersion"),
        ("- a\n- b\n", "document 0: a list, not a Kubernetes resource"),
    ],
)
def test_validate_names_resources_it_cannot_check(text: str, expected: str) -> None:
    with pytest.raises(ManifestInvalid) as info:
        validate(text)
    assert expected in str(info.value)


def test_validate_of_an_unsupported_kubernetes_version() -> None:
    with pytest.raises(ManifestInvalid, match=r"does not support version 9\.99"):
        validate("apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n", "9.99")


def test_render_that_times_out_is_a_render_failure(seed_tree: Path) -> None:
    with pytest.raises(KustomizeRenderFailed, match="timed out after 1e-06 s") as info:
        render(seed_tree / "kustomize" / "prod", timeout=1e-6)
    assert info.value.__cause__ is not None
