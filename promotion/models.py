"""Domain models: release versions, environment order and the image change set of a promotion."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import AfterValidator

OCI_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


class InvalidVersionError(ValueError):
    """A release version that is not a valid OCI tag."""


def validate_version(value: str) -> str:
    """Return ``value`` if it is a valid OCI image tag, else raise ``InvalidVersionError``.

    A tag becomes part of a branch name, a commit message and an image reference, so anything
    outside the OCI grammar (spaces, ``;``, ``/``, a leading ``.`` or ``-``) is refused here.
    """
    if not isinstance(value, str):
        raise InvalidVersionError(f"release version must be a string, got {type(value).__name__}")
    if OCI_TAG.fullmatch(value) is None:
        raise InvalidVersionError(
            f"release version {value!r} is not a valid OCI tag: it must match "
            "[A-Za-z0-9_][A-Za-z0-9._-]{0,127} (letters, digits, '_', '.', '-'; "
            "at most 128 characters; not starting with '.' or '-')"
        )
    return value


ReleaseVersion = Annotated[str, AfterValidator(validate_version)]
"""A release version for pydantic models and flow parameters (validated as an OCI tag)."""

SEMVER = re.compile(
    r"v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?"
)


class DowngradeRefused(ValueError):
    """A promotion would move an environment to an older (or unordered) release."""


@dataclass(frozen=True)
class Release:
    """A release version, validated once where it enters: an OCI tag, ordered when semver.

    ``v1.2.3`` and ``1.2.3-rc.1`` are ordered by semantic-version precedence (build metadata
    ignored); any other tag has no order, so moving to or from it needs ``allow_downgrade``.
    """

    tag: str

    def __post_init__(self) -> None:
        validate_version(self.tag)

    def __str__(self) -> str:
        return self.tag

    @property
    def semver(self) -> tuple[int, int, int, tuple[tuple[int, int | str], ...] | None] | None:
        match = SEMVER.fullmatch(self.tag)
        if match is None:
            return None
        major, minor, patch, pre = match.groups()
        prerelease = (
            tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")) if pre else None
        )
        return int(major), int(minor), int(patch), prerelease

    def _key(self) -> tuple[object, ...]:
        version = self.semver
        if version is None:
            raise TypeError(f"{self.tag} is not a semantic version")
        major, minor, patch, pre = version
        # A pre-release sorts before its release: (0, pre) < (1,).
        return (major, minor, patch, (0, pre) if pre is not None else (1,))

    def newer_than(self, other: Release) -> bool | None:
        """Whether this release is newer than ``other``; None when either has no order."""
        if self.semver is None or other.semver is None:
            return None
        return self._key() > other._key()

    def check_forward(self, running: Sequence[str], env: str, *, allow_downgrade: bool) -> None:
        """Refuse to move ``env`` from the tags it ``running`` to this release unless forward."""
        if allow_downgrade:
            return
        for tag in sorted(set(running)):
            if tag == self.tag:
                continue
            current = Release(tag) if OCI_TAG.fullmatch(tag) else None
            newer = self.newer_than(current) if current is not None else None
            if newer is None:
                raise DowngradeRefused(
                    f"{env} runs {tag}, and {tag} and {self.tag} are not both semantic versions, "
                    f"so it cannot be told whether {self.tag} is newer; start the run with "
                    "allow_downgrade on if this move is intended"
                )
            if not newer:
                raise DowngradeRefused(
                    f"{env} runs {tag}, which is newer than {self.tag}: releases only move "
                    "forward; start the run with allow_downgrade on to go back on purpose "
                    "(or roll back with rollback-release)"
                )


class EnvironmentOrderError(ValueError):
    """A promotion asked for an environment out of the configured order."""


@dataclass(frozen=True)
class EnvironmentOrder:
    """The ordered environments a release moves through (for example staging, then prod)."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.names:
            raise EnvironmentOrderError("at least one environment is required")
        duplicates = sorted({n for n in self.names if self.names.count(n) > 1})
        if duplicates:
            raise EnvironmentOrderError(f"environments listed twice: {', '.join(duplicates)}")

    def index(self, env: str) -> int:
        try:
            return self.names.index(env)
        except ValueError:
            raise EnvironmentOrderError(
                f"unknown environment {env!r}; configured: {', '.join(self.names)}"
            ) from None


@dataclass(frozen=True)
class ImageChange:
    """One image of a promotion: the overlay's ``images[].name`` with its old and new tag."""

    service: str
    image: str
    old_tag: str | None
    new_tag: str

    @property
    def changed(self) -> bool:
        return self.old_tag != self.new_tag


@dataclass(frozen=True)
class ImageChangeSet:
    """What a promotion does to an overlay: every image of the release, old tag -> new tag."""

    env: str
    version: str
    changes: tuple[ImageChange, ...] = field(default_factory=tuple)

    @classmethod
    def build(
        cls,
        env: str,
        version: str,
        images: Mapping[str, str],
        current: Mapping[str, str],
    ) -> ImageChangeSet:
        """Build the change set for ``version`` from ``images`` (service -> image name).

        ``current`` maps image names to the tags the overlay holds now.
        """
        validate_version(version)
        return cls(
            env=env,
            version=version,
            changes=tuple(
                ImageChange(service, image, current.get(image), version)
                for service, image in sorted(images.items())
            ),
        )

    @property
    def pending(self) -> tuple[ImageChange, ...]:
        """The changes that really move a tag."""
        return tuple(c for c in self.changes if c.changed)

    def new_tags(self) -> dict[str, str]:
        """Image name -> new tag, for the images that change."""
        return {c.image: c.new_tag for c in self.pending}

    def markdown_table(self) -> str:
        # The tags first: they are what a reviewer reads; the long image name goes last.
        rows = ["| service | from | to | image |", "|---|---|---|---|"]
        for c in self.changes:
            mark = "" if c.changed else " (unchanged)"
            rows.append(
                f"| {c.service} | `{c.old_tag or '-'}` | `{c.new_tag}`{mark} | `{c.image}` |"
            )
        return "\n".join(rows)
