"""A real bare git repository driven through the git CLI plumbing.

The emulator keeps no copy of the repository's content: blobs, trees, commits and refs live in
the bare repository and every read and write goes through ``git`` (``hash-object``, ``mktree``,
``commit-tree``, ``update-ref``, ``merge-tree --write-tree``...), so what a clone over HTTP sees
is exactly what the REST API served.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sandbox.seed import GIT_ENV

ZERO_SHA = "0" * 40


class GitError(RuntimeError):
    """A git command failed; the message carries git's stderr."""


@dataclass(frozen=True)
class Person:
    name: str
    email: str
    date: datetime


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    tree: str
    parents: tuple[str, ...]
    author: Person
    committer: Person
    message: str


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    type: str
    sha: str
    path: str
    size: int | None


@dataclass(frozen=True)
class FileChange:
    """One file of a diff: status is added, removed, modified or renamed."""

    filename: str
    status: str
    additions: int
    deletions: int
    patch: str
    sha: str | None
    previous_filename: str | None = None


def _parse_person(value: str) -> Person:
    name, rest = value.split(" <", 1)
    email, rest = rest.split("> ", 1)
    stamp = rest.split(" ", 1)[0]
    return Person(name, email, datetime.fromtimestamp(int(stamp), UTC))


class GitRepo:
    """Plumbing operations on one bare repository."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._env = {**os.environ, **GIT_ENV, "GIT_CONFIG_GLOBAL": "/dev/null"}
        self._env["GIT_DIR"] = str(self.path)

    def run(
        self,
        *args: str,
        input: bytes | None = None,
        env: dict[str, str] | None = None,
        ok_codes: tuple[int, ...] = (0,),
    ) -> bytes:
        result = subprocess.run(
            ["git", *args],
            input=input,
            capture_output=True,
            env={**self._env, **(env or {})},
            check=False,
        )
        if result.returncode not in ok_codes:
            stderr = result.stderr.decode(errors="replace").strip()
            raise GitError(f"git {' '.join(args)} failed ({result.returncode}): {stderr}")
        return result.stdout

    def run_code(self, *args: str, input: bytes | None = None) -> tuple[int, bytes]:
        result = subprocess.run(
            ["git", *args], input=input, capture_output=True, env=self._env, check=False
        )
        return result.returncode, result.stdout

    # -- objects -----------------------------------------------------------------------------

    def resolve(self, rev: str, kind: str | None = None) -> str | None:
        """The sha ``rev`` names (peeled to ``kind`` if given), or None when it names nothing."""
        if not rev or rev.startswith("-"):
            return None
        spec = f"{rev}^{{{kind}}}" if kind else rev
        code, out = self.run_code("rev-parse", "--verify", "--quiet", "--end-of-options", spec)
        return out.decode().strip() if code == 0 else None

    def object_type(self, sha: str) -> str | None:
        if not sha or sha.startswith("-"):
            return None
        code, out = self.run_code("cat-file", "-t", sha)
        return out.decode().strip() if code == 0 else None

    def read_object(self, sha: str) -> bytes:
        kind = self.object_type(sha)
        if kind is None:
            raise GitError(f"no object {sha}")
        return self.run("cat-file", kind, sha)

    def hash_blob(self, data: bytes) -> str:
        return self.run("hash-object", "-w", "--stdin", input=data).decode().strip()

    def read_commit(self, sha: str) -> CommitInfo:
        raw = self.run("cat-file", "commit", sha).decode("utf-8", errors="replace")
        header, _, message = raw.partition("\n\n")
        tree = ""
        parents: list[str] = []
        author = committer = None
        for line in header.splitlines():
            key, _, value = line.partition(" ")
            if key == "tree":
                tree = value
            elif key == "parent":
                parents.append(value)
            elif key == "author":
                author = _parse_person(value)
            elif key == "committer":
                committer = _parse_person(value)
        assert author is not None and committer is not None
        return CommitInfo(sha, tree, tuple(parents), author, committer, message)

    def commit_tree(
        self, tree: str, parents: list[str], message: str, author: Person, committer: Person
    ) -> str:
        args = ["commit-tree", tree]
        for parent in parents:
            args += ["-p", parent]
        env = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_AUTHOR_DATE": f"@{int(author.date.timestamp())} +0000",
            "GIT_COMMITTER_NAME": committer.name,
            "GIT_COMMITTER_EMAIL": committer.email,
            "GIT_COMMITTER_DATE": f"@{int(committer.date.timestamp())} +0000",
        }
        return self.run(*args, input=message.encode(), env=env).decode().strip()

    def ls_tree(self, tree: str, recursive: bool = False) -> list[TreeEntry]:
        args = ["ls-tree", "-l", "-z"]
        if recursive:
            args += ["-r", "-t"]
        out = self.run(*args, tree).decode("utf-8", errors="replace")
        entries = []
        for record in out.split("\0"):
            if not record:
                continue
            meta, path = record.split("\t", 1)
            mode, kind, sha, size = meta.split()
            entries.append(TreeEntry(mode, kind, sha, path, None if size == "-" else int(size)))
        return entries

    def mktree(self, entries: list[tuple[str, str, str, str]]) -> str:
        """Write one tree level from (mode, type, sha, name) entries."""
        data = "".join(f"{mode} {kind} {sha}\t{name}\0" for mode, kind, sha, name in entries)
        return self.run("mktree", "-z", "--missing", input=data.encode()).decode().strip()

    def build_tree(
        self, base_tree: str | None, changes: list[tuple[str, str | None, str | None, str]]
    ) -> str:
        """Apply (path, mode, sha, type) changes to ``base_tree``; a None sha deletes the path."""
        root: dict[str, object] = {}
        if base_tree is not None:
            for entry in self.ls_tree(base_tree, recursive=True):
                if entry.type == "tree":
                    continue
                _put(root, entry.path.split("/"), (entry.mode, entry.type, entry.sha))
        for path, mode, sha, kind in changes:
            parts = [p for p in path.split("/") if p]
            if sha is None:
                _delete(root, parts)
            else:
                assert mode is not None
                if kind == "tree":
                    _delete(root, parts)
                    for entry in self.ls_tree(sha, recursive=True):
                        if entry.type != "tree":
                            _put(
                                root,
                                [*parts, *entry.path.split("/")],
                                (entry.mode, "blob", entry.sha),
                            )
                else:
                    _put(root, parts, (mode, kind, sha))
        return self._write_tree(root)

    def _write_tree(self, node: dict[str, object]) -> str:
        entries: list[tuple[str, str, str, str]] = []
        for name, value in sorted(node.items()):
            if isinstance(value, dict):
                if not value:
                    continue
                entries.append(("040000", "tree", self._write_tree(value), name))
            else:
                assert isinstance(value, tuple)
                mode, kind, sha = value
                entries.append((mode, kind, sha, name))
        return self.mktree(entries)

    # -- refs --------------------------------------------------------------------------------

    def refs(self, prefix: str = "refs/") -> list[tuple[str, str]]:
        out = self.run("for-each-ref", "--format=%(refname) %(objectname)", prefix).decode()
        return [tuple(line.split(" ", 1)) for line in out.splitlines() if line]  # type: ignore[misc]

    def ref_sha(self, ref: str) -> str | None:
        """The sha the ref named exactly ``ref`` points at, or None."""
        for name, sha in self.refs(ref):
            if name == ref:
                return sha
        return None

    def update_ref(self, ref: str, new: str, old: str | None = None) -> None:
        args = ["update-ref", ref, new]
        if old is not None:
            args.append(old)
        self.run(*args)

    def delete_ref(self, ref: str) -> None:
        self.run("update-ref", "-d", ref)

    # -- history and merges ------------------------------------------------------------------

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        code, _ = self.run_code("merge-base", "--is-ancestor", ancestor, descendant)
        return code == 0

    def merge_base(self, a: str, b: str) -> str | None:
        code, out = self.run_code("merge-base", a, b)
        return out.decode().strip() if code == 0 else None

    def merge_tree(self, base: str, head: str) -> str | None:
        """The tree of merging ``head`` into ``base``, or None on a conflict."""
        code, out = self.run_code("merge-tree", "--write-tree", "--no-messages", base, head)
        if code == 0:
            return out.decode().split("\n", 1)[0].strip()
        if code == 1:
            return None
        raise GitError(f"git merge-tree {base} {head} failed ({code})")

    def cherry_pick_tree(self, onto: str, commit: str, parent: str) -> str | None:
        """The tree of applying ``parent..commit`` onto ``onto`` (None on a conflict)."""
        index = self.path / f"sandbox-index-{os.getpid()}-{commit[:12]}"
        env = {"GIT_INDEX_FILE": str(index)}
        try:
            self.run("read-tree", "-i", "-m", "--aggressive", parent, onto, commit, env=env)
            code = subprocess.run(
                ["git", "write-tree"], env={**self._env, **env}, capture_output=True, check=False
            )
            if code.returncode != 0:
                return None
            return code.stdout.decode().strip()
        except GitError:
            return None
        finally:
            index.unlink(missing_ok=True)

    def rev_list(self, exclude: str, include: str) -> list[str]:
        """Commits reachable from ``include`` and not from ``exclude``, oldest first."""
        out = self.run("rev-list", "--reverse", "--topo-order", include, f"^{exclude}")
        return out.decode().split()

    def log(
        self,
        rev: str,
        path: str | None = None,
        since: str | None = None,
        until: str | None = None,
        author: str | None = None,
    ) -> list[str]:
        """Commits reachable from ``rev``, newest first, optionally touching ``path``."""
        args = ["rev-list", "--topo-order"]
        if since:
            args.append(f"--since={since}")
        if until:
            args.append(f"--until={until}")
        if author:
            args.append(f"--author={author}")
        args.append(rev)
        if path:
            args += ["--", path]
        return self.run(*args).decode().split()

    def diff(self, old: str, new: str, patches: bool = True) -> list[FileChange]:
        """The files that differ between two commits or trees (with a patch each if asked)."""
        numstat = self.run("diff-tree", "-r", "-z", "--numstat", "-M", old, new).decode()
        status_out = self.run("diff-tree", "-r", "-z", "--raw", "-M", old, new).decode()
        counts: dict[str, tuple[int, int]] = {}
        fields = numstat.split("\0")
        i = 0
        while i < len(fields):
            record = fields[i]
            if not record:
                i += 1
                continue
            add, delete, path = record.split("\t", 2)
            if path == "":  # a rename: the two paths follow
                path = fields[i + 2]
                i += 2
            counts[path] = (
                int(add) if add.isdigit() else 0,
                int(delete) if delete.isdigit() else 0,
            )
            i += 1
        changes: list[FileChange] = []
        parts = status_out.split("\0")
        i = 0
        names = {"A": "added", "D": "removed", "M": "modified", "R": "renamed", "T": "changed"}
        while i < len(parts):
            meta = parts[i]
            if not meta.startswith(":"):
                i += 1
                continue
            _, _, _, new_sha, status = meta[1:].split(" ")
            letter = status[0]
            previous = None
            if letter in "RC":
                previous, path = parts[i + 1], parts[i + 2]
                i += 3
            else:
                path = parts[i + 1]
                i += 2
            patch = ""
            if patches:
                text = self.run("diff", old, new, "--", path).decode("utf-8", errors="replace")
                patch = text[text.find("@@") :] if "@@" in text else ""
            added, deleted = counts.get(path, (0, 0))
            changes.append(
                FileChange(
                    path,
                    names.get(letter, "modified"),
                    added,
                    deleted,
                    patch,
                    None if set(new_sha) == {"0"} else new_sha,
                    previous,
                )
            )
        return changes

    def archive(self, rev: str, dest: Path) -> None:
        """Write the tree of ``rev`` into the directory ``dest``."""
        data = self.run("archive", "--format=tar", rev)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(dest, filter="data")

    def read_path(self, rev: str, path: str) -> bytes | None:
        code, out = self.run_code("cat-file", "blob", f"{rev}:{path}")
        return out if code == 0 else None


def _put(root: dict[str, object], parts: list[str], value: tuple[str, str, str]) -> None:
    node = root
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _delete(root: dict[str, object], parts: list[str]) -> None:
    node = root
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            return
        node = child
    node.pop(parts[-1], None)
