"""Drift classification: what Git says an application should run against what Argo CD reports.

Pure functions over plain values, no I/O and no Prefect: the flow gathers the desired images
(the overlay at the head of the application's branch), the live state (one Argo CD list call)
and the registry's tags, and this module decides, per application, which drift classes apply:
out of sync, an image that differs between Git and the cluster, Degraded or Missing health,
auto-sync turned off (for instance left off after an Argo CD rollback, the issue-5351
situation), running behind the newest complete release. It also renders the results as table
rows, a markdown report and event payloads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml


class DriftKind(StrEnum):
    """One way an application can differ from what it should run."""

    OUT_OF_SYNC = "out_of_sync"
    IMAGE_MISMATCH = "image_mismatch"
    DEGRADED = "degraded"
    MISSING = "missing"
    AUTOSYNC_DISABLED = "autosync_disabled"
    BEHIND_RELEASE = "behind_release"
    DESIRED_UNKNOWN = "desired_unknown"


LABELS: dict[DriftKind, str] = {
    DriftKind.OUT_OF_SYNC: "OutOfSync",
    DriftKind.IMAGE_MISMATCH: "image mismatch",
    DriftKind.DEGRADED: "Degraded",
    DriftKind.MISSING: "Missing",
    DriftKind.AUTOSYNC_DISABLED: "auto-sync disabled",
    DriftKind.BEHIND_RELEASE: "behind newest release",
    DriftKind.DESIRED_UNKNOWN: "desired state unreadable",
}


# -- versions ------------------------------------------------------------------------------------

_SEMVER = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)

# A sort key: (major, minor, patch, is-release, prerelease identifiers).
VersionKey = tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]


def version_key(tag: str) -> VersionKey | None:
    """Semantic-version sort key of ``tag`` (``v1.0.10`` > ``v1.0.9``), or None if not semver.

    Follows semver 2.0 precedence: a pre-release sorts before its release, numeric identifiers
    compare as numbers and before alphanumeric ones, build metadata is ignored.
    """
    match = _SEMVER.match(tag)
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    pre_key: tuple[tuple[int, int, str], ...] = ()
    if pre:
        pre_key = tuple(
            (0, int(part), "") if part.isdigit() else (1, 0, part) for part in pre.split(".")
        )
    return (int(major), int(minor), int(patch), 0 if pre else 1, pre_key)


def is_prerelease(tag: str) -> bool:
    key = version_key(tag)
    return key is not None and key[3] == 0


def newest_version(tags: Iterable[str], include_prereleases: bool = False) -> str | None:
    """The highest semantic version among ``tags`` (non-semver tags such as ``latest`` ignored)."""
    best: tuple[VersionKey, str] | None = None
    for tag in tags:
        key = version_key(tag)
        if key is None or (key[3] == 0 and not include_prereleases):
            continue
        if best is None or key > best[0]:
            best = (key, tag)
    return best[1] if best else None


@dataclass(frozen=True)
class ReleaseInfo:
    """The newest release in the registry.

    ``version`` is the newest version published for *every* image of the release (a release
    missing an image is not a release yet); ``newest_partial`` is a newer version published for
    only some images (``incomplete`` lists the images that lack it), or None.
    """

    version: str | None
    repositories: tuple[str, ...] = ()
    newest_partial: str | None = None
    incomplete: tuple[str, ...] = ()
    error: str | None = None

    @classmethod
    def from_tags(
        cls, tags_by_repository: Mapping[str, Iterable[str]], include_prereleases: bool = False
    ) -> ReleaseInfo:
        repos = tuple(sorted(tags_by_repository))
        sets = {repo: set(tags) for repo, tags in tags_by_repository.items()}
        if not sets:
            return cls(None, repos)
        common = set.intersection(*sets.values())
        complete = newest_version(common, include_prereleases)
        newest_any = newest_version(set.union(*sets.values()), include_prereleases)
        partial: str | None = None
        incomplete: tuple[str, ...] = ()
        if newest_any is not None and newest_any != complete:
            partial = newest_any
            incomplete = tuple(sorted(r for r, s in sets.items() if newest_any not in s))
        return cls(complete, repos, partial, incomplete)

    @classmethod
    def unknown(cls, error: str) -> ReleaseInfo:
        return cls(None, error=error)


# -- images --------------------------------------------------------------------------------------


def split_image(ref: str) -> tuple[str, str]:
    """``host:5000/a/b:v1`` -> (``host:5000/a/b``, ``v1``); a digest is kept as the "tag".

    ``name:tag@sha256:...`` keeps the tag; ``name@sha256:...`` gives ``@sha256:...``; a bare
    name gives ``latest`` (what the container runtime pulls).
    """
    name, at, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    if at:
        return name, f"@{digest}"
    return name, "latest"


def live_images(refs: Iterable[str]) -> dict[str, list[str]]:
    """Image name -> every tag running for it (Argo CD's ``status.summary.images``)."""
    out: dict[str, list[str]] = {}
    for ref in refs:
        name, tag = split_image(ref)
        tags = out.setdefault(name, [])
        if tag not in tags:
            tags.append(tag)
    return out


def service_of(image: str, services: Mapping[str, str]) -> str:
    """The service an image belongs to (from the setup), else the image's last path segment."""
    return services.get(image) or image.rsplit("/", 1)[-1]


# -- inputs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveApp:
    """What Argo CD reports about one Application."""

    name: str
    environment: str
    sync_status: str
    sync_revision: str
    health_status: str
    health_message: str
    autosync_enabled: bool
    images: tuple[str, ...]
    repo_url: str = ""
    path: str = ""
    target_revision: str = ""
    autosync_disabled_at: str | None = None  # our rollback's mark, when it turned auto-sync off


@dataclass(frozen=True)
class DesiredState:
    """The overlay an Application follows, read at the head of its branch."""

    overlay: str
    revision: str
    images: Mapping[str, str] | None  # image name -> newTag; None when unreadable
    error: str | None = None


_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BASE_LOADER: Any = getattr(yaml, "CBaseLoader", yaml.BaseLoader)


def overlay_images(text: str) -> dict[str, str]:
    """``images[].name`` -> ``newTag`` of a kustomization, as ``kustomize.read_image_tags``.

    A fast path for reading a thousand overlays: libyaml's base loader keeps every scalar as
    the string written (``1.10`` stays ``1.10``), about 25 times faster than the round-trip
    parser. Anything unusual (several documents, a null or multi-line tag, a duplicate name,
    not a Kustomization) goes to ``read_image_tags``, which decides and explains.
    """
    from promotion.kustomize import read_image_tags

    try:
        doc = yaml.load(text, Loader=_BASE_LOADER)
    except yaml.YAMLError:
        return read_image_tags(text)
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, list) or doc.get("kind") not in {None, "Kustomization", "Component"}:
        return read_image_tags(text)
    out: dict[str, str] = {}
    for entry in images:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            return read_image_tags(text)
        name, tag = entry["name"], entry.get("newTag")
        if name in out or (tag is not None and (not isinstance(tag, str) or tag in _NULLS)):
            return read_image_tags(text)
        if tag is not None:
            if any(c.isspace() for c in tag):
                return read_image_tags(text)
            out[name] = tag
    return out


