"""Extract the response schemas the GitHub emulator's contract tests need.

Reads GitHub's official REST description (OpenAPI 3.0, ``api.github.com.json`` as published in
``@octokit/openapi``) and writes ``schemas.json`` next to this file: for each operation the
emulator serves, keyed "METHOD /path-template", the JSON schema of each JSON response, with the
referenced component schemas copied under ``$defs`` (so the document is self-contained) and
OpenAPI's ``nullable: true`` turned into JSON Schema type unions.

Usage: ``zcat github-rest-api.json.gz | python tests/data/github/extract.py``
or ``python tests/data/github/extract.py path/to/github-rest-api.json[.gz]``.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("schemas.json")
PREFIX = "/repos/{owner}/{repo}"

OPERATIONS: list[tuple[str, str]] = [
    ("GET", "/user"),
    ("GET", "/rate_limit"),
    ("GET", PREFIX),
    ("GET", PREFIX + "/branches"),
    ("GET", PREFIX + "/branches/{branch}"),
    ("GET", PREFIX + "/branches/{branch}/protection"),
    ("GET", PREFIX + "/rules/branches/{branch}"),
    ("PUT", PREFIX + "/branches/{branch}/protection"),
    ("GET", PREFIX + "/git/ref/{ref}"),
    ("GET", PREFIX + "/git/matching-refs/{ref}"),
    ("POST", PREFIX + "/git/refs"),
    ("PATCH", PREFIX + "/git/refs/{ref}"),
    ("POST", PREFIX + "/git/blobs"),
    ("GET", PREFIX + "/git/blobs/{file_sha}"),
    ("POST", PREFIX + "/git/trees"),
    ("GET", PREFIX + "/git/trees/{tree_sha}"),
    ("POST", PREFIX + "/git/commits"),
    ("GET", PREFIX + "/git/commits/{commit_sha}"),
    ("GET", PREFIX + "/contents/{path}"),
    ("PUT", PREFIX + "/contents/{path}"),
    ("GET", PREFIX + "/commits"),
    ("GET", PREFIX + "/compare/{basehead}"),
    ("GET", PREFIX + "/commits/{ref}"),
    ("GET", PREFIX + "/pulls"),
    ("POST", PREFIX + "/pulls"),
    ("GET", PREFIX + "/pulls/{pull_number}"),
    ("PATCH", PREFIX + "/pulls/{pull_number}"),
    ("PUT", PREFIX + "/pulls/{pull_number}/merge"),
    ("GET", PREFIX + "/pulls/{pull_number}/files"),
    ("GET", PREFIX + "/pulls/{pull_number}/commits"),
    ("GET", PREFIX + "/pulls/{pull_number}/reviews"),
    ("POST", PREFIX + "/pulls/{pull_number}/reviews"),
    ("GET", PREFIX + "/issues/{issue_number}"),
    ("PATCH", PREFIX + "/issues/{issue_number}"),
    ("GET", PREFIX + "/issues/{issue_number}/comments"),
    ("POST", PREFIX + "/issues/{issue_number}/comments"),
    ("POST", PREFIX + "/statuses/{sha}"),
    ("GET", PREFIX + "/commits/{ref}/statuses"),
    ("GET", PREFIX + "/commits/{ref}/status"),
    ("GET", PREFIX + "/commits/{ref}/check-runs"),
    ("POST", PREFIX + "/check-runs"),
    ("GET", PREFIX + "/check-runs/{check_run_id}"),
    ("PATCH", PREFIX + "/check-runs/{check_run_id}"),
]
# Shapes of error answers (4xx), validated apart from the operations.
ERRORS = ["basic-error", "validation-error", "validation-error-simple"]
# Paths PyGithub calls that the description does not list under these names.
ALIASES = {("GET", PREFIX + "/statuses/{sha}"): ("GET", PREFIX + "/commits/{ref}/statuses")}


def _convert(node: Any, defs: dict[str, Any], components: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_convert(item, defs, components) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        if name not in defs:
            defs[name] = {}  # placeholder first: recursive schemas terminate
            defs[name] = _convert(components[name], defs, components)
        return {"$ref": f"#/$defs/{name}"}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in {"nullable", "example", "examples", "x-github", "discriminator", "xml"}:
            continue
        out[key] = _convert(value, defs, components)
    if node.get("nullable"):
        if "type" in out:
            kind = out["type"]
            out["type"] = [*(kind if isinstance(kind, list) else [kind]), "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def extract(spec: dict[str, Any]) -> dict[str, Any]:
    components = spec["components"]["schemas"]
    responses = spec["components"].get("responses", {})
    defs: dict[str, Any] = {}
    operations: dict[str, dict[str, Any]] = {}
    for method, path in OPERATIONS:
        operation = spec["paths"][path][method.lower()]
        by_status: dict[str, Any] = {}
        for status, response in operation["responses"].items():
            if "$ref" in response:
                response = responses[response["$ref"].rsplit("/", 1)[1]]
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            if schema is not None and status.startswith("2"):
                by_status[status] = _convert(schema, defs, components)
        operations[f"{method} {path}"] = by_status
    for (method, path), (src_method, src_path) in ALIASES.items():
        operations[f"{method} {path}"] = operations[f"{src_method} {src_path}"]
    errors = {name: _convert({"$ref": f"#/x/{name}"}, defs, components) for name in ERRORS}
    return {
        "errors": errors,
        "$comment": "Generated by extract.py from GitHub's REST API description; do not edit.",
        "operations": operations,
        "$defs": defs,
    }


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raw = Path(argv[1]).read_bytes()
        text = gzip.decompress(raw) if argv[1].endswith(".gz") else raw
    else:
        text = sys.stdin.buffer.read()
    document = extract(json.loads(text))
    OUT.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(document['operations'])} operations)")


if __name__ == "__main__":
    main(sys.argv)
