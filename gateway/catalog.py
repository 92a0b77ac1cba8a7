"""An immutable in-process snapshot of the catalog, swapped whole on refresh (never queried per call)."""

import asyncio
import difflib
import logging
import re
from dataclasses import dataclass, field

from django.conf import settings

from billing.pricing import TokenPrices, UnitPrice
from core.crypto import decrypt
from gateway.db import run_db
from gateway.errors import invalid_request

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    kind: str
    base_url: str
    api_key: str
    upstream_model: str
    connect_timeout: float
    read_timeout: float
    responses: bool = False  # also speaks the OpenAI Responses API
    provider_id: int = 0


# Where each capability's models are called (a model asked for at another one's endpoint is sent there).
CAPABILITY_ENDPOINTS = {"chat": "/v1/chat/completions", "image": "/v1/images/generations",
                        "audio": "/v1/audio/generations", "video": "/v1/videos/generate", "gpu": "/v1/gpu/{model}"}


@dataclass(frozen=True, slots=True)
class Route:
    public_id: str
    capability: str
    prices: TokenPrices
    targets: tuple[Target, ...]
    aliases: tuple[str, ...]
    intents: tuple[str, ...]
    price_unit: str = "token"
    unit_price: UnitPrice | None = None  # models priced per image, second, clip or request
    parameters: dict = field(default_factory=dict)  # what the model accepts (durations, sizes…)
    context_window: int | None = None
    max_output_tokens: int | None = None

    @property
    def blended_price(self) -> int:
        """What intents compare models by: input + output per million tokens, or the unit price."""
        return self.unit_price.amount if self.unit_price else self.prices.input + self.prices.output

    @property
    def family(self) -> str:
        """The wire format the model is made for (its primary target's): Anthropic models live on /messages."""
        return self.targets[0].kind

    @property
    def endpoint(self) -> str:
        """Where clients call the model: Anthropic models at /messages, the others at their capability's."""
        if self.capability == "chat" and self.family == "anthropic":
            return "/v1/messages"
        return CAPABILITY_ENDPOINTS[self.capability].format(model=self.public_id)


@dataclass(frozen=True, slots=True)
class Rule:
    """An alias rule (gateway.models.AliasRule): what an unknown id matching it resolves to."""

    kind: str  # exact, prefix or regex
    pattern: str
    target: str
    regex: re.Pattern[str] | None = None

    def apply(self, name: str) -> str | None:
        if self.kind == "exact":
            return self.target if name == self.pattern else None
        if self.kind == "prefix":
            return self.target if name.startswith(self.pattern) else None
        match = self.regex.fullmatch(name) if self.regex else None
        try:
            return match.expand(self.target) if match else None
        except (re.error, IndexError):  # a target naming a group the pattern lacks: no match
            return None


RULE_HOPS = 3  # a rule's result may match another rule (dated id → family → current model), this many times
RESOLVED_MEMO_SIZE = 4096  # ids resolved by rules, kept per snapshot; bounded, since clients choose the ids


@dataclass(frozen=True, slots=True)
class Catalog:
    routes: tuple[Route, ...]
    by_name: dict[str, Route]  # public ids and aliases
    by_intent: dict[str, tuple[Route, ...]]  # cheapest first
    rules: tuple[Rule, ...] = ()
    _by_rule: dict[str, Route | None] = field(default_factory=dict, repr=False, compare=False)  # memo

    def resolve(self, name: object, *, capability: str) -> Route:
        if not name or not isinstance(name, str):
            raise invalid_request("Missing required parameter: `model`.", code="missing_model")
        route = self.by_name.get(name) or self.by_rule(name)
        if route is not None and route.capability != capability:
            article = "an" if route.capability[0] in "aeiou" else "a"
            raise invalid_request(f"`{name}` is {article} {route.capability} model: call it at {route.endpoint}.",
                                  code="wrong_endpoint_for_model")
        if route is None:
            available = [r.public_id for r in self.routes if r.capability == capability]
            suggestions = self.closest(name, capability=capability)
            hint = f" Did you mean {' or '.join(f'`{s}`' for s in suggestions)}?" if suggestions else ""
            raise invalid_request(f"Unknown model `{name}`.{hint} GET /v1/models lists every model.",
                                  code="model_not_found", suggestions=suggestions, available_models=available)
        return route

    def by_rule(self, name: str) -> Route | None:
        """The route the alias rules give an id that is neither a model nor an alias (None: no rule does)."""
        if not self.rules:
            return None
        if name in self._by_rule:
            return self._by_rule[name]
        route, current = None, name
        for _ in range(RULE_HOPS):
            current = next((found for rule in self.rules if (found := rule.apply(current)) is not None), None)
            if current is None:
                break
            if (route := self.by_name.get(current)) is not None:
                break
        if len(self._by_rule) >= RESOLVED_MEMO_SIZE:
            self._by_rule.clear()
        self._by_rule[name] = route
        return route

    def closest(self, name: str, *, capability: str, limit: int = 3) -> list[str]:
        """The catalog ids nearest to a mistyped or unknown one (an alias suggests the model it names)."""
        names = {alias: route.public_id for alias, route in self.by_name.items() if route.capability == capability}
        found = difflib.get_close_matches(name.lower(), [n.lower() for n in names], n=limit * 2, cutoff=0.6)
        by_lower = {n.lower(): public_id for n, public_id in names.items()}
        return list(dict.fromkeys(by_lower[n] for n in found))[:limit]