def desired_from_overlay(path: str | None, text: str | None, revision: str) -> DesiredState:
    """Read the desired images of an overlay (``path`` None: no kustomization was found)."""
    from promotion.kustomize import KustomizationError

    if path is None or text is None:
        return DesiredState(path or "", revision, None, "no kustomization file at the app's path")
    try:
        return DesiredState(path, revision, overlay_images(text))
    except KustomizationError as exc:
        return DesiredState(path, revision, None, f"{path}: {exc}")


# -- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceRow:
    """One row of the drift table: one service of one application."""

    environment: str
    app: str
    service: str
    image: str
    desired: str | None
    live: str | None
    newest: str | None
    status: str  # ok | mismatch | behind | not running | not in overlay | unknown

    def as_dict(self) -> dict[str, str]:
        return {
            "environment": self.environment,
            "application": self.app,
            "service": self.service,
            "image": self.image,
            "desired": self.desired or "-",
            "live": self.live or "-",
            "newest release": self.newest or "-",
            "status": self.status,
        }


@dataclass(frozen=True)
class AppDrift:
    """The audit of one application: its drift classes, findings and per-service rows."""

    app: str
    environment: str
    kinds: tuple[DriftKind, ...]
    findings: tuple[str, ...]
    rows: tuple[ServiceRow, ...]
    sync: str = "-"
    health: str = "-"
    autosync: bool | None = None
    overlay: str = ""
    desired_revision: str = ""
    live_revision: str = ""
    owner: str = ""  # the promotion.yaml application it belongs to, in a setup of several

    @property
    def drifting(self) -> bool:
        return bool(self.kinds)

    @property
    def labels(self) -> str:
        return ", ".join(LABELS[k] for k in self.kinds) or "in sync"

    def event_resource(self) -> dict[str, str]:
        return {
            "prefect.resource.id": f"release-promotion.argocd-app.{self.app}",
            "prefect.resource.name": self.app,
            "release-promotion.environment": self.environment,
            "release-promotion.argocd-app": self.app,
        } | ({"release-promotion.application": self.owner} if self.owner else {})

    def event_payload(self) -> dict[str, Any]:
        return {
            "application": self.app,
            "owner": self.owner,
            "environment": self.environment,
            "kinds": [str(k) for k in self.kinds],
            "summary": self.labels,
            "findings": list(self.findings),
            "sync": self.sync,
            "health": self.health,
            "autosync": self.autosync,
            "overlay": self.overlay,
            "desired_revision": self.desired_revision,
            "live_revision": self.live_revision,
            "services": [r.as_dict() for r in self.rows if r.status != "ok"],
        }


