"""The release watcher's schedule, from promotion.yaml (``watch.enabled``, ``watch.cron``).

``prefect.yaml`` declares ``watch-releases`` with an inactive ``*/5`` schedule (a file cannot
read promotion.yaml); ``release-promotion deploy`` then calls ``apply_watch_schedule``, which
makes the deployment's schedules exactly the one the setup asks for: ``watch.cron`` in
``watch.timezone``, active when ``watch.enabled``. Idempotent: the first schedule is updated
in place and any other removed. An active schedule gets its next runs at once (the server's
scheduler would create them only at its next loop, up to a minute later).
"""

from __future__ import annotations

import os
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.schedules import SCHEDULE_TYPES, CronSchedule
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from deployments.runs import api_auth_string
from promotion.config import PromotionConfig, load_config
from promotion.names import WATCH_DEPLOYMENT

__all__ = ["apply_watch_schedule", "set_watch_schedule"]


def set_watch_schedule(config: PromotionConfig, deployment: str = WATCH_DEPLOYMENT) -> str:
    """Make ``deployment``'s schedule the one of ``config.watch``; return a line saying what."""
    watch = config.watch
    schedule: SCHEDULE_TYPES = CronSchedule(cron=watch.cron, timezone=watch.timezone)
    with get_client(sync_client=True) as client:
        try:
            target = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            return f"Release watcher: {deployment} is not deployed."
        existing = client.read_deployment_schedules(target.id)
        if existing:
            client.update_deployment_schedule(
                target.id, existing[0].id, active=watch.enabled, schedule=schedule
            )
            for extra in existing[1:]:
                client.delete_deployment_schedule(target.id, extra.id)
        else:
            client.create_deployment_schedules(target.id, [(schedule, watch.enabled)])
        if watch.enabled:
            scheduled = client.request(
                "POST", "/deployments/{id}/schedule", path_params={"id": target.id}, json={}
            )
            scheduled.raise_for_status()
    state = "on" if watch.enabled else "off (watch.enabled: false in promotion.yaml)"
    return f"Release watcher: {state}, cron '{watch.cron}' ({watch.timezone})."


def apply_watch_schedule(api_url: str, config_file: str | os.PathLike[str] | None = None) -> str:
    """``set_watch_schedule`` against ``api_url`` for the setup in ``config_file``."""
    config = load_config(config_file)
    settings: dict[Any, Any] = {PREFECT_API_URL: api_url}
    auth = api_auth_string()  # a protected server (the demo sets it after Prefect loaded)
    if auth:
        settings[PREFECT_API_AUTH_STRING] = auth
    with temporary_settings(settings):
        return set_watch_schedule(config)
