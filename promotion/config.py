"""Configuration: the promotion setup (a YAML file) and the endpoints and credentials (settings).

The setup says *what* is promoted: the GitOps repository, the services, the registry prefix, the
ordered environments with their overlays, Argo CD applications and gates, and who may approve.
The settings say *where* the systems are and *how* to authenticate; they come from environment
variables prefixed ``RELEASE_PROMOTION_`` or, for secrets, from Prefect Secret blocks (loaded by
the flows layer and handed in), and are held as ``SecretStr`` so they never print.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

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
# A GitHub login: letters, digits and single inner hyphens, at most 39 characters.
Login = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$", max_length=39)]


def valid_login(login: str) -> bool:
    """Whether ``login`` is a well-formed GitHub login."""
    return len(login) <= 39 and _LOGIN.fullmatch(login) is not None


_LOGIN = re.compile(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*")


class When(StrEnum):
    """When an approval is asked for in an environment."""

    BEFORE_MERGE = "before_merge"  # the approver approves the PR (its diff, at its head)
    AFTER_DEPLOY = "after_deploy"  # the approver approves what runs there once Argo CD runs it


class Evidence(StrEnum):
    """What GitHub must also show for an approval (Prefect OSS knows no user identity)."""

    NONE = "none"  # the Prefect form only
    REVIEW = "review"  # an approving review of the PR, at the approved head, by the approver
    COMMENT = "comment"  # a comment "/approve <version>" on the PR by the approver


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_BAD_IN_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


def valid_branch(name: str) -> bool:
    """Whether ``name`` is a branch name git accepts (``git check-ref-format --branch``)."""
    return not (
        not name
        or name == "@"
        or _BAD_IN_REF.search(name)
        or name.startswith(("/", ".", "-"))
        or name.endswith(("/", ".", ".lock"))
        or any(part.startswith(".") or part.endswith(".lock") for part in name.split("/"))
    )


class GitHubRepo(_Strict):
    repository: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")]
    base_branch: str = "main"
    required_checks: tuple[str, ...] = ("Kustomize validation",)
    # check name -> id of the GitHub App that must post it (a commit status, or another app's
    # check run of the same name, then does not count)
    check_apps: dict[str, Annotated[int, Field(gt=0)]] = Field(default_factory=dict)
    merge_method: str = "squash"

    @field_validator("base_branch")
    @classmethod
    def _branch(cls, value: str) -> str:
        if not valid_branch(value):
            raise ValueError(
                f"{value!r} is not a valid branch name (git check-ref-format: no spaces, no "
                "'..', '~', '^', ':', '?', '*', '[', '\\', '@{', not empty)"
            )
        return value

    @field_validator("required_checks")
    @classmethod
    def _checks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for i, name in enumerate(value):
            if not name.strip():
                raise ValueError(
                    f"[{i}]: a required check needs a name (a check run's name or a commit "
                    "status's context)"
                )
        return value

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


class Approval(_Strict):
    """One approval an environment needs: which gate, when, by whom, with which evidence."""

    gate: Name
    when: When
    approvers: tuple[Login, ...] = Field(min_length=1)
    github_evidence: Evidence = Evidence.NONE

    @model_validator(mode="after")
    def _evidence_fits(self) -> Approval:
        if self.when is When.AFTER_DEPLOY and self.github_evidence is Evidence.REVIEW:
            raise ValueError(
                f"gate {self.gate}: github_evidence 'review' needs an open PR, but an "
                "after_deploy approval comes after the merge (GitHub refuses reviews on a merged "
                "PR); use 'comment' (a '/approve <version>' comment on the merged PR)"
            )
        return self


class Environment(_Strict):
    name: Name
    overlay: str
    argocd_app: Name
    approvals: tuple[Approval, ...] = ()
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

    def approvals_at(self, when: When) -> tuple[Approval, ...]:
        return tuple(a for a in self.approvals if a.when is when)

    @property
    def operations(self) -> EnvironmentOperations:
        """The freeze windows, soak time and checks after deploy of this environment."""
        return EnvironmentOperations(
            freeze=self.freeze, soak_minutes=self.soak_minutes, verify=self.verify
        )

    @property
    def merged_automatically(self) -> bool:
        """No approval is needed before the merge: it merges once the checks pass."""
        return not self.approvals_at(When.BEFORE_MERGE)


class _FirstFormatApprovers(_Strict):
    qa: tuple[Login, ...] = Field(min_length=1)
    pm: tuple[Login, ...] = Field(min_length=1)
    pm_requires_github_review: bool = False


class _FirstFormatGate(BaseModel):
    model_config = ConfigDict(extra="ignore")  # the other keys are checked by Environment
    gate: Literal["auto", "pm_approval"]


class _FirstFormat(BaseModel):
    """The parts of the first file format (``gate:`` and top-level ``approvers``) that differ."""

    model_config = ConfigDict(extra="ignore")
    environments: list[_FirstFormatGate] = Field(min_length=1)
    approvers: _FirstFormatApprovers


def first_format_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(location, problem) for the first-format parts of ``data``, at their own locations."""
    try:
        _FirstFormat.model_validate(data)
    except ValidationError as exc:
        return [(_location(err["loc"]), err["msg"]) for err in exc.errors()]
    return []