def _short(revision: str) -> str:
    return revision[:12] if revision else "-"


def _behind(tag: str | None, newest: str | None) -> bool:
    if tag is None or newest is None:
        return False
    have, want = version_key(tag), version_key(newest)
    return have is not None and want is not None and have < want


def classify(
    app: str,
    environment: str,
    live: LiveApp | None,
    desired: DesiredState | None,
    release: ReleaseInfo,
    services: Mapping[str, str],
    *,
    behind_is_drift: bool = True,
) -> AppDrift:
    """Decide the drift classes of one application.

    Args:
        app: The Argo CD Application name.
        environment: Its environment.
        live: What Argo CD reports, or None when Argo CD has no such Application.
        desired: The overlay at the head of the branch, or None when nothing could be read.
        release: The newest release in the registry.
        services: Image name -> service name (from the promotion setup).
        behind_is_drift: Whether running behind the newest release counts as drift.
    """
    kinds: list[DriftKind] = []
    findings: list[str] = []

    def add(kind: DriftKind, finding: str) -> None:
        if kind not in kinds:
            kinds.append(kind)
        findings.append(finding)

    if live is None:
        add(DriftKind.MISSING, f"{app}: no such Application in Argo CD")
    else:
        if live.sync_status != "Synced":
            add(
                DriftKind.OUT_OF_SYNC,
                f"sync status is {live.sync_status} (compared revision "
                f"{_short(live.sync_revision)})",
            )
        if live.health_status == "Degraded":
            add(
                DriftKind.DEGRADED,
                "health is Degraded" + (f": {live.health_message}" if live.health_message else ""),
            )
        elif live.health_status == "Missing":
            add(
                DriftKind.MISSING,
                "health is Missing: its resources do not exist in the cluster"
                + (f" ({live.health_message})" if live.health_message else ""),
            )
        if not live.autosync_enabled:
            note = (
                f" since {live.autosync_disabled_at} (turned off for an Argo CD rollback and not "
                "turned back on; resume it once Git holds the fix)"
                if live.autosync_disabled_at
                else ""
            )
            add(
                DriftKind.AUTOSYNC_DISABLED,
                f"auto-sync is disabled{note}: new commits on the branch are not deployed",
            )

    if desired is None or desired.images is None:
        reason = desired.error if desired is not None and desired.error else "no overlay found"
        add(DriftKind.DESIRED_UNKNOWN, f"desired images unknown: {reason}")

    running = live_images(live.images) if live is not None else {}
    wanted: Mapping[str, str] = desired.images if desired and desired.images is not None else {}
    deployed = live is not None and live.health_status != "Missing" and bool(running)
    newest = release.version
    rows: list[ServiceRow] = []
    names = list(wanted) if wanted else sorted(running)
    for image in names:
        service = service_of(image, services)
        want = wanted.get(image)
        have_tags = running.get(image, [])
        have = ", ".join(have_tags) if have_tags else None
        status = "ok"
        if want is not None and deployed and have_tags != [want]:
            status = "mismatch" if have_tags else "not running"
            add(
                DriftKind.IMAGE_MISMATCH,
                f"{service}: Git wants {want}, Argo CD runs {have or 'nothing'}",
            )
        elif want is None and wanted:
            status = "not in overlay"
        elif want is not None and not deployed:
            status = "unknown"
        # What the environment runs decides "behind" (what Git wants, when nothing runs yet).
        current = have_tags[0] if len(have_tags) == 1 else (want if not have_tags else None)
        if _behind(current, newest):
            if status == "ok":
                status = "behind"
            if behind_is_drift:
                add(
                    DriftKind.BEHIND_RELEASE,
                    f"{service}: runs {current}, newest release is {newest}",
                )
        rows.append(ServiceRow(environment, app, service, image, want, have, newest, status))

    return AppDrift(
        app=app,
        environment=environment,
        kinds=tuple(kinds),
        findings=tuple(_merge_behind(findings, newest)),
        rows=tuple(rows),
        sync=live.sync_status if live else "-",
        health=live.health_status if live else "-",
        autosync=live.autosync_enabled if live else None,
        overlay=desired.overlay if desired else "",
        desired_revision=desired.revision if desired else "",
        live_revision=live.sync_revision if live else "",
    )


