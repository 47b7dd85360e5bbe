"""Prefect tasks over the registry client: is every image of a release in the registry?

The tasks take a ``RegistryTarget`` (plain values: the registry URL, the username and the password
as a ``SecretStr``, or the name of a Prefect Secret block holding it), build a
``promotion.registry.RegistryClient``, make one call and close it. Only transient failures
(5xx, 429, timeouts, connection errors) are retried; a missing image fails at once with every
missing image listed. Nothing is cached: an image may be pushed a minute later.
"""

from __future__ import annotations

from collections.abc import Mapping

from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel, ConfigDict, SecretStr

from promotion.config import PromotionConfig, Settings
from promotion.registry import RegistryClient, is_transient
from tasks.retry import transient_retries
from tasks.secrets import read_secret_block

__all__ = ["RegistryTarget", "check_release", "list_tags"]

DEFAULT_PASSWORD_BLOCK = Settings.SECRET_BLOCKS["registry_password"]


class RegistryTarget(BaseModel):
    """Where the registry is and how to authenticate (safe to pass to tasks).

    Anonymous when ``username`` is None. The username is a ``SecretStr`` too (a DOCR username
    can be an API token; a plain string is accepted and wrapped), so neither shows in a repr, a
    log line or a Prefect parameter view. The password is a ``SecretStr`` or is read from the
    Prefect Secret block ``password_block``.
    """

    model_config = ConfigDict(frozen=True)

    base_url: str
    username: SecretStr | None = None
    password: SecretStr | None = None
    password_block: str | None = None
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings, config: PromotionConfig) -> RegistryTarget:
        """Build from the settings; the URL defaults to ``https://<registry host of the setup>``."""
        needs_block = settings.registry_username is not None and settings.registry_password is None
        return cls(
            base_url=settings.registry_url or f"https://{config.registry.host}",
            username=settings.registry_username,
            password=settings.registry_password,
            password_block=DEFAULT_PASSWORD_BLOCK if needs_block else None,
        )

    def resolve_password(self) -> SecretStr | None:
        if self.password is not None or self.password_block is None:
            return self.password
        return read_secret_block(self.password_block, f"registry password for {self.base_url}")

    def client(self) -> RegistryClient:
        return RegistryClient(
            self.base_url,
            username=self.username,
            password=self.resolve_password(),
            timeout=self.timeout,
        )


RETRY = transient_retries(is_transient)


@task(name="check-release-images", task_run_name="check-release-images-{tag}", **RETRY)
def check_release(
    target: RegistryTarget, repositories: Mapping[str, str], tag: str
) -> dict[str, str]:
    """Check that every image of a release exists in the registry.

    Args:
        target: Where the registry is and the credentials.
        repositories: Service -> repository path inside the registry.
        tag: The release tag.

    Returns:
        Service -> manifest digest.
    """
    with target.client() as client:
        digests = client.check_release(repositories, tag)
    get_run_logger().info("all %d images of %s are in %s", len(digests), tag, target.base_url)
    return digests


@task(name="list-image-tags", task_run_name="list-image-tags-{repository}", **RETRY)
def list_tags(target: RegistryTarget, repository: str) -> list[str]:
    """List the tags of one repository.

    Args:
        target: Where the registry is and the credentials.
        repository: The repository path inside the registry.

    Returns:
        The tags.
    """
    with target.client() as client:
        return client.list_tags(repository)