def from_first_format(data: dict[str, Any]) -> dict[str, Any]:
    """Convert the first file format (``gate: auto | pm_approval`` and ``approvers``).

    Its meaning, kept: QA approves what runs in the first automatically merged environment; the
    PM approves the PR of every ``pm_approval`` environment before its merge.
    """
    given = data.get("approvers")
    approvers: dict[str, Any] = given if isinstance(given, dict) else {}
    review = bool(approvers.get("pm_requires_github_review", False))
    converted: list[Any] = []
    qa_placed = False
    for env in data.get("environments") or []:
        if not isinstance(env, dict):
            converted.append(env)
            continue
        env = dict(env)
        gate = env.pop("gate", None)
        approvals: list[dict[str, Any]] = []
        if gate == "auto" and not qa_placed:
            qa = {"gate": "qa", "when": "after_deploy", "approvers": approvers.get("qa") or []}
            approvals.append(qa)
            qa_placed = True
        elif gate == "pm_approval":
            pm = {"gate": "pm", "when": "before_merge", "approvers": approvers.get("pm") or []}
            approvals.append({**pm, "github_evidence": "review" if review else "none"})
        env["approvals"] = approvals
        converted.append(env)
    out = {k: v for k, v in data.items() if k != "approvers"}
    out["environments"] = converted
    return out


class PromotionConfig(_Strict):
    """One application's promotion setup, as read from ``promotion.yaml``.

    ``application`` names it: the key under ``applications:``, or for a single-application file
    its ``application:`` key, by default the repository's name (``application_name``).
    ``notifications`` and ``watch`` are global: every application of a file gets the same.
    """

    application: Name = "app"
    github: GitHubRepo
    registry: Registry
    services: tuple[Name, ...] = Field(min_length=1)
    environments: tuple[Environment, ...] = Field(min_length=1)
    notifications: Notifications = Notifications()
    watch: WatchReleases = WatchReleases()

    @model_validator(mode="after")
    def _unique(self) -> PromotionConfig:
        problems = duplicate_problems(self.model_dump(mode="json"))
        if problems:
            raise ValueError("; ".join(f"{where}: {what}" for where, what in problems))
        return self

    def approvals(self) -> tuple[tuple[Environment, Approval], ...]:
        """Every approval of the setup, in the order a promotion meets them."""
        return tuple((env, a) for env in self.environments for a in env.approvals)

    def gate(self, name: str) -> Approval:
        """The approval named ``name`` (``qa``, ``pm``)."""
        for _, approval in self.approvals():
            if approval.gate == name:
                return approval
        known = ", ".join(a.gate for _, a in self.approvals()) or "(none)"
        raise ConfigError(f"unknown gate {name!r}; configured: {known}")

    def approvers(self) -> frozenset[str]:
        """Every login that approves some gate (lowercase)."""
        return frozenset(login.lower() for _, a in self.approvals() for login in a.approvers)

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
    if isinstance(envs, list | tuple):
        gates = [
            a.get("gate")
            for e in envs
            if isinstance(e, dict) and isinstance(e.get("approvals"), list | tuple)
            for a in e["approvals"]
            if isinstance(a, dict) and a.get("gate") is not None
        ]
        columns.append(("environments[].approvals[].gate", gates))
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


