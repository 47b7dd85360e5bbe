"""Kustomize overlays: read and set image tags as pure text edits.

``set_image_tags`` changes only the ``newTag`` values it is asked to change and leaves every
other byte of the file as it was (comments, quoting, order, line endings), so that a promotion
pull request shows exactly the tag lines that move. ruamel.yaml parses the file only to find
where each value sits; the edit itself splices the original text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from promotion.models import InvalidVersionError, validate_version


class KustomizationError(ValueError):
    """A kustomization file that cannot be read or edited as asked."""


_KINDS = {"Kustomization", "Component"}
MAX_KUSTOMIZATION_BYTES = 1024 * 1024
"""A kustomization larger than this is refused before it is parsed. Real overlays are a few KB;
GitHub's contents API serves files up to 1 MB inline; and the pure-Python parser needs about a
minute for 4 MB on two busy cores, which would hold a worker (and an environment's lock)."""
# A plain tag must read back as a string for every YAML reader of the file: kustomize reads
# kustomizations with go-yaml v2 (YAML 1.1: `on`, `y`, `0b11`, `1_000` are not strings) and
# refuses a non-string newTag; ruamel.yaml and yaml.v3 read YAML 1.2. Anything else is quoted.
_GO_YAML_V2_WORDS = frozenset(
    [
        "y",
        "Y",
        "yes",
        "Yes",
        "YES",
        "n",
        "N",
        "no",
        "No",
        "NO",
        "true",
        "True",
        "TRUE",
        "false",
        "False",
        "FALSE",
        "on",
        "On",
        "ON",
        "off",
        "Off",
        "OFF",
        "null",
        "Null",
        "NULL",
    ]
)
_GO_NUMBER = re.compile(
    r"[-+]?(0[xX][0-9a-fA-F]+|0[oObB]?[0-9]+|[0-9]+|(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)"
)
# newTag values written with YAML properties or block styles: not rewritten (an anchor's value is
# shared with its aliases; a block scalar spans lines).
_UNEDITABLE = {
    "&": "an anchor or alias",
    "*": "an anchor or alias",
    "!": "a YAML tag",
    "|": "a block scalar",
    ">": "a block scalar",
}


@dataclass(frozen=True)
class _TagSpot:
    name: str
    tag: str
    start: int  # offset of the first character of the scalar (quote included)
    end: int  # offset one past its last character
    problem: str | None = None  # why this newTag cannot be rewritten, if it cannot


def _load(text: str) -> Any:
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_KUSTOMIZATION_BYTES:
        raise KustomizationError(
            f"kustomization too large: {size} bytes, more than the {MAX_KUSTOMIZATION_BYTES} "
            "bytes an overlay may hold (is it generated or concatenated by mistake?)"
        )
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
            f"not a Kustomization: the top level is {_yaml_kind(doc)}, not a mapping"
        )
    kind = doc.get("kind")
    if kind is not None and kind not in _KINDS:
        raise KustomizationError(f"not a Kustomization: kind is {kind!r}")
    return doc


def _yaml_kind(value: Any) -> str:
    """How a YAML author would name ``value`` (not ruamel's CommentedSeq and CommentedMap)."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"the scalar {value!r}"


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
        raise KustomizationError(f"images: is {_yaml_kind(images)}, not a list")
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
        # An empty or null newTag has no scalar in the text to replace: it counts as missing.
        if entry.get("newTag") is None or not isinstance(entry, CommentedMap):
            spots[name] = None
            continue
        line, col = entry.lc.value("newTag")
        start = offsets[line] + col
        value = entry["newTag"]
        if text[start] in _UNEDITABLE:
            spots[name] = _TagSpot(
                name,
                str(value),
                start,
                start,
                f"image {name!r}: its newTag is written with {_UNEDITABLE[text[start]]}, "
                "which this editor does not rewrite; edit that entry by hand",
            )
            continue
        spot_end = _scalar_end(text, start, flow=entry.fa.flow_style())
        source = text[start:spot_end]
        quoted = source[:1] in "'\""
        # A plain scalar keeps its text (1.10 stays 1.10, not the float YAML makes of it).
        tag = str(value) if quoted else source
        problem: str | None = None
        if isinstance(value, str) and not quoted and tag != value:
            # A plain scalar continued on the next lines: its value is not the text we found.
            problem = (
                f"image {name!r}: its newTag {value!r} spans several lines; edit that entry by hand"
            )
        spots[name] = _TagSpot(name, tag, start, spot_end, problem)
    return spots


def read_image_tags(text: str) -> dict[str, str]:
    """Return ``images[].name`` -> ``newTag`` for every entry that has a ``newTag``."""
    doc = _load(text)
    # The tag as written (``1.10`` stays ``1.10``, not the float YAML would make of it).
    return {name: spot.tag for name, spot in _tag_spots(text, doc).items() if spot is not None}


def _render_scalar(old_source: str, tag: str) -> str:
    if old_source[:1] in "'\"":
        return f"{old_source[0]}{tag}{old_source[0]}"
    if _needs_quotes(tag):
        return f'"{tag}"'  # a plain 1.10 would turn into the float 1.1, a plain on into true
    return tag


@functools.lru_cache(maxsize=4096)
def _needs_quotes(tag: str) -> bool:
    """Whether a plain ``tag`` would be read as something other than a string by some reader."""
    if tag in _GO_YAML_V2_WORDS or _GO_NUMBER.fullmatch(tag.replace("_", "")):
        return True
    if not tag[:1].isdigit():
        return False  # starting with a letter or "_": only the words above are not strings
    # A YAML instance keeps its parser state while loading: one per call, as edits may run in
    # several threads at once (Prefect's thread pool task runner).
    for version in ((1, 1), (1, 2)):
        yaml = YAML(typ="safe", pure=True)
        yaml.version = version
        if not isinstance(yaml.load(tag), str):
            return True
    return False


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
        elif (spot := spots[name]) is None:
            problems.append(f"image {name!r} has no newTag to update")
        elif spot.problem is not None:
            problems.append(spot.problem)
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
