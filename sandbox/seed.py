"""Seed the microservices-demo GitOps repository: a base plus staging and prod overlays.

The repository is a real bare git repository; the seed commits one tree to its base branch with
the configured services at one version in both overlays.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from promotion.config import PromotionConfig

GIT_ENV = {
    "GIT_AUTHOR_NAME": "sandbox",
    "GIT_AUTHOR_EMAIL": "sandbox@example.invalid",
    "GIT_COMMITTER_NAME": "sandbox",
    "GIT_COMMITTER_EMAIL": "sandbox@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(*args: str, cwd: str | os.PathLike[str] | None = None, input: str | None = None) -> str:
    """Run git with a fixed identity and no user or system configuration; return stdout."""
    env = {**os.environ, **GIT_ENV, "HOME": os.environ.get("HOME", "/nonexistent")}
    env["GIT_CONFIG_GLOBAL"] = "/dev/null"
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, input=input, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def service_manifest(service: str, image: str) -> str:
    port = 8080
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {service}
  labels:
    app: {service}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: {service}
  template:
    metadata:
      labels:
        app: {service}
    spec:
      containers:
        - name: server
          image: {image}:latest
          ports:
            - containerPort: {port}
          resources:
            requests:
              cpu: 100m
              memory: 64Mi
            limits:
              cpu: 200m
              memory: 128Mi
---
apiVersion: v1
kind: Service
metadata:
  name: {service}
  labels:
    app: {service}
spec:
  type: ClusterIP
  selector:
    app: {service}
  ports:
    - name: http
      port: 80
      targetPort: {port}
"""


def overlay_kustomization(env: str, images: dict[str, str], version: str) -> str:
    lines = [
        "# Managed by release-promotion: image tags change through promotion pull requests.",
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        f"namespace: {env}",
        "resources:",
        "  - ../base",
        "labels:",
        "  - pairs:",
        f"      environment: {env}",
        "images:",
    ]
    for service, image in sorted(images.items()):
        lines += [f"  - name: {image}  # {service}", f"    newTag: {version}"]
    return "\n".join(lines) + "\n"


def seed_files(config: PromotionConfig, version: str) -> dict[str, str]:
    """The files of the seeded repository, path -> content."""
    images = config.images()
    files = {
        "README.md": "# microservices-demo GitOps\n\nDesired state of the demo, per environment.\n",
        "kustomize/base/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\nresources:\n" + "".join(f"  - {s}.yaml\n" for s in sorted(images)),
    }
    for service, image in images.items():
        files[f"kustomize/base/{service}.yaml"] = service_manifest(service, image)
    for env in config.environments:
        files[env.overlay] = overlay_kustomization(env.name, images, version)
    return files


def seed_repository(bare: Path, config: PromotionConfig, version: str = "v1.0.0") -> str:
    """Create the bare repository ``bare`` with the seed on the base branch; return the commit sha."""
    branch = config.github.base_branch
    git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(bare))
    git("config", "http.receivepack", "true", cwd=bare)
    with tempfile.TemporaryDirectory() as work:
        git("init", "--quiet", f"--initial-branch={branch}", work)
        for path, content in seed_files(config, version).items():
            target = Path(work, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        git("add", "-A", cwd=work)
        git("commit", "--quiet", "-m", f"Seed microservices-demo at {version}", cwd=work)
        git("push", "--quiet", str(bare), f"HEAD:refs/heads/{branch}", cwd=work)
        return git("rev-parse", "HEAD", cwd=work).strip()


def several_applications(config: PromotionConfig, count: int) -> dict[str, PromotionConfig]:
    """``count`` applications shaped like ``config``: ``app-1`` ... ``app-<count>``, each with its
    own repository (``<owner>/app-<i>-gitops``), registry path (``<prefix>/app-<i>``) and Argo CD
    applications (``<env>-app-<i>``)."""
    owner = config.github.repository.split("/", 1)[0]
    out: dict[str, PromotionConfig] = {}
    for i in range(1, count + 1):
        name = f"app-{i}"
        out[name] = config.model_copy(
            update={
                "application": name,
                "github": config.github.model_copy(update={"repository": f"{owner}/{name}-gitops"}),
                "registry": config.registry.model_copy(
                    update={"prefix": f"{config.registry.prefix}/{name}"}
                ),
                "environments": tuple(
                    env.model_copy(update={"argocd_app": f"{env.name}-{name}"})
                    for env in config.environments
                ),
            }
        )
    return out


def applications_yaml(configs: dict[str, PromotionConfig]) -> str:
    """A promotion setup (``applications:`` format) for ``configs`` (JSON is YAML)."""
    import json

    apps = {
        name: c.model_dump(
            mode="json", exclude={"application", "notifications", "watch"}, exclude_none=True
        )
        for name, c in configs.items()
    }
    return json.dumps({"applications": apps}, indent=2) + "\n"
