"""Prefect Secret blocks: where credentials live when they are not in the environment."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr


class SecretBlockMissing(LookupError):
    """A Secret block that was named does not exist (or is empty)."""


def load_secret_block(name: str) -> str | None:
    """The value of the Prefect Secret block ``name``, or None when there is no such block."""
    from prefect.blocks.system import Secret

    try:
        block: Any = Secret.load(name)
    except ValueError:
        return None
    value = block.get()
    return str(value) if value else None


def read_secret_block(name: str, what: str) -> SecretStr:
    """The Secret block ``name`` as a ``SecretStr``; a missing block is a clear error."""
    value = load_secret_block(name)
    if value is None:
        raise SecretBlockMissing(f"no {what}: the Prefect Secret block {name!r} does not exist")
    return SecretStr(value)
