"""Fault and latency injection for the GitHub emulator, and its call counting.

A fault matches requests by method and a regular expression searched in the request path (the
API prefix ``/api/v3`` removed) and fires for the next ``count`` matching calls: an error status
(502/503...), a 429 or a secondary-rate-limit 403 with ``Retry-After``, a stall before the
call is served normally (even when its caller has gone by then), or a connection reset mid-response ("reset": the call is served, its
side effects happen, then the connection closes after half of the body, as when a network
breaks while the answer travels back). ``latency`` delays every request.

Rate limits as GitHub answers them: "rate_limit" is a 429 with ``Retry-After``;
"primary_rate_limit" a 403 (or ``status``) with ``x-ratelimit-remaining: 0`` and
``x-ratelimit-reset`` ``reset_in`` seconds ahead and no ``Retry-After``; "secondary_rate_limit" a
403 with the secondary message and ``Retry-After`` unless ``retry_after`` is None (GitHub does not
always send it). "base_modified" answers the merge race, 405 "Base branch was modified. Review and
try the merge again." (timing on GitHub, so only on demand here).
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FaultKind = Literal[
    "error",
    "rate_limit",
    "primary_rate_limit",
    "secondary_rate_limit",
    "base_modified",
    "stall",
    "reset",
]
KINDS: tuple[str, ...] = (
    "error",
    "rate_limit",
    "primary_rate_limit",
    "secondary_rate_limit",
    "base_modified",
    "stall",
    "reset",
)


@dataclass
class Fault:
    """One armed fault; ``remaining`` counts down as matching calls arrive."""

    id: int
    kind: FaultKind
    path: str = ".*"
    method: str | None = None
    remaining: int = 1
    status: int = 502
    retry_after: int | None = 1
    seconds: float = 0.0
    reset_in: float = 60.0
    _regex: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._regex = re.compile(self.path)

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self._regex.search(path) is not None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_regex", None)
        return data


class Faults:
    """The armed faults and the global latency; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self.latency: float = 0.0

    def add(
        self,
        kind: FaultKind,
        path: str = ".*",
        method: str | None = None,
        count: int = 1,
        status: int | None = None,
        retry_after: int | None = 1,
        seconds: float = 0.0,
        reset_in: float = 60.0,
    ) -> Fault:
        """Arm a fault for the next ``count`` calls of ``method`` (any if None) matching ``path``.

        ``kind``: "error" answers ``status`` (default 502); "rate_limit" answers 429 and
        "secondary_rate_limit" a 403, both with ``Retry-After: retry_after``; "stall" sleeps
        ``seconds`` and then serves the call; "primary_rate_limit" answers ``status`` (default 403)
        with ``x-ratelimit-remaining: 0`` and a reset ``reset_in`` seconds ahead;
        "base_modified" answers 405 "Base branch was modified..."; "reset" serves the call and
        cuts the connection in the middle of its answer. ``retry_after=None`` sends no
        Retry-After.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        default = {
            "error": 502,
            "rate_limit": 429,
            "primary_rate_limit": 403,
            "secondary_rate_limit": 403,
            "base_modified": 405,
            "stall": 200,
            "reset": 200,
        }
        fault = Fault(
            id=next(self._ids),
            kind=kind,
            path=path,
            method=method.upper() if method else None,
            remaining=count,
            status=status if status is not None else default[kind],
            retry_after=retry_after,
            seconds=seconds,
            reset_in=reset_in,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The first armed fault matching this call (counted down), or None."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
        self.latency = 0.0

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)


class Stats:
    """Calls per "METHOD route-template"; 304 answers and injected faults counted apart."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.routes: Counter[str] = Counter()
        self.not_modified: Counter[str] = Counter()
        self.faulted: Counter[str] = Counter()

    def count(self, key: str, status: int, faulted: bool = False) -> None:
        with self._lock:
            if faulted:
                self.faulted[key] += 1
            elif status == 304:
                self.not_modified[key] += 1
            else:
                self.routes[key] += 1

    def reset(self) -> None:
        with self._lock:
            self.routes.clear()
            self.not_modified.clear()
            self.faulted.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": sum(self.routes.values()),
                "routes": dict(sorted(self.routes.items())),
                "not_modified_total": sum(self.not_modified.values()),
                "not_modified": dict(sorted(self.not_modified.items())),
                "faulted_total": sum(self.faulted.values()),
                "faulted": dict(sorted(self.faulted.items())),
            }
