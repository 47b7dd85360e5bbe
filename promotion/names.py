"""Names shared across modules, defined once: locks, deployments, variables, pause keys, events.

A name used by two modules (a flow and the CLI, a flow and the deployment code) lives here, so
that renaming it cannot leave one side behind.
"""

from __future__ import annotations

PROMOTE_FLOW = "promote-release"
ROLLBACK_FLOW = "rollback-release"
RESUME_AUTOSYNC_FLOW = "resume-autosync"
DRIFT_FLOW = "audit-staging-drift"

PROMOTE_DEPLOYMENT = f"{PROMOTE_FLOW}/{PROMOTE_FLOW}"
ROLLBACK_DEPLOYMENT = f"{ROLLBACK_FLOW}/{ROLLBACK_FLOW}"
RESUME_AUTOSYNC_DEPLOYMENT = f"{RESUME_AUTOSYNC_FLOW}/{RESUME_AUTOSYNC_FLOW}"

HOLDS_VARIABLE = "release-promotion-holds"
"""Prefix of the Prefect Variables holding the versions put on hold by a rollback (one per
application, ``holds_variable``): {version: {env, reason, at}}."""


def holds_variable(application: str) -> str:
    """The Prefect Variable holding ``application``'s holds."""
    return f"{HOLDS_VARIABLE}-{application}"


EVENT_PREFIX = "release-promotion"

# Events the flows emit (``tasks.events.emit``) and the automations of
# ``deployments.notifications`` turn into notifications. Resource: ``prefect.flow-run.<id>``
# (drift: ``release-promotion.argocd-app.<name>``). Payload keys: gate, version, env,
# approvers, reason, resume_url (those that apply).
EVENT_APPROVAL_WAITING = f"{EVENT_PREFIX}.approval.waiting"
EVENT_PROMOTION_REJECTED = f"{EVENT_PREFIX}.promotion.rejected"
EVENT_PROMOTION_FAILED = f"{EVENT_PREFIX}.promotion.failed"
EVENT_PROMOTION_ROLLED_BACK = f"{EVENT_PREFIX}.promotion.rolled-back"
EVENT_ENVIRONMENT_DEPLOYED = f"{EVENT_PREFIX}.environment.deployed"
EVENT_DRIFT_DETECTED = f"{EVENT_PREFIX}.drift.detected"

WATCH_FLOW = "watch-releases"
WATCH_DEPLOYMENT = f"{WATCH_FLOW}/{WATCH_FLOW}"


def watch_idempotency_key(repository: str, version: str) -> str:
    """The key that makes release detection start ``promote-release`` once per version."""
    return f"{WATCH_FLOW}:{repository}:{version}"


def environment_lock(application: str, env: str) -> str:
    """The Prefect global concurrency limit that serializes ``application``'s promotions into
    ``env`` (two applications promote into their own ``env`` at once)."""
    return f"promotion-{application}-{env}"


def pause_key(gate: str, binding: str, attempt: int) -> str:
    """The key of the ``attempt``-th wait at ``gate`` for what ``binding`` (a digest) names.

    Prefect stores the answer under the key, so an answer given for another binding (another
    version, PR head or diff) is never found under this one.
    """
    return f"{gate}-approval-{binding[:12]}-{attempt}"


def gate_of_pause_key(key: str) -> str:
    """``qa-approval-0123456789ab-0`` -> ``qa``."""
    return key.rsplit("-approval-", 1)[0]


FINISH_FLOW = "finish-promotion"
FINISH_DEPLOYMENT = f"{FINISH_FLOW}/{FINISH_FLOW}"
FINISH_AUTOMATION = "release-promotion: finish a promotion the server stopped"
"""The automation that runs ``finish-promotion`` when a promote-release run ends Failed or
Crashed: an approval that expired under a deployment is failed by the server (its
pause-expiration service) without running any flow code, so nothing else could close its PR."""

SUMMARY_ARTIFACT = "promotion-summary"
