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

    def previous(self, env: str) -> str | None:
        """The environment that must run a release before ``env`` may get it, if any."""
        i = self.index(env)
        return self.names[i - 1] if i > 0 else None

    def require_after(self, env: str, done: Sequence[str]) -> None:
        """Raise unless every environment before ``env`` is in ``done``."""
        missing = [n for n in self.names[: self.index(env)] if n not in done]
        if missing:
            raise EnvironmentOrderError(
                f"{env} can only be promoted after {', '.join(missing)} "
                f"(order: {' -> '.join(self.names)})"
            )


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
