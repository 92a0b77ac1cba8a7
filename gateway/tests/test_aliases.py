"""Alias rules: how an id that is neither a model nor an alias resolves, and how operators add them in admin."""

import asyncio
import re

import pytest
from django.urls import reverse

from billing.pricing import TokenPrices
from gateway.catalog import RESOLVED_MEMO_SIZE, Catalog, Route, Rule, Target, catalog_load
from gateway.errors import GatewayError
from gateway.models import AliasRule
from gateway.routing import choose_route
from gateway.services import model_upsert, provider_upsert
from orgs.services import user_create

TARGET = Target(provider="p", kind="anthropic", base_url="https://p.test", api_key="k", upstream_model="m",
                connect_timeout=1, read_timeout=1)


def route(public_id: str, aliases: tuple[str, ...] = (), capability: str = "chat") -> Route:
    return Route(public_id=public_id, capability=capability, prices=TokenPrices(1, 1, 1, 1), targets=(TARGET,),
                 aliases=aliases, intents=())


def catalog(*rules: Rule) -> Catalog:
    routes = (route("claude-haiku-4-5", aliases=("claude-3-5-haiku-20241022",)), route("claude-sonnet-4-6"),
              route("nano_banana", capability="image"))
    by_name = {name: r for r in routes for name in (r.public_id, *r.aliases)}
    return Catalog(routes=routes, by_name=by_name, by_intent={}, rules=rules)


DATED = Rule("regex", r"(.+?)-\d{8}", r"\1", re.compile(r"(.+?)-\d{8}"))


@pytest.mark.no_services
def test_a_dated_id_resolves_to_its_family():
    assert catalog(DATED).resolve("claude-haiku-4-5-20251001", capability="chat").public_id == "claude-haiku-4-5"


@pytest.mark.no_services
def test_rules_chain_and_the_first_match_wins():
    rules = (DATED, Rule("prefix", "claude-3-7-sonnet", "claude-sonnet-4-6"),
             Rule("prefix", "claude-3", "claude-haiku-4-5"))
    resolved = catalog(*rules)
    assert resolved.resolve("claude-3-7-sonnet-20250219", capability="chat").public_id == "claude-sonnet-4-6"
    assert resolved.resolve("claude-3-opus", capability="chat").public_id == "claude-haiku-4-5"


@pytest.mark.no_services
def test_a_model_or_an_alias_is_never_overridden_by_a_rule():
    everything = Rule("prefix", "claude", "claude-sonnet-4-6")
    resolved = catalog(everything)
    assert resolved.resolve("claude-haiku-4-5", capability="chat").public_id == "claude-haiku-4-5"
    assert resolved.resolve("claude-3-5-haiku-20241022", capability="chat").public_id == "claude-haiku-4-5"
    assert resolved.resolve("claude-anything", capability="chat").public_id == "claude-sonnet-4-6"


@pytest.mark.no_services
def test_an_exact_rule_and_a_rule_to_another_capability():
    resolved = catalog(Rule("exact", "nano-banana-t2i", "nano_banana"))
    assert resolved.resolve("nano-banana-t2i", capability="image").public_id == "nano_banana"
    with pytest.raises(GatewayError, match="is an image model: call it at /v1/images/generations"):
        resolved.resolve("nano-banana-t2i", capability="chat")


@pytest.mark.no_services
def test_a_rule_whose_target_is_unknown_or_malformed_matches_nothing():
    rules = (Rule("regex", r"x-(.+)", r"\2", re.compile(r"x-(.+)")), Rule("exact", "old", "gone"))
    resolved = catalog(*rules)
    for name in ("x-claude-sonnet-4-6", "old"):
        with pytest.raises(GatewayError) as exc:
            resolved.resolve(name, capability="chat")
        assert exc.value.code == "model_not_found"


@pytest.mark.no_services
def test_rule_lookups_are_remembered_within_bounds():
    resolved = catalog(DATED)
    for n in range(RESOLVED_MEMO_SIZE + 10):
        resolved.by_rule(f"unknown-{n}")
    assert len(resolved._by_rule) <= RESOLVED_MEMO_SIZE


@pytest.mark.no_services
def test_unknown_ids_get_suggestions_of_their_capability():
    with pytest.raises(GatewayError) as exc:
        catalog().resolve("claude-haiku-4.5", capability="chat")
    assert exc.value.extra["suggestions"] == ["claude-haiku-4-5"]
    assert exc.value.message == ("Unknown model `claude-haiku-4.5`. Did you mean `claude-haiku-4-5`? "
                                 "GET /v1/models lists every model.")
    with pytest.raises(GatewayError) as exc:
        catalog().resolve("zzz", capability="chat")
    assert exc.value.extra["suggestions"] == [] and "Did you mean" not in exc.value.message


@pytest.fixture
def operator(client):
    admin = user_create(email="catalog-ops@example.test", password="pw", is_staff=True, is_superuser=True)
    client.force_login(admin)
    return admin


@pytest.mark.django_db
def test_operators_add_rules_in_admin_and_the_gateway_follows_them(client, operator):
    provider = provider_upsert(name="alias-test", kind="openai", base_url="https://alias.test/v1", api_key="k")
    model_upsert(public_id="alias-test-model", capability="chat", targets=[(provider, "m")],
                 prices_per_mtok={"input": "1", "output": "1"})
    add = reverse("admin:gateway_aliasrule_add")
    fields = {"kind": "prefix", "pattern": "my-team-", "position": 5, "enabled": "on", "description": ""}
    refused = client.post(add, {**fields, "target": "no-such-model"})
    assert refused.status_code == 200 and "No model or alias has this id." in refused.content.decode()
    assert client.post(add, {**fields, "target": "alias-test-model"}).status_code == 302
    bad = client.post(add, {**fields, "kind": "regex", "pattern": "(unclosed", "target": "x"})
    assert "Not a regular expression" in bad.content.decode()
    groups = client.post(add, {**fields, "kind": "regex", "pattern": "team-(.+)", "target": r"\2"})
    assert "The pattern has no group 2." in groups.content.decode()
    assert client.get(reverse("admin:gateway_aliasrule_changelist")).status_code == 200
    assert catalog_load().resolve("my-team-default", capability="chat").public_id == "alias-test-model"
    AliasRule.objects.filter(pattern="my-team-").update(enabled=False)
    with pytest.raises(GatewayError):
        catalog_load().resolve("my-team-default", capability="chat")


@pytest.mark.no_services
def test_an_unknown_intent_suggests_the_closest_buckets():
    fast = route("claude-haiku-4-5")
    buckets = Catalog(routes=(fast,), by_name={"claude-haiku-4-5": fast}, by_intent={"chat-fast": (fast,)})
    with pytest.raises(GatewayError) as exc:
        asyncio.run(choose_route(buckets, model=None, intent="chat-fats", capability="chat"))
    assert (exc.value.code, exc.value.extra["suggestions"]) == ("intent_not_found", ["chat-fast"])
