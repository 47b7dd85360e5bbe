"""Holds: a release rolled back in an environment is not promoted again without saying so.

Each application's holds live in one Prefect Variable (``promotion.names.holds_variable``), a
JSON object ``{version: {"env", "reason", "at", "run"}}``, so ``release-promotion status`` and
the UI's Variables page show them, and a person can lift one by editing or deleting it.
"""

from __future__ import annotations

from typing import Any

from prefect.context import FlowRunContext
from prefect.variables import Variable

from promotion.names import HOLDS_VARIABLE, holds_variable
from promotion.report import now


def _read(name: str) -> dict[str, dict[str, Any]]:
    value = Variable.get(name, default=None)
    return {str(k): dict(v) for k, v in value.items()} if isinstance(value, dict) else {}


def read_holds(application: str) -> dict[str, dict[str, Any]]:
    """Version -> hold of ``application``; empty when none is recorded.

    Holds recorded before applications had names (the Variable ``HOLDS_VARIABLE`` alone) still
    hold, for every application: a held release is never promoted again by an upgrade.
    """
    return {**_read(HOLDS_VARIABLE), **_read(holds_variable(application))}


def hold(application: str, version: str, env: str, reason: str) -> None:
    """Put ``application``'s ``version`` on hold (idempotent: a second hold keeps the first)."""
    if version in read_holds(application):
        return
    holds = _read(holds_variable(application))
    context = FlowRunContext.get()
    run = str(context.flow_run.id) if context and context.flow_run else None
    holds[version] = {"env": env, "reason": reason[:500], "at": now().isoformat(), "run": run}
    Variable.set(holds_variable(application), holds, overwrite=True)
