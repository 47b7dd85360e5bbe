"""Benchmark the drift audit at 10, 100 and 1,000 applications in the sandbox.

Builds a sandbox world per size: one GitOps repository holding N staging overlays in one commit,
the GitHub emulator serving it over smart HTTP, the Argo CD emulator with N Applications (one per
overlay, labelled ``environment=staging``) and a real registry holding the release's images.
Each server sits behind a counting wrapper, so the figures are the HTTP requests the audit
really made. Then it runs the ``audit_drift`` flow against a real Prefect server and prints, per
size, the applications, the seconds of the flow run and the calls (Argo CD, GitHub incl. git,
registry). Figures only; nothing is asserted. The same world builder serves ``tests/drift``.

    python -m bench.drift [--sizes 10,100,1000] [--drift-every K]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from promotion.config import PromotionConfig, load_config
from sandbox.http import RunningServer, serve_in_thread
from sandbox.seed import git, service_manifest

ENVIRONMENT = "staging"
RELEASES = ("v1.0.0", "v1.0.1")
REPOSITORY = "acme/microservices-demo-gitops"


# -- counting HTTP ---------------------------------------------------------------------------------


class CountingASGI:
    """Wrap an ASGI app and count its HTTP requests by a classification of the path."""

    def __init__(self, app: Any, classify: Any) -> None:
        self.app = app
        self.classify = classify
        self.calls: Counter[str] = Counter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            kind = self.classify(scope.get("path", ""))
            if kind:
                self.calls[kind] += 1
        await self.app(scope, receive, send)


class CountingProxy:
    """A reverse proxy (ASGI) to ``upstream`` that counts the requests passing through."""

    HOP = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.calls: Counter[str] = Counter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            return
        self.calls["requests"] += 1
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [
            (k.decode(), v.decode())
            for k, v in scope["headers"]
            if k.decode().lower() not in self.HOP
        ]
        query = scope.get("query_string", b"").decode()
        url = self.upstream + scope["path"] + (f"?{query}" if query else "")
        async with httpx.AsyncClient(timeout=30.0) as http:
            response = await http.request(scope["method"], url, headers=headers, content=body)
        out = [
            (k.encode(), v.encode())
            for k, v in response.headers.items()
            if k.lower() not in self.HOP
        ]
        out.append((b"content-length", str(len(response.content)).encode()))
        await send({"type": "http.response.start", "status": response.status_code, "headers": out})
        await send({"type": "http.response.body", "body": response.content})


# -- the world -------------------------------------------------------------------------------------


def app_name(i: int) -> str:
    return f"staging-app-{i:04d}"


def app_path(i: int) -> str:
    return f"apps/{app_name(i)}"


def overlay_text(namespace: str, images: Mapping[str, str], tags: Mapping[str, str]) -> str:
    """A staging overlay like the seed's, one per application (its own namespace)."""
    lines = [
        "# Managed by release-promotion: image tags change through promotion pull requests.",
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        f"namespace: {namespace}",
        "resources:",
        "  - ../../base",
        "labels:",
        "  - pairs:",
        f"      environment: {ENVIRONMENT}",
        "images:",
    ]
    for service, image in sorted(images.items()):
        lines += [f"  - name: {image}  # {service}", f"    newTag: {tags[service]}"]
    return "\n".join(lines) + "\n"


def world_config(base: PromotionConfig, first_app: str) -> str:
    """The promotion setup of a world: staging is ``first_app`` (the others come by label)."""
    services = "".join(f"  - {s}\n" for s in base.services)
    return f"""github:
  repository: {REPOSITORY}
  base_branch: main
registry:
  prefix: {base.registry.prefix}
services:
{services}environments:
  - name: staging
    overlay: apps/{first_app}/kustomization.yaml
    argocd_app: {first_app}
    gate: auto
approvers:
  qa: [qa-alice]
  pm: [pm-carol]
"""


