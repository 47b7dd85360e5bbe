"""The repository's CI: "Kustomize validation" of a pull request's head commit.

The head tree is materialized into a temporary directory (``git archive``); every overlay the
pull request touches (a directory under ``kustomize/`` other than ``base`` holding a changed
file, or every overlay when ``base`` changed) is rendered with the real kustomize and the
rendered manifests are validated with kubernetes-validate.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from sandbox.github.gitrepo import GitRepo
from sandbox.kustomize_render import KustomizeRenderFailed, ManifestInvalid, render, validate

CHECK_NAME = "Kustomize validation"
ROOT = "kustomize"
BASE = "base"


@dataclass(frozen=True)
class Outcome:
    conclusion: str  # success | failure
    title: str
    summary: str


def overlays_to_check(changed: list[str], all_overlays: list[str]) -> list[str]:
    """The overlay directories a change touches (all of them when the base changed)."""
    touched: set[str] = set()
    for path in changed:
        parts = path.split("/")
        if len(parts) < 3 or parts[0] != ROOT:
            continue
        if parts[1] == BASE:
            return sorted(all_overlays)
        touched.add(f"{ROOT}/{parts[1]}")
    return sorted(touched)


def run_validation(repo: GitRepo, head_sha: str, changed: list[str]) -> Outcome:
    """Render and validate the overlays ``changed`` touches at ``head_sha``."""
    with tempfile.TemporaryDirectory(prefix="sandbox-ci-") as tmp:
        work = Path(tmp)
        repo.archive(head_sha, work)
        root = work / ROOT
        all_overlays = (
            sorted(
                f"{ROOT}/{d.name}"
                for d in root.iterdir()
                if d.is_dir() and d.name != BASE and (d / "kustomization.yaml").exists()
            )
            if root.is_dir()
            else []
        )
        overlays = overlays_to_check(changed, all_overlays)
        if not overlays:
            return Outcome("success", "No overlay changed", "No Kustomize overlay was touched.")
        failures: list[str] = []
        lines: list[str] = []
        for overlay in overlays:
            directory = work / overlay
            if not directory.is_dir():
                continue  # the pull request removes this overlay
            try:
                count = validate(render(directory))
            except (KustomizeRenderFailed, ManifestInvalid) as exc:
                message = str(exc).replace(str(work) + "/", "").replace(str(work), ".")
                failures.append(f"- `{overlay}`: {message}")
            else:
                lines.append(f"- `{overlay}`: {count} manifests rendered and valid")
        if failures:
            return Outcome(
                "failure",
                f"{len(failures)} of {len(overlays)} overlay(s) failed",
                "\n".join(failures + lines),
            )
        return Outcome("success", f"{len(overlays)} overlay(s) valid", "\n".join(lines))
