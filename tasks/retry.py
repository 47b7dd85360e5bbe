"""Transient-only retries for Prefect tasks.

Each client in ``promotion/`` knows which of its failures are transient (``is_transient``);
a task retries those, with exponential backoff and jitter, and never a logic error. When the
failure carries a server-given ``retry_after`` (429, secondary rate limits), the retry waits at
least that long.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prefect.tasks import exponential_backoff

RETRIES = 4
RETRY_DELAYS = exponential_backoff(backoff_factor=0.5)
RETRY_JITTER = 0.5
MAX_RETRY_AFTER = 60.0


def transient_only(is_transient: Callable[[BaseException], bool]) -> Callable[..., bool]:
    """Build a ``retry_condition_fn`` that retries only failures ``is_transient`` accepts."""

    def should_retry(task: Any, task_run: Any, state: Any) -> bool:
        exc = state.result(raise_on_failure=False)
        if not isinstance(exc, BaseException) or not is_transient(exc):
            return False
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after > 0:
            # Prefect's own delay follows; this makes the total wait honour Retry-After.
            time.sleep(min(float(retry_after), MAX_RETRY_AFTER))
        return True

    return should_retry


def transient_retries(is_transient: Callable[[BaseException], bool]) -> dict[str, Any]:
    """``@task`` options for a task that writes or polls: transient-only retries, no cache."""
    from prefect.cache_policies import NO_CACHE

    return {
        "retries": RETRIES,
        "retry_delay_seconds": RETRY_DELAYS,
        "retry_jitter_factor": RETRY_JITTER,
        "retry_condition_fn": transient_only(is_transient),
        "cache_policy": NO_CACHE,
    }
