"""The dashboard's model pages: the playground (any catalog model, called through the model API and billed as
an API call) and the model list with prices (the entries `GET /v1/models` answers)."""

import json
import shlex
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from billing.selectors import wallet_balance
from gateway.catalog import Route, catalog_load
from gateway.info import model_entry
from gateway.playground import (
    SPEND_SCOPE,
    TOKEN_SECONDS,
    playground_key,
    playground_key_name,
    playground_token_issue,
)
from orgs.api.base import client_ip
from orgs.pages import org_page, page_context
from orgs.roles import role_has_scope

PLAYGROUND_CAPABILITIES = ("chat", "image", "audio", "video")  # GPU workers take free-form input: no form fits
CAPABILITY_LABELS = {"chat": "Chat", "image": "Image", "audio": "Audio", "video": "Video", "gpu": "GPU"}


@org_page("usage:read")
def playground_page(request):
    """Every member may look; only roles that may spend get a form (the token endpoint checks it again)."""
    membership = request.membership
    models = [model_entry(r) for r in _by_name(catalog_load().routes) if r.capability in PLAYGROUND_CAPABILITIES]
    return render(request, "gateway/playground.html", page_context(
        request, "playground", models=models, can_spend=role_has_scope(membership.role, SPEND_SCOPE),
        key_name=playground_key_name(request.user),
        balance=wallet_balance(organization_id=membership.organization_id),
        capabilities=[(c, CAPABILITY_LABELS[c]) for c in PLAYGROUND_CAPABILITIES
                      if any(m["capability"] == c for m in models)]))


@require_POST
@org_page(SPEND_SCOPE)
def playground_token(request):
    """A token for the member's Playground key in this organization, bound to this session."""
    key = playground_key(membership=request.membership, ip=client_ip(request))
    token = playground_token_issue(key=key, user_id=request.user.pk, session_key=request.session.session_key)
    return JsonResponse({"token": token, "expiresIn": TOKEN_SECONDS})


@dataclass(frozen=True)
class ModelCard:
    """A catalog entry as the model list shows it."""

    entry: dict
    label: str  # the capability's
    providers: tuple[str, ...]
    prices: list[tuple[str, str, str]]  # (what, credits, USD)
    limits: list[str]
    example: str


def models_page(request):
    """Public by default: which models and at what price is what people compare before they sign up, and an
    entry carries nothing private (no provider addresses or keys). HYPEREAL_MODELS_PAGE_PUBLIC=false keeps it
    for signed-in members."""
    if not settings.HYPEREAL_MODELS_PAGE_PUBLIC and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    routes = catalog_load().routes
    query = request.GET.get("q", "").strip().lower()
    capability, provider = request.GET.get("capability", ""), request.GET.get("provider", "")
    base = request.build_absolute_uri("/").rstrip("/")
    cards = [_card(route, base) for route in _by_name(routes)
             if (not capability or route.capability == capability)
             and (not provider or provider in _providers(route)) and _matches(route, query)]
    context = {"cards": cards, "count": len(routes), "q": query, "capability": capability, "provider": provider,
               "capabilities": sorted({(r.capability, CAPABILITY_LABELS[r.capability]) for r in routes}),
               "providers": sorted({name for r in routes for name in _providers(r)}), "active": "models"}
    template = "gateway/_model_list.html" if request.headers.get("HX-Request") else "gateway/models.html"
    return render(request, template, context)


def _by_name(routes: tuple[Route, ...]) -> list[Route]:
    return sorted(routes, key=lambda route: route.public_id.lower())


def _providers(route: Route) -> tuple[str, ...]:
    return tuple(dict.fromkeys(target.provider for target in route.targets))


def _matches(route: Route, query: str) -> bool:
    return not query or any(query in name.lower() for name in (route.public_id, *route.aliases, *route.intents))


def _card(route: Route, base: str) -> ModelCard:
    entry = model_entry(route)
    return ModelCard(entry=entry, label=CAPABILITY_LABELS[route.capability], providers=_providers(route),
                     prices=_prices(entry), limits=_limits(entry), example=_example(entry, base))


