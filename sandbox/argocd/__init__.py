"""An Argo CD API emulator over a real bare git repository, rendering with the real kustomize.

``ArgoCDEmulator`` serves the parts of Argo CD's REST API this project depends on (list, get with
refresh, sync, rollback, patch, spec update, operation termination) with the real field names, and
knobs under ``/_sandbox/`` for faults, latency, bad images and call counts::

    emulator = ArgoCDEmulator(bare_repo, [AppSpec("prod-app", "kustomize/prod")], token="t")
    server = serve_in_thread(emulator.app)
    emulator.start()  # the auto-sync poller, every ``reconcile_interval`` seconds
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sandbox.argocd.api import ArgoCDApp, Knobs
from sandbox.argocd.core import AppSpec, ArgoAPIError, ArgoCDState

__all__ = ["AppSpec", "ArgoAPIError", "ArgoCDEmulator"]


class ArgoCDEmulator:
    """Argo CD Applications over ``repo`` (a bare git repository), served as an ASGI app.

    Args:
        repo: The bare git repository the Applications follow.
        applications: One ``AppSpec`` per Application.
        token: The bearer token with every permission (user ``admin``).
        reconcile_interval: Seconds between auto-sync polls of git (Argo CD's default is 180).
        health_delay: Seconds a synced Application stays Progressing before Healthy/Degraded.
        bad_image_patterns: ``fnmatch`` patterns on ``name:tag``; a deployed match is Degraded.
        sync_duration: Seconds a sync operation stays Running before it applies.
        readonly_tokens: Tokens (-> user) that may read but get 403 on writes.
        repo_url: The ``spec.source.repoURL`` to show (default: the repository's file URL).
        reenable_autosync_after: Simulate Argo CD issue 5351 for every Application (an
            Application managed from Git): auto-sync turned off through the API comes back on
            by itself after this many seconds. Per Application: ``AppSpec.reenable_autosync_after``.
    """

    def __init__(
        self,
        repo: Path,
        applications: Sequence[AppSpec],
        token: str,
        reconcile_interval: float = 180.0,
        health_delay: float = 0.2,
        bad_image_patterns: Iterable[str] = (),
        sync_duration: float = 0.0,
        *,
        readonly_tokens: Mapping[str, str] | None = None,
        repo_url: str | None = None,
        reenable_autosync_after: float | None = None,
    ) -> None:
        self.state = ArgoCDState(
            repo,
            applications,
            repo_url=repo_url,
            reconcile_interval=reconcile_interval,
            health_delay=health_delay,
            bad_image_patterns=bad_image_patterns,
            sync_duration=sync_duration,
        )
        if reenable_autosync_after is not None:
            for app in self.state.names():
                self.state.set_reenable_autosync_after(app, reenable_autosync_after)
        self.knobs = Knobs()
        self._http = ArgoCDApp(
            self.state, {token: "admin"}, dict(readonly_tokens or {}), self.knobs
        )
        self.app = self._http.app

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background auto-sync poller."""
        self.state.start()

    def stop(self) -> None:
        """Stop the poller and any running operation."""
        self.state.stop()

    # -- knobs ----------------------------------------------------------------------------------

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` API calls with ``status``."""
        self.knobs.fail_next(count, status)

    def set_latency(self, seconds: float) -> None:
        """Delay every API answer by ``seconds``."""
        self.knobs.latency = seconds

    def set_bad_image_patterns(self, patterns: Iterable[str]) -> None:
        """Images matching any pattern (``fnmatch`` on ``name:tag``) make a sync Degraded."""
        self.state.set_bad_image_patterns(patterns)

    def set_reenable_autosync_after(self, app: str, seconds: float | None) -> None:
        """Simulate Argo CD issue 5351 for ``app``: auto-sync comes back ``seconds`` after off."""
        self.state.set_reenable_autosync_after(app, seconds)

    def reconcile(self, app: str | None = None) -> None:
        """Reconcile one Application (or all) now, as the poller would."""
        if app is None:
            self.state.reconcile_all()
        else:
            self.state.reconcile(app)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no operation is running."""
        self.state.wait_idle(timeout)

    def application(self, name: str) -> dict[str, Any]:
        """The Application JSON as the API answers it (no refresh)."""
        return self.state.get(name)

    def stats(self) -> dict[str, Any]:
        """API call counts per route handler and internal counters."""
        return {
            "calls": dict(self.knobs.calls),
            "total": sum(self.knobs.calls.values()),
            "faults_served": self.knobs.faults_served,
            "counters": dict(self.state.counters),
        }
