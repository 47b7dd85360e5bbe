"""The promotion setup (promotion.yaml) and the settings (env vars, Secret blocks)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from promotion.config import (
    DEFAULT_CONFIG,
    ConfigError,
    Evidence,
    PromotionConfig,
    Settings,
    When,
    load_config,
    parse_config,
)

SERVICES = (
    "cartservice",
    "checkoutservice",
    "currencyservice",
    "emailservice",
    "frontend",
    "paymentservice",
    "productcatalogservice",
    "recommendationservice",
    "shippingservice",
)


def test_default_setup_describes_the_seed(config: PromotionConfig) -> None:
    assert config.github.repository == "acme/microservices-demo-gitops"
    assert config.github.base_branch == "main"
    assert config.services == SERVICES
    assert config.registry.prefix == "registry.digitalocean.com/microservices-demo"
    assert config.registry.host == "registry.digitalocean.com"
    assert config.registry.path == "microservices-demo"
    assert config.order.names == ("staging", "prod")
    staging, prod = config.environments
    assert (staging.overlay, staging.argocd_app) == (
        "kustomize/staging/kustomization.yaml",
        "staging-microservices-demo",
    )
    assert (prod.overlay, prod.argocd_app) == (
        "kustomize/prod/kustomization.yaml",
        "prod-microservices-demo",
    )
    assert prod.overlay_dir == "kustomize/prod"
    # staging merges by itself, then QA approves what runs there; the PM approves the prod PR.
    assert staging.merged_automatically and not prod.merged_automatically
    (qa,) = staging.approvals_at(When.AFTER_DEPLOY)
    (pm,) = prod.approvals_at(When.BEFORE_MERGE)
    assert (qa.gate, qa.approvers, qa.github_evidence) == (
        "qa",
        ("qa-alice", "qa-bob"),
        Evidence.NONE,
    )
    assert (pm.gate, pm.approvers) == ("pm", ("pm-carol",))
    assert not staging.approvals_at(When.BEFORE_MERGE) and not prod.approvals_at(When.AFTER_DEPLOY)
    assert config.approvers() == {"qa-alice", "qa-bob", "pm-carol"}


FIRST_FORMAT = """\
github: {repository: acme/gitops}
registry: {prefix: registry.example.com/shop}
services: [cart]
environments:
  - {name: staging, overlay: k/staging/kustomization.yaml, argocd_app: staging-shop, gate: auto}
  - {name: prod, overlay: k/prod/kustomization.yaml, argocd_app: prod-shop, gate: pm_approval}
approvers:
  qa: [qa-alice]
  pm: [pm-carol]
  pm_requires_github_review: true
"""


def test_the_first_file_format_keeps_its_meaning() -> None:
    config = parse_config(FIRST_FORMAT)
    staging, prod = config.environments
    assert [(a.gate, a.when, a.approvers) for a in staging.approvals] == [
        ("qa", When.AFTER_DEPLOY, ("qa-alice",))
    ]
    assert [(a.gate, a.when, a.approvers, a.github_evidence) for a in prod.approvals] == [
        ("pm", When.BEFORE_MERGE, ("pm-carol",), Evidence.REVIEW)
    ]


THREE = """\
github: {repository: acme/gitops}
registry: {prefix: registry.example.com/shop}
services: [cart]
environments:
  - {name: dev, overlay: k/dev/kustomization.yaml, argocd_app: dev-shop}
  - name: staging
    overlay: k/staging/kustomization.yaml
    argocd_app: staging-shop
    approvals: [{gate: qa, when: after_deploy, approvers: [qa-alice], github_evidence: comment}]
  - name: prod
    overlay: k/prod/kustomization.yaml
    argocd_app: prod-shop
    approvals: [{gate: pm, when: before_merge, approvers: [pm-carol], github_evidence: review}]
