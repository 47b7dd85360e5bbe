"""The state machine of the Argo CD emulator: Applications, reconciliation, sync operations.

Each Application follows a path of a real bare git repository at a target revision. A
reconciliation resolves the revision with ``git rev-parse``, renders the path with the real
kustomize (on a ``git archive`` of the commit) and compares it with what was last deployed; with
auto-sync on, an out-of-sync Application gets a sync operation. A sync operation runs in a
thread: it renders the revision, records a history entry and sets health Progressing, which turns
Healthy (or Degraded when an image matches a configured bad pattern) after ``health_delay``.
All state sits behind one lock; git and kustomize run outside it.

Costs (so that a thousand Applications stay cheap): each commit is extracted once (an LRU of
``KEPT_TREES`` trees, keyed by sha); each (commit, path) is rendered once, shared by every
Application on that path and revision (concurrent renders of one key wait for the first), and
its manifests are parsed once (libyaml) into the images and resource ids kept with the render;
reads build the JSON from those without re-parsing.
"""

from __future__ import annotations

import copy
import fnmatch
import io
import itertools
import math
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
import weakref
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from sandbox.kustomize_render import KustomizeRenderFailed, render

KEPT_TREES = 16  # extracted commits kept for rendering
RENDER_WORKERS = max(2, min(8, 2 * (os.cpu_count() or 1)))  # parallel renders at start-up
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod"}


