"""Route handlers for commit statuses (and the combined status) and check runs."""

from __future__ import annotations

from typing import Any

from sandbox.github.core import Core
from sandbox.github.models import (
    CheckRun,
    Protection,
    Status,
    app_id_for,
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


class CheckRoutes(Core):
    """Commit statuses, the combined status and check runs."""

    def create_status(self, req: Request) -> Reply:
        self._check_repo(req)
        body = self._body(req)
        state = body.get("state")
        if state not in {"error", "failure", "pending", "success"}:
            raise validation_failed(
                {
                    "resource": "Status",
                    "field": "state",
                    "code": "custom",
                    "message": "state is not included in the list",
                }
            )
        sha = self._commit_sha(req.params["sha"])
        data = self.add_status(
            sha,
            str(body.get("context") or "default"),
            state,
            description=body.get("description"),
            target_url=body.get("target_url"),
            creator=req.login,
        )
        return Reply(201, data, {"Location": data["url"]})

    def list_statuses(self, req: Request) -> Reply:
        self._check_repo(req)
        ref = req.params.get("ref") or req.params["sha"]
        sha = self.repo.resolve(ref, "commit")
        if sha is None:
            return self._page(req, [])
        with self._lock:
            statuses = sorted((s for s in self._statuses if s.sha == sha), key=lambda s: -s.id)
        return self._page(req, [self._status_json(s) for s in statuses])

    def combined_status(self, req: Request) -> Reply:
        self._check_repo(req)
        sha = self.repo.resolve(req.params["ref"], "commit")
        if sha is None:
            raise ApiError(422, f"No commit found for SHA: {req.params['ref']}")
        with self._lock:
            statuses = sorted((s for s in self._statuses if s.sha == sha), key=lambda s: -s.id)
        latest: dict[str, Status] = {}
        for status in statuses:
            latest.setdefault(status.context, status)
        states = {s.state for s in latest.values()}
        if states & {"error", "failure"}:
            state = "failure"
        elif not states or "pending" in states:
            state = "pending"
        else:
            state = "success"
        simple = []
        for status in latest.values():
            item = self._status_json(status)
            item.pop("creator")
            item["required"] = (
                status.context in self._protection.get(self.base_branch, Protection()).contexts
            )
            simple.append(item)
        return Reply(
            200,
            {
                "state": state,
                "statuses": simple,
                "sha": sha,
                "total_count": len(simple),
                "repository": self.repo_json(),
                "commit_url": f"{self.repo_url}/commits/{sha}",
                "url": f"{self.repo_url}/commits/{sha}/status",
            },
        )

    def list_check_runs(self, req: Request) -> Reply:
        self._check_repo(req)
        sha = self.repo.resolve(req.params["ref"], "commit")
        if sha is None:
            raise ApiError(422, f"No commit found for SHA: {req.params['ref']}")
        with self._lock:
            runs = sorted(
                (c for c in self._checks.values() if c.head_sha == sha), key=lambda c: -c.id
            )
        name = req.query.get("check_name")
        status = req.query.get("status")
        if name:
            runs = [c for c in runs if c.name == name]
        app = req.query.get("app_id")
        if app and app.isdigit():
            runs = [c for c in runs if app_id_for(c.app_name) == int(app)]
        if status:
            runs = [c for c in runs if c.status == status]
        if req.query.get("filter", "latest") == "latest":
            seen: set[str] = set()
            latest = []
            for run in runs:
                if run.name not in seen:
                    seen.add(run.name)
                    latest.append(run)
            runs = latest
        page = self._page(req, [self._check_json(c) for c in runs])
        return Reply(200, {"total_count": len(runs), "check_runs": page.body}, page.headers)

    def create_check_run(self, req: Request) -> Reply:
        self._check_repo(req)
        body = self._body(req)
        name, head = body.get("name"), body.get("head_sha")
        if not isinstance(name, str) or not isinstance(head, str):
            raise validation_failed(
                message='Invalid request.\n\n"name" and "head_sha" are required.'
            )
        sha = self._commit_sha(head)
        run = CheckRun(self._next_id(), name, sha, "queued", None, None, None, app_name=req.login)
        self._apply_check_update(run, body)
        with self._lock:
            self._checks[run.id] = run
        return Reply(201, self._check_json(run))

    def _apply_check_update(self, run: CheckRun, body: dict[str, Any]) -> None:
        status = body.get("status")
        conclusion = body.get("conclusion")
        if conclusion is not None:
            status = "completed"
        if status is not None:
            if status not in {
                "queued",
                "in_progress",
                "completed",
                "waiting",
                "requested",
                "pending",
            }:
                raise validation_failed(message=f"status {status!r} is not valid")
            run.status = status
            if status == "in_progress" and run.started_at is None:
                run.started_at = now()
        if run.status == "completed":
            if conclusion is None and run.conclusion is None:
                raise validation_failed(message="conclusion is required when status is completed")
            run.conclusion = conclusion or run.conclusion
            run.completed_at = (
                parse_iso(body.get("completed_at")) if body.get("completed_at") else now()
            )
        if body.get("started_at"):
            run.started_at = parse_iso(body["started_at"])
        elif run.started_at is None and run.status != "queued":
            run.started_at = now()
        output = body.get("output")
        if isinstance(output, dict):
            run.title = output.get("title", run.title)
            run.summary = output.get("summary", run.summary)
            run.text = output.get("text", run.text)
        if "external_id" in body:
            run.external_id = body["external_id"]
        if "details_url" in body:
            run.details_url = body["details_url"]
        if "name" in body and isinstance(body["name"], str):
            run.name = body["name"]

    def _check_run(self, ident: str) -> CheckRun:
        with self._lock:
            run = self._checks.get(int(ident)) if ident.isdigit() else None
        if run is None:
            raise not_found()
        return run

    def get_check_run(self, req: Request) -> Reply:
        self._check_repo(req)
        return Reply(200, self._check_json(self._check_run(req.params["check_run_id"])))

    def update_check_run(self, req: Request) -> Reply:
        self._check_repo(req)
        run = self._check_run(req.params["check_run_id"])
        with self._lock:
            self._apply_check_update(run, self._body(req))
        return Reply(200, self._check_json(run))
