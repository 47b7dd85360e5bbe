"""Approval policy: who may approve a gate.

An approver must be listed for the gate and must not be the person who started the release
(four eyes). The flows enforce this twice: the approval form only offers the eligible logins
(so the Prefect server rejects anyone else before the run resumes), and the decision is checked
again here after it arrives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class NoEligibleApprover(ValueError):
    """Nobody may approve the gate (for instance the only listed approver started the release)."""


@dataclass(frozen=True)
class Refusal:
    """Why an approval input was not accepted."""

    approver: str
    reason: str


def eligible_approvers(gate: str, listed: Sequence[str], initiator: str | None) -> tuple[str, ...]:
    """The logins that may approve ``gate``: the listed ones, less the initiator."""
    eligible = tuple(login for login in listed if login.lower() != (initiator or "").lower())
    if not eligible:
        raise NoEligibleApprover(
            f"no one can approve the {gate} gate: listed approvers {', '.join(listed) or '(none)'}"
            f" and the release was started by {initiator!r}, who may not approve it"
        )
    return eligible


def check_approver(
    gate: str, approver: str, listed: Sequence[str], initiator: str | None
) -> Refusal | None:
    """Return why ``approver`` may not decide ``gate``, or None when they may."""
    name = approver.strip()
    if not name:
        return Refusal(approver, f"the {gate} approval needs the approver's login")
    if initiator and name.lower() == initiator.lower():
        return Refusal(name, f"{name} started this release and cannot also approve its {gate} gate")
    if name.lower() not in {login.lower() for login in listed}:
        return Refusal(name, f"{name} is not a {gate} approver (listed: {', '.join(listed)})")
    return None