"""


def test_gates_sit_where_the_setup_puts_them() -> None:
    """dev -> staging -> prod: QA approves staging (not dev, the first automatic one)."""
    config = parse_config(THREE)
    dev, staging, prod = config.environments
    assert dev.approvals == () and dev.merged_automatically
    assert [a.gate for a in staging.approvals_at(When.AFTER_DEPLOY)] == ["qa"]
    assert staging.merged_automatically
    assert [a.gate for a in prod.approvals_at(When.BEFORE_MERGE)] == ["pm"]
    assert config.gate("qa").github_evidence is Evidence.COMMENT
    with pytest.raises(ConfigError, match="unknown gate 'release'; configured: qa, pm"):
        config.gate("release")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("when: after_deploy", "when: later"), "environments[1].approvals[0].when"),
        (("approvers: [qa-alice]", "approvers: []"), "environments[1].approvals[0].approvers"),
        (("approvers: [qa-alice]", "approvers: [-bad-]"), "environments[1].approvals[0].approvers"),
        (
            ("github_evidence: comment", "github_evidence: review"),
            "GitHub refuses reviews on a merged PR",
        ),
        (
            ("github_evidence: review", "github_evidence: email"),
            "environments[2].approvals[0].github_evidence",
        ),
        (("gate: pm", "gate: qa"), "environments[].approvals[].gate: listed twice: qa"),
    ],
)
def test_a_bad_gate_setup_is_refused_at_load(change: tuple[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(THREE.replace(*change))
    assert expected in str(info.value)


def test_load_config_reads_the_default_file() -> None:
    assert load_config() == load_config(DEFAULT_CONFIG)


def test_images_are_the_registry_prefix_and_service(config: PromotionConfig) -> None:
    images = config.images()
    assert list(images) == list(SERVICES)
    assert images["frontend"] == "registry.digitalocean.com/microservices-demo/frontend"


def test_environment_lookup(config: PromotionConfig) -> None:
    assert config.environment("prod").argocd_app == "prod-microservices-demo"
    with pytest.raises(ConfigError, match="unknown environment 'qa'; configured: staging, prod"):
        config.environment("qa")


INVALID = """\
github:
  repository: not-a-repo
  merge_method: rebase-and-squash
registry:
  prefix: Registry.Example.com
services: [cartservice, Cart_Service]
environments:
  - name: staging
    overlay: /etc/kustomization.yaml
    argocd_app: staging-app
    gate: automatic
  - name: prod
    overlay: kustomize/prod/kustomization.yaml
    argocd_app: prod-app
    gate: pm_approval
    colour: blue
approvers:
  qa: []
