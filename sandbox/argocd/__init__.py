"""An Argo CD API emulator over a real bare git repository, rendering with the real kustomize.

``ArgoCDEmulator`` serves the parts of Argo CD's REST API this project depends on (list with the
``fields`` whitelist, get with refresh, the watch stream, version, sync, rollback, patch, spec
update, operation termination) with the real field names, and knobs under ``/_sandbox/`` for
faults, latency, bad images, versions, timings and call counts::

    emulator = ArgoCDEmulator(bare_repo, [AppSpec("prod-app", "kustomize/prod")], token="t")
    server = serve_in_thread(emulator.app)
    emulator.start()  # the auto-sync poller, every ``reconcile_interval`` seconds
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sandbox.argocd.api import KNOBS, ArgoCDApp, Knobs
from sandbox.argocd.core import DEFAULT_VERSION, AppSpec, ArgoAPIError, ArgoCDState

__all__ = ["DEFAULT_VERSION", "AppSpec", "ArgoAPIError", "ArgoCDEmulator"]


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
        version: What ``GET /api/version`` answers (default ``DEFAULT_VERSION``, a 3.1 release).
            Before 3.1 ``spec.syncPolicy.automated.enabled`` does not exist (it is pruned from
            specs; only removing ``automated`` turns auto-sync off); the list call's ``fields``
            whitelist also follows the version.
        progress_deadline: Seconds an image matching ``bad_image_patterns`` stays Progressing
            before it turns Degraded (Kubernetes' default ``progressDeadlineSeconds`` is 600);
            None (default): ``health_delay``, fast for tests.
        repo_error_grace: Seconds a repository error (a render failure) is ignored by
            non-hard comparisons, which keep the old status (Argo CD: 180).
        refresh_latency: Seconds a ``GET ...?refresh=`` waits after reconciling.
        refresh_deadline: If ``refresh_latency`` exceeds it, the refresh answers HTTP 500
            "application refresh deadline exceeded" after this many seconds.
        sync_retry_limit: Retries of a failing automated sync (Argo CD: 5).
        sync_retry_backoff: Seconds before the first retry, doubled each time (Argo CD: 5).
        failing_image_patterns: ``fnmatch`` patterns on ``name:tag``; a sync applying a match
            fails ("one or more objects failed to apply"), retried as above.
        stale_health_window: Seconds the pre-sync health persisted by the reconciliation that
            started an automated sync stays visible (until the next reconciliation).
        applicationset_revert_after: Seconds after a spec change of an ApplicationSet-owned
            Application (``AppSpec.applicationset``) until its ApplicationSet puts it back.
        watch_break_after: Close each watch stream after this many seconds (None: never).
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
        version: str = DEFAULT_VERSION,
        progress_deadline: float | None = None,
        repo_error_grace: float = 180.0,
        refresh_latency: float = 0.0,
        refresh_deadline: float | None = None,
        sync_retry_limit: int = 5,
        sync_retry_backoff: float = 0.1,
        failing_image_patterns: Iterable[str] = (),
        stale_health_window: float = 0.3,
        applicationset_revert_after: float = 0.1,
        watch_break_after: float | None = None,
    ) -> None:
        self.state = ArgoCDState(
            repo,
            applications,
            repo_url=repo_url,
            reconcile_interval=reconcile_interval,
            health_delay=health_delay,
            bad_image_patterns=bad_image_patterns,
            sync_duration=sync_duration,
            version=version,
            progress_deadline=progress_deadline,
            repo_error_grace=repo_error_grace,
            refresh_latency=refresh_latency,
            refresh_deadline=refresh_deadline,
            sync_retry_limit=sync_retry_limit,
            sync_retry_backoff=sync_retry_backoff,
            failing_image_patterns=failing_image_patterns,
            stale_health_window=stale_health_window,
            applicationset_revert_after=applicationset_revert_after,
            watch_break_after=watch_break_after,
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

    def fail_next(
        self,
        count: int,
        status: int = 503,
        *,
        kind: str = "error",
        routes: Iterable[str] = (),
        seconds: float = 0.0,
        query: str | None = None,
    ) -> None:
        """Fail the next ``count`` API calls (of ``routes``, whose query string matches
        ``query``; see ``sandbox.argocd.api``):
        ``kind`` "error" answers ``status``, "timeout" holds each call ``seconds``,
        "operation_in_progress" answers a sync or rollback "another operation is already in
        progress"."""
        self.knobs.fail_next(count, status, kind=kind, routes=routes, seconds=seconds, query=query)

    def set_latency(self, seconds: float) -> None:
        """Delay every API answer by ``seconds``."""
        self.knobs.latency = seconds

    def set_bad_image_patterns(self, patterns: Iterable[str]) -> None:
        """Images matching any pattern (``fnmatch`` on ``name:tag``) make a sync Degraded."""
        self.state.set_bad_image_patterns(patterns)

    def set_reenable_autosync_after(self, app: str, seconds: float | None) -> None:
        """Simulate Argo CD issue 5351 for ``app``: auto-sync comes back ``seconds`` after off."""
        self.state.set_reenable_autosync_after(app, seconds)

    def set_applicationset(self, app: str, applicationset: str | None) -> None:
        """Make ``app`` owned by ``applicationset`` (None: by none); see ``AppSpec.applicationset``."""
        self.state.set_applicationset(app, applicationset)

    def set_knobs(self, **knobs: Any) -> None:
        """Set ``ArgoCDState`` knobs by name (the constructor's keywords), e.g. ``version``."""
        for key, value in knobs.items():
            if key not in KNOBS:
                raise TypeError(f"unknown Argo CD emulator knob {key!r}")
            setattr(self.state, key, KNOBS[key](value))

    def healthy_reported_at(self, app: str) -> float | None:
        """Monotonic time the API first showed ``app`` Healthy, reconciled after its last sync."""
        return self.state.healthy_reported_at(app)

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
