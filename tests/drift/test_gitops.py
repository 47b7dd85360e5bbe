"""Reading overlays over real smart-HTTP git: one fetch for any number of files, token kept out."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bench.drift import CountingASGI
from promotion import gitops
from sandbox.github import GitHubEmulator
from sandbox.http import RunningServer, serve_in_thread
from sandbox.seed import git

TOKEN = "ghp_secret_token_0123456789"


class HeaderSpy:
    """Records the Authorization header of every git request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.auth: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            headers = dict(scope.get("headers") or [])
            self.auth.append(headers.get(b"authorization", b"").decode())
        await self.app(scope, receive, send)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[GitHubEmulator, CountingASGI, HeaderSpy]]:
    bare = tmp_path / "repo.git"
    work = tmp_path / "work"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    git("init", "--quiet", "--initial-branch=main", str(work))
    for i in range(60):
        target = work / f"apps/app-{i}/kustomization.yaml"
        target.parent.mkdir(parents=True)
        target.write_text(f"images:\n  - name: img\n    newTag: v{i}\n")
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "apps", cwd=work)
    git("push", "--quiet", str(bare), "HEAD:refs/heads/main", cwd=work)
    (work / "apps/app-0/kustomization.yaml").write_text("on another branch\n")
    git("commit", "--quiet", "-am", "other", cwd=work)
    git("push", "--quiet", str(bare), "HEAD:refs/heads/other", cwd=work)
    emu = GitHubEmulator(bare, "acme/gitops", tokens={TOKEN: "bot"})
    counter = CountingASGI(emu.app, lambda p: "git" if ".git/" in p else "")
    spy = HeaderSpy(counter)
    server: RunningServer = serve_in_thread(spy)
    emu.bind(server.url)
    yield emu, counter, spy
    server.stop()


def test_one_fetch_reads_any_number_of_files(
    served: tuple[GitHubEmulator, CountingASGI, HeaderSpy],
) -> None:
    emu, counter, _ = served
    few = gitops.read_files(emu.git_url, {"main": ["apps/app-1/kustomization.yaml"]})
    calls_few = counter.calls["git"]
    counter.calls.clear()
    paths = [f"apps/app-{i}/kustomization.yaml" for i in range(60)] + ["apps/nope/x.yaml"]
    many = gitops.read_files(emu.git_url, {"main": paths, "other": paths[:1]})
    assert counter.calls["git"] == calls_few  # both branches and 61 paths: same requests
    assert few["main"].files["apps/app-1/kustomization.yaml"] == (
        "images:\n  - name: img\n    newTag: v1\n"
    )
    assert many["main"].files["apps/app-59/kustomization.yaml"].endswith("newTag: v59\n")  # type: ignore[union-attr]
    assert many["main"].files["apps/nope/x.yaml"] is None
    assert many["other"].files["apps/app-0/kustomization.yaml"] == "on another branch\n"
    assert many["main"].revision == emu.head("main")
    assert many["other"].revision == emu.head("other")


def test_token_goes_in_a_header_never_in_messages(
    served: tuple[GitHubEmulator, CountingASGI, HeaderSpy],
) -> None:
    emu, _, spy = served
    gitops.read_files(emu.git_url, {"main": ["apps/app-1/kustomization.yaml"]}, SecretStr(TOKEN))
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert spy.auth and all(a == f"Basic {basic}" for a in spy.auth)
    with pytest.raises(gitops.GitFetchFailed) as failure:
        gitops.read_files(emu.git_url, {"no-such-branch": ["x"]}, SecretStr(TOKEN))
    message = str(failure.value)
    assert "no-such-branch" in message and emu.git_url in message
    assert TOKEN not in message and basic not in message
    assert not failure.value.transient


def test_unreachable_server_is_transient() -> None:
    with pytest.raises(gitops.GitFetchFailed) as failure:
        gitops.read_files(
            "http://user:pw@127.0.0.1:9/acme/gitops.git", {"main": ["x"]}, SecretStr(TOKEN)
        )
    assert failure.value.transient
    assert "user:pw" not in str(failure.value) and "127.0.0.1:9/acme/gitops.git" in str(
        failure.value
    )


def test_token_only_for_the_github_host() -> None:
    assert gitops.token_applies("https://api.github.com", "https://github.com/a/b.git")
    assert gitops.token_applies("http://127.0.0.1:5000/api/v3", "http://127.0.0.1:5000/a/b.git")
    assert not gitops.token_applies("https://api.github.com", "https://gitlab.com/a/b.git")
    assert gitops.redact_url("https://u:p@h:1/x.git") == "https://h:1/x.git"