@dataclass
class DriftWorld:
    """A sandbox with ``n`` staging applications; ``close()`` stops everything it started."""

    root: Path
    n: int
    config: PromotionConfig
    config_file: Path
    bare: Path
    work: Path
    github: Any
    github_counter: CountingASGI
    argocd: Any
    argocd_counter: CountingASGI
    argocd_token: str
    github_token: str
    registry: Any = None
    registry_proxy: CountingProxy | None = None
    servers: list[RunningServer] = field(default_factory=list)
    argocd_url: str = ""
    registry_url: str = ""

    @property
    def apps(self) -> list[str]:
        return [app_name(i) for i in range(self.n)]

    def env(self) -> dict[str, str]:
        """``RELEASE_PROMOTION_*`` variables that point the flow at this world."""
        env = {
            "RELEASE_PROMOTION_CONFIG_FILE": str(self.config_file),
            "RELEASE_PROMOTION_GITHUB_URL": self.github.api_url,
            "RELEASE_PROMOTION_GITHUB_TOKEN": self.github_token,
            "RELEASE_PROMOTION_ARGOCD_URL": self.argocd_url,
            "RELEASE_PROMOTION_ARGOCD_TOKEN": self.argocd_token,
        }
        if self.registry_url:
            env["RELEASE_PROMOTION_REGISTRY_URL"] = self.registry_url
        return env

    def commit(self, files: Mapping[str, str], message: str) -> str:
        """Commit ``files`` (path -> text) on main and push it over smart HTTP; return the sha."""
        for path, text in files.items():
            target = self.work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        git("add", "-A", cwd=self.work)
        git("commit", "--quiet", "-m", message, cwd=self.work)
        git("push", "--quiet", self.github.git_url, "HEAD:refs/heads/main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work).strip()

    def overlay(self, i: int, tags: Mapping[str, str]) -> dict[str, str]:
        """The files that set application ``i``'s overlay to ``tags`` (service -> tag)."""
        images = self.config.images()
        full = {s: tags.get(s, RELEASES[-1]) for s in images}
        return {f"{app_path(i)}/kustomization.yaml": overlay_text(app_name(i), images, full)}

    def argocd_api(self) -> httpx.Client:
        """An httpx client of the Argo CD emulator's API (for injecting drift like a user)."""
        return httpx.Client(
            base_url=self.argocd_url,
            headers={"Authorization": f"Bearer {self.argocd_token}"},
            timeout=30.0,
        )

    def calls(self) -> dict[str, int]:
        return {
            "argocd": self.argocd_counter.calls["api"],
            "github": self.github_counter.calls["api"] + self.github_counter.calls["git"],
            "registry": self.registry_proxy.calls["requests"] if self.registry_proxy else 0,
        }

    def reset_calls(self) -> None:
        self.argocd_counter.calls.clear()
        self.github_counter.calls.clear()
        if self.registry_proxy is not None:
            self.registry_proxy.calls.clear()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.argocd.stop()
        for server in reversed(self.servers):
            with contextlib.suppress(Exception):
                server.stop()
        if self.registry is not None:
            with contextlib.suppress(Exception):
                self.registry.stop()


def build_world(
    root: Path,
    n: int,
    *,
    tags: Mapping[int, Mapping[str, str]] | None = None,
    extra_apps: Sequence[Any] = (),
    extra_files: Mapping[str, str] | None = None,
    releases: Sequence[str] = RELEASES,
    registry: bool = True,
    reconcile_interval: float = 3600.0,
    health_delay: float = 0.05,
) -> DriftWorld:
    """Build and start a world of ``n`` staging applications under ``root``.

    Args:
        root: An empty directory for the repository, the work tree and the registry storage.
        n: How many staging applications (and overlays).
        tags: Per application index, service -> tag overrides (default: every service at the
            newest of ``releases``).
        extra_apps: More ``AppSpec`` for the Argo CD emulator (their overlays in ``extra_files``).
        extra_files: More files of the first commit.
        releases: The versions whose images the registry holds.
        registry: Start the registry (a real ``docker-registry``) behind a counting proxy.
        reconcile_interval: Seconds between the Argo CD emulator's git polls (large: commits
            stay unseen until a refresh or ``reconcile``).
        health_delay: Seconds a synced Application stays Progressing.
    """
    from sandbox.argocd import AppSpec, ArgoCDEmulator
    from sandbox.github import GitHubEmulator

    base = load_config()
    config_file = root / "promotion.yaml"
    config_file.write_text(world_config(base, app_name(0)), encoding="utf-8")
    config = load_config(config_file)
    images = config.images()
    bare = root / "repo.git"
    work = root / "work"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    git("config", "http.receivepack", "true", cwd=bare)
    git("init", "--quiet", "--initial-branch=main", str(work))
    files: dict[str, str] = {
        "base/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\nresources:\n" + "".join(f"  - {s}.yaml\n" for s in sorted(images)),
    }
    for service, image in images.items():
        files[f"base/{service}.yaml"] = service_manifest(service, image)
    newest = releases[-1] if releases else "v1.0.0"
    for i in range(n):
        wanted = {s: (tags or {}).get(i, {}).get(s, newest) for s in images}
        files[f"{app_path(i)}/kustomization.yaml"] = overlay_text(app_name(i), images, wanted)
    files.update(extra_files or {})
    for path, text in files.items():
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", f"{n} staging applications", cwd=work)
    git("push", "--quiet", str(bare), "HEAD:refs/heads/main", cwd=work)

    github_token = "ghp_" + secrets.token_hex(16)
    argocd_token = "argocd_" + secrets.token_hex(16)
    gh = GitHubEmulator(bare, REPOSITORY, tokens={github_token: "release-bot"})
    prefix = f"/{REPOSITORY}.git/"
    gh_counter = CountingASGI(
        gh.app,
        lambda p: "git" if p.startswith(prefix) else ("api" if p.startswith("/api/") else ""),
    )
    servers: list[RunningServer] = []
    gh_server = serve_in_thread(gh_counter)
    servers.append(gh_server)
    gh.bind(gh_server.url)

    specs = [AppSpec(name=app_name(i), path=app_path(i), environment=ENVIRONMENT) for i in range(n)]
    argo_kwargs: dict[str, Any] = {
        "token": argocd_token,
        "reconcile_interval": reconcile_interval,
        "health_delay": health_delay,
        "repo_url": gh.git_url,
    }
    argo = ArgoCDEmulator(bare, [*specs, *extra_apps], **argo_kwargs)
    argo_counter = CountingASGI(argo.app, lambda p: "api" if p.startswith("/api/") else "")
    argo_server = serve_in_thread(argo_counter)
    servers.append(argo_server)
    argo.start()

    world = DriftWorld(
        root=root,
        n=n,
        config=config,
        config_file=config_file,
        bare=bare,
        work=work,
        github=gh,
        github_counter=gh_counter,
        argocd=argo,
        argocd_counter=argo_counter,
        argocd_token=argocd_token,
        github_token=github_token,
        servers=servers,
        argocd_url=argo_server.url,
    )
    git("remote", "add", "origin", gh.git_url, cwd=work)
    if registry:
        try:
            from sandbox.registry import LocalRegistry

            reg = LocalRegistry(root / "registry")
            reg.start()
            world.registry = reg
            for tag in releases:
                reg.publish(config.registry.path, list(config.services), tag)
            proxy = CountingProxy(str(reg.url))
            world.registry_proxy = proxy
            proxy_server = serve_in_thread(proxy)
            servers.append(proxy_server)
            world.registry_url = proxy_server.url
        except BaseException:
            world.close()
            raise
    return world


def publish_release(world: DriftWorld, tag: str) -> None:
    """Publish ``tag`` for every service of the release in the world's registry."""
    world.registry.publish(world.config.registry.path, list(world.config.services), tag)


# -- running the audit -----------------------------------------------------------------------------


@contextlib.contextmanager
def pointed_at(env: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration (the flow reads its settings from them)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_audit(
    world: DriftWorld, env: Mapping[str, str] | None = None, **parameters: Any
) -> tuple[Any, float]:
    """Run ``audit_drift`` against the world (``env`` overrides its settings); return
    (the final state, seconds)."""
    from flows.drift import audit_drift

    if not world.registry_url:
        parameters.setdefault("check_release", False)
    with pointed_at({**world.env(), **(env or {})}):
        started = time.perf_counter()
        state = audit_drift(return_state=True, **parameters)
        return state, time.perf_counter() - started


def flow_run_seconds(state: Any) -> float:
    """Start to end of the flow run as the Prefect server recorded it."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    if run.start_time is None or run.end_time is None:
        return float("nan")
    return float((run.end_time - run.start_time).total_seconds())


def bench(sizes: Sequence[int], drift_every: int) -> list[dict[str, Any]]:
    results = []
    for n in sizes:
        root = Path(tempfile.mkdtemp(prefix=f"drift-bench-{n}-"))
        try:
            t0 = time.perf_counter()
            world = build_world(root, n)
            setup = time.perf_counter() - t0
            try:
                if drift_every:
                    with world.argocd_api() as api:
                        for i in range(0, n, drift_every):
                            api.patch(
                                f"/api/v1/applications/{app_name(i)}",
                                json={
                                    "patch": json.dumps(
                                        {"spec": {"syncPolicy": {"automated": {"enabled": False}}}}
                                    ),
                                    "patchType": "merge",
                                },
                            ).raise_for_status()
                world.reset_calls()
                state, seconds = run_audit(world)
                result = state.result(raise_on_failure=False)
                calls = world.calls()
                run_seconds = flow_run_seconds(state)
                row = {
                    "applications": n,
                    "seconds": round(seconds, 2),
                    "run_seconds": round(run_seconds, 2),
                    "argocd_calls": calls["argocd"],
                    "github_calls": calls["github"],
                    "registry_calls": calls["registry"],
                    "drifting": result if isinstance(result, int) else repr(result),
                    "state": state.type.value,
                    "setup_seconds": round(setup, 1),
                }
            finally:
                world.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)
        results.append(row)
        print(
            f"{row['applications']:>6} apps  {row['seconds']:>6.2f} s (flow run "
            f"{row['run_seconds']:.2f} s)  calls: argocd "
            f"{row['argocd_calls']}, github {row['github_calls']}, registry "
            f"{row['registry_calls']}  (drifting {row['drifting']}, {row['state']}, "
            f"setup {row['setup_seconds']} s)",
            flush=True,
        )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument(
        "--drift-every", type=int, default=0, help="turn auto-sync off on every k-th application"
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if os.environ.get("PREFECT_API_URL"):
        bench(sizes, args.drift_every)
        return 0
    from prefect.logging.handlers import APILogWorker

    from deployments.local import LocalPrefect

    with LocalPrefect() as prefect, prefect.use():
        os.environ["PREFECT_API_URL"] = prefect.api_url
        bench(sizes, args.drift_every)
        APILogWorker.drain_all(timeout=5)  # send the last logs while the server listens
    return 0


if __name__ == "__main__":
    sys.exit(main())
