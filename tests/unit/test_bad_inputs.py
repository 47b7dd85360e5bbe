"""Bad inputs, each answered by an error that names the problem (issue 13, item 5).

Where a value enters the product (a release version, ``promotion.yaml``, a Kustomize overlay,
an approval form, a CLI argument), a bad one must be refused there, with a message that says
which field, location or value is wrong, so that the person who typed it can fix it without
reading code. These cases need no server; the flow-level ones (a refused form on a waiting run,
a bad version or setup given to the flow) are in ``tests/pipeline/test_bad_inputs.py``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from deployments.cli import app
from flows.approval import approval_form
from promotion.config import DEFAULT_CONFIG, ConfigError, parse_config
from promotion.kustomize import KustomizationError, read_image_tags, set_image_tags
from promotion.models import InvalidVersionError, Release, validate_version

DATA = Path(__file__).parent / "data"
SEED_PROD = (DATA / "seed_prod.input.yaml").read_text(encoding="utf-8")
CART = "registry.digitalocean.com/microservices-demo/cartservice"

# -- release versions --------------------------------------------------------------------------

BAD_VERSIONS = {
    "empty": "",
    "spaces": "v1.0 .1",
    "shell": "v1.0.1;rm -rf /",
    "slash": "release/v1.0.1",
    "path escape": "../v1.0.1",
    "leading dot": ".v1",
    "leading dash": "-v1.0.1",
    "newline": "v1.0.1\n",
    "too long": "v" + "1" * 128,
    "unicode": "v1.0.1-é",
}


@pytest.mark.parametrize("value", list(BAD_VERSIONS.values()), ids=list(BAD_VERSIONS))
@pytest.mark.parametrize("enter", [validate_version, Release], ids=["validate_version", "Release"])
def test_a_bad_version_is_refused_naming_the_value(
    value: str, enter: Callable[[str], object]
) -> None:
    with pytest.raises(InvalidVersionError) as caught:
        enter(value)
    message = str(caught.value)
    assert repr(value) in message, message
    assert "not a valid OCI tag" in message and "128" in message


def test_a_version_that_is_not_a_string_names_its_type() -> None:
    with pytest.raises(InvalidVersionError, match="must be a string, got float"):
        validate_version(1.0)  # type: ignore[arg-type]


# -- promotion.yaml ----------------------------------------------------------------------------


def _default() -> dict[str, Any]:
    return parse_config(DEFAULT_CONFIG.read_text(encoding="utf-8")).model_dump(mode="json")


BASE = _default()


def _with(change: Callable[[dict[str, Any]], None]) -> str:
    data = deepcopy(BASE)
    change(data)
    return json.dumps(data)  # JSON is YAML


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets ``path`` (``environments.0.approvals.0.when``) to ``value``."""

    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


def _pop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]

    return change


FIRST_FORMAT = """
github: {repository: acme/gitops}
registry: {prefix: registry.example.com/shop}
services: [cart]
environments:
  - {name: staging, overlay: k/staging/kustomization.yaml, argocd_app: staging-shop, gate: manual}
approvers: {qa: [qa-alice], pm: [pm-carol]}
"""