"""


def test_an_invalid_file_gives_one_error_listing_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "promotion.yaml"
    path.write_text(INVALID)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for location in (
        "github.repository",
        "github.merge_method",
        "registry.prefix",
        "services[1]",
        "environments[0].overlay",
        "environments[0].gate",
        "environments[1].colour",
        "approvers.qa",
        "approvers.pm",
    ):
        assert f"  - {location}: " in message, location
    assert "must be one of merge, squash, rebase" in message
    assert "Extra inputs are not permitted" in message
    assert "Field required" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "expected a mapping at the top level"),
        ("- github\n- registry\n", "expected a mapping at the top level"),
        ("github: [\n", "not valid YAML"),
        ("github: {}\ngithub: {}\n", "duplicate key"),
    ],
)
def test_files_that_are_not_a_setup(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_config(text, "setup.yaml")


def test_duplicate_services_are_refused() -> None:
    text = DEFAULT_CONFIG.read_text().replace("  - frontend\n", "  - frontend\n  - frontend\n")
    with pytest.raises(ConfigError, match="services: listed twice: frontend"):
        parse_config(text)


# A config bug this suite found (strict xfail until d33524c fixed it).
def test_duplicates_are_listed_with_every_other_problem() -> None:
    text = (
        DEFAULT_CONFIG.read_text()
        .replace("  - frontend\n", "  - frontend\n  - frontend\n")
        .replace("argocd_app: prod-microservices-demo", "argocd_app: staging-microservices-demo")
        .replace("when: after_deploy ", "when: nope ")
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    message = str(info.value)
    assert "frontend" in message
    assert "staging-microservices-demo" in message
    assert "environments[0].approvals[0].when" in message


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read promotion setup .*: No such file"):
        load_config(tmp_path / "missing.yaml")


def test_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read promotion setup .*: Is a directory"):
        load_config(tmp_path)


# A config bug this suite found (strict xfail until d33524c fixed it).
def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "promotion.yaml"
    path.write_bytes(b"\xff\xfegithub: {}\n")
    with pytest.raises(ConfigError, match="cannot read promotion setup"):
        load_config(path)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("RELEASE_PROMOTION_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_settings_from_the_environment_keep_tokens_secret(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RELEASE_PROMOTION_GITHUB_URL", "http://127.0.0.1:9999/api/v3")
    clean_env.setenv("RELEASE_PROMOTION_GITHUB_TOKEN", "ghp_topsecret")
    clean_env.setenv("RELEASE_PROMOTION_ARGOCD_TOKEN", "argo-topsecret")
    clean_env.setenv("RELEASE_PROMOTION_CONFIG_FILE", "/srv/promotion.yaml")
    settings = Settings()
    assert settings.github_url == "http://127.0.0.1:9999/api/v3"
    assert settings.config_file == Path("/srv/promotion.yaml")
    assert isinstance(settings.github_token, SecretStr)
    assert settings.github_token.get_secret_value() == "ghp_topsecret"
    assert isinstance(settings.argocd_token, SecretStr)
    for shown in (repr(settings), str(settings), str(settings.model_dump())):
        assert "topsecret" not in shown
    assert settings.registry_password is None


def test_with_secrets_fills_only_what_is_missing(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RELEASE_PROMOTION_GITHUB_TOKEN", "from-env")
    asked: list[str] = []

    def load_secret(block: str) -> str | None:
        asked.append(block)
        return {"release-promotion-argocd-token": "from-block"}.get(block)

    settings = Settings().with_secrets(load_secret)
    # No registry username: an anonymous registry, so no password block is looked up.
    assert asked == ["release-promotion-argocd-token"]
    assert settings.github_token is not None
    assert settings.github_token.get_secret_value() == "from-env"
    assert settings.argocd_token is not None
    assert settings.argocd_token.get_secret_value() == "from-block"
    assert settings.registry_password is None  # the loader had none
    assert "from-block" not in repr(settings)

    clean_env.setenv("RELEASE_PROMOTION_REGISTRY_USERNAME", "robot")
    asked.clear()
    Settings().with_secrets(load_secret)
    assert asked == ["release-promotion-argocd-token", "release-promotion-registry-password"]


def test_require_names_the_env_var_and_the_block(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as info:
        Settings().require("github_token")
    assert "RELEASE_PROMOTION_GITHUB_TOKEN" in str(info.value)
    assert "release-promotion-github-token" in str(info.value)


# A config bug this suite found (strict xfail until d33524c fixed it).
def test_secret_block_names_are_not_a_setting(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RELEASE_PROMOTION_SECRET_BLOCKS", '{"github_token": "attacker-block"}')
    settings = Settings()
    assert "SECRET_BLOCKS" not in settings.model_dump()
    assert settings.SECRET_BLOCKS["github_token"] == "release-promotion-github-token"


def test_a_check_can_be_pinned_to_the_github_app_that_posts_it() -> None:
    pinned = THREE.replace(
        "github: {repository: acme/gitops}",
        "github: {repository: acme/gitops, check_apps: {Kustomize validation: 15368}}",
    )
    assert parse_config(pinned).github.check_apps == {"Kustomize validation": 15368}
    with pytest.raises(ConfigError, match=r"github.check_apps.Kustomize validation"):
        parse_config(pinned.replace("15368", "-1"))
