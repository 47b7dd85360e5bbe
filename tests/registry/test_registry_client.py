"""The registry client against the real ``docker-registry``, directly and behind a token front."""

from __future__ import annotations

import httpx
import pytest

from promotion.registry import (
    MANIFEST_MEDIA_TYPES,
    RegistryAuthFailed,
    RegistryClient,
    RegistryRequestFailed,
    RegistryUnavailable,
    ReleaseIncomplete,
    RepositoryNotFound,
    is_transient,
)
from sandbox.http import free_port, serve_in_thread
from sandbox.registry import OCI_MANIFEST, BearerTokenFront, tiny_image

from .conftest import MISSING_IN_V101, PASSWORD, USER, Front, Published

pytestmark = pytest.mark.timeout(60)


def test_published_images_are_real_oci_images(published: Published) -> None:
    name = f"{published.config.registry.path}/frontend"
    response = httpx.get(
        f"{published.registry.url}/v2/{name}/manifests/v1.0.0", headers={"Accept": OCI_MANIFEST}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == OCI_MANIFEST
    manifest = response.json()
    assert manifest["mediaType"] == OCI_MANIFEST
    assert response.content == tiny_image(name, "v1.0.0").manifest
    layer = manifest["layers"][0]["digest"]
    blob = httpx.get(f"{published.registry.url}/v2/{name}/blobs/{layer}", follow_redirects=True)
    assert blob.status_code == 200
    assert len(blob.content) == manifest["layers"][0]["size"]


def test_complete_release(published: Published) -> None:
    with RegistryClient(published.registry.url) as client:
        digests = client.check_release(published.repositories, "v1.0.0")
    assert set(digests) == set(published.config.services)
    assert all(d.startswith("sha256:") for d in digests.values())


def test_every_missing_image_is_reported_at_once(published: Published) -> None:
    with RegistryClient(published.registry.url) as client:
        with pytest.raises(ReleaseIncomplete) as caught:
            client.check_release(published.repositories, "v1.0.1")
        assert tuple(m.service for m in caught.value.missing) == MISSING_IN_V101
        for service in MISSING_IN_V101:
            assert f"microservices-demo/{service}:v1.0.1" in str(caught.value)
        with pytest.raises(ReleaseIncomplete) as none:
            client.check_release(published.repositories, "v9.9.9")
        assert len(none.value.missing) == len(published.config.services)
        assert "9 image(s) missing" in str(none.value)


def test_token_challenge_flow_with_cached_tokens(published: Published, front: Front) -> None:
    with RegistryClient(front.url, username=USER, password=PASSWORD) as client:
        digests = client.check_release(published.repositories, "v1.0.0")
        services = len(published.config.services)
        assert len(digests) == services
        assert client.token_requests == services  # one per repository scope
        assert front.front.counts["challenged"] == services
        client.check_release(published.repositories, "v1.0.0")
        assert client.token_requests == services  # cached per scope
        # tokens revoked server-side: the client follows the challenge again
        front.front.revoke_all()
        with pytest.raises(ReleaseIncomplete) as caught:
            client.check_release(published.repositories, "v1.0.1")
        assert tuple(m.service for m in caught.value.missing) == MISSING_IN_V101
        assert client.token_requests == 2 * services
        assert sorted(client.list_tags(published.repositories["emailservice"])) == [
            "v1.0.0",
            "v1.0.1",
        ]


def test_the_manifest_head_accepts_oci_and_docker_types() -> None:
    assert "application/vnd.oci.image.index.v1+json" in MANIFEST_MEDIA_TYPES
    assert "application/vnd.docker.distribution.manifest.v2+json" in MANIFEST_MEDIA_TYPES
    assert "application/vnd.docker.distribution.manifest.list.v2+json" in MANIFEST_MEDIA_TYPES


def test_wrong_credentials_are_refused_without_leaking(published: Published, front: Front) -> None:
    client = RegistryClient(front.url, username=USER, password="wrong-secret")
    with client, pytest.raises(RegistryAuthFailed) as caught:
        client.check_release(published.repositories, "v1.0.0")
    assert "wrong-secret" not in str(caught.value)
    assert not is_transient(caught.value)
    with RegistryClient(front.url) as anonymous, pytest.raises(RegistryAuthFailed):
        anonymous.manifest_digest(published.repositories["frontend"], "v1.0.0")


def test_list_tags_paginates_and_reports_unknown_repositories(published: Published) -> None:
    with RegistryClient(published.registry.url) as client:
        repository = published.repositories["shippingservice"]
        assert client.list_tags(repository, page_size=1) == ["v1.0.0", "v1.0.1"]
        with pytest.raises(RepositoryNotFound):
            client.list_tags("microservices-demo/nope")


def test_faults_and_unreachable_registry_are_transient(published: Published, front: Front) -> None:
    front.front.fail_next(1, 503)
    with RegistryClient(front.url, username=USER, password=PASSWORD) as client:
        with pytest.raises(RegistryRequestFailed) as caught:
            client.manifest_digest(published.repositories["frontend"], "v1.0.0")
        assert caught.value.status_code == 503
        assert is_transient(caught.value)
        assert client.manifest_digest(published.repositories["frontend"], "v1.0.0")
    down = RegistryClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    with down, pytest.raises(RegistryUnavailable) as unreachable:
        down.check_release({"frontend": "x/frontend"}, "v1")
    assert is_transient(unreachable.value)


def test_docker_hub_401_for_an_unknown_repository_is_a_missing_image(
    published: Published,
) -> None:
    """Docker Hub answers 401 even to a fresh token for a repository that does not exist."""
    hub = BearerTokenFront(
        published.registry.url, users={USER: PASSWORD}, unknown_repository_401=True
    )
    server = serve_in_thread(hub.app)
    try:
        repositories = {**published.repositories, "ghost": "microservices-demo/ghost"}
        client = RegistryClient(server.url, username=USER, password=PASSWORD)
        with client, pytest.raises(ReleaseIncomplete) as caught:
            client.check_release(repositories, "v1.0.0")
        assert [m.service for m in caught.value.missing] == ["ghost"]
        assert hub.counts["hidden_404"] >= 1
        with RegistryClient(server.url, username=USER, password=PASSWORD) as client:
            assert client.manifest_digest("microservices-demo/ghost", "v1.0.0") is None
            # a missing tag of an existing repository is still a plain 404
            assert client.manifest_digest(published.repositories["frontend"], "v9.9.9") is None
            with pytest.raises(RepositoryNotFound) as not_found:
                client.list_tags("microservices-demo/ghost")
        assert not is_transient(not_found.value)
        # bad credentials are still bad credentials (the token exchange itself fails)
        with (
            RegistryClient(server.url, username=USER, password="wrong") as bad,
            pytest.raises(RegistryAuthFailed),
        ):
            bad.manifest_digest("microservices-demo/ghost", "v1.0.0")
    finally:
        server.stop()
        hub.close()


def test_the_username_never_shows_in_errors_or_reprs(published: Published, front: Front) -> None:
    """A DOCR username can be an API token: it must not reach a message or a log line."""
    username = "dop_v1_username_is_a_token_0123456789"
    front.front.users[username] = PASSWORD
    client = RegistryClient(front.url, username=username, password="wrong-secret")
    with client, pytest.raises(RegistryAuthFailed) as caught:
        client.manifest_digest(published.repositories["frontend"], "v1.0.0")
    assert username not in str(caught.value) and username not in repr(client)
    front.front.fail_next(1, 503)
    with (
        RegistryClient(front.url, username=username, password=PASSWORD) as good,
        pytest.raises(RegistryRequestFailed) as failed,
    ):
        good.manifest_digest(published.repositories["frontend"], "v1.0.0")
    assert username not in str(failed.value)
    unreachable = f"http://127.0.0.1:{free_port()}"
    with (
        RegistryClient(unreachable, username=username, password=PASSWORD) as gone,
        pytest.raises(RegistryUnavailable) as down,
    ):
        gone.manifest_digest(published.repositories["frontend"], "v1.0.0")
    assert username not in str(down.value)
