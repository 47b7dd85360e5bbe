"""Route handlers for pull requests: create, read, list, update, merge, files, commits,
reviews, and their issue view and comments."""

from __future__ import annotations

from typing import Any

from sandbox.github.core import Core
from sandbox.github.gitrepo import Person
from sandbox.github.models import (
    GITHUB_PERSON,
    MERGE_METHODS,
    Comment,
    PullRequest,
    Review,
    iso,
    node_id,
    now,
)
from sandbox.github.routing import (
    ApiError,
    Reply,
    Request,
    not_found,
    validation_failed,
)


class PullRoutes(Core):
    """Pull requests, their merge, reviews, issue view and comments."""

    def list_pulls(self, req: Request) -> Reply:
        self._check_repo(req)
        state = req.query.get("state", "open")
        head = req.query.get("head")
        base = req.query.get("base")
        with self._lock:
            pulls = sorted(self._pulls.values(), key=lambda p: -p.number)
        if state != "all":
            pulls = [p for p in pulls if p.state == state]
        if head:
            owner, _, branch = head.partition(":")
            if not branch:
                owner, branch = self.owner, owner
            pulls = [
                p for p in pulls if owner.lower() == self.owner.lower() and p.head_ref == branch
            ]
        if base:
            pulls = [p for p in pulls if p.base_ref == base]
        # GitHub: sort is created (default), updated, popularity (comments) or long-running;
        # direction defaults to desc for created (or no sort), asc otherwise.
        sort = req.query.get("sort", "created")
        if sort not in {"created", "updated", "popularity", "long-running"}:
            raise validation_failed(
                message=f'Invalid request.\n\n"{sort}" is not a member of ["created", "updated", '
                '"popularity", "long-running"].'
            )
        direction = req.query.get("direction") or ("desc" if sort == "created" else "asc")
        with self._lock:
            comments = {n: sum(1 for c in self._comments if c.number == n) for n in self._pulls}

        def key(pr: PullRequest) -> tuple[Any, int]:
            if sort == "updated":
                return pr.updated_at, pr.number
            if sort == "popularity":
                return comments.get(pr.number, 0), pr.number
            if sort == "long-running":
                return -pr.created_at.timestamp(), -pr.number
            return pr.created_at, pr.number

        pulls.sort(key=key, reverse=direction == "desc")
        return self._page(req, [self.pull_json(p, full=False) for p in pulls])

    def create_pull(self, req: Request) -> Reply:
        self._check_repo(req)
        body = self._body(req)
        title, head, base = body.get("title"), body.get("head"), body.get("base")
        if not isinstance(head, str) or not isinstance(base, str):
            raise validation_failed(message='Invalid request.\n\n"head" and "base" are required.')
        if not isinstance(title, str) or not title:
            raise validation_failed(
                {"resource": "PullRequest", "field": "title", "code": "missing_field"}
            )
        owner, _, branch = head.partition(":")
        if not branch:
            owner, branch = self.owner, owner
        with self._lock:
            head_sha = self._branch_sha(branch) if owner.lower() == self.owner.lower() else None
            if head_sha is None:
                raise validation_failed(
                    {"resource": "PullRequest", "field": "head", "code": "invalid"}
                )
            base_sha = self._branch_sha(base)
            if base_sha is None:
                raise validation_failed(
                    {"resource": "PullRequest", "field": "base", "code": "invalid"}
                )
            for other in self._pulls.values():
                if other.state == "open" and other.head_ref == branch and other.base_ref == base:
                    raise validation_failed(
                        {
                            "resource": "PullRequest",
                            "code": "custom",
                            "message": f"A pull request already exists for {self.owner}:{branch}.",
                        }
                    )
            if not self.repo.rev_list(base_sha, head_sha):
                raise validation_failed(
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": f"No commits between {base} and {branch}",
                    }
                )
            number = max(self._pulls, default=0) + 1
            stamp = now()
            pr = PullRequest(
                number=number,
                id=self._next_id(),
                title=title,
                body=body.get("body"),
                head_ref=branch,
                base_ref=base,
                user=req.login,
                head_sha=head_sha,
                created_at=stamp,
                updated_at=stamp,
                draft=bool(body.get("draft", False)),
                maintainer_can_modify=bool(body.get("maintainer_can_modify", False)),
            )
            self._pulls[number] = pr
            self.repo.update_ref(f"refs/pull/{number}/head", head_sha)
            self._start_check(pr)
        data = self.pull_json(pr)
        return Reply(201, data, {"Location": data["url"]})

    def get_pull(self, req: Request) -> Reply:
        self._check_repo(req)
        return Reply(200, self.pull_json(self._pr(req.params["pull_number"])))

    def update_pull(self, req: Request) -> Reply:
        self._check_repo(req)
        pr = self._pr(req.params["pull_number"])
        body = self._body(req)
        with self._lock:
            if "title" in body and isinstance(body["title"], str):
                pr.title = body["title"]
            if "body" in body:
                pr.body = body["body"]
            if "base" in body and isinstance(body["base"], str):
                if self._branch_sha(body["base"]) is None:
                    raise validation_failed(
                        {"resource": "PullRequest", "field": "base", "code": "invalid"}
                    )
                pr.base_ref = body["base"]
            state = body.get("state")
            if state == "closed" and pr.state == "open":
                pr.state = "closed"
                pr.closed_at = now()
                pr.head_sha = self._branch_sha(pr.head_ref) or pr.head_sha
                pr.base_sha_at_close = self._branch_sha(pr.base_ref)
            elif state == "open" and pr.state == "closed":
                if pr.merged_at is not None:
                    raise ApiError(422, "Cannot reopen a merged pull request")
                if self._branch_sha(pr.head_ref) is None:
                    raise ApiError(422, "Cannot reopen: the head branch was deleted")
                pr.state = "open"
                pr.closed_at = None
                self._refs_changed()
            elif state not in {None, "open", "closed"}:
                raise validation_failed(
                    {"resource": "PullRequest", "field": "state", "code": "invalid"}
                )
            pr.updated_at = now()
        return Reply(200, self.pull_json(pr))

    def is_merged(self, req: Request) -> Reply:
        self._check_repo(req)
        pr = self._pr(req.params["pull_number"])
        if pr.merged_at is None:
            raise not_found()
        return Reply(204, None)

    def merge_pull(self, req: Request) -> Reply:
        self._check_repo(req)
        pr = self._pr(req.params["pull_number"])
        body = self._body(req)
        method = body.get("merge_method", "merge")
        if method not in MERGE_METHODS:
            raise validation_failed(
                message=f'Invalid request.\n\n"{method}" is not a member of ["merge", "squash", "rebase"].'
            )
        with self._lock:
            if pr.state != "open":
                raise ApiError(405, "Pull Request is not mergeable")
            head = self._pr_head_sha(pr)
            expected = body.get("sha")
            if expected is not None and expected != head:
                raise ApiError(409, "Head branch was modified. Review and try the merge again.")
            if any(r.merge_queue for r in self.rulesets_for(pr.base_ref)):
                raise ApiError(405, "Changes must be made through the merge queue")
            state = self._merge_state(pr)
            if state.state in {"dirty", "blocked", "behind", "draft"} or state.tree is None:
                raise ApiError(
                    405, state.reasons[0] if state.reasons else "Pull Request is not mergeable"
                )
            base = self._pr_base_sha(pr)
            sha = self._make_merge_commit(pr, method, base, head, state.tree, body, req.login)
            if sha is None:
                raise ApiError(405, "This branch can't be rebased")
            self.repo.update_ref(f"refs/heads/{pr.base_ref}", sha, base)
            stamp = now()
            pr.state = "closed"
            pr.merged_at = pr.closed_at = pr.updated_at = stamp
            pr.merged_by = req.login
            pr.merge_commit_sha = sha
            pr.head_sha = head
            pr.base_sha_at_close = base
            self._refs_changed()
        return Reply(
            200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}
        )

    def _make_merge_commit(
        self,
        pr: PullRequest,
        method: str,
        base: str,
        head: str,
        tree: str,
        body: dict[str, Any],
        login: str,
    ) -> str | None:
        stamp = now()
        github = Person(*GITHUB_PERSON, stamp)
        merger = Person(login, f"{login}@users.noreply.github.com", stamp)
        title = body.get("commit_title")
        extra = body.get("commit_message")
        if method == "merge":
            title = title or f"Merge pull request #{pr.number} from {self.owner}/{pr.head_ref}"
            message = f"{title}\n\n{extra if extra is not None else pr.title}\n"
            return self.repo.commit_tree(tree, [base, head], message, merger, github)
        commits = self.repo.rev_list(base, head)
        if method == "squash":
            title = title or f"{pr.title} (#{pr.number})"
            if extra is None:
                subjects = [self.repo.read_commit(c).message.strip() for c in commits]
                extra = "\n\n".join(f"* {s}" for s in subjects) if len(subjects) > 1 else ""
            message = f"{title}\n\n{extra}\n" if extra else f"{title}\n"
            author = Person(pr.user, f"{pr.user}@users.noreply.github.com", stamp)
            return self.repo.commit_tree(tree, [base], message, author, github)
        current = base
        for commit in commits:
            info = self.repo.read_commit(commit)
            if len(info.parents) != 1:
                continue  # merge commits are dropped, as a rebase does
            new_tree = self.repo.cherry_pick_tree(current, commit, info.parents[0])
            if new_tree is None:
                return None
            current = self.repo.commit_tree(new_tree, [current], info.message, info.author, github)
        return current

    def pull_files(self, req: Request) -> Reply:
        self._check_repo(req)
        pr = self._pr(req.params["pull_number"])
        head = self._pr_head_sha(pr)
        changes = self._pr_changes(pr, patches=True)
        return self._page(req, [self._file_json(c, head) for c in changes])

    def pull_commits(self, req: Request) -> Reply:
        self._check_repo(req)
        pr = self._pr(req.params["pull_number"])
        return self._page(req, [self.commit_json(c) for c in self._pr_commits(pr)])

    def list_reviews(self, req: Request) -> Reply:
        self._check_repo(req)
        pr = self._pr(req.params["pull_number"])
        with self._lock:
            reviews = sorted(
                (r for r in self._reviews if r.number == pr.number), key=lambda r: r.id
            )
        visible = [r for r in reviews if r.state != "PENDING" or r.user == req.login]
        return self._page(req, [self._review_json(r) for r in visible])

    def create_review(self, req: Request) -> Reply:
        self._check_repo(req)
        pr = self._pr(req.params["pull_number"])
        body = self._body(req)
        event = body.get("event")
        text = body.get("body") or ""
        states = {
            "APPROVE": "APPROVED",
            "REQUEST_CHANGES": "CHANGES_REQUESTED",
            "COMMENT": "COMMENTED",
            None: "PENDING",
        }
        if event not in states:
            raise validation_failed(message=f'Invalid request.\n\n"{event}" is not a valid event.')
        if pr.state != "open" and event is not None:
            raise ApiError(
                422, "Unprocessable Entity", errors=["Can not review a closed pull request"]
            )
        if req.login == pr.user and event in {"APPROVE", "REQUEST_CHANGES"}:
            verb = "approve" if event == "APPROVE" else "request changes on"
            raise ApiError(
                422, "Unprocessable Entity", errors=[f"Can not {verb} your own pull request"]
            )
        if event in {"REQUEST_CHANGES", "COMMENT"} and not text:
            raise ApiError(
                422,
                "Unprocessable Entity",
                errors=[f"Review Can not {event.lower().replace('_', ' ')} without a body"],
            )
        commit_id = str(body.get("commit_id") or self._pr_head_sha(pr))
        review = Review(
            self._next_id(),
            pr.number,
            req.login,
            text,
            states[event],
            commit_id,
            None if event is None else now(),
        )
        with self._lock:
            self._reviews.append(review)
        return Reply(200, self._review_json(review))

    # pull requests are issues: the issue view and its comments

    def _issue_json(self, pr: PullRequest) -> dict[str, Any]:
        u = self.repo_url
        n = pr.number
        with self._lock:
            comments = sum(1 for c in self._comments if c.number == n)
        return {
            "id": pr.id + 500_000_000,
            "node_id": node_id("I", pr.id),
            "url": f"{u}/issues/{n}",
            "repository_url": u,
            "labels_url": f"{u}/issues/{n}/labels{{/name}}",
            "comments_url": f"{u}/issues/{n}/comments",
            "events_url": f"{u}/issues/{n}/events",
            "html_url": f"{self.html_url}/pull/{n}",
            "number": n,
            "state": pr.state,
            "state_reason": None,
            "title": pr.title,
            "body": pr.body,
            "user": self.user_json(pr.user),
            "labels": [],
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "locked": False,
            "active_lock_reason": None,
            "comments": comments,
            "pull_request": {
                "url": f"{u}/pulls/{n}",
                "html_url": f"{self.html_url}/pull/{n}",
                "diff_url": f"{self.html_url}/pull/{n}.diff",
                "patch_url": f"{self.html_url}/pull/{n}.patch",
                "merged_at": iso(pr.merged_at),
            },
            "closed_at": iso(pr.closed_at),
            "created_at": iso(pr.created_at),
            "updated_at": iso(pr.updated_at),
            "closed_by": None,
            "author_association": self._association(pr.user),
        }

    def get_issue(self, req: Request) -> Reply:
        self._check_repo(req)
        return Reply(200, self._issue_json(self._pr(req.params["issue_number"])))

    def update_issue(self, req: Request) -> Reply:
        """Title, body and state of the pull request, through its issue (as PyGithub's
        ``Issue.edit`` does)."""
        self._check_repo(req)
        number = req.params["issue_number"]
        body = {k: v for k, v in self._body(req).items() if k in {"title", "body", "state"}}
        self.update_pull(
            Request(req.method, req.path, {"pull_number": number}, req.query, body, req.login)
        )
        return Reply(200, self._issue_json(self._pr(number)))

    def list_comments(self, req: Request) -> Reply:
        self._check_repo(req)
        pr = self._pr(req.params["issue_number"])
        with self._lock:
            comments = sorted(
                (c for c in self._comments if c.number == pr.number), key=lambda c: c.id
            )
        return self._page(req, [self._comment_json(c) for c in comments])

    def create_comment(self, req: Request) -> Reply:
        self._check_repo(req)
        pr = self._pr(req.params["issue_number"])
        text = self._body(req).get("body")
        if not isinstance(text, str) or not text:
            raise validation_failed(
                {"resource": "IssueComment", "field": "body", "code": "missing_field"}
            )
        stamp = now()
        comment = Comment(self._next_id(), pr.number, req.login, text, stamp, stamp)
        with self._lock:
            self._comments.append(comment)
            pr.updated_at = stamp  # a comment is activity: GitHub moves updated_at
        data = self._comment_json(comment)
        return Reply(201, data, {"Location": data["url"]})