def _money(credits: Decimal | str | float) -> tuple[str, str]:
    """A price as credits and as US dollars (100 credits = 1 USD), without float noise."""
    amount = Decimal(str(credits))
    usd = amount / 100
    return f"{amount.normalize():f}", f"${usd:.2f}" if usd == round(usd, 2) else f"${usd.normalize():f}"


def _prices(entry: dict) -> list[tuple[str, str, str]]:
    pricing = entry["pricing"]
    if "price" not in pricing:  # per million tokens
        kinds = (("input", "Input"), ("cached_input", "Cached input"), ("cache_write", "Cache write"),
                 ("output", "Output"))
        return [(f"{label} · 1M tokens", *_money(pricing[name])) for name, label in kinds
                if pricing[name] or name in ("input", "output")]
    per = pricing["unit"].removeprefix("credits ")
    rows = [(per, *_money(pricing["price"]))]
    parameters = entry.get("parameters", {})
    for tiers in (parameters.get("sizes"), parameters.get("resolutions")):
        if isinstance(tiers, dict):  # a tier's own price per unit
            rows += [(f"{tier} · {per.removeprefix('per ')}", *_money(price)) for tier, price in tiers.items()]
    return rows


def _listed(values) -> str:
    return ", ".join(str(v) for v in values)


def _limits(entry: dict) -> list[str]:
    """Context and output limits where the catalog has them, and what a media model accepts."""
    limits = []
    if window := entry.get("context_window"):
        limits.append(f"{window:,} tokens of context")
    if most := entry.get("max_output_tokens"):
        limits.append(f"up to {most:,} output tokens")
    parameters = entry.get("parameters", {})
    described = {"durations": lambda v: f"{_listed(v)} s long", "sizes": lambda v: f"sizes {_listed(v)}",
                 "aspect_ratios": lambda v: f"aspect ratios {_listed(v)}",
                 "resolutions": lambda v: f"resolutions {_listed(v)}",
                 "formats": lambda v: f"formats {_listed(v)}",
                 "max_characters": lambda v: f"up to {v:,} characters",
                 "min_reference_seconds": lambda v: f"a reference voice of {v} s or more",
                 "references": lambda v: f"up to {v['max']} reference images ({v['field']})"}
    return limits + [describe(parameters[name]) for name, describe in described.items() if name in parameters]


# The example each endpoint gets, most familiar first: (path, JSON body or multipart fields).
EXAMPLES = (
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hello"}]}),
    ("/v1/messages", {"max_tokens": 1024, "messages": [{"role": "user", "content": "Hello"}]}),
    ("/v1/images/generations", {"prompt": "a chrome teapot at sunset"}),
    ("/v1/audio/speech", {"input": "Welcome to Hypereal.", "voice": "alloy"}),
    ("/v1/audio/transcriptions", None),
    ("/v1/audio/generations", {"text": "Welcome to Hypereal.", "audio": "https://example.com/voice.wav"}),
    ("/v1/videos/generate", {"prompt": "a white cube rotating"}),
)


def _example(entry: dict, base: str) -> str:
    """A curl call of the model at its most familiar endpoint, with the key from $HYPEREAL_API_KEY."""
    endpoints = entry["endpoints"]
    path, body = next(((p, b) for p, b in EXAMPLES if p in endpoints), (endpoints[0], {"input": {}}))
    lines = [f"curl {base}{path}", '-H "Authorization: Bearer $HYPEREAL_API_KEY"']
    if body is None:  # OpenAI's multipart upload
        lines += [f"-F model={entry['id']}", "-F file=@speech.mp3"]
    else:
        if path == "/v1/videos/generate" and (durations := entry.get("parameters", {}).get("durations")):
            body = {**body, "duration": durations[0]}
        payload = json.dumps({"model": entry["id"], **body})
        lines += ['-H "Content-Type: application/json"', f"-d {shlex.quote(payload)}"]
    if path == "/v1/audio/speech":
        lines.append("--output speech.mp3")
    return " \\\n  ".join(lines)
