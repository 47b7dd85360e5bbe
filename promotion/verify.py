"""Verification after deploy: HTTP probes that say whether an environment really serves a release.

Argo CD's Healthy means the pods are ready, not that the application answers with the new
version. Each ``Probe`` of an environment's ``verify`` setting is requested until it passes or
its retries are spent: the status must be the expected one, the body must match the pattern,
and the JSON field must equal the version. The outcome of every probe is a ``ProbeResult`` with
a message saying exactly what was wrong on the last attempt; ``VerificationResult`` gathers them
(and the outcome of a smoke-test deployment, run by the Prefect layer). The HTTP client is
injectable (an ``httpx.Client`` or a transport); nothing here imports Prefect.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from promotion.operations import Probe

__all__ = [
    "ProbeResult",
    "SmokeTestResult",
    "VerificationFailed",
    "VerificationResult",
    "VerifyError",
    "check_response",
    "is_transient",
    "json_field_value",
    "run_probe",
    "run_probes",
]

MAX_BODY_IN_MESSAGE = 200


class VerifyError(Exception):
    """Base of the verification errors."""


class VerificationFailed(VerifyError):
    """A verification did not pass; ``result`` holds every probe's outcome."""

    def __init__(self, result: VerificationResult) -> None:
        super().__init__(result.describe())
        self.result = result


def is_transient(exc: BaseException) -> bool:
    """A verification that ran and failed is a verdict, never transient; only a crash of the
    HTTP layer itself (outside the probes' own retries) is worth a task retry."""
    return isinstance(exc, httpx.TransportError)


_MISSING = object()


def json_field_value(data: Any, path: str) -> Any:
    """The value at a dotted ``path`` (``build.version``, ``items.0.tag``), or ``_MISSING``."""
    current = data
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_BODY_IN_MESSAGE else text[:MAX_BODY_IN_MESSAGE] + "..."


def check_response(probe: Probe, version: str, status: int, text: str) -> str | None:
    """Why an answer fails ``probe`` for ``version`` (None when it passes)."""
    if status != probe.expected_status:
        return f"HTTP {status}, expected {probe.expected_status} (body: {_snippet(text)!r})"
    if probe.body_pattern is not None:
        pattern = probe.body_pattern.replace("{version}", re.escape(version))
        if re.search(pattern, text) is None:
            return f"body does not match /{pattern}/ (body: {_snippet(text)!r})"
    if probe.json_field is not None:
        try:
            data = json.loads(text)
        except ValueError:
            return (
                f"body is not JSON, expected {probe.json_field} = {version!r} ({_snippet(text)!r})"
            )
        value = json_field_value(data, probe.json_field)
        if value is _MISSING:
            return f"JSON has no field {probe.json_field!r} (body: {_snippet(text)!r})"
        if value != version:
            return f"JSON field {probe.json_field} is {value!r}, expected {version!r}"
    return None


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe: passed or not, after how many attempts, and why not."""

    url: str
    ok: bool
    attempts: int
    status_code: int | None
    message: str
    elapsed_seconds: float

    def line(self) -> str:
        verdict = "passed" if self.ok else "FAILED"
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        return f"{verdict}: GET {self.url} ({tries}): {self.message}"


@dataclass(frozen=True)
class SmokeTestResult:
    """The outcome of a smoke-test deployment run (filled by the Prefect layer)."""

    deployment: str
    flow_run_id: str | None
    state: str
    ok: bool
    message: str

    def line(self) -> str:
        verdict = "passed" if self.ok else "FAILED"
        return f"{verdict}: smoke test {self.deployment} ({self.state}): {self.message}"


@dataclass(frozen=True)
class VerificationResult:
    """Every check of an environment after deploy; ``ok`` only when all of them passed."""

    env: str
    version: str
    probes: tuple[ProbeResult, ...] = ()
    smoke_test: SmokeTestResult | None = None

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.probes) and (self.smoke_test is None or self.smoke_test.ok)

    @property
    def failures(self) -> tuple[str, ...]:
        out = [p.line() for p in self.probes if not p.ok]
        if self.smoke_test is not None and not self.smoke_test.ok:
            out.append(self.smoke_test.line())
        return tuple(out)

    def with_smoke_test(self, smoke: SmokeTestResult) -> VerificationResult:
        return VerificationResult(self.env, self.version, self.probes, smoke)

    def describe(self) -> str:
        checks = len(self.probes) + (1 if self.smoke_test else 0)
        where = f"{self.version} in {self.env}" if self.env else self.version
        if self.ok:
            return f"verification of {where} passed ({checks} check(s))"
        return f"verification of {where} failed: " + "; ".join(self.failures)

    def to_markdown(self) -> str:
        rows = [p.line() for p in self.probes]
        if self.smoke_test is not None:
            rows.append(self.smoke_test.line())
        return "\n".join([f"**{self.describe()}**", "", *(f"- {r}" for r in rows)])

    def raise_for_failure(self) -> None:
        if not self.ok:
            raise VerificationFailed(self)


def run_probe(
    probe: Probe,
    version: str,
    *,
    client: httpx.Client,
    sleep: Callable[[float], None] = time.sleep,
) -> ProbeResult:
    """Request ``probe.url`` until it passes, at most ``retries + 1`` times."""
    started = time.monotonic()
    attempts = 0
    status: int | None = None
    message = "not tried"
    for attempt in range(probe.retries + 1):
        if attempt:
            sleep(probe.interval_seconds)
        attempts += 1
        try:
            response = client.get(probe.url, timeout=probe.timeout_seconds)
        except httpx.HTTPError as exc:
            status, message = None, f"{type(exc).__name__}: {exc or 'no answer'}"
            continue
        status = response.status_code
        failure = check_response(probe, version, status, response.text)
        if failure is None:
            what = f"HTTP {status}"
            if probe.json_field:
                what += f", {probe.json_field} = {version!r}"
            if probe.body_pattern:
                what += ", body matches"
            return ProbeResult(probe.url, True, attempts, status, what, time.monotonic() - started)
        message = failure
    return ProbeResult(probe.url, False, attempts, status, message, time.monotonic() - started)


def run_probes(
    probes: Sequence[Probe],
    version: str,
    *,
    env: str = "",
    client: httpx.Client | None = None,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> VerificationResult:
    """Run every probe (one after the other) and gather the outcomes.

    Args:
        probes: The environment's probes.
        version: The release that must be served.
        env: The environment's name (for messages).
        client: The HTTP client to use (not closed here).
        transport: Or a transport for a client built and closed here.
        sleep: Called between attempts (injectable for tests).
    """
    if client is not None:
        results = tuple(run_probe(p, version, client=client, sleep=sleep) for p in probes)
        return VerificationResult(env, version, results)
    with httpx.Client(transport=transport, follow_redirects=True) as own:
        results = tuple(run_probe(p, version, client=own, sleep=sleep) for p in probes)
    return VerificationResult(env, version, results)
