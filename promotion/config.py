"""Configuration: the promotion setup (a YAML file) and the endpoints and credentials (settings).

The setup says *what* is promoted: the GitOps repository, the services, the registry prefix, the
ordered environments with their overlays, Argo CD applications and gates, and who may approve.
The settings say *where* the systems are and *how* to authenticate; they come from environment
variables prefixed ``RELEASE_PROMOTION_`` or, for secrets, from Prefect Secret blocks (loaded by
the flows layer and handed in), and are held as ``SecretStr`` so they never print.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from promotion.models import EnvironmentOrder
from promotion.operations import (
    EnvironmentOperations,
    FreezePolicy,
    Notifications,
    Verification,
    WatchReleases,
)

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "promotion.yaml"


class ConfigError(ValueError):
    """An invalid promotion setup; the message lists every problem with its location."""


Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", max_length=63)]
Login = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]([A-Za-z0-9-]{0,38})$")]


class Gate(StrEnum):
    """How a promotion PR into an environment gets merged."""

    AUTO = "auto"  # merged as soon as the required checks pass
    PM_APPROVAL = "pm_approval"  # merged after the project manager approves


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GitHubRepo(_Strict):
    repository: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")]
    base_branch: str = "main"
    required_checks: tuple[str, ...] = ("Kustomize validation",)
    merge_method: str = "squash"

    @field_validator("merge_method")
    @classmethod
    def _method(cls, value: str) -> str:
        if value not in {"merge", "squash", "rebase"}:
            raise ValueError("must be one of merge, squash, rebase")
        return value


class Registry(_Strict):
    prefix: Annotated[str, StringConstraints(pattern=r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+$")]

    @property
    def host(self) -> str:
        return self.prefix.split("/", 1)[0]

    @property
    def path(self) -> str:
        """The repository path inside the registry (the prefix without its host)."""
        return self.prefix.split("/", 1)[1]


class Environment(_Strict):
    name: Name
    overlay: str
    argocd_app: Name
    gate: Gate
    # Operations (promotion.operations): freeze windows, soak time, checks after deploy.
    freeze: FreezePolicy | None = None
    soak_minutes: float = Field(default=0, ge=0, le=60 * 24 * 90)
    verify: Verification | None = None

    @field_validator("overlay")
    @classmethod
    def _overlay(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/") or not value.endswith(".yaml"):
            raise ValueError(
                "must be a relative path to a kustomization .yaml inside the repository"
            )
        return value

    @property
    def overlay_dir(self) -> str:
        return self.overlay.rsplit("/", 1)[0]

    @property
    def operations(self) -> EnvironmentOperations:
        """The freeze windows, soak time and checks after deploy of this environment."""
        return EnvironmentOperations(
            freeze=self.freeze, soak_minutes=self.soak_minutes, verify=self.verify
        )


class Approvers(_Strict):
    qa: tuple[Login, ...] = Field(min_length=1)
    pm: tuple[Login, ...] = Field(min_length=1)
    pm_requires_github_review: bool = False


class PromotionConfig(_Strict):
    """The promotion setup, as read from ``promotion.yaml``."""

    github: GitHubRepo
    registry: Registry
    services: tuple[Name, ...] = Field(min_length=1)
    environments: tuple[Environment, ...] = Field(min_length=1)
    approvers: Approvers
    notifications: Notifications = Notifications()
    watch: WatchReleases = WatchReleases()

    @model_validator(mode="after")
    def _unique(self) -> PromotionConfig:
        problems = duplicate_problems(self.model_dump(mode="json"))
        if problems:
            raise ValueError("; ".join(f"{where}: {what}" for where, what in problems))
        return self

    @property
    def order(self) -> EnvironmentOrder:
        return EnvironmentOrder(tuple(e.name for e in self.environments))

    def environment(self, name: str) -> Environment:
        for env in self.environments:
            if env.name == name:
                return env
        raise ConfigError(
            f"unknown environment {name!r}; configured: {', '.join(self.order.names)}"
        )

    def image(self, service: str) -> str:
        """The image name of ``service`` as the overlays' ``images[].name`` holds it."""
        return f"{self.registry.prefix}/{service}"

    def images(self) -> dict[str, str]:
        """Service -> image name, for every configured service."""
        return {s: self.image(s) for s in self.services}