BAD_CONFIGS: dict[str, tuple[str, list[str]]] = {
    # name: (file text, what the message must say)
    "malformed YAML": ("github: [unclosed\nservices: x", ["not valid YAML", "line"]),
    "empty file": ("", ["expected a mapping at the top level"]),
    "a list at the top": ("- github\n- services\n", ["expected a mapping at the top level"]),
    "services is a string": (
        _with(_set("services", "cartservice")),
        ["services:", "valid tuple"],
    ),
    "no services": (_with(_set("services", [])), ["services:", "at least 1"]),
    "unknown top-level key": (
        _with(_set("notify", {"slack": "#releases"})),
        ["notify:", "Extra inputs are not permitted"],
    ),
    "unknown environment key": (
        _with(_set("environments.1.auto_merge", True)),
        ["environments[1].auto_merge:", "Extra inputs are not permitted"],
    ),
    "missing github": (_with(_pop("github")), ["github:", "Field required"]),
    "bad repository": (
        _with(_set("github.repository", "microservices-demo-gitops")),
        ["github.repository:", "pattern"],
    ),
    "bad merge method": (
        _with(_set("github.merge_method", "fast-forward")),
        ["github.merge_method:", "merge, squash, rebase"],
    ),
    "bad registry prefix": (
        _with(_set("registry.prefix", "https://Registry.example.com/shop")),
        ["registry.prefix:"],
    ),
    "bad gate timing": (
        _with(_set("environments.0.approvals.0.when", "after_merge")),
        ["environments[0].approvals[0].when:", "'before_merge' or 'after_deploy'"],
    ),
    "review evidence after deploy": (
        _with(_set("environments.0.approvals.0.github_evidence", "review")),
        ["environments[0].approvals[0]", "gate qa", "github_evidence 'review'"],
    ),
    "unknown evidence": (
        _with(_set("environments.1.approvals.0.github_evidence", "email")),
        ["environments[1].approvals[0].github_evidence:", "'none', 'review' or 'comment'"],
    ),
    "duplicate gates": (
        _with(_set("environments.1.approvals.0.gate", "qa")),
        ["environments[].approvals[].gate: listed twice: qa"],
    ),
    "gate without approvers": (
        _with(_set("environments.0.approvals.0.approvers", [])),
        ["environments[0].approvals[0].approvers:", "at least 1"],
    ),
    "login with a space": (
        _with(_set("environments.0.approvals.0.approvers", ["qa alice"])),
        ["environments[0].approvals[0].approvers[0]:", "pattern"],
    ),
    "login with a leading hyphen": (
        _with(_set("environments.1.approvals.0.approvers", ["-carol"])),
        ["environments[1].approvals[0].approvers[0]:"],
    ),
    "login too long": (
        _with(_set("environments.1.approvals.0.approvers", ["p" * 40])),
        ["environments[1].approvals[0].approvers[0]:", "39 characters"],
    ),
    "approvers is a login, not a list": (
        _with(_set("environments.0.approvals.0.approvers", "qa-alice")),
        ["environments[0].approvals[0].approvers:", "valid tuple"],
    ),
    "absolute overlay": (
        _with(_set("environments.0.overlay", "/etc/kustomization.yaml")),
        ["environments[0].overlay:", "relative path"],
    ),
    "overlay escaping the repository": (
        _with(_set("environments.1.overlay", "kustomize/../../prod/kustomization.yaml")),
        ["environments[1].overlay:", "relative path"],
    ),
    "overlay that is a folder": (
        _with(_set("environments.1.overlay", "kustomize/prod/")),
        ["environments[1].overlay:", "kustomization .yaml"],
    ),
    "duplicate environment": (
        _with(_set("environments.1.name", "staging")),
        ["environments[].name: listed twice: staging"],
    ),
    "first format with an unknown gate": (
        FIRST_FORMAT,
        ["environments[0].gate:", "'auto' or 'pm_approval'"],
    ),
}


