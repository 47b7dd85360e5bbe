"""Route handlers for the user, the repository, branches and protection, git refs, git data
(blobs, trees, commits), commits, compare and contents."""

from __future__ import annotations

import base64
import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sandbox.github.core import Core
from sandbox.github.gitrepo import GitError, Person
from sandbox.github.models import (
    Protection,
    iso,
    node_id,
    now,
    parse_iso,
)
from sandbox.github.routing import (
    ApiError,
    Reply,
    Request,
    not_found,
    validation_failed,
)


class RepositoryRoutes(Core):
    """The user, the repository, branches, refs, git data, commits and contents."""

    # users, repository, branches

    def get_user(self, req: Request) -> Reply:
        data = self.user_json(req.login)
        data.update(
            {
                "name": req.login,
                "company": None,
                "blog": "",
                "location": None,
                "email": None,
                "hireable": None,
                "bio": None,
                "twitter_username": None,
                "public_repos": 1,
                "public_gists": 0,
                "followers": 0,
                "following": 0,
                "created_at": iso(self.created_at),
                "updated_at": iso(self.created_at),
                "private_gists": 0,
                "total_private_repos": 1,
                "owned_private_repos": 1,
                "disk_usage": 1,
                "collaborators": 0,
                "two_factor_authentication": True,
                "plan": {
                    "name": "free",
                    "space": 976562499,
                    "private_repos": 10000,
                    "collaborators": 0,
                },
            }
        )
        return Reply(200, data)

    def get_rate_limit(self, req: Request) -> Reply:
        reset = int(time.time()) + 3600
        core = {"limit": 5000, "used": 0, "remaining": 5000, "reset": reset}
        small = {"limit": 30, "used": 0, "remaining": 30, "reset": reset}
        return Reply(
            200,
            {
                "resources": {"core": core, "search": small, "graphql": core},
                "rate": core,
            },
        )

    def get_repo(self, req: Request) -> Reply:
        self._check_repo(req)
        return Reply(200, self.repo_json(full=True))

    def _short_branch(self, name: str, sha: str) -> dict[str, Any]:
        with self._lock:
            protected = self._protection.get(name, Protection()).enabled
        return {
            "name": name,
            "commit": {"sha": sha, "url": f"{self.repo_url}/commits/{sha}"},
            "protected": protected,
            "protection": self._branch_protection_summary(name),
            "protection_url": f"{self.repo_url}/branches/{quote(name)}/protection",
        }

    def list_branches(self, req: Request) -> Reply:
        self._check_repo(req)
        items = [self._short_branch(n, s) for n, s in sorted(self.branches().items())]
        return self._page(req, items)

    def get_branch_rules(self, req: Request) -> Reply:
        """Active rules for a branch (it need not exist), from the repository's rulesets."""
        self._check_repo(req)
        return self._page(req, self.branch_rules_json(req.params["branch"]))

    def get_branch(self, req: Request) -> Reply:
        self._check_repo(req)
        name = req.params["branch"]
        sha = self._branch_sha(name)
        if sha is None:
            raise ApiError(404, "Branch not found")
        with self._lock:
            prot = self._protection.get(name, Protection())
        return Reply(
            200,
            {
                "name": name,
                "commit": self.commit_json(sha),
                "_links": {
                    "self": f"{self.repo_url}/branches/{quote(name)}",
                    "html": f"{self.html_url}/tree/{quote(name)}",
                },
                "protected": prot.enabled,
                "protection": self._branch_protection_summary(name),
                "protection_url": f"{self.repo_url}/branches/{quote(name)}/protection",
            },
        )

    def get_protection(self, req: Request) -> Reply:
        self._check_repo(req)
        name = req.params["branch"]
        if self._branch_sha(name) is None:
            raise ApiError(404, "Branch not found")
        with self._lock:
            prot = self._protection.get(name)
        if prot is None or not prot.enabled:
            raise ApiError(404, "Branch not protected")
        return Reply(200, self.protection_json(name))

    def put_protection(self, req: Request) -> Reply:
        self._check_repo(req)
        name = req.params["branch"]
        if self._branch_sha(name) is None:
            raise ApiError(404, "Branch not found")
        body = self._body(req)
        missing = [
            k
            for k in (
                "required_status_checks",
                "enforce_admins",
                "required_pull_request_reviews",
                "restrictions",
            )
            if k not in body
        ]
        if missing:
            raise validation_failed(
                *[f"{k} is missing" for k in missing],
                message="Invalid request.\n\n"
                + ", ".join(f'"{k}"' for k in missing)
                + " wasn't supplied.",
            )
        checks = body.get("required_status_checks")
        reviews = body.get("required_pull_request_reviews")
        contexts: list[str] = []
        strict = False
        if isinstance(checks, dict):
            strict = bool(checks.get("strict", False))
            contexts = [str(c) for c in checks.get("contexts") or []]
            contexts += [
                str(c["context"])
                for c in checks.get("checks") or []
                if c.get("context") not in contexts
            ]
        with self._lock:
            prot = Protection(contexts=contexts, strict=strict)
            if isinstance(reviews, dict):
                prot.required_reviews = int(reviews.get("required_approving_review_count", 1))
                prot.dismiss_stale_reviews = bool(reviews.get("dismiss_stale_reviews", False))
            self._protection[name] = prot
        return Reply(200, self.protection_json(name))

    def delete_protection(self, req: Request) -> Reply:
        self._check_repo(req)
        name = req.params["branch"]
        with self._lock:
            if name not in self._protection or not self._protection[name].enabled:
                raise ApiError(404, "Branch not protected")
            self._protection[name] = Protection()
        return Reply(204, None)

    # git refs

    def _full_ref(self, ref: str) -> str:
        return ref if ref.startswith("refs/") else f"refs/{ref}"

    def get_ref(self, req: Request) -> Reply:
        self._check_repo(req)
        ref = self._full_ref(req.params["ref"])
        sha = self.repo.ref_sha(ref)
        if sha is None:
            raise not_found()
        return Reply(200, self._ref_json(ref, sha))

    def matching_refs(self, req: Request) -> Reply:
        self._check_repo(req)
        prefix = self._full_ref(req.params["ref"])
        items = [
            self._ref_json(name, sha)
            for name, sha in self.repo.refs("refs/")
            if name.startswith(prefix) and not name.startswith("refs/pull/")
        ]
        return self._page(req, items)

    def list_refs(self, req: Request) -> Reply:
        self._check_repo(req)
        items = [
            self._ref_json(name, sha)
            for name, sha in self.repo.refs("refs/")
            if not name.startswith("refs/pull/")
        ]
        return self._page(req, items)

    def create_ref(self, req: Request) -> Reply:
        self._check_repo(req)
        body = self._body(req)
        ref, sha = body.get("ref"), body.get("sha")
        if not isinstance(ref, str) or not isinstance(sha, str):
            raise validation_failed(message='Invalid request.\n\n"ref" and "sha" must be given.')
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise ApiError(
                422, "Reference name must start with 'refs/' and have at least two slashes."
            )
        with self._lock:
            if self.repo.object_type(sha) is None:
                raise ApiError(422, "Object does not exist")
            if self.repo.ref_sha(ref) is not None:
                raise ApiError(422, "Reference already exists")
            try:
                self.repo.update_ref(ref, sha, "0" * 40)
            except GitError as exc:
                raise ApiError(422, "Reference update failed") from exc
            self._refs_changed()
        return Reply(201, self._ref_json(ref, sha), {"Location": f"{self.repo_url}/git/{ref}"})

    def update_ref(self, req: Request) -> Reply:
        self._check_repo(req)
        ref = self._full_ref(req.params["ref"])
        body = self._body(req)
        sha = body.get("sha")
        if not isinstance(sha, str):
            raise validation_failed(message='Invalid request.\n\n"sha" wasn\'t supplied.')
        force = bool(body.get("force", False))
        with self._lock:
            old = self.repo.ref_sha(ref)
            if old is None:
                raise ApiError(422, "Reference does not exist")
            if self.repo.object_type(sha) is None:
                raise ApiError(422, "Object does not exist")
            if not force and not self.repo.is_ancestor(old, sha):
                raise ApiError(422, "Update is not a fast forward")
            self.repo.update_ref(ref, sha, old)
            self._refs_changed()
        return Reply(200, self._ref_json(ref, sha))

    def delete_ref(self, req: Request) -> Reply:
        self._check_repo(req)
        ref = self._full_ref(req.params["ref"])
        with self._lock:
            if self.repo.ref_sha(ref) is None:
                raise ApiError(422, "Reference does not exist")
            self.repo.delete_ref(ref)
            if ref.startswith("refs/heads/"):
                branch = ref.removeprefix("refs/heads/")
                for pr in self._pulls.values():
                    if pr.state == "open" and pr.head_ref == branch:
                        pr.state = "closed"
                        pr.closed_at = pr.updated_at = now()
                        pr.base_sha_at_close = self._branch_sha(pr.base_ref)
        return Reply(204, None)

    # git data

    def create_blob(self, req: Request) -> Reply:
        self._check_repo(req)
        body = self._body(req)
        content = body.get("content")
        encoding = body.get("encoding", "utf-8")
        if not isinstance(content, str):
            raise validation_failed(message='Invalid request.\n\n"content" wasn\'t supplied.')
        if encoding == "base64":
            try:
                data = base64.b64decode(content, validate=False)
            except ValueError as exc:
                raise ApiError(422, "content is not valid Base64") from exc
        elif encoding in {"utf-8", "utf8"}:
            data = content.encode()
        else:
            raise ApiError(422, f"encoding must be utf-8 or base64, not {encoding!r}")
        with self._lock:
            sha = self.repo.hash_blob(data)
        url = f"{self.repo_url}/git/blobs/{sha}"
        return Reply(201, {"url": url, "sha": sha}, {"Location": url})

    def get_blob(self, req: Request) -> Reply:
        self._check_repo(req)
        sha = req.params["file_sha"]
        if self.repo.object_type(sha) != "blob":
            raise not_found()
        data = self.repo.read_object(sha)
        encoded = base64.encodebytes(data).decode()
        return Reply(
            200,
            {
                "sha": self.repo.resolve(sha) or sha,
                "node_id": node_id("B", sha),
                "size": len(data),
                "url": f"{self.repo_url}/git/blobs/{sha}",
                "content": encoded,
                "encoding": "base64",
            },
        )

    def _tree_json(self, sha: str, recursive: bool) -> dict[str, Any]:
        entries = []
        for entry in self.repo.ls_tree(sha, recursive=recursive):
            item: dict[str, Any] = {
                "path": entry.path,
                "mode": entry.mode,
                "type": entry.type,
                "sha": entry.sha,
                "url": f"{self.repo_url}/git/{entry.type}s/{entry.sha}",
            }
            if entry.size is not None:
                item["size"] = entry.size
            entries.append(item)
        return {
            "sha": sha,
            "url": f"{self.repo_url}/git/trees/{sha}",
            "tree": entries,
            "truncated": False,
        }

    def create_tree(self, req: Request) -> Reply:
        self._check_repo(req)
        body = self._body(req)
        items = body.get("tree")
        if not isinstance(items, list):
            raise validation_failed(message='Invalid request.\n\n"tree" wasn\'t supplied.')
        base_tree = body.get("base_tree")
        with self._lock:
            base = None
            if base_tree is not None:
                base = self.repo.resolve(str(base_tree), "tree")
                if base is None:
                    raise ApiError(422, "base_tree is not a valid tree oid")
            changes: list[tuple[str, str | None, str | None, str]] = []
            for item in items:
                path, mode, kind = item.get("path"), item.get("mode"), item.get("type", "blob")
                if (
                    not isinstance(path, str)
                    or not path
                    or mode
                    not in {
                        "100644",
                        "100755",
                        "040000",
                        "160000",
                        "120000",
                    }
                ):
                    raise ApiError(422, "tree.path and tree.mode are required")
                if "content" in item and item["content"] is not None:
                    sha: str | None = self.repo.hash_blob(str(item["content"]).encode())
                    kind = "blob"
                else:
                    sha = item.get("sha")
                    if sha is not None:
                        actual = self.repo.object_type(sha)
                        if actual is None:
                            raise ApiError(422, f"tree.sha {sha} is not a valid {kind}")
                        kind = actual
                changes.append((path, mode, sha, kind))
            tree = self.repo.build_tree(base, changes)
        data = self._tree_json(tree, recursive=False)
        return Reply(201, data, {"Location": data["url"]})

    def get_tree(self, req: Request) -> Reply:
        self._check_repo(req)
        sha = self.repo.resolve(req.params["tree_sha"], "tree")
        if sha is None:
            raise not_found()
        recursive = req.query.get("recursive", "") not in {"", "0", "false"}
        return Reply(200, self._tree_json(sha, recursive))

    def _person(self, data: Any, login: str, default_date: datetime) -> Person:
        if isinstance(data, dict) and data.get("name") and data.get("email"):
            return Person(str(data["name"]), str(data["email"]), parse_iso(data.get("date")))
        return Person(login, f"{login}@users.noreply.github.com", default_date)

    def create_commit(self, req: Request) -> Reply:
        self._check_repo(req)
        body = self._body(req)
        message, tree = body.get("message"), body.get("tree")
        parents = body.get("parents", [])
        if not isinstance(message, str) or not isinstance(tree, str):
            raise validation_failed(
                message='Invalid request.\n\n"message" and "tree" are required.'
            )
        with self._lock:
            if self.repo.object_type(tree) != "tree":
                raise ApiError(422, "Tree SHA does not exist")
            for parent in parents:
                if self.repo.object_type(str(parent)) != "commit":
                    raise ApiError(422, "Parent SHA does not exist or is not a commit object")
            stamp = now()
            author = self._person(body.get("author"), req.login, stamp)
            committer = self._person(body.get("committer"), req.login, stamp)
            if body.get("committer") is None and body.get("author") is not None:
                committer = author
            sha = self.repo.commit_tree(tree, [str(p) for p in parents], message, author, committer)
        data = self.git_commit_json(self.repo.read_commit(sha))
        return Reply(201, data, {"Location": data["url"]})

    def get_git_commit(self, req: Request) -> Reply:
        self._check_repo(req)
        sha = req.params["commit_sha"]
        if self.repo.object_type(sha) != "commit":
            raise not_found()
        full = self.repo.resolve(sha) or sha
        return Reply(200, self.git_commit_json(self.repo.read_commit(full)))

    def get_commit(self, req: Request) -> Reply:
        self._check_repo(req)
        sha = self.repo.resolve(req.params["ref"], "commit")
        if sha is None:
            raise ApiError(422, f"No commit found for SHA: {req.params['ref']}")
        return Reply(200, self.commit_json(sha, files=True))

    def list_commits(self, req: Request) -> Reply:
        self._check_repo(req)
        start = req.query.get("sha") or self.base_branch
        sha = self.repo.resolve(start, "commit")
        if sha is None:
            raise ApiError(404, f"No commit found for SHA: {start}")
        shas = self.repo.log(
            sha,
            path=req.query.get("path") or None,
            since=req.query.get("since"),
            until=req.query.get("until"),
            author=req.query.get("author"),
        )
        page = self._page(req, shas)
        return Reply(200, [self.commit_json(c) for c in page.body], page.headers)

    def compare(self, req: Request) -> Reply:
        self._check_repo(req)
        basehead = req.params["basehead"]
        if "..." not in basehead:
            raise not_found()
        base_name, head_name = basehead.split("...", 1)
        base = self.repo.resolve(base_name.split(":")[-1], "commit")
        head = self.repo.resolve(head_name.split(":")[-1], "commit")
        if base is None or head is None:
            raise not_found()
        merge_base = self.repo.merge_base(base, head)
        if merge_base is None:
            raise ApiError(404, f"No common ancestor between {base_name} and {head_name}.")
        ahead = self.repo.rev_list(base, head)
        behind = self.repo.rev_list(head, base)
        if not ahead and not behind:
            status = "identical"
        elif ahead and behind:
            status = "diverged"
        else:
            status = "ahead" if ahead else "behind"
        changes = self.repo.diff(merge_base, head)
        html = f"{self.html_url}/compare/{basehead}"
        return Reply(
            200,
            {
                "url": f"{self.repo_url}/compare/{basehead}",
                "html_url": html,
                "permalink_url": f"{self.html_url}/compare/{self.owner}:{base[:7]}...{self.owner}:{head[:7]}",
                "diff_url": f"{html}.diff",
                "patch_url": f"{html}.patch",
                "base_commit": self.commit_json(base),
                "merge_base_commit": self.commit_json(merge_base),
                "status": status,
                "ahead_by": len(ahead),
                "behind_by": len(behind),
                "total_commits": len(ahead),
                "commits": [self.commit_json(c) for c in ahead[:250]],
                "files": [self._file_json(c, head) for c in changes],
            },
        )

    # contents

    def _content_json(
        self, path: str, ref: str, entry_type: str, sha: str, size: int
    ) -> dict[str, Any]:
        q = quote(path)
        url = f"{self.repo_url}/contents/{q}?ref={quote(ref)}"
        git_url = f"{self.repo_url}/git/{'trees' if entry_type == 'dir' else 'blobs'}/{sha}"
        html = f"{self.html_url}/{'tree' if entry_type == 'dir' else 'blob'}/{ref}/{q}"
        return {
            "type": entry_type,
            "size": size,
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "url": url,
            "git_url": git_url,
            "html_url": html,
            "download_url": f"{self.base_url}/raw/{self.repository}/{ref}/{q}"
            if entry_type == "file"
            else None,
            "_links": {"self": url, "git": git_url, "html": html},
        }

    def get_contents(self, req: Request) -> Reply:
        self._check_repo(req)
        path = req.params["path"].strip("/")
        ref = req.query.get("ref") or self.base_branch
        commit = self.repo.resolve(ref, "commit")
        if commit is None:
            raise ApiError(404, f"No commit found for the ref {ref}")
        sha = self.repo.resolve(f"{commit}:{path}")
        kind = self.repo.object_type(sha) if sha else None
        if sha is None or kind is None:
            raise not_found()
        if kind == "tree":
            items = []
            for entry in self.repo.ls_tree(sha):
                entry_type = {"tree": "dir", "commit": "submodule"}.get(entry.type, "file")
                items.append(
                    self._content_json(
                        f"{path}/{entry.path}", ref, entry_type, entry.sha, entry.size or 0
                    )
                )
            return Reply(200, items)
        data = self.repo.read_object(sha)
        body = self._content_json(path, ref, "file", sha, len(data))
        body["content"] = base64.encodebytes(data).decode()
        body["encoding"] = "base64"
        return Reply(200, body)

    def put_contents(self, req: Request) -> Reply:
        self._check_repo(req)
        path = req.params["path"].strip("/")
        body = self._body(req)
        message, content = body.get("message"), body.get("content")
        if not isinstance(message, str) or not isinstance(content, str):
            raise validation_failed(
                message='Invalid request.\n\n"message" and "content" wasn\'t supplied.'
            )
        branch = str(body.get("branch") or self.base_branch)
        with self._lock:
            head = self._branch_sha(branch)
            if head is None:
                raise ApiError(404, f"Branch {branch} not found")
            existing = self.repo.resolve(f"{head}:{path}")
            given = body.get("sha")
            if existing is not None and given is None:
                raise ApiError(422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
            if existing is not None and given != existing:
                raise ApiError(409, f"{path} does not match {given}")
            blob = self.repo.hash_blob(base64.b64decode(content))
            tree = self.repo.build_tree(
                self.repo.resolve(head, "tree"), [(path, "100644", blob, "blob")]
            )
            stamp = now()
            author = self._person(body.get("author"), req.login, stamp)
            committer = self._person(body.get("committer"), req.login, stamp)
            sha = self.repo.commit_tree(tree, [head], message, author, committer)
            self.repo.update_ref(f"refs/heads/{branch}", sha, head)
            self._refs_changed()
        size = len(base64.b64decode(content))
        info = self.repo.read_commit(sha)
        commit = self.git_commit_json(info)
        return Reply(
            200 if existing is not None else 201,
            {"content": self._content_json(path, branch, "file", blob, size), "commit": commit},
        )
