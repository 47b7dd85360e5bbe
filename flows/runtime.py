"""What every flow builds once at its start: the promotion setup and the settings with secrets."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectAlreadyExists
from prefect.input.actions import create_flow_run_input

from promotion.config import Applications, PromotionConfig, Settings, load_applications, load_config
from promotion.report import RunReport, now
from tasks.argocd import ArgoTarget
from tasks.github import GitHubTarget
from tasks.registry import RegistryTarget
from tasks.secrets import load_secret_block


@dataclass(frozen=True)
class Runtime:
    config: PromotionConfig
    settings: Settings

    @property
    def application(self) -> str:
        return self.config.application

    def github(self) -> GitHubTarget:
        return GitHubTarget.from_settings(self.settings, self.config)

    def argocd(self) -> ArgoTarget:
        return ArgoTarget.from_settings(self.settings)

    def registry(self) -> RegistryTarget:
        return RegistryTarget.from_settings(self.settings, self.config)

    def registry_repositories(self) -> dict[str, str]:
        """Service -> repository path inside the registry."""
        return {s: f"{self.config.registry.path}/{s}" for s in self.config.services}


def load_runtime(config_file: str | None = None, application: str | None = None) -> Runtime:
    """Read the setup of ``application`` (None: the only one) and the settings (env vars, then
    Prefect Secret blocks)."""
    settings = Settings().with_secrets(load_secret_block)
    config = load_config(config_file or settings.config_file, application)
    return Runtime(config, settings)


def load_setup(config_file: str | None = None) -> tuple[Applications, Settings]:
    """Every application of the setup, and the settings (env vars, then Prefect Secret blocks)."""
    settings = Settings().with_secrets(load_secret_block)
    return load_applications(config_file or settings.config_file), settings


def run_started() -> datetime:
    """When this flow run first started (a run resumed after a suspend starts its code again)."""
    context = FlowRunContext.get()
    started = context.flow_run.start_time if context and context.flow_run else None
    return started if started is not None else now()


def remember(key: str, value: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Store ``value`` under ``key`` for this flow run, once; return what was stored first, and
    whether this execution stored it (False: an earlier execution did, or no flow run).

    ``key``: lowercase letters, digits and dashes (Prefect's rule for run input keys).

    A run resumed after a suspend (or retried) runs its code again from the top: this is how it
    knows what its first execution saw. Outside a flow run it returns ``(value, False)``.
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return value, False
    client: Any = context.client
    found = client.filter_flow_run_input(context.flow_run.id, key, 1, set())
    if found:
        return dict(found[0].decoded_value), False
    with contextlib.suppress(ObjectAlreadyExists):  # a racing execution stored it first
        create_flow_run_input(key=key, value=value)
        return value, True
    stored = client.filter_flow_run_input(context.flow_run.id, key, 1, set())[0].decoded_value
    return dict(stored), False


def recall(key: str) -> dict[str, Any] | None:
    """What ``remember`` stored under ``key`` for this flow run, if anything (None outside a run)."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None
    client: Any = context.client
    found = client.filter_flow_run_input(context.flow_run.id, key, 1, set())
    return dict(found[0].decoded_value) if found else None


def notify(event: str, **payload: Any) -> None:
    """Emit ``event`` about this flow run for the notification automations; never fails the run.

    ``payload``: ``gate``, ``version``, ``env``, ``approvers``, ``reason`` as they apply (see
    ``tasks.events``). Outside a flow run, or with events off, nothing is sent.
    """
    from tasks.events import emit

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    try:
        emit(event, flow_run_id=context.flow_run.id, payload=payload)
    except Exception as exc:  # a notification must never stop a promotion
        get_run_logger().warning("Could not emit %s: %s", event, exc)


def publish_report(report: RunReport, key: str) -> None:
    """Publish the run's summary artifact (also called when the run fails)."""
    try:
        create_markdown_artifact(markdown=report.to_markdown(), key=key, description=report.title)
    except Exception as exc:  # the summary must never hide the run's own error
        get_run_logger().warning("Could not publish the summary artifact: %s", exc)
