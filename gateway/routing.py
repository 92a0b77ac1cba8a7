"""Which model serves a call: the pinned one exactly, or the cheapest healthy one of an intent bucket."""

import difflib

from gateway.catalog import Catalog, Route
from gateway.errors import invalid_request
from gateway.health import health


async def choose_route(catalog: Catalog, *, model: object, intent: object, capability: str) -> Route:
    """``model`` and ``intent`` as the client sent them (anything: they are checked here)."""
    if model or not intent:
        return catalog.resolve(model, capability=capability)
    candidates = [r for r in catalog.by_intent.get(intent, ()) if r.capability == capability] \
        if isinstance(intent, str) else []
    if not candidates:
        available = sorted(i for i, rs in catalog.by_intent.items() if any(r.capability == capability for r in rs))
        suggestions = difflib.get_close_matches(intent, available, n=3) if isinstance(intent, str) else []
        hint = f" Did you mean {' or '.join(f'`{s}`' for s in suggestions)}?" if suggestions else ""
        raise invalid_request(f"Unknown intent `{intent}`.{hint}", code="intent_not_found", suggestions=suggestions,
                              available_intents=available)
    for route in candidates:
        if await health.usable(route.targets):
            return route
    return candidates[0]  # every one is cooling down: the fallback logic answers 503 with Retry-After