def application_name(repository: str) -> str:
    """The name of the application a single-application file describes: its repository's name,
    lowercased, with every run of other characters than letters and digits made one ``-``
    (``acme/microservices-demo-gitops`` -> ``microservices-demo-gitops``)."""
    name = re.sub(r"[^a-z0-9]+", "-", repository.rsplit("/", 1)[-1].lower()).strip("-")
    return name[:63].rstrip("-") or "app"


_APP_KEYS = frozenset(PromotionConfig.model_fields) - {"notifications", "watch"} | {"approvers"}
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


class Applications(_Strict):
    """Every application of a promotion setup (one for a single-application file), by name."""

    applications: dict[str, PromotionConfig] = Field(min_length=1)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.applications)

    def get(self, application: str | None) -> PromotionConfig:
        """The application named ``application``; None: the only one (refused when several)."""
        if application is None:
            if len(self.applications) == 1:
                return next(iter(self.applications.values()))
            raise ConfigError(
                f"this setup describes {len(self.applications)} applications: say which one "
                f"(application: {', '.join(self.names)})"
            )
        found = self.applications.get(application)
        if found is None:
            raise ConfigError(
                f"unknown application {application!r}; configured: {', '.join(self.names)}"
            )
        return found


def parse_applications(text: str, source: str = "<string>") -> Applications:
    """Parse a promotion setup of one or several applications; ONE ``ConfigError`` lists every
    problem.

    Two formats: today's file (one application: ``github``, ``registry``, ``services``,
    ``environments`` at the top level) and ``applications:``, a mapping of application name to
    such a block; ``notifications`` and ``watch`` stay at the top level in both.
    """
    data = _load_yaml(text, source)
    if "applications" not in data:
        config = _parse_one(data, source)
        name = data.get("application") or application_name(config.github.repository)
        return Applications(applications={name: config.model_copy(update={"application": name})})
    problems: list[str] = []
    mixed = sorted(k for k in data if k in _APP_KEYS)
    if mixed:
        problems.append(
            f"(top level): {', '.join(mixed)} belong under applications.<name>: a file holds "
            "either one application at the top level or several under 'applications', not both"
        )
    apps = data["applications"]
    if not isinstance(apps, dict) or not apps:
        problems.append("applications: expected a mapping of application name -> setup")
        apps = {}
    shared = {k: v for k, v in data.items() if k in {"notifications", "watch"}}
    configs: dict[str, PromotionConfig] = {}
    for name, block in apps.items():
        where = f"applications.{name}"
        if not isinstance(name, str) or _NAME.fullmatch(name) is None or len(name) > 63:
            problems.append(
                f"applications: {name!r} is not a valid application name (lowercase letters, "
                "digits and inner '-', at most 63 characters)"
            )
            continue
        if not isinstance(block, dict):
            problems.append(f"{where}: expected a mapping (github, registry, services, ...)")
            continue
        local = sorted(k for k in block if k in {"notifications", "watch", "application"})
        if local:
            problems.append(
                f"{where}: {', '.join(local)} may not be set per application "
                "(notifications and watch are global; the name is the key)"
            )
            continue
        try:
            config = _parse_one({**block, **shared}, where)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        configs[name] = config.model_copy(update={"application": name})
    owners: dict[str, list[str]] = {}
    for name, config in configs.items():
        for env in config.environments:
            owners.setdefault(env.argocd_app, []).append(name)
    for app, names in sorted(owners.items()):
        if len(names) > 1:
            problems.append(
                f"applications: Argo CD application {app} is used by {', '.join(names)}; each "
                "Argo CD application belongs to one application"
            )
    if problems:
        lines = [f"{source}: {len(problems)} problem(s):"]
        lines += [f"  - {p}" for p in problems]
        raise ConfigError("\n".join(lines))
    return Applications(applications=configs)


