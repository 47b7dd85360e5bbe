"""Contract: the emulator's JSON validates against Argo CD's own swagger definitions.

The schema is ``tests/data/argocd/application.schema.json``, extracted from argoproj/argo-cd
``assets/swagger.json`` by ``tests/data/argocd/extract_schema.py``. Swagger leaves objects open,
so the strict variant also closes every object with properties: a field the emulator invents
(or misspells) fails the test.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from .conftest import PROD, PROD_OVERLAY, TOKEN, Argo, Repo

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "data" / "argocd" / "application.schema.json"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = pytest.mark.timeout(60)


def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return schema


def closed(node: Any) -> Any:
    node = copy.deepcopy(node)
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("type") == "object" and "properties" in item:
                item.setdefault("additionalProperties", False)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return node


def validator(definition: str, strict: bool = True) -> jsonschema.Draft4Validator:
    schema = load_schema()
    if strict:
        schema = closed(schema)
    schema["$ref"] = f"#/definitions/{definition}"
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())


def assert_valid(doc: Any, definition: str = "v1alpha1Application") -> None:
    errors = sorted(validator(definition).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_schema_is_self_contained() -> None:
    text = SCHEMA_FILE.read_text(encoding="utf-8")
    refs = {r.split("/")[-1] for r in (part.split('"')[0] for part in text.split('"$ref": "')[1:])}
    assert refs <= set(load_schema()["definitions"])


def test_application_json_matches_swagger_through_a_lifecycle(argo: Argo, repo: Repo) -> None:
    url = f"{argo.url}/api/v1/applications/{PROD}"
    assert_valid(httpx.get(url, headers=HEADERS).json())
    sha = repo.push_release("v1.0.1")
    refreshed = httpx.get(url, params={"refresh": "normal"}, headers=HEADERS).json()
    assert_valid(refreshed)
    argo.client().confirm_deployed(PROD, sha, timeout=10, poll_interval=0.05)
    assert_valid(httpx.get(url, headers=HEADERS).json())
    rolled = argo.client().rollback(PROD, timeout=10, poll_interval=0.05)
    assert rolled.to_revision == repo.seed_sha
    assert_valid(httpx.get(url, headers=HEADERS).json())
    broken = repo.read(PROD_OVERLAY).replace("../base", "../gone")
    repo.push({PROD_OVERLAY: broken})
    failing = httpx.get(url, params={"refresh": "hard"}, headers=HEADERS).json()
    assert failing["status"]["conditions"][0]["type"] == "ComparisonError"
    assert_valid(failing)


def test_running_operation_and_list_and_errors_match_swagger(argo: Argo, repo: Repo) -> None:
    # Long enough that the refresh's render, the validations and the list (under load on two
    # cores) all happen while the operation still runs.
    argo.emulator.state.sync_duration = 2.0
    repo.push_release("v1.0.1")
    running = httpx.get(
        f"{argo.url}/api/v1/applications/{PROD}", params={"refresh": "normal"}, headers=HEADERS
    ).json()
    assert running["status"]["operationState"]["phase"] == "Running"
    assert "operation" in running
    assert_valid(running)
    listed = httpx.get(f"{argo.url}/api/v1/applications", headers=HEADERS).json()
    assert_valid(listed, "v1alpha1ApplicationList")
    refused = httpx.post(
        f"{argo.url}/api/v1/applications/{PROD}/sync", json={}, headers=HEADERS
    ).json()
    assert refused["message"] == "another operation is already in progress"
    assert_valid(refused, "runtimeError")
    argo.emulator.wait_idle(10)


def test_strict_schema_catches_an_invented_field() -> None:
    doc = {"metadata": {"name": "x"}, "status": {"sync": {"state": "Synced"}}}
    assert list(validator("v1alpha1Application").iter_errors(doc))
