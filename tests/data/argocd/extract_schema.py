"""Extract Argo CD's ``v1alpha1Application`` schema (and everything it references) from swagger.

Usage: ``python tests/data/argocd/extract_schema.py SWAGGER_JSON[.gz] > application.schema.json``

The source is ``assets/swagger.json`` of argoproj/argo-cd; the output is a self-contained JSON
Schema (draft 4, as swagger 2.0 definitions are) with ``$ref`` pointers into its own
``definitions``, so the contract tests need nothing outside this folder.
"""

from __future__ import annotations

import gzip
import json
import sys
from typing import Any

ROOTS = ("v1alpha1Application", "v1alpha1ApplicationList", "runtimeError")


def refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            found.add(ref.removeprefix("#/definitions/"))
        for value in node.values():
            found |= refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= refs(value)
    return found


def extract(swagger: dict[str, Any]) -> dict[str, Any]:
    definitions = swagger["definitions"]
    wanted: set[str] = set()
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        todo.extend(refs(definitions[name]) - wanted)
    return {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "description": "Argo CD v1alpha1Application and its references, extracted from "
        "argoproj/argo-cd assets/swagger.json (commit 37ee0097cf851bc2dd7665fc081bbce61a7e836e) "
        "by extract_schema.py",
        "$ref": "#/definitions/v1alpha1Application",
        "definitions": {name: definitions[name] for name in sorted(wanted)},
    }


def main(path: str) -> None:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        swagger = json.load(handle)
    json.dump(extract(swagger), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