class ArgoAPIError(Exception):
    """An error answered in Argo CD's shape: HTTP status, gRPC code and message."""

    def __init__(self, http_status: int, grpc_code: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.grpc_code = grpc_code
        self.message = message


def not_found(name: str) -> ArgoAPIError:
    """What Argo CD answers for an Application that does not exist: 403 permission denied.

    Argo CD hides whether an Application exists from callers (``server/application/application.go``
    ``getAppEnforceRBAC``: "If the app does not exist, we return permission denied"), so an unknown
    name and a missing ``get`` permission answer the same ``PermissionDeniedAPIError``.
    """
    return ArgoAPIError(403, 7, "permission denied")


def refresh_deadline_exceeded() -> ArgoAPIError:
    # A plain Go error from ``Server.Get``: grpc-gateway answers it as code Unknown (2), HTTP 500.
    return ArgoAPIError(500, 2, "application refresh deadline exceeded")


def version_tuple(version: str) -> tuple[int, int, int]:
    """``v3.1.8+becb020`` -> (3, 1, 8); anything unparsable counts as the newest."""
    match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", version)
    if match is None:
        return (99, 0, 0)
    major, minor, patch = (int(part) for part in match.groups())
    return (major, minor, patch)


def failed_precondition(message: str) -> ArgoAPIError:
    # grpc-gateway maps FailedPrecondition (9) to HTTP 400, as Argo CD's API server answers.
    return ArgoAPIError(400, 9, message)


def invalid_argument(message: str) -> ArgoAPIError:
    return ArgoAPIError(400, 3, message)


@dataclass(frozen=True)
class AppSpec:
    """One Application of the emulator.

    ``reenable_autosync_after`` simulates an Application managed from Git (app of apps, Argo CD
    issue 5351): seconds after auto-sync is turned off through the API, the parent puts Git's
    spec back and auto-sync is on again by itself.
    """

    name: str
    path: str
    target_revision: str = "main"
    auto_sync: bool = True
    prune: bool = True
    self_heal: bool = True
    revision_history_limit: int = 10
    environment: str | None = None
    namespace: str | None = None
    project: str = "default"
    reenable_autosync_after: float | None = None
    applicationset: str | None = None  # owned by this ApplicationSet (ownerReferences)


DEFAULT_VERSION = "v3.1.8+becb020"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class _HealthStage:
    """A health report due at monotonic time ``at``; ``status`` None only moves reconciledAt."""

    at: float
    status: str | None
    message: str = ""


@dataclass
class _Rendered:
    """One render of (commit, path): shared by Applications, never changed once made."""

    sha: str
    manifests: str | None
    error: str | None
    images: tuple[str, ...] = ()
    resources: tuple[dict[str, str], ...] = ()  # group, version, kind, namespace, name


@dataclass
class _App:
    spec: dict[str, Any]
    metadata: dict[str, Any]
    reenable_autosync_after: float | None
    operation: dict[str, Any] | None = None
    operation_state: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    next_history_id: int = 0
    deployed: _Rendered | None = None
    sync_status: str = "Unknown"
    sync_revision: str = ""
    conditions: list[dict[str, Any]] = field(default_factory=list)
    health_status: str = "Missing"
    health_message: str = ""
    health_transition: str = ""
    reconciled_at: str = ""
    observed_at: str = ""
    terminate: threading.Event | None = None
    reenable_timer: threading.Timer | None = None
    health_timeline: list[_HealthStage] = field(default_factory=list)
    repo_error_since: float | None = None  # monotonic time the current repo error was first seen
    template: dict[str, Any] | None = None  # the ApplicationSet's spec and annotations
    appset_timer: threading.Timer | None = None
    healthy_reported_at: float | None = None  # monotonic: first fresh Healthy after an operation

    @property
    def name(self) -> str:
        return str(self.metadata["name"])


def parse_manifests(manifests: str) -> tuple[tuple[str, ...], tuple[dict[str, str], ...]]:
    """The workloads' container images (sorted) and the resource ids of rendered manifests.

    One pass with libyaml (``yaml.CSafeLoader``); done once per render.
    """
    found: set[str] = set()
    resources: list[dict[str, str]] = []
    for doc in yaml.load_all(manifests, Loader=_Loader):
        if not isinstance(doc, dict):
            continue
        group, _, version = str(doc.get("apiVersion", "")).rpartition("/")
        meta = doc.get("metadata") or {}
        kind = doc.get("kind")
        resources.append(
            {
                "group": group,
                "version": version,
                "kind": str(doc.get("kind", "")),
                "namespace": str(meta.get("namespace", "")),
                "name": str(meta.get("name", "")),
            }
        )
        if kind not in WORKLOAD_KINDS:
            continue
        pod = doc.get("spec") or {}
        if kind != "Pod":
            pod = ((pod.get("template") or {}).get("spec")) or {}
        for key in ("initContainers", "containers"):
            for container in pod.get(key) or []:
                if isinstance(container, dict) and container.get("image"):
                    found.add(str(container["image"]))
    return tuple(sorted(found)), tuple(resources)


def _matching(images: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The images (``name:tag``) that match any ``fnmatch`` pattern."""
    return [image for image in images if any(fnmatch.fnmatchcase(image, p) for p in patterns)]


def images_of(manifests: str) -> tuple[str, ...]:
    """The container images of the workloads in rendered manifests, sorted."""
    return parse_manifests(manifests)[0]


class ArgoCDState:
    """Applications and their reconciliation; the HTTP layer lives in ``sandbox.argocd.api``."""

    def __init__(
        self,
        repo: Path,
        applications: Sequence[AppSpec],
        *,
        repo_url: str | None = None,
        reconcile_interval: float = 180.0,
        health_delay: float = 0.2,
        bad_image_patterns: Iterable[str] = (),
        sync_duration: float = 0.0,
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
        self.repo = Path(repo)
        self.repo_url = repo_url or self.repo.resolve().as_uri()
        self.reconcile_interval = reconcile_interval
        self.health_delay = health_delay
        self.sync_duration = sync_duration
        self.version = version
        self.progress_deadline = progress_deadline
        self.repo_error_grace = repo_error_grace
        self.refresh_latency = refresh_latency
        self.refresh_deadline = refresh_deadline
        self.sync_retry_limit = sync_retry_limit
        self.sync_retry_backoff = sync_retry_backoff
        self.failing_image_patterns: tuple[str, ...] = tuple(failing_image_patterns)
        self.stale_health_window = stale_health_window
        self.applicationset_revert_after = applicationset_revert_after
        self.watch_break_after = watch_break_after
        self._bad_patterns: tuple[str, ...] = tuple(bad_image_patterns)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # notified on every resourceVersion bump
        self._render_cache: dict[tuple[str, str], _Rendered] = {}
        self._rendering: dict[tuple[str, str], threading.Event] = {}  # renders under way
        self._extract_lock = threading.Lock()
        self._extracted: OrderedDict[str, Path] = OrderedDict()
        self._tree_users: Counter[str] = Counter()  # renders reading each tree now
        self._extract_root = tempfile.mkdtemp(prefix="argocd-trees-")
        weakref.finalize(self, shutil.rmtree, self._extract_root, True)
        self._resource_version = itertools.count(1000)
        self.counters: Counter[str] = Counter()
        self._apps: dict[str, _App] = {}
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        for spec in applications:
            self._apps[spec.name] = self._new_app(spec)
        # Resolve each target revision once and render each (commit, path) once, in parallel.
        resolved: dict[str, str] = {}
        for app in self._apps.values():
            revision = app.spec["source"]["targetRevision"]
            if revision not in resolved:
                resolved[revision] = self._resolve(revision)
        jobs = sorted(
            {
                (resolved[app.spec["source"]["targetRevision"]], app.spec["source"]["path"])
                for app in self._apps.values()
            }
        )
        if len(jobs) > 1:
            with ThreadPoolExecutor(RENDER_WORKERS, thread_name_prefix="argocd-render") as pool:
                for _ in pool.map(lambda job: self._render(*job), jobs):
                    pass
        for app in self._apps.values():
            self._initial_sync(app, resolved[app.spec["source"]["targetRevision"]])

    # -- construction -------------------------------------------------------------------------

    def _new_app(self, spec: AppSpec) -> _App:
        env = spec.environment or spec.name
        automated: dict[str, Any] | None = (
            {"enabled": True, "prune": spec.prune, "selfHeal": spec.self_heal}
            if spec.auto_sync
            else None
        )
        if automated is not None and not self.has_automated_enabled:
            del automated["enabled"]
        sync_policy: dict[str, Any] = {"syncOptions": ["CreateNamespace=true"]}
        if automated is not None:
            sync_policy["automated"] = automated
        app_spec = {
            "project": spec.project,
            "source": {
                "repoURL": self.repo_url,
                "path": spec.path,
                "targetRevision": spec.target_revision,
            },
            "destination": {
                "server": "https://kubernetes.default.svc",
                "namespace": spec.namespace or env,
            },
            "syncPolicy": sync_policy,
            "revisionHistoryLimit": spec.revision_history_limit,
        }
        metadata = {
            "name": spec.name,
            "namespace": "argocd",
            "uid": str(uuid.uuid4()),
            "labels": {"environment": env},
            "creationTimestamp": now_rfc3339(),
            "generation": 1,
            "resourceVersion": str(next(self._resource_version)),
        }
        template = None
        if spec.applicationset:
            metadata["ownerReferences"] = [
                {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "ApplicationSet",
                    "name": spec.applicationset,
                    "uid": str(uuid.uuid4()),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
            template = {"spec": copy.deepcopy(app_spec), "annotations": None}
        return _App(
            spec=app_spec,
            metadata=metadata,
            reenable_autosync_after=spec.reenable_autosync_after,
            template=template,
        )

    @property
    def has_automated_enabled(self) -> bool:
        """``spec.syncPolicy.automated.enabled`` exists from Argo CD 3.1 (types.go ``Enabled``)."""
        return version_tuple(self.version) >= (3, 1, 0)

    def autosync_on(self, app: _App) -> bool:
        """Auto-sync is on: ``automated`` is set (and, from 3.1, not ``enabled: false``)."""
        automated = (app.spec.get("syncPolicy") or {}).get("automated")
        if not isinstance(automated, dict):
            return False
        return not self.has_automated_enabled or automated.get("enabled", True) is not False

    def _initial_sync(self, app: _App, sha: str | None = None) -> None:
        """Deploy the current head at once, as if the Application had been synced long ago."""
        if sha is None:
            sha = self._resolve(app.spec["source"]["targetRevision"])
        rendered = self._render(sha, app.spec["source"]["path"])
        now = now_rfc3339()
        if rendered.error is not None:
            app.sync_status = "Unknown"
            app.sync_revision = app.spec["source"]["targetRevision"]  # no sha was resolved
            app.conditions = [self._comparison_error(rendered.error, now)]
            app.reconciled_at = app.observed_at = now
            return
        # Synced "long ago": the operation ended a second before the first reconciliation.
        earlier = rfc3339(time.time() - 1.0)
        self._record_deployment(
            app, rendered, earlier, earlier, {"username": "admin", "automated": False}
        )
        app.operation_state = {
            "operation": {
                "sync": {"revision": sha, "prune": True, "syncStrategy": {"hook": {}}},
                "initiatedBy": {"automated": True},
                "retry": {},
            },
            "phase": "Succeeded",
            "message": "successfully synced (all tasks run)",
            "startedAt": earlier,
            "finishedAt": earlier,
            "syncResult": {"revision": sha, "source": copy.deepcopy(app.spec["source"])},
        }
        app.health_status = "Healthy" if not self._bad_images(rendered.images) else "Degraded"
        app.health_message = self._health_message(rendered.images)
        app.health_transition = now
        app.sync_status = "Synced"
        app.sync_revision = sha
        app.reconciled_at = app.observed_at = now

    # -- git and kustomize ----------------------------------------------------------------------

    def _git(self, *args: str) -> bytes:
        result = subprocess.run(
            ["git", "--git-dir", str(self.repo), *args],
            capture_output=True,
            check=False,
            env={"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "PATH": _path()},
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr.decode(errors="replace").strip())
        return result.stdout

    def _resolve(self, revision: str) -> str:
        try:
            return (
                self._git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
                .decode()
                .strip()
            )
        except RuntimeError:
            try:
                out = self._git("rev-parse", "--verify", f"refs/heads/{revision}^{{commit}}")
            except RuntimeError as exc:
                raise invalid_argument(
                    f"Unable to resolve '{revision}' to a commit SHA: {exc}"
                ) from exc
            return out.decode().strip()

    @contextmanager
    def _extracted_tree(self, sha: str) -> Iterator[Path]:
        """The files of commit ``sha``, extracted once (``git archive``) and kept for a while.

        At most ``KEPT_TREES`` trees are kept (least recently used goes first); a tree is never
        removed while a render reads it.
        """
        with self._extract_lock:
            tree = self._extracted.get(sha)
            if tree is not None:
                self._extracted.move_to_end(sha)
            else:
                archive = self._git("archive", "--format=tar", sha)
                tree = Path(self._extract_root, sha)
                with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                    tar.extractall(tree, filter="data")
                self._extracted[sha] = tree
                self.counters["extractions"] += 1
            self._tree_users[sha] += 1
            self._evict_trees()
        try:
            yield tree
        finally:
            with self._extract_lock:
                self._tree_users[sha] -= 1
                if self._tree_users[sha] <= 0:
                    del self._tree_users[sha]
                self._evict_trees()

    def _evict_trees(self) -> None:
        # Under ``_extract_lock``: drop the least recently used trees nobody is reading.
        excess = len(self._extracted) - KEPT_TREES
        for old_sha in list(self._extracted):
            if excess <= 0:
                break
            if self._tree_users.get(old_sha):
                continue
            shutil.rmtree(self._extracted.pop(old_sha), ignore_errors=True)
            excess -= 1

    def _render(self, sha: str, path: str, *, fresh: bool = False) -> _Rendered:
        """The render of ``path`` at commit ``sha``: made once and shared (``fresh``: anew)."""
        key = (sha, path)
        while True:
            with self._lock:
                cached = self._render_cache.get(key)
                if cached is not None and not fresh:
                    return cached
                pending = self._rendering.get(key)
                if pending is None:
                    done = self._rendering[key] = threading.Event()
                    break
            pending.wait()  # another thread renders this key: share its result
        try:
            rendered = self._render_now(sha, path)
            with self._lock:
                self.counters["renders"] += 1
                self._render_cache[key] = rendered
            return rendered
        finally:
            with self._lock:
                del self._rendering[key]
            done.set()

    def _render_now(self, sha: str, path: str) -> _Rendered:
        with self._extracted_tree(sha) as tree:
            target = tree / path
            try:
                if not target.resolve().is_relative_to(tree.resolve()) or not target.is_dir():
                    raise KustomizeRenderFailed(f"{path}: app path does not exist")
                manifests = render(target)
            except KustomizeRenderFailed as exc:
                message = str(exc).replace(f"{tree}/", "").replace(str(tree), ".")
                return _Rendered(sha, None, message)
        images, resources = parse_manifests(manifests)
        return _Rendered(sha, manifests, None, images, resources)

    # -- health ---------------------------------------------------------------------------------

    def _bad_images(self, images: Iterable[str]) -> list[str]:
        return _matching(images, self._bad_patterns)

    def _health_message(self, images: Iterable[str]) -> str:
        # gitops-engine pkg/health/health_deployment.go: a Deployment whose Progressing condition
        # has reason ProgressDeadlineExceeded is Degraded with this message.
        bad = self._bad_images(images)
        if not bad:
            return ""
        parts = []
        for image in bad:
            service = image.rsplit("/", 1)[-1].split(":", 1)[0]
            parts.append(
                f'Deployment "{service}" exceeded its progress deadline '
                f"(Back-off pulling image {image!r})"
            )
        return "; ".join(parts)

    def _schedule_health(self, app: _App, finished_wall: float, *, stale: bool) -> None:
        """Plan the health reports that follow a sync operation finished at ``finished_wall``.

        - ``stale``: the reconciliation that started an automated sync persists the health it
          computed BEFORE the sync, stamped in the same second as ``finishedAt`` (the controller's
          refresh and operation workers run concurrently; timestamps have 1 s precision). The
          next reconciliation (or ``stale_health_window`` seconds) replaces it.
        - Progressing while the rollout runs; Healthy after ``health_delay``; an image matching a
          bad pattern stays Progressing until ``progress_deadline`` (the Deployment's
          ``progressDeadlineSeconds``, 600 s by default in Kubernetes) and is then Degraded.
        - As pods change the controller reconciles again: at least one report lands in a later
          second than ``finishedAt``, so a client can tell a fresh Healthy from a stale one.
        """
        now = time.monotonic()
        images = app.deployed.images if app.deployed else ()
        bad = bool(self._bad_images(images))
        progressing_at = now + (self.stale_health_window if stale else 0.0)
        delay = self.health_delay
        if bad and self.progress_deadline is not None:
            delay = self.progress_deadline
        final_at = max(progressing_at + 0.05, now + delay)  # Progressing is seen first
        next_second = now + (math.floor(finished_wall) + 1.0 - finished_wall) + 0.01
        stages = [
            _HealthStage(progressing_at, "Progressing", "Waiting for rollout to finish"),
            _HealthStage(final_at, "Degraded" if bad else "Healthy", self._health_message(images)),
        ]
        if next_second > final_at:
            stages.append(_HealthStage(next_second, None))
        app.health_timeline = stages
        app.healthy_reported_at = None
        if not stale:
            self._settle_health(app)
        for stage in stages:
            timer = threading.Timer(max(0.0, stage.at - now), self._tick, args=(app.name,))
            timer.daemon = True
            timer.start()

    def _tick(self, name: str) -> None:
        with self._lock:
            app = self._apps.get(name)
            if app is not None:
                self._settle_health(app)

    def _settle_health(self, app: _App, *, reconciling: bool = False) -> None:
        """Apply the health reports that are due (``reconciling``: end a stale report now)."""
        now = time.monotonic()
        while app.health_timeline and (
            app.health_timeline[0].at <= now
            or (reconciling and app.health_timeline[0].status == "Progressing")
        ):
            stage = app.health_timeline.pop(0)
            stamp = now_rfc3339()
            if stage.status is not None and (stage.status, stage.message) != (
                app.health_status,
                app.health_message,
            ):
                app.health_status, app.health_message = stage.status, stage.message
                app.health_transition = stamp
            app.reconciled_at = app.observed_at = stamp
            self._note_fresh_health(app)
            self._touch(app)

    def _note_fresh_health(self, app: _App) -> None:
        """Remember when a client could first accept Healthy after the last operation."""
        state = app.operation_state or {}
        if (
            app.healthy_reported_at is None
            and app.health_status == "Healthy"
            and state.get("phase") == "Succeeded"
            and app.reconciled_at > str(state.get("finishedAt") or "")
        ):
            app.healthy_reported_at = time.monotonic()

    def healthy_reported_at(self, name: str) -> float | None:
        """Monotonic time the API first showed ``name`` Healthy, reconciled after its last sync."""
        with self._lock:
            return self._get(name).healthy_reported_at

    # -- reconciliation -------------------------------------------------------------------------

    def _comparison_error(self, message: str, now: str) -> dict[str, Any]:
        return {
            "type": "ComparisonError",
            "message": f"Failed to load target state: failed to generate manifest for source 1 "
            f"of 1: rpc error: code = Unknown desc = {message}",
            "lastTransitionTime": now,
        }

    def _set_comparison_error(self, app: _App, message: str, now: str) -> None:
        condition = self._comparison_error(message, now)
        # ApplicationStatus.SetConditions keeps a condition's lastTransitionTime while its
        # message is unchanged.
        for old in app.conditions:
            if old.get("type") == condition["type"] and old.get("message") == condition["message"]:
                condition["lastTransitionTime"] = old.get("lastTransitionTime", now)
        app.conditions = [condition]

    def reconcile(
        self, name: str, *, hard: bool = False, resolved: dict[str, str] | None = None
    ) -> None:
        """Compare the Application with git now; with auto-sync on, start a sync if needed.

        ``resolved`` (revision -> sha) shares revision lookups across one pass over many
        Applications (``reconcile_all``, the poller). ``hard`` is a comparison without the
        revision cache (``refresh=hard``): it reports a repository error at once.
        """
        with self._lock:
            app = self._get(name)
            source = copy.deepcopy(app.spec["source"])
            self.counters["reconciles"] += 1
        revision = source["targetRevision"]
        sha = resolved.get(revision) if resolved is not None else None
        if sha is None:
            sha = self._resolve(revision)
            if resolved is not None:
                resolved[revision] = sha
        rendered = self._render(sha, source["path"], fresh=hard)
        with self._lock:
            now = now_rfc3339()
            if rendered.error is not None:
                # controller/state.go CompareAppState: a repository error first seen, or seen
                # again within the grace period, is ignored by a non-hard comparison and the old
                # status is kept (ErrCompareStateRepo); after it, the ComparisonError is reported
                # and sync.revision is the target revision as written (no sha was resolved).
                first = app.repo_error_since
                if not hard and (
                    first is None or time.monotonic() - first <= self.repo_error_grace
                ):
                    if first is None:
                        app.repo_error_since = time.monotonic()
                    self.counters["repo_errors_ignored"] += 1
                    return
                app.sync_status = "Unknown"
                app.sync_revision = revision
                self._set_comparison_error(app, rendered.error, now)
            else:
                app.repo_error_since = None
                app.sync_revision = sha
                app.conditions = []
                deployed = app.deployed.manifests if app.deployed else None
                app.sync_status = "Synced" if deployed == rendered.manifests else "OutOfSync"
            self._settle_health(app, reconciling=True)
            app.reconciled_at = app.observed_at = now
            self._note_fresh_health(app)
            self._touch(app)
            if self.autosync_on(app) and app.operation is None and self._should_autosync(app, sha):
                self._start_operation(
                    app,
                    revision=sha,
                    source=source,
                    prune=bool(app.spec["syncPolicy"]["automated"].get("prune", False)),
                    initiated_by={"automated": True},
                )

    def _should_autosync(self, app: _App, sha: str) -> bool:
        # As Argo CD's controller: only OutOfSync is synced automatically; Unknown (the
        # manifests cannot be generated: a ComparisonError condition) is not.
        if app.sync_status != "OutOfSync":
            return False
        state = app.operation_state
        if state is not None:
            attempted = (state.get("syncResult") or {}).get("revision") or (
                state.get("operation", {}).get("sync", {}).get("revision")
            )
            # Argo CD does not retry an automated sync of a revision that already failed.
            if attempted == sha and state.get("phase") in {"Failed", "Error"}:
                return False
        return True

    def reconcile_all(self) -> None:
        resolved: dict[str, str] = {}  # each revision resolved once per pass
        for name in self.names():
            self.reconcile(name, resolved=resolved)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._apps)

    # -- operations -----------------------------------------------------------------------------

    def _start_operation(
        self,
        app: _App,
        *,
        revision: str,
        source: dict[str, Any],
        prune: bool,
        initiated_by: dict[str, Any],
    ) -> None:
        if app.operation is not None:
            raise failed_precondition("another operation is already in progress")
        operation = {
            "sync": {
                "revision": revision,
                "prune": prune,
                "syncStrategy": {"hook": {}},
                "source": copy.deepcopy(source),
            },
            "initiatedBy": initiated_by,
            # controller/appcontroller.go autoSync: automated syncs retry up to 5 times.
            "retry": {"limit": self.sync_retry_limit} if initiated_by.get("automated") else {},
        }
        started = now_rfc3339()
        app.operation = operation
        app.operation_state = {
            "operation": copy.deepcopy(operation),
            "phase": "Running",
            "message": "one or more tasks are running",
            "startedAt": started,
        }
        app.terminate = threading.Event()
        self.counters["operations"] += 1
        self._touch(app)
        thread = threading.Thread(
            target=self._run_operation,
            args=(app, revision, copy.deepcopy(source), started, initiated_by, app.terminate),
            name=f"argocd-sync-{app.name}",
            daemon=True,
        )
        thread.start()

    def _run_operation(
        self,
        app: _App,
        revision: str,
        source: dict[str, Any],
        started: str,
        initiated_by: dict[str, Any],
        terminate: threading.Event,
    ) -> None:
        try:
            if self.sync_duration > 0 and terminate.wait(self.sync_duration):
                self._finish(app, "Failed", "Operation terminated", None)
                return
            try:
                sha = self._resolve(revision)
            except ArgoAPIError as exc:
                self._finish(app, "Failed", exc.message, None)
                return
            rendered = self._render(sha, source["path"])
            if terminate.is_set():
                self._finish(app, "Failed", "Operation terminated", None)
                return
            if rendered.error is not None:
                self._finish(
                    app,
                    "Failed",
                    f"ComparisonError: {self._comparison_error(rendered.error, '')['message']}",
                    sha,
                )
                return
            automated = bool(initiated_by.get("automated"))
            failing = _matching(rendered.images, self.failing_image_patterns)
            if failing and not self._retry_failed_apply(app, failing, sha, automated, terminate):
                return
            with self._lock:
                now_wall = time.time()
                now = rfc3339(now_wall)
                self._record_deployment(app, rendered, started, now, initiated_by, source)
                head_rendered = self._render_cache.get((app.sync_revision, source["path"]))
                if head_rendered is not None and head_rendered.manifests is not None:
                    app.sync_status = (
                        "Synced" if head_rendered.manifests == rendered.manifests else "OutOfSync"
                    )
                self._finish(app, "Succeeded", "successfully synced (all tasks run)", sha, source)
                # An automated sync was started by a reconciliation that persists its pre-sync
                # health after the operation ended (see ``_schedule_health``).
                self._schedule_health(app, now_wall, stale=automated)
        except Exception as exc:  # never leave an operation Running forever
            self._finish(app, "Error", f"sandbox error: {exc}", None)

    def _retry_failed_apply(
        self,
        app: _App,
        failing: Sequence[str],
        sha: str,
        automated: bool,
        terminate: threading.Event,
    ) -> bool:
        """Fail the apply of ``failing`` images, retrying as Argo CD does; always False.

        controller/appcontroller.go: an automated sync carries ``Retry{Limit: 5}``; a failed
        attempt within the limit stays phase Running with "<message>. Retrying attempt #n at
        <time>." and ``retryCount`` n, and is tried again after the backoff (5 s, doubling, in
        Argo CD; ``sync_retry_backoff`` here); past the limit it ends Failed with
        "(retried n times)". A manual sync has no retry strategy and fails at once.
        """
        names = ", ".join(image.rsplit("/", 1)[-1].split(":", 1)[0] for image in failing)
        message = (
            "one or more objects failed to apply, reason: Deployment.apps "
            f'"{names}" is invalid: spec.template.spec.containers[0].image: Invalid value'
        )
        limit = self.sync_retry_limit if automated else 0
        attempt = 0
        while attempt < limit:
            attempt += 1
            backoff = self.sync_retry_backoff * (2 ** (attempt - 1))
            retry_at = datetime.now(UTC) + timedelta(seconds=backoff)
            with self._lock:
                state = app.operation_state or {}
                state.update(
                    phase="Running",
                    message=f"{message}. Retrying attempt #{attempt} at "
                    f"{retry_at.strftime('%I:%M%p').lstrip('0')}.",
                    finishedAt=now_rfc3339(),
                    retryCount=attempt,
                )
                app.operation_state = state
                self._touch(app)
            if terminate.wait(backoff):
                self._finish(app, "Failed", "Operation terminated", None)
                return False
        suffix = f" (retried {attempt} times)." if attempt else ""
        self._finish(app, "Failed", message + suffix, sha)
        return False

    def _record_deployment(
        self,
        app: _App,
        rendered: _Rendered,
        started: str,
        finished: str,
        initiated_by: Mapping[str, Any],
        source: Mapping[str, Any] | None = None,
    ) -> None:
        app.deployed = rendered
        app.history.append(
            {
                "id": app.next_history_id,
                "revision": rendered.sha,
                "deployStartedAt": started,
                "deployedAt": finished,
                "source": copy.deepcopy(dict(source or app.spec["source"])),
                "initiatedBy": dict(initiated_by),
            }
        )
        app.next_history_id += 1
        limit = int(app.spec.get("revisionHistoryLimit") or 10)
        del app.history[: max(0, len(app.history) - limit)]

    def _finish(
        self,
        app: _App,
        phase: str,
        message: str,
        sha: str | None,
        source: Mapping[str, Any] | None = None,
    ) -> None:
        with self._lock:
            now = now_rfc3339()
            state = app.operation_state or {}
            state.update(phase=phase, message=message, finishedAt=now)
            if sha is not None:
                state["syncResult"] = {
                    "revision": sha,
                    "source": copy.deepcopy(dict(source or app.spec["source"])),
                }
                if phase == "Succeeded" and app.deployed is not None:
                    state["syncResult"]["resources"] = _resource_results(app.deployed, app)
            app.operation_state = state
            app.operation = None
            app.terminate = None
            app.reconciled_at = app.observed_at = now
            self._touch(app)

    # -- API-facing operations ------------------------------------------------------------------

    def _get(self, name: str) -> _App:
        app = self._apps.get(name)
        if app is None:
            raise not_found(name)
        return app

    def _touch(self, app: _App) -> None:
        # Under the lock: a new resourceVersion wakes the watchers (``watch``).
        app.metadata["resourceVersion"] = str(next(self._resource_version))
        self._changed.notify_all()

    def get(self, name: str, refresh: str | None = None) -> dict[str, Any]:
        if refresh:
            if refresh not in {"normal", "hard"}:
                raise invalid_argument(f"unknown refresh type {refresh!r}")
            with self._lock:
                self._get(name)
                self.counters["refreshes"] += 1
            # server/application/application.go Get: with ``refresh`` the answer waits until the
            # controller has reconciled the Application (``refresh_latency`` on a busy one); when
            # the request's context ends first it fails "application refresh deadline exceeded".
            # The refresh still happens.
            self.reconcile(name, hard=refresh == "hard")
            if self.refresh_deadline is not None and self.refresh_latency > self.refresh_deadline:
                time.sleep(self.refresh_deadline)
                raise refresh_deadline_exceeded()
            if self.refresh_latency > 0:
                time.sleep(self.refresh_latency)
        with self._lock:
            app = self._get(name)
            self._settle_health(app)
            return self._to_json(app)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            out = []
            for app in self._apps.values():
                self._settle_health(app)
                out.append(self._to_json(app))
            return out

    def sync(self, name: str, body: Mapping[str, Any], username: str) -> dict[str, Any]:
        with self._lock:
            app = self._get(name)
            source = copy.deepcopy(app.spec["source"])
        revision = str(body.get("revision") or source["targetRevision"])
        sha = self._resolve(revision)
        with self._lock:
            if body.get("dryRun"):
                return self._to_json(app)
            self._start_operation(
                app,
                revision=sha,
                source=source,
                prune=bool(body.get("prune", False)),
                initiated_by={"username": username},
            )
            self.counters["syncs"] += 1
            return self._to_json(app)

    def rollback(self, name: str, body: Mapping[str, Any], username: str) -> dict[str, Any]:
        with self._lock:
            app = self._get(name)
            self._settle_health(app)
            if self.autosync_on(app):
                raise failed_precondition("rollback cannot be initiated when auto-sync is enabled")
            try:
                wanted = int(body.get("id", 0))
            except (TypeError, ValueError) as exc:
                raise invalid_argument(f"invalid id {body.get('id')!r}") from exc
            entry = next((h for h in app.history if h["id"] == wanted), None)
            if entry is None:
                raise invalid_argument(
                    f"application {app.name} does not have deployment with id {wanted}"
                )
            if body.get("dryRun"):
                return self._to_json(app)
            self._start_operation(
                app,
                revision=entry["revision"],
                source=entry["source"],
                prune=bool(body.get("prune", False)),
                initiated_by={"username": username},
            )
            self.counters["rollbacks"] += 1
            return self._to_json(app)

    def terminate_operation(self, name: str) -> None:
        with self._lock:
            app = self._get(name)
            if app.operation is None or app.terminate is None:
                raise invalid_argument("Unable to terminate operation. No operation is in progress")
            if app.operation_state is not None:
                app.operation_state["phase"] = "Terminating"
            app.terminate.set()

    def patch(self, name: str, patch: Any, patch_type: str) -> dict[str, Any]:
        if patch_type != "merge":
            raise invalid_argument(f"Patch type '{patch_type}' is not supported by the sandbox")
        if not isinstance(patch, dict):
            raise invalid_argument("merge patch must be a JSON object")
        with self._lock:
            app = self._get(name)
            was_enabled = self.autosync_on(app)
            current = {"metadata": app.metadata, "spec": app.spec}
            merged = _merge_patch(copy.deepcopy(current), patch)
            self._replace_spec(app, merged.get("spec") or {})
            for key in ("labels", "annotations"):
                value = (merged.get("metadata") or {}).get(key)
                if isinstance(value, dict):
                    app.metadata[key] = value
                else:
                    app.metadata.pop(key, None)
            self._after_spec_change(app, was_enabled)
        self.reconcile(name)
        return self.get(name)

    def update_spec(self, name: str, spec: Any) -> dict[str, Any]:
        if not isinstance(spec, dict):
            raise invalid_argument("spec must be a JSON object")
        with self._lock:
            app = self._get(name)
            was_enabled = self.autosync_on(app)
            self._replace_spec(app, spec)
            self._after_spec_change(app, was_enabled)
        self.reconcile(name)
        with self._lock:
            return copy.deepcopy(self._get(name).spec)

    def _replace_spec(self, app: _App, spec: dict[str, Any]) -> None:
        source = spec.get("source")
        if not isinstance(source, dict) or not source.get("path") or not source.get("repoURL"):
            raise invalid_argument(
                f"application spec for {app.name} is invalid: InvalidSpecError: "
                "spec.source.repoURL and spec.source.path are required"
            )
        app.spec = copy.deepcopy(spec)
        automated = (app.spec.get("syncPolicy") or {}).get("automated")
        if isinstance(automated, dict) and not self.has_automated_enabled:
            # Before 3.1 the CRD has no ``automated.enabled``: the API server prunes the unknown
            # field, so only removing ``automated`` turns auto-sync off.
            automated.pop("enabled", None)
        app.metadata["generation"] = int(app.metadata.get("generation", 1)) + 1
        self._touch(app)

    def _after_spec_change(self, app: _App, was_enabled: bool) -> None:
        if app.template is not None:
            if app.appset_timer is not None:
                app.appset_timer.cancel()
            revert = threading.Timer(
                self.applicationset_revert_after, self._applicationset_reconcile, args=(app.name,)
            )
            revert.daemon = True
            app.appset_timer = revert
            revert.start()
        if was_enabled and not self.autosync_on(app) and app.reenable_autosync_after is not None:
            if app.reenable_timer is not None:
                app.reenable_timer.cancel()
            timer = threading.Timer(
                app.reenable_autosync_after, self._reenable_autosync, args=(app.name,)
            )
            timer.daemon = True
            app.reenable_timer = timer
            timer.start()

    def _reenable_autosync(self, name: str) -> None:
        """The parent Application puts Git's spec back: auto-sync is on again (issue 5351)."""
        with self._lock:
            app = self._apps.get(name)
            if app is None:
                return
            policy = app.spec.setdefault("syncPolicy", {})
            automated = policy.get("automated") or {"prune": True, "selfHeal": True}
            if self.has_automated_enabled:
                automated["enabled"] = True
            policy["automated"] = automated
            app.reenable_timer = None
            self.counters["autosync_reenabled"] += 1
            self._touch(app)
        self.reconcile(name)

    def _applicationset_reconcile(self, name: str) -> None:
        """The ApplicationSet controller puts its template back over the Application.

        docs/user-guide/auto_sync.md: for an ApplicationSet-managed Application, changing
        ``spec.syncPolicy.automated`` has no effect; the controller rewrites the spec and the
        annotations it does not preserve (by default it preserves the notification and refresh
        annotations: docs/operator-manual/applicationset/Controlling-Resource-Modification.md).
        """
        with self._lock:
            app = self._apps.get(name)
            if app is None or app.template is None:
                return
            app.appset_timer = None
            app.spec = copy.deepcopy(app.template["spec"])
            preserved = {
                key: value
                for key, value in (app.metadata.get("annotations") or {}).items()
                if key.startswith("notified.notifications.argoproj.io")
                or key == "argocd.argoproj.io/refresh"
            }
            if preserved:
                app.metadata["annotations"] = preserved
            else:
                app.metadata.pop("annotations", None)
            app.metadata["generation"] = int(app.metadata.get("generation", 1)) + 1
            self.counters["applicationset_reverts"] += 1
            self._touch(app)
        self.reconcile(name)

    # -- watch ----------------------------------------------------------------------------------

    def watch(self, name: str) -> Iterator[dict[str, Any]]:
        """Events of Application ``name``: ADDED with its state now, then MODIFIED on each change.

        server/application/application.go ``Watch``: a watch of one named Application first
        sends it as ADDED, then every change the broadcaster sees. An unknown name just sends
        nothing. Ends when the emulator stops (or after ``watch_break_after`` seconds, to mimic
        a proxy that cuts long streams).
        """
        last: str | None = None
        ends = (
            time.monotonic() + self.watch_break_after
            if self.watch_break_after is not None
            else None
        )
        with self._lock:
            self.counters["watches"] += 1
        while not self._stop.is_set() and (ends is None or time.monotonic() < ends):
            event: dict[str, Any] | None = None
            with self._changed:
                app = self._apps.get(name)
                if app is not None:
                    self._settle_health(app)
                    version = str(app.metadata["resourceVersion"])
                    if version != last:
                        kind = "ADDED" if last is None else "MODIFIED"
                        last = version
                        event = {"type": kind, "application": self._to_json(app)}
                if event is None:
                    self._changed.wait(0.25)
            if event is not None:
                yield event

    # -- knobs ----------------------------------------------------------------------------------

    def set_bad_image_patterns(self, patterns: Iterable[str]) -> None:
        with self._lock:
            self._bad_patterns = tuple(patterns)

    @property
    def bad_image_patterns(self) -> tuple[str, ...]:
        return self._bad_patterns

    def set_applicationset(self, name: str, applicationset: str | None) -> None:
        """Make ``name`` owned by ``applicationset`` (its spec now is the template), or not."""
        with self._lock:
            app = self._get(name)
            refs = [
                r
                for r in app.metadata.get("ownerReferences") or []
                if r.get("kind") != "ApplicationSet"
            ]
            if applicationset:
                refs.append(
                    {
                        "apiVersion": "argoproj.io/v1alpha1",
                        "kind": "ApplicationSet",
                        "name": applicationset,
                        "uid": str(uuid.uuid4()),
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                )
                app.template = {"spec": copy.deepcopy(app.spec), "annotations": None}
            else:
                app.template = None
            if refs:
                app.metadata["ownerReferences"] = refs
            else:
                app.metadata.pop("ownerReferences", None)
            self._touch(app)

    def set_reenable_autosync_after(self, name: str, seconds: float | None) -> None:
        with self._lock:
            self._get(name).reenable_autosync_after = seconds

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until no Application has an operation running (for tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(app.operation is None for app in self._apps.values()):
                    return
            time.sleep(0.01)
        raise TimeoutError("operations still running")

    # -- background poller ----------------------------------------------------------------------

    def start(self) -> None:
        if self._poller is not None:
            return
        self._stop.clear()
        self._poller = threading.Thread(target=self._poll, name="argocd-poller", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(10)
            self._poller = None
        with self._lock:
            self._changed.notify_all()
            for app in self._apps.values():
                if app.reenable_timer is not None:
                    app.reenable_timer.cancel()
                if app.appset_timer is not None:
                    app.appset_timer.cancel()
                if app.terminate is not None:
                    app.terminate.set()

    def _poll(self) -> None:
        while not self._stop.wait(self.reconcile_interval):
            resolved: dict[str, str] = {}  # each revision resolved once per poll
            for name in self.names():
                try:
                    self.reconcile(name, resolved=resolved)
                except Exception:  # a bad revision must not kill the poller
                    with self._lock:
                        self.counters["poll_errors"] += 1

    # -- JSON -----------------------------------------------------------------------------------

    def _to_json(self, app: _App) -> dict[str, Any]:
        images = list(app.deployed.images) if app.deployed else []
        health: dict[str, Any] = {"status": app.health_status}
        if app.health_message:
            health["message"] = app.health_message
        if app.health_transition:
            health["lastTransitionTime"] = app.health_transition
        status: dict[str, Any] = {
            "sync": {
                "status": app.sync_status,
                "revision": app.sync_revision,
                "comparedTo": {
                    "source": _copy_json(app.spec["source"]),
                    "destination": _copy_json(app.spec.get("destination") or {}),
                },
            },
            "health": health,
            "history": _copy_json(app.history),
            "summary": {"images": images},
            "reconciledAt": app.reconciled_at,
            "observedAt": app.observed_at,
            "sourceType": "Kustomize",
            "controllerNamespace": "argocd",
            "resources": _resource_statuses(app),
        }
        if app.conditions:
            status["conditions"] = _copy_json(app.conditions)
        if app.operation_state is not None:
            status["operationState"] = _copy_json(app.operation_state)
        doc: dict[str, Any] = {
            "metadata": _copy_json(app.metadata),
            "spec": _copy_json(app.spec),
            "status": status,
        }
        if app.operation is not None:
            doc["operation"] = _copy_json(app.operation)
        return doc


def _resource_results(rendered: _Rendered, app: _App) -> list[dict[str, Any]]:
    return [
        {
            **res,
            "status": "Synced",
            "message": f"{res['kind'].lower()}/{res['name']} configured",
            "hookPhase": "Running",
            "syncPhase": "Sync",
        }
        for res in (rendered.resources if rendered.manifests is not None else ())
    ]


def _resource_statuses(app: _App) -> list[dict[str, Any]]:
    if app.deployed is None or app.deployed.manifests is None:
        return []
    sync_status = app.sync_status
    workload_health = {"status": app.health_status}
    out = []
    for res in app.deployed.resources:
        item: dict[str, Any] = {**res, "status": sync_status}
        kind = res["kind"]
        if kind in WORKLOAD_KINDS:
            item["health"] = dict(workload_health)
        elif kind == "Service":
            item["health"] = {"status": "Healthy"}
        out.append(item)
    return out


def _copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars): much cheaper than deepcopy."""
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy_json(v) for v in value]
    return value


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge_patch(target.get(key), value)
    return target


def _path() -> str:
    import os

    return os.environ.get("PATH", "/usr/bin:/bin")
