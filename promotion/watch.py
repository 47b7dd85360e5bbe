"""Release detection: which registry tags should start a promotion (Flux image automation's job).

A release is a semantic-version tag present in *every* image repository of the release (a
half-pushed release is not complete). It is a candidate when it is newer, in semver order, than
what the first environment's overlay holds in Git, and it is skipped when it is on hold (a
rollback put it there: ``{version: {env, reason, at}}`` in the Prefect Variable
``promotion.names.HOLDS_VARIABLE``). By default only the newest candidate is started (like a
Flux ``ImagePolicy`` or Kargo's auto-promotion of the newest Freight): older candidates are
reported as superseded. Pure: the flow reads the registry, Git and the holds and starts runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promotion.drift import version_key

__all__ = [
    "Skipped",
    "WatchDecision",
    "complete_releases",
    "current_version",
    "parse_holds",
    "select_releases",
]


def complete_releases(
    tags_by_repository: Mapping[str, Sequence[str]], include_prereleases: bool = False
) -> list[str]:
    """Semver tags present in every repository, oldest first."""
    if not tags_by_repository:
        return []
    sets = [set(tags) for tags in tags_by_repository.values()]
    common = set.intersection(*sets)
    keyed = [(key, tag) for tag in common if (key := version_key(tag)) is not None]
    if not include_prereleases:
        keyed = [(k, t) for k, t in keyed if k[3] == 1]
    return [tag for _, tag in sorted(keyed)]


def incomplete_releases(
    tags_by_repository: Mapping[str, Sequence[str]],
) -> dict[str, list[str]]:
    """Semver tags some repositories have and others lack: tag -> the repositories lacking it."""
    every = {t for tags in tags_by_repository.values() for t in tags if version_key(t)}
    out: dict[str, list[str]] = {}
    for tag in sorted(every, key=lambda t: version_key(t) or ()):
        missing = sorted(r for r, tags in tags_by_repository.items() if tag not in tags)
        if missing:
            out[tag] = missing
    return out


def current_version(overlay_tags: Mapping[str, str]) -> str | None:
    """What an overlay holds: the highest semver among its image tags (None: no semver tag)."""
    keyed = [(key, tag) for tag in overlay_tags.values() if (key := version_key(tag)) is not None]
    return max(keyed)[1] if keyed else None


def parse_holds(value: Any) -> dict[str, dict[str, Any]]:
    """The holds Variable's value (a JSON object, or its text) as {version: {env, reason, at}}."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"the holds variable is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"the holds variable must be a JSON object, got {type(value).__name__}")
    return {str(k): (v if isinstance(v, dict) else {"reason": str(v)}) for k, v in value.items()}


@dataclass(frozen=True)
class Skipped:
    version: str
    why: str


@dataclass(frozen=True)
class WatchDecision:
    """What the watcher found: the version in Git, the versions to start, the ones skipped."""

    current: str | None
    complete: tuple[str, ...]
    to_start: tuple[str, ...]
    skipped: tuple[Skipped, ...]

    def to_markdown(self) -> str:
        lines = [
            f"Version in Git (first environment): **{self.current or 'none'}**",
            f"Complete releases in the registry: {', '.join(self.complete) or 'none'}",
            "",
        ]
        if self.to_start:
            lines.append("Promotions to start: " + ", ".join(f"**{v}**" for v in self.to_start))
        else:
            lines.append("Nothing new to promote.")
        if self.skipped:
            lines += ["", "| skipped | why |", "|---|---|"]
            lines += [f"| {s.version} | {s.why.replace('|', '/')} |" for s in self.skipped]
        return "\n".join(lines)


def _hold_text(hold: Mapping[str, Any]) -> str:
    parts = ["on hold"]
    if hold.get("env"):
        parts.append(f"(rolled back in {hold['env']}")
        parts[-1] += f" at {hold['at']})" if hold.get("at") else ")"
    if hold.get("reason"):
        parts.append(f": {hold['reason']}")
    return " ".join(parts).replace(" :", ":")


def select_releases(
    tags_by_repository: Mapping[str, Sequence[str]],
    current: str | None,
    holds: Mapping[str, Mapping[str, Any]],
    *,
    newest_only: bool = True,
    include_prereleases: bool = False,
) -> WatchDecision:
    """Decide which complete releases newer than ``current`` to start, and say why not others."""
    complete = complete_releases(tags_by_repository, include_prereleases)
    floor = version_key(current) if current else None
    skipped: list[Skipped] = []
    for tag, missing in incomplete_releases(tags_by_repository).items():
        key = version_key(tag)
        is_newer = key is not None and (floor is None or key > floor)
        if is_newer and key is not None and (include_prereleases or key[3] == 1):
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            skipped.append(Skipped(tag, f"incomplete: no image in {shown}"))
    newer = [t for t in complete if floor is None or (version_key(t) or ()) > floor]
    eligible: list[str] = []
    for tag in newer:
        if tag in holds:
            skipped.append(Skipped(tag, _hold_text(holds[tag])))
        else:
            eligible.append(tag)
    if newest_only and len(eligible) > 1:
        newest = eligible[-1]
        skipped += [Skipped(t, f"superseded by {newest}") for t in eligible[:-1]]
        eligible = [newest]
    order = {t: i for i, t in enumerate(sorted({s.version for s in skipped}, key=version_key_or))}
    skipped.sort(key=lambda s: order[s.version])
    return WatchDecision(current, tuple(complete), tuple(eligible), tuple(skipped))


def version_key_or(tag: str) -> Any:
    return version_key(tag) or ()