NOW_REFUSED = [
    pytest.param(
        _with(_set("github.base_branch", "")), ["github.base_branch:"], id="empty base branch"
    ),
    pytest.param(
        _with(_set("github.base_branch", "main branch")),
        ["github.base_branch:", "'main branch'"],
        id="base branch that is no git ref",
    ),
    pytest.param(
        _with(_set("github.base_branch", "release/..x")),
        ["github.base_branch:", "'release/..x'"],
        id="base branch with two dots",
    ),
    pytest.param(
        _with(_set("github.required_checks", ["ci", " "])),
        ["github.required_checks:", "[1]: a required check needs a name"],
        id="empty required check name",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [pytest.param(text, expected, id=name) for name, (text, expected) in BAD_CONFIGS.items()]
    + NOW_REFUSED,
)
def test_a_bad_promotion_setup_names_each_problem(text: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "team/promotion.yaml")
    message = str(caught.value)
    assert message.startswith("team/promotion.yaml: "), message
    for words in expected:
        assert words in message, f"{words!r} not in:\n{message}"


def test_every_problem_of_a_setup_is_listed_at_once() -> None:
    text = _with(
        lambda data: (
            _set("github.merge_method", "ff")(data),
            _set("environments.0.approvals.0.when", "later")(data),
            _set("environments.1.approvals.0.gate", "qa")(data),
        )
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "promotion.yaml")
    message = str(caught.value)
    assert message.startswith("promotion.yaml: 3 problem(s):"), message
    for where in ("github.merge_method", "environments[0].approvals[0].when", "listed twice: qa"):
        assert where in message, message


# -- overlays ----------------------------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32
PINNED = SEED_PROD.replace(
    f"  - name: {CART}  # cartservice\n    newTag: v1.0.0\n",
    f"  - name: {CART}  # cartservice\n    digest: {DIGEST}\n",
)
NO_TAG = SEED_PROD.replace(
    f"  - name: {CART}  # cartservice\n    newTag: v1.0.0\n",
    f"  - name: {CART}  # cartservice\n    newName: {CART}-v2\n",
)
HUGE = SEED_PROD + "".join(
    f"  - name: registry.example.com/filler/svc{i}\n    newTag: v0.0.{i}\n" for i in range(60_000)
)

BAD_OVERLAYS: dict[str, tuple[str, dict[str, str], list[str]]] = {
    # name: (overlay text, tags to set, what the message must say)
    "malformed YAML": ("images:\n  - name: [x\n", {CART: "v1.0.1"}, ["malformed YAML", "line"]),
    "not a Kustomization": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: cart}\n",
        {CART: "v1.0.1"},
        ["not a Kustomization", "kind is 'Deployment'"],
    ),
    "a list, not a mapping": (
        "- images: []\n",
        {CART: "v1.0.1"},
        ["not a Kustomization", "the top level is a list"],
    ),
    "two documents": (
        SEED_PROD + "---\n" + SEED_PROD,
        {CART: "v1.0.1"},
        ["not a Kustomization", "expected one YAML document, found 2"],
    ),
    "pinned by digest": (
        PINNED,
        {CART: "v1.0.1"},
        [f"image {CART!r} is pinned by digest {DIGEST!r}", "ignore a newTag"],
    ),
    "unknown image": (
        SEED_PROD,
        {"registry.digitalocean.com/microservices-demo/adservice": "v1.0.1"},
        ["'registry.digitalocean.com/microservices-demo/adservice' is not in images:", "known:"],
    ),
    "image without newTag": (NO_TAG, {CART: "v1.0.1"}, [f"image {CART!r} has no newTag"]),
    "bad tag to set": (
        SEED_PROD,
        {CART: "v1.0.1 && curl evil"},
        [f"image {CART!r}", "'v1.0.1 && curl evil' is not a valid OCI tag"],
    ),
    "huge file (several MB)": (
        HUGE,
        {CART: "v1.0.1"},
        ["kustomization too large", "bytes", "1048576"],
    ),
}


@pytest.mark.parametrize(
    ("text", "tags", "expected"), list(BAD_OVERLAYS.values()), ids=list(BAD_OVERLAYS)
)
def test_a_bad_overlay_is_refused_naming_the_problem(
    text: str, tags: dict[str, str], expected: list[str]
) -> None:
    started = time.monotonic()
    with pytest.raises(KustomizationError) as caught:
        set_image_tags(text, tags)
    message = str(caught.value)
    for words in expected:
        assert words in message, f"{words!r} not in: {message[:500]}"
    assert time.monotonic() - started < 5.0, "a bad overlay is refused quickly"


@pytest.mark.parametrize(
    "name", ["malformed YAML", "not a Kustomization", "two documents", "huge file (several MB)"]
)
def test_reading_a_bad_overlay_names_the_problem_too(name: str) -> None:
    text, _, expected = BAD_OVERLAYS[name]
    with pytest.raises(KustomizationError) as caught:
        read_image_tags(text)
    assert expected[0] in str(caught.value)


def test_a_refused_overlay_is_left_as_it_was() -> None:
    # Several problems in one call: all named, none applied (the edit is all or nothing).
    tags = {CART: "v1.0.1", "registry.example.com/nope": "v1.0.1"}
    with pytest.raises(KustomizationError) as caught:
        set_image_tags(PINNED, tags)
    assert "pinned by digest" in str(caught.value) and "nope" in str(caught.value)
    assert read_image_tags(PINNED).get(CART) is None


# -- approval forms ----------------------------------------------------------------------------

QA_FORM = approval_form("qa", ["qa-alice", "qa-bob"])

BAD_FORMS: dict[str, tuple[dict[str, Any], str, list[str]]] = {
    # name: (form input, the field at fault, what the message must say)
    "missing approver": ({"approved": True, "comment": "ok"}, "approver", ["Field required"]),
    "unlisted approver": (
        {"approved": True, "approver": "mallory"},
        "approver",
        ["'qa-alice'", "'qa-bob'"],
    ),
    "approver of another gate": (
        {"approved": True, "approver": "pm-carol"},
        "approver",
        ["'qa-alice'"],
    ),
    "approver is a number": ({"approved": True, "approver": 42}, "approver", ["'qa-alice'"]),
    "approved is a word": (
        {"approved": "maybe", "approver": "qa-alice"},
        "approved",
        ["valid boolean"],
    ),
    "approved missing": ({"approver": "qa-alice"}, "approved", ["Field required"]),
    "comment is a list": (
        {"approved": False, "approver": "qa-bob", "comment": ["no"]},
        "comment",
        ["valid string"],
    ),
}