def duplicate_problems(data: Any) -> list[tuple[str, str]]:
    """(location, problem) for every value listed twice where it must be unique."""
    problems: list[tuple[str, str]] = []
    if not isinstance(data, dict):
        return problems
    services = data.get("services")
    envs = data.get("environments")
    columns: list[tuple[str, list[Any]]] = []
    if isinstance(services, list | tuple):
        columns.append(("services", list(services)))
    if isinstance(envs, list | tuple):
        for key in ("name", "argocd_app", "overlay"):
            values = [e.get(key) for e in envs if isinstance(e, dict) and e.get(key) is not None]
            columns.append((f"environments[].{key}", values))
    for where, values in columns:
        hashable = [v for v in values if isinstance(v, str | int)]
        twice = sorted({str(v) for v in hashable if hashable.count(v) > 1})
        if twice:
            problems.append((where, f"listed twice: {', '.join(twice)}"))
    return problems


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_config(text: str, source: str = "<string>") -> PromotionConfig:
    """Parse and validate a promotion setup; raise ONE ``ConfigError`` listing every problem."""
    yaml = YAML(typ="safe", pure=True)
    try:
        data: Any = yaml.load(text)
    except YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return PromotionConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        problems = [
            (_location(err["loc"]), err["msg"])
            for err in errors
            if "listed twice" not in err["msg"]  # reported below, with the other problems
            # pydantic adds "too short after validation" to a list whose items failed: noise
            and not (
                err["type"] == "too_short"
                and any(o["loc"][: len(err["loc"])] == err["loc"] and o is not err for o in errors)
            )
        ]
        problems += duplicate_problems(data)
        lines = [f"{source}: {len(problems)} problem(s):"]
        lines += [f"  - {where}: {what}" for where, what in problems]
        raise ConfigError("\n".join(lines)) from None


def load_config(path: str | os.PathLike[str] | None = None) -> PromotionConfig:
    """Load the promotion setup from ``path`` (default: the project's ``promotion.yaml``)."""
    file = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read promotion setup {file}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"cannot read promotion setup {file}: not UTF-8 text ({exc.reason})"
        ) from exc
    return parse_config(text, str(file))


class Settings(BaseSettings):
    """Endpoints and credentials (env prefix ``RELEASE_PROMOTION_``).

    Secrets missing from the environment can be filled from Prefect Secret blocks through
    ``with_secrets`` (the flows layer passes a loader; this module does not import Prefect).
    """

    model_config = SettingsConfigDict(env_prefix="RELEASE_PROMOTION_", extra="ignore")

    config_file: Path | None = None
    github_url: str = "https://api.github.com"
    github_token: SecretStr | None = None
    argocd_url: str = "https://argocd.example.invalid"
    argocd_token: SecretStr | None = None
    registry_url: str | None = None  # default: https://<registry host from the setup>
    registry_username: str | None = None
    registry_password: SecretStr | None = None
    argocd_ui_url: str | None = None
    github_ui_url: str | None = None
    poll_interval: float = Field(default=2.0, gt=0, le=60)  # seconds between status polls

    SECRET_BLOCKS: ClassVar[dict[str, str]] = {
        "github_token": "release-promotion-github-token",
        "argocd_token": "release-promotion-argocd-token",
        "registry_password": "release-promotion-registry-password",
    }

    def with_secrets(self, load_secret: Callable[[str], str | None]) -> Settings:
        """Return a copy whose missing secrets are read with ``load_secret(block_name)``."""
        updates: dict[str, SecretStr] = {}
        for field_name, block in self.SECRET_BLOCKS.items():
            if field_name == "registry_password" and self.registry_username is None:
                continue  # an anonymous registry: no password to look up
            if getattr(self, field_name) is None:
                value = load_secret(block)
                if value:
                    updates[field_name] = SecretStr(value)
        return self.model_copy(update=updates)

    def require(self, *names: str) -> None:
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            env = ", ".join(f"RELEASE_PROMOTION_{n.upper()}" for n in missing)
            blocks = ", ".join(self.SECRET_BLOCKS.get(n, "-") for n in missing)
            raise ConfigError(f"missing settings: {env} (or the Prefect Secret blocks {blocks})")
