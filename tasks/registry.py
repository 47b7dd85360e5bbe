"""Prefect tasks over the registry client: is every image of a release in the registry?

The tasks take the registry URL and credentials as plain values, build a
``promotion.registry.RegistryClient``, make one call and close it. Only transient failures
(5xx, 429, timeouts, connection errors) are retried; a missing image fails at once with every
missing image listed. Nothing is cached: an image may be pushed a minute later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from pydantic import SecretStr

from promotion.registry import RegistryClient, is_transient
from tasks.retry import RETRIES, RETRY_DELAYS, RETRY_JITTER, transient_only

__all__ = ["check_release", "list_tags"]

RETRY: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_jitter_factor": RETRY_JITTER,
    "retry_condition_fn": transient_only(is_transient),
    "cache_policy": NO_CACHE,
}


@task(name="check-release-images", task_run_name="check-release-images-{tag}", **RETRY)
def check_release(
    registry_url: str,
    repositories: Mapping[str, str],
    tag: str,
    username: str | None = None,
    password: SecretStr | str | None = None,
) -> dict[str, str]:
    """Check that every image of a release exists in the registry.

    Args:
        registry_url: The registry, for example ``https://registry.digitalocean.com``.
        repositories: Service -> repository path inside the registry.
        tag: The release tag.
        username: Registry username for the token service, if any.
        password: Registry password or API token, if any.

    Returns:
        Service -> manifest digest.
    """
    with RegistryClient(registry_url, username=username, password=password) as client:
        digests = client.check_release(repositories, tag)
    get_run_logger().info("all %d images of %s are in %s", len(digests), tag, registry_url)
    return digests


@task(name="list-image-tags", task_run_name="list-image-tags-{repository}", **RETRY)
def list_tags(
    registry_url: str,
    repository: str,
    username: str | None = None,
    password: SecretStr | str | None = None,
) -> list[str]:
    """List the tags of one repository.

    Args:
        registry_url: The registry URL.
        repository: The repository path inside the registry.
        username: Registry username, if any.
        password: Registry password or API token, if any.

    Returns:
        The tags.
    """
    with RegistryClient(registry_url, username=username, password=password) as client:
        return client.list_tags(repository)