def _merge_behind(findings: Sequence[str], newest: str | None) -> list[str]:
    """Fold the per-service "behind" findings into one line (every service lags the same way)."""
    suffix = f", newest release is {newest}"
    behind = [f for f in findings if f.endswith(suffix) and ": runs " in f]
    if len(behind) < 2:
        return list(findings)
    runs: dict[str, list[str]] = {}
    for finding in behind:
        service, _, rest = finding.partition(": runs ")
        runs.setdefault(rest.removesuffix(suffix), []).append(service)
    merged = "; ".join(f"{', '.join(s)} run {tag}" for tag, s in runs.items())
    out = [f for f in findings if f not in behind]
    out.append(f"behind the newest release {newest}: {merged}")
    return out


# -- the whole audit -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftAudit:
    """The result of one audit across environments."""

    environments: tuple[str, ...]
    apps: tuple[AppDrift, ...]
    release: ReleaseInfo
    revisions: Mapping[str, str] = field(default_factory=dict)  # "repo@branch" -> head sha
    notes: tuple[str, ...] = ()

    @property
    def drifting(self) -> tuple[AppDrift, ...]:
        return tuple(a for a in self.apps if a.drifting)

    @property
    def drift_count(self) -> int:
        """How many applications drift (an application with several classes counts once)."""
        return len(self.drifting)

    def counts(self) -> dict[str, int]:
        out = {str(k): 0 for k in DriftKind}
        for app in self.apps:
            for kind in app.kinds:
                out[str(kind)] += 1
        return out

    def table_rows(self) -> list[dict[str, str]]:
        rows: list[dict[str, str]] = []
        for app in self.apps:
            drift = app.labels
            if not app.rows:
                rows.append(
                    {
                        "environment": app.environment,
                        "application": app.app,
                        "service": "-",
                        "image": "-",
                        "desired": "-",
                        "live": "-",
                        "newest release": self.release.version or "-",
                        "status": "-",
                        "sync": app.sync,
                        "health": app.health,
                        "drift": drift,
                    }
                )
            for row in app.rows:
                rows.append(
                    {**row.as_dict(), "sync": app.sync, "health": app.health, "drift": drift}
                )
        return rows

    def markdown(self, max_listed: int = 200) -> str:
        envs = ", ".join(self.environments)
        lines = [f"# Drift audit: {envs}", ""]
        verdict = (
            f"**{self.drift_count} of {len(self.apps)} applications drift.**"
            if self.drift_count
            else f"**No drift**: all {len(self.apps)} applications run what Git says."
        )
        lines += [verdict, ""]
        release = self.release.version or "unknown"
        if self.release.error:
            release += f" ({self.release.error})"
        lines.append(f"- Newest complete release in the registry: `{release}`")
        if self.release.newest_partial:
            lines.append(
                f"- `{self.release.newest_partial}` is published for only some images "
                f"(missing: {', '.join(self.release.incomplete)}); not counted as a release"
            )
        for where, sha in sorted(self.revisions.items()):
            lines.append(f"- Git head of `{where}`: `{_short(sha)}`")
        counts = {k: v for k, v in self.counts().items() if v}
        if counts:
            lines.append(
                "- By class: " + ", ".join(f"{LABELS[DriftKind(k)]} {v}" for k, v in counts.items())
            )
        for note in self.notes:
            lines.append(f"- Note: {note}")
        lines.append("")
        if self.drifting:
            lines += [
                "## Drifting applications",
                "",
                "| environment | application | drift | sync | health | findings |",
                "|---|---|---|---|---|---|",
            ]
            for app in self.drifting[:max_listed]:
                findings = "<br>".join(_cell(f) for f in app.findings)
                lines.append(
                    f"| {app.environment} | `{app.app}` | {app.labels} | {app.sync} | "
                    f"{app.health} | {findings} |"
                )
            if len(self.drifting) > max_listed:
                lines.append(
                    f"\n{len(self.drifting) - max_listed} more drifting applications: "
                    "see the drift table artifact."
                )
            lines.append("")
        in_sync = [a.app for a in self.apps if not a.drifting]
        if in_sync:
            shown = ", ".join(f"`{a}`" for a in in_sync[:50])
            more = f" and {len(in_sync) - 50} more" if len(in_sync) > 50 else ""
            lines += [f"## In sync ({len(in_sync)})", "", shown + more, ""]
        return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
