"""Holds: a release rolled back in an environment is not promoted again without saying so.

Each application's holds live in one Prefect Variable (``promotion.names.holds_variable``), a
JSON object ``{version: {"env", "reason", "at", "run"}}``, so ``release-promotion status`` and
the UI's Variables page show them, and a person can lift one by editing or deleting it.
"""

from __future__ import annotations

from typing import Any

from prefect.context import FlowRunContext
from prefect.variables import Variable

from promotion.names import holds_variable
from promotion.report import now


def read_holds(application: str) -> dict[str, dict[str, Any]]:
    """Version -> hold of ``application``; empty when none is recorded."""
    value = Variable.get(holds_variable(application), default=None)
    return {str(k): dict(v) for k, v in value.items()} if isinstance(value, dict) else {}


def hold(application: str, version: str, env: str, reason: str) -> None:
    """Put ``application``'s ``version`` on hold (idempotent: a second hold keeps the first)."""
    holds = read_holds(application)
    if version in holds:
        return
    context = FlowRunContext.get()
    run = str(context.flow_run.id) if context and context.flow_run else None
    holds[version] = {"env": env, "reason": reason[:500], "at": now().isoformat(), "run": run}
    Variable.set(holds_variable(application), holds, overwrite=True)
