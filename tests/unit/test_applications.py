"""promotion.yaml with several applications: the format, the single-application file's name, and
the setups refused at load."""

from __future__ import annotations

import textwrap

import pytest

from promotion.config import (
    DEFAULT_CONFIG,
    ConfigError,
    application_name,
    load_applications,
    parse_applications,
    parse_config,
)
from promotion.names import environment_lock

APP = textwrap.indent(DEFAULT_CONFIG.read_text(encoding="utf-8").split("# Operations")[0], "    ")
TWO = (
    "applications:\n  shop:\n" + APP + "  billing:\n" + APP.replace("microservices-demo", "billing")
)


def test_todays_file_is_one_application_named_after_its_repository() -> None:
    setup = load_applications()
    assert setup.names == ("microservices-demo-gitops",)
    assert setup.get(None) is setup.get("microservices-demo-gitops")
    assert application_name("Acme/Shop_Front.GitOps") == "shop-front-gitops"
    named = parse_config("application: shop\n" + DEFAULT_CONFIG.read_text(encoding="utf-8"))
    assert named.application == "shop"


def test_several_applications_each_with_their_own_setup() -> None:
    setup = parse_applications(TWO)
    assert setup.names == ("shop", "billing")
    billing = setup.get("billing")
    assert billing.application == "billing"
    assert billing.github.repository == "acme/billing-gitops"
    assert billing.environment("prod").argocd_app == "prod-billing"
    assert setup.get("shop").environment("prod").argocd_app == "prod-microservices-demo"
    assert environment_lock("shop", "prod") != environment_lock("billing", "prod")


def test_no_application_named_with_several_is_refused_naming_them() -> None:
    with pytest.raises(
        ConfigError, match=r"2 applications: say which one \(application: shop, billing\)"
    ):
        parse_config(TWO)
    with pytest.raises(ConfigError, match="unknown application 'cart'; configured: shop, billing"):
        parse_config(TWO, application="cart")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (TWO + "  shop:\n    services: [a]\n", 'duplicate key "shop"'),
        (TWO.replace("  billing:", "  Billing:"), "'Billing' is not a valid application name"),
        ("github: {repository: a/b}\n" + TWO, "github belong under applications.<name>"),
        (
            TWO.replace("-billing", "-microservices-demo"),
            "prod-microservices-demo is used by shop, billing",
        ),
        (
            TWO.replace("  billing:\n", "  billing:\n    watch: {enabled: true}\n"),
            "may not be set per application",
        ),
        ("applications: {}\n", "expected a mapping of application name"),
        (TWO.replace("acme/billing-gitops", "not a repo"), "applications.billing: 1 problem"),
    ],
)
def test_bad_setups_are_refused_at_load(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_applications(text, "promotion.yaml")