@pytest.mark.parametrize(
    ("data", "field", "expected"), list(BAD_FORMS.values()), ids=list(BAD_FORMS)
)
def test_a_bad_approval_form_names_the_field(
    data: dict[str, Any], field: str, expected: list[str]
) -> None:
    with pytest.raises(ValidationError) as caught:
        QA_FORM.model_validate(data)
    errors = caught.value.errors()
    assert [e["loc"] for e in errors] == [(field,)], errors
    message = str(caught.value)
    for words in expected:
        assert words in message, message


# -- CLI arguments -----------------------------------------------------------------------------

# Nothing listens here: a command that got past its own checks would fail to connect instead
# of naming the bad argument.
NOWHERE = "http://127.0.0.1:9/api"


def _plain(text: str) -> str:
    """Typer's error box without its frame and line wrapping."""
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", text))


BAD_COMMANDS: dict[str, tuple[list[str], list[str]]] = {
    # name: (arguments, what the output must say)
    "promote: bad version": (["promote", "v1.0.1;rm"], ["invalid version 'v1.0.1;rm'"]),
    "promote: empty version": (["promote", ""], ["invalid version ''"]),
    "promote: version with a slash": (
        ["promote", "feature/x"],
        ["invalid version 'feature/x'", "not a valid OCI tag"],
    ),
    "promote: unknown option": (
        ["promote", "v1.0.1", "--force-merge"],
        ["No such option: --force-merge"],
    ),
    "promote: bad auto-rollback": (
        ["promote", "v1.0.1", "--auto-rollback", "helm"],
        ["--auto-rollback must be off, argocd or revert, not 'helm'"],
    ),
    "promote: timeout below 1": (
        ["promote", "v1.0.1", "--approval-timeout-seconds", "0"],
        ["--approval-timeout-seconds", "greater than or equal to 1"],
    ),
    "promote: timeout not a number": (
        ["promote", "v1.0.1", "--approval-timeout-seconds", "soon"],
        ["--approval-timeout-seconds", "valid integer"],
    ),
    "approve: missing approver": (["approve", "0b3c"], ["Missing option '--approver'"]),
    "rollback: bad method": (
        ["rollback", "prod", "--method", "kubectl"],
        ["--method must be argocd or revert, not 'kubectl'"],
    ),
    "rollback: malformed env": (["rollback", "Prod!"], ["invalid environment 'Prod!'"]),
    "rollback: bad --to": (
        ["rollback", "prod", "--to", "last-week"],
        ["--to", "'last-week'", "previous"],
    ),
    "rollback: negative --to": (["rollback", "prod", "--to", "-3"], ["--to", "'-3'"]),
    "resume-autosync: malformed env": (
        ["resume-autosync", "prod/eu"],
        ["invalid environment 'prod/eu'"],
    ),
    "rollback: env too long": (["rollback", "p" * 64], ["invalid environment", "63 characters"]),
}


@pytest.mark.parametrize(("args", "expected"), list(BAD_COMMANDS.values()), ids=list(BAD_COMMANDS))
def test_a_bad_cli_argument_is_refused_naming_it(
    args: list[str], expected: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", NOWHERE)
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, args)
    output = _plain(result.output)
    assert result.exit_code == 2, (result.exit_code, output)
    for words in expected:
        assert words in output, output
    assert "127.0.0.1:9" not in output, "refused before any call to the server"


@pytest.mark.parametrize(
    "name",
    [
        "main",
        "release/1.0",
        "feature/a-b_c",
        "",
        "main branch",
        "a..b",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[b",
        "a\\b",
        "a@{b",
        "/a",
        "a/",
        "a//b",
        ".a",
        "a/.b",
        "a.",
        "a.lock",
        "a.lock/b",
        "-a",
        "a\tb",
    ],
)
def test_branch_names_are_judged_as_git_judges_them(name: str) -> None:
    import subprocess

    from promotion.config import valid_branch

    git = subprocess.run(
        ["git", "check-ref-format", "--branch", name], capture_output=True, check=False
    )
    assert valid_branch(name) is (git.returncode == 0)
