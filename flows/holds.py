"""Holds: a release rolled back in an environment is not promoted again without saying so.

The holds live in one Prefect Variable (``promotion.names.HOLDS_VARIABLE``), a JSON object
``{version: {"env", "reason", "at", "run"}}``, so ``release-promotion status`` and the UI's
Variables page show them, and a person can lift one by editing or deleting it.
"""

from __future__ import annotations

from typing import Any

from prefect.context import FlowRunContext
from prefect.variables import Variable

from promotion.names import HOLDS_VARIABLE
from promotion.report import now


def read_holds() -> dict[str, dict[str, Any]]:
    """Version -> hold; empty when none is recorded."""
    value = Variable.get(HOLDS_VARIABLE, default=None)
    return {str(k): dict(v) for k, v in value.items()} if isinstance(value, dict) else {}


def hold(version: str, env: str, reason: str) -> None:
    """Put ``version`` on hold (idempotent: a second hold of a version keeps the first)."""
    holds = read_holds()
    if version in holds:
        return
    context = FlowRunContext.get()
    run = str(context.flow_run.id) if context and context.flow_run else None
    holds[version] = {"env": env, "reason": reason[:500], "at": now().isoformat(), "run": run}
    Variable.set(HOLDS_VARIABLE, holds, overwrite=True)