def _load_yaml(text: str, source: str) -> dict[str, Any]:
    yaml = YAML(typ="safe", pure=True)
    try:
        data: Any = yaml.load(text)
    except YAMLError as exc:  # a name listed twice under applications is one (DuplicateKeyError)
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    return data


def parse_config(
    text: str, source: str = "<string>", application: str | None = None
) -> PromotionConfig:
    """Parse and validate a promotion setup and return one application's (None: the only one);
    raise ONE ``ConfigError`` listing every problem."""
    return parse_applications(text, source).get(application)


def _parse_one(data: dict[str, Any], source: str) -> PromotionConfig:
    first: list[tuple[str, str]] = []
    if "approvers" in data:  # the first file format: read it with its own locations
        first = first_format_problems(data)
        data = from_first_format(data)
    errors: list[Any] = []
    try:
        config = PromotionConfig.model_validate(data)
    except ValidationError as exc:
        errors = list(exc.errors())
    if first or errors:
        problems = (
            first
            + [
                (_location(err["loc"]), err["msg"])
                for err in errors
                # reported below with the other problems; a converted approval is reported at
                # its first-format location above
                if "listed twice" not in err["msg"]
                and not (first and "approvals" in _location(err["loc"]))
                # pydantic adds "too short after validation" to a list whose items failed: noise
                and not (
                    err["type"] == "too_short"
                    and any(
                        o["loc"][: len(err["loc"])] == err["loc"] and o is not err for o in errors
                    )
                )
            ]
        )
        problems += duplicate_problems(data)
        lines = [f"{source}: {len(problems)} problem(s):"]
        lines += [f"  - {where}: {what}" for where, what in problems]
        raise ConfigError("\n".join(lines)) from None
    return config


def load_config(
    path: str | os.PathLike[str] | None = None, application: str | None = None
) -> PromotionConfig:
    """Load one application's setup from ``path`` (default: the project's ``promotion.yaml``);
    ``application`` None: the only one (refused, naming them, when the file has several)."""
    return load_applications(path).get(application)


def load_applications(path: str | os.PathLike[str] | None = None) -> Applications:
    """Load every application of the promotion setup ``path`` (default: ``promotion.yaml``)."""
    file = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read promotion setup {file}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"cannot read promotion setup {file}: not UTF-8 text ({exc.reason})"
        ) from exc
    return parse_applications(text, str(file))


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
    # Seconds to wait for Argo CD to confirm a deployment. Keep it above the Deployments'
    # progress deadline (``progressDeadlineSeconds``, 600 s by default): a bad image stays
    # Progressing that long before Argo CD reports it Degraded.
    deploy_timeout: float = Field(default=900.0, gt=0)
    checks_timeout: float = Field(default=900.0, gt=0)
    # Treat a deployment still Progressing at ``deploy_timeout`` (DeploymentStuckProgressing)
    # like a Degraded one: roll back automatically when the promotion's auto-rollback is on.
    rollback_when_stuck_progressing: bool = False
    # Seconds an environment lock's lease lasts; the holder renews it at three quarters of that.
    # A holder that dies (a SIGKILLed worker) keeps the environment locked until its lease
    # runs out (and the server's repossessor notices, every 15 s by default): a retried run
    # waits that long. Prefect's own default is 300 s; its server refuses less than 60 s.
    lock_lease_seconds: float = Field(default=300.0, ge=60)

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

    def secret(self, name: str) -> SecretStr:
        """The secret setting ``name``; ``ConfigError`` naming its variable and block if unset."""
        value = getattr(self, name)
        if not isinstance(value, SecretStr):
            self.require(name)
            raise ConfigError(f"setting {name} is not a secret")
        return value
