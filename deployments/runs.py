"""Start, follow and resume flow runs over the Prefect REST API, as the UI does.

The CLI, the demo and the tests share these: ``start_run`` creates a run of a deployment,
``wait_for_run`` follows it until it pauses or ends, ``resume_run`` posts the approval form
exactly like the UI's Resume dialog (``POST /flow_runs/{id}/resume`` with ``run_input``) and
reads the verdict from the body (``ACCEPT``, ``REJECT`` with the reason, ``ABORT``), never from
the HTTP status, and ``read_artifact`` fetches a run's summary. Against a protected server every
call sends HTTP Basic auth from ``PREFECT_API_AUTH_STRING``, as Prefect's own client does.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from promotion.names import PROMOTE_DEPLOYMENT, gate_of_pause_key

TERMINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})

AUTH_STRING_ENV = "PREFECT_API_AUTH_STRING"
"""The client side of ``PREFECT_SERVER_API_AUTH_STRING``: one shared ``user:password``."""

__all__ = [
    "AUTH_STRING_ENV",
    "TERMINAL",
    "ResumeResult",
    "RunApiError",
    "RunView",
    "WaitingApproval",
    "api_auth_string",
    "api_client",
    "auth_headers",
    "find_artifact",
    "find_deployment",
    "keyset_description",
    "list_runs",
    "read_artifact",
    "read_run",
    "request_with_retry",
    "resume_run",
    "run_url",
    "start_run",
    "ui_url",
    "wait_for_run",
    "waiting_approvals",
]


class RunApiError(RuntimeError):
    """The Prefect API refused a request or a run did not reach the expected state in time."""


@dataclass(frozen=True)
class RunView:
    """The parts of a flow run the CLI and the demo show."""

    id: str
    name: str
    state_type: str
    state_name: str
    message: str
    parameters: dict[str, Any]
    pause_key: str | None
    keyset: dict[str, str] | None
    tags: tuple[str, ...] = ()
    idempotency_key: str | None = None
    """The key it was created under (release detection's ``watch-releases:<repo>:<version>``)."""

    @property
    def paused(self) -> bool:
        return self.state_type == "PAUSED"

    @property
    def finished(self) -> bool:
        return self.state_type in TERMINAL

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> RunView:
        state = data.get("state") or {}
        details = state.get("state_details") or {}
        return cls(
            id=str(data["id"]),
            name=str(data.get("name", "")),
            state_type=str(state.get("type", "")),
            state_name=str(state.get("name", "")),
            message=str(state.get("message") or ""),
            parameters=dict(data.get("parameters") or {}),
            pause_key=details.get("pause_key"),
            keyset=details.get("run_input_keyset"),
            tags=tuple(str(tag) for tag in data.get("tags") or ()),
            idempotency_key=data.get("idempotency_key"),
        )


@dataclass(frozen=True)
class ResumeResult:
    """The server's verdict on a resume: ``ACCEPT``, ``REJECT`` (with reason) or ``ABORT``."""

    status: str
    reason: str
    http_status: int

    @property
    def accepted(self) -> bool:
        return self.status == "ACCEPT"


def api_auth_string() -> str | None:
    """``PREFECT_API_AUTH_STRING`` from the environment, else from the active Prefect settings
    (a profile or ``temporary_settings``); None when the server is not protected."""
    value = os.environ.get(AUTH_STRING_ENV)
    if value:
        return value
    from prefect.settings import PREFECT_API_AUTH_STRING

    setting: Any = PREFECT_API_AUTH_STRING.value()
    if setting is None:
        return None
    text = setting.get_secret_value() if hasattr(setting, "get_secret_value") else str(setting)
    return text or None


def auth_headers(auth_string: str | None = None) -> dict[str, str]:
    """The ``Authorization`` header Prefect's client sends for ``auth_string`` (default: the
    configured one): ``Basic base64(auth_string)``; empty when there is none. Never log it."""
    value = auth_string if auth_string is not None else api_auth_string()
    if not value:
        return {}
    token = base64.b64encode(value.encode("utf-8")).decode("ascii")
    return {"Authorization": f"Basic {token}"}


def api_client(api_url: str, timeout: float = 15.0, auth_string: str | None = None) -> httpx.Client:
    """An httpx client for the Prefect REST API at ``api_url``, authenticated when configured."""
    return httpx.Client(
        base_url=api_url.rstrip("/") + "/", timeout=timeout, headers=auth_headers(auth_string)
    )


def _client(api_url: str, timeout: float = 15.0) -> httpx.Client:
    return api_client(api_url, timeout)


_TRANSIENT = frozenset({502, 503, 504})


def request_with_retry(http: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One API call, retried on 502/503/504 (a busy SQLite server answers 503 now and then)
    and, twice, on connection errors; non-idempotent calls are made safe by the callers
    (idempotency keys, verdicts read from the body)."""
    delay = 0.5
    connect_failures = 0
    for attempt in range(6):
        try:
            response = http.request(method, url, **kwargs)
        except httpx.TransportError:
            connect_failures += 1
            if attempt == 5 or connect_failures > 2:
                raise
        else:
            if response.status_code not in _TRANSIENT or attempt == 5:
                return response
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


def _refusal(response: httpx.Response, what: str) -> RunApiError:
    if response.status_code == 401:
        hint = (
            "the auth string in PREFECT_API_AUTH_STRING was refused"
            if "Authorization" in response.request.headers
            else "the server is protected: set PREFECT_API_AUTH_STRING"
        )
        return RunApiError(f"{what}: HTTP 401 Unauthorized ({hint})")
    return RunApiError(f"{what}: HTTP {response.status_code} {response.text[:300]}")


def _check(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 400:
        raise _refusal(response, what)
    return response.json()


def find_deployment(api_url: str, name: str) -> dict[str, Any]:
    """The deployment ``flow-name/deployment-name`` (or just ``deployment-name``)."""
    with _client(api_url) as http:
        if "/" in name:
            response = request_with_retry(http, "GET", f"deployments/name/{name}")
            if response.status_code == 404:
                raise RunApiError(f"no deployment {name!r}: deploy first (prefect.yaml)")
            return dict(_check(response, f"read deployment {name}"))
        found = _check(
            request_with_retry(
                http, "POST", "deployments/filter", json={"deployments": {"name": {"any_": [name]}}}
            ),
            f"find deployment {name}",
        )
    if not found:
        raise RunApiError(f"no deployment named {name!r}: deploy first (prefect.yaml)")
    return dict(found[0])


def start_run(api_url: str, deployment: str, parameters: Mapping[str, Any]) -> RunView:
    """Create a run of ``deployment`` with ``parameters``; the worker picks it up."""
    dep = find_deployment(api_url, deployment)
    with _client(api_url) as http:
        data = _check(
            request_with_retry(
                http,
                "POST",
                f"deployments/{dep['id']}/create_flow_run",
                json={"parameters": dict(parameters), "idempotency_key": str(uuid.uuid4())},
            ),
            f"start a run of {deployment}",
        )
    return RunView.from_api(data)


def read_run(api_url: str, run_id: str) -> RunView:
    with _client(api_url) as http:
        return RunView.from_api(
            _check(request_with_retry(http, "GET", f"flow_runs/{run_id}"), f"read run {run_id}")
        )


def list_runs(
    api_url: str,
    deployment: str | None = None,
    state_types: tuple[str, ...] = (),
    limit: int = 50,
) -> list[RunView]:
    """Recent runs, newest first, optionally of one deployment and in some states."""
    body: dict[str, Any] = {"limit": limit, "sort": "START_TIME_DESC"}
    if state_types:
        body["flow_runs"] = {"state": {"type": {"any_": list(state_types)}}}
    if deployment is not None:
        dep = find_deployment(api_url, deployment)
        body["deployments"] = {"id": {"any_": [dep["id"]]}}
    with _client(api_url) as http:
        data = _check(
            request_with_retry(http, "POST", "flow_runs/filter", json=body), "list flow runs"
        )
    return [RunView.from_api(item) for item in data]


def wait_for_run(
    api_url: str,
    run_id: str,
    until: Callable[[RunView], bool] = lambda run: run.paused or run.finished,
    timeout: float = 600.0,
    interval: float = 0.5,
    on_change: Callable[[RunView], None] | None = None,
) -> RunView:
    """Poll the run until ``until(run)`` (default: paused or finished); return it."""
    deadline = time.monotonic() + timeout
    last: tuple[str, str | None] | None = None
    while True:
        run = read_run(api_url, run_id)
        marker = (run.state_name, run.pause_key)
        if on_change is not None and marker != last:
            on_change(run)
        last = marker
        if until(run):
            return run
        if time.monotonic() > deadline:
            raise RunApiError(
                f"run {run_id} still {run.state_name} after {timeout:.0f}s (expected another state)"
            )
        time.sleep(interval)


def resume_run(api_url: str, run_id: str, run_input: Mapping[str, Any]) -> ResumeResult:
    """Resume a paused run with ``run_input``, exactly as the UI's Resume form does.

    The verdict is in the body: an invalid input is answered 200 with ``REJECT``.
    """
    with _client(api_url) as http:
        response = request_with_retry(
            http, "POST", f"flow_runs/{run_id}/resume", json={"run_input": dict(run_input)}
        )
    if response.status_code >= 400:
        raise _refusal(response, f"resume {run_id}")
    body = response.json() or {}
    details = body.get("details") or {}
    return ResumeResult(
        status=str(body.get("status", "")),
        reason=str(details.get("reason") or ""),
        http_status=response.status_code,
    )


def keyset_description(api_url: str, run: RunView) -> str:
    """The markdown description shown above a paused run's form ('' when there is none)."""
    if not run.keyset or "description" not in run.keyset:
        return ""
    with _client(api_url) as http:
        response = request_with_retry(
            http, "GET", f"flow_runs/{run.id}/input/{run.keyset['description']}"
        )
    if response.status_code != 200:
        return ""
    try:
        value = response.json()
    except ValueError:
        return response.text
    return value if isinstance(value, str) else str(value)


def find_artifact(api_url: str, run_id: str, key: str) -> dict[str, Any] | None:
    """The latest artifact ``key`` of run ``run_id`` as the API returns it (None when absent)."""
    body = {
        "artifacts": {"key": {"any_": [key]}, "flow_run_id": {"any_": [run_id]}},
        "sort": "CREATED_DESC",
        "limit": 1,
    }
    with _client(api_url) as http:
        found = _check(
            request_with_retry(http, "POST", "artifacts/filter", json=body),
            f"read artifact {key}",
        )
    return dict(found[0]) if found else None


def read_artifact(api_url: str, run_id: str, key: str) -> str | None:
    """The data of the latest artifact ``key`` of run ``run_id`` (None when absent)."""
    artifact = find_artifact(api_url, run_id, key)
    data = artifact.get("data") if artifact else None
    return data if isinstance(data, str) else None


def ui_url(api_url: str) -> str:
    """The Prefect UI of the API ``api_url`` (``.../api`` -> ``...``)."""
    url = api_url.rstrip("/")
    return url[: -len("/api")] if url.endswith("/api") else url


def run_url(api_url: str, run_id: str) -> str:
    """The UI page of flow run ``run_id``."""
    return f"{ui_url(api_url)}/runs/flow-run/{run_id}"


@dataclass(frozen=True)
class WaitingApproval:
    """A paused promotion run: which gate of which release waits, and where to answer it."""

    run: RunView
    gate: str
    url: str

    @property
    def version(self) -> Any:
        return self.run.parameters.get("version")

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run.name,
            "version": self.version,
            "gate": self.gate,
            "url": self.url,
            "id": self.run.id,
        }


def waiting_approvals(
    api_url: str,
    application: str,
    version: str | None = None,
    deployment: str = PROMOTE_DEPLOYMENT,
) -> list[WaitingApproval]:
    """The approvals that wait: paused runs of ``deployment`` for ``application``, newest first.

    Args:
        api_url: The Prefect API.
        application: The application; a run without an ``application`` parameter promotes the
            one its setup describes, taken to be this one.
        version: Only this release's runs.
        deployment: ``flow/deployment`` of the promotion.
    """
    waiting: list[WaitingApproval] = []
    for run in list_runs(api_url, deployment, state_types=("PAUSED",)):
        if version is not None and run.parameters.get("version") != version:
            continue
        if run.parameters.get("application", application) != application:
            continue
        gate = gate_of_pause_key(run.pause_key or "")
        waiting.append(WaitingApproval(run, gate, run_url(api_url, run.id)))
    return waiting