def catalog_load() -> Catalog:
    """The enabled models with their enabled targets, in five value queries (no model instances, each
    provider's key decrypted once): each gateway process reloads it every CATALOG_REFRESH_SECONDS in a
    thread, and the Python that runs there takes the GIL from the event loop serving calls."""
    from gateway.models import AliasRule, CatalogModel, FallbackTarget, ModelAlias, Provider

    conf = settings.HYPEREAL
    providers = {
        row["pk"]: row | {"api_key": decrypt(row["api_key_encrypted"])}
        for row in Provider.objects.filter(enabled=True).values(
            "pk", "name", "kind", "base_url", "api_key_encrypted", "connect_timeout", "read_timeout",
            "supports_responses")
    }
    targets: dict[int, list[Target]] = {}
    # Only the providers read above: one enabled meanwhile waits for the next load rather than break this one.
    chained = FallbackTarget.objects.filter(model__enabled=True, provider__in=providers.keys())
    for model_id, provider_id, upstream_model in chained.values_list("model", "provider", "upstream_model"):
        p = providers[provider_id]
        targets.setdefault(model_id, []).append(Target(
            provider=p["name"], kind=p["kind"], base_url=p["base_url"].rstrip("/"), api_key=p["api_key"],
            upstream_model=upstream_model,
            connect_timeout=p["connect_timeout"] or conf["UPSTREAM_CONNECT_TIMEOUT"],
            read_timeout=p["read_timeout"] or conf["UPSTREAM_READ_TIMEOUT"],
            responses=p["supports_responses"], provider_id=provider_id))
    aliases: dict[int, list[str]] = {}
    listed = ModelAlias.objects.filter(model__enabled=True).order_by("pk").values_list("model", "alias")
    for model_id, alias in listed:
        aliases.setdefault(model_id, []).append(alias)
    servable = CatalogModel.objects.filter(enabled=True, pk__in=targets.keys())  # else not advertised
    routes = []
    for model in servable.values("pk", "public_id", "capability", "input_price", "cached_input_price",
                                 "cache_write_price", "output_price", "price_unit", "unit_price", "max_units",
                                 "intents", "parameters", "context_window", "max_output_tokens"):
        prices = TokenPrices(input=model["input_price"], cached_input=model["cached_input_price"],
                             cache_write=model["cache_write_price"], output=model["output_price"])
        unit_price = (UnitPrice(model["unit_price"], model["max_units"])
                      if model["price_unit"] != CatalogModel.PriceUnit.TOKEN else None)
        routes.append(Route(public_id=model["public_id"], capability=model["capability"], prices=prices,
                            targets=tuple(targets[model["pk"]]), aliases=tuple(aliases.get(model["pk"], ())),
                            intents=tuple(i.strip() for i in model["intents"].split(",") if i.strip()),
                            price_unit=model["price_unit"], unit_price=unit_price,
                            parameters=model["parameters"] or {}, context_window=model["context_window"],
                            max_output_tokens=model["max_output_tokens"]))
    by_name = {alias: r for r in routes for alias in r.aliases}
    by_name.update({r.public_id: r for r in routes})
    by_intent: dict[str, list[Route]] = {}
    for route in sorted(routes, key=lambda r: (r.blended_price, r.public_id)):
        for intent in route.intents:
            by_intent.setdefault(intent, []).append(route)
    return Catalog(routes=tuple(routes), by_name=by_name,
                   by_intent={intent: tuple(rs) for intent, rs in by_intent.items()},
                   rules=tuple(rule for row in AliasRule.objects.filter(enabled=True) if (rule := _rule(row))))


def _rule(row) -> Rule | None:
    if row.kind != "regex":
        return Rule(row.kind, row.pattern, row.target)
    try:
        return Rule(row.kind, row.pattern, row.target, re.compile(row.pattern))
    except re.error:  # admin refuses these; one written around it is skipped, not fatal
        log.warning("alias rule %s has an invalid pattern %r: skipped", row.pk, row.pattern)
        return None


_current: Catalog | None = None


async def catalog() -> Catalog:
    global _current
    if _current is None:
        _current = await run_db(catalog_load)
    return _current


async def catalog_refresh_forever() -> None:
    """Admin edits reach every gateway process within CATALOG_REFRESH_SECONDS."""
    global _current
    while True:
        await asyncio.sleep(settings.HYPEREAL["CATALOG_REFRESH_SECONDS"])
        try:
            _current = await run_db(catalog_load)
        except Exception:  # keep serving the last good snapshot
            log.exception("catalog refresh failed")
