"""Transient-only retries for Prefect tasks.

Each client in ``promotion/`` knows which of its failures are transient (``is_transient``);
a task retries those, with exponential backoff and jitter, and never a logic error. When the
failure carries a ``retry_after`` (a server's Retry-After, or the wait the client computed for a
rate limit: until ``x-ratelimit-reset`` for GitHub's primary limit, at least 60 s for a secondary
one without Retry-After), the retry waits at least that long, up to ``MAX_RETRY_AFTER``; a longer
wait is not retried (the client's message says when to come back).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prefect.tasks import exponential_backoff

RETRIES = 4
RETRY_DELAYS = exponential_backoff(backoff_factor=0.5)
RETRY_JITTER = 0.5
# GitHub's primary rate limit resets within the hour; wait up to 15 minutes for it.
MAX_RETRY_AFTER = 900.0


def transient_only(
    is_transient: Callable[[BaseException], bool],
    *,
    max_wait: float = MAX_RETRY_AFTER,
    sleep: Callable[[float], None] = time.sleep,
) -> Callable[..., bool]:
    """Build a ``retry_condition_fn`` that retries only failures ``is_transient`` accepts.

    Args:
        is_transient: The client's classifier.
        max_wait: The longest ``retry_after`` to wait for; a failure asking for more is final.
        sleep: Called with the seconds to wait (injectable for tests).
    """

    def should_retry(task: Any, task_run: Any, state: Any) -> bool:
        exc = state.result(raise_on_failure=False)
        if not isinstance(exc, BaseException) or not is_transient(exc):
            return False
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after > 0:
            if retry_after > max_wait:
                return False
            # Prefect's own (short) delay follows; this makes the total wait honour the limit.
            sleep(float(retry_after))
        return True

    return should_retry


def transient_retries(
    is_transient: Callable[[BaseException], bool], *, max_wait: float = MAX_RETRY_AFTER
) -> dict[str, Any]:
    """``@task`` options for a task that writes or polls: transient-only retries, no cache."""
    from prefect.cache_policies import NO_CACHE

    return {
        "retries": RETRIES,
        "retry_delay_seconds": RETRY_DELAYS,
        "retry_jitter_factor": RETRY_JITTER,
        "retry_condition_fn": transient_only(is_transient, max_wait=max_wait),
        "cache_policy": NO_CACHE,
    }
