"""Read-only model-API endpoints: the model list, the wallet balance and the calling key."""

from collections.abc import Callable

from billing.money import micro_to_json
from gateway import quota
from gateway.auth import authenticate
from gateway.call import Call
from gateway.catalog import Route, catalog
from gateway.errors import GatewayError
from gateway.formats.anthropic import ANTHROPIC
from gateway.formats.chat import CHAT
from gateway.formats.gemini import GEMINI
from gateway.formats.responses import RESPONSES
from gateway.http import Receive, Scope, Send, send_json
from gateway.metering import meter


async def list_models(scope: Scope, receive: Receive, send: Send) -> None:
    call = Call(endpoint="models")
    try:
        await authenticate(scope)
    except GatewayError as err:
        return await call.send_openai_error(send, err)
    data = [model_entry(r) for r in (await catalog()).routes]
    await send_json(send, 200, {"object": "list", "data": data}, {"x-request-id": call.request_id})


def model_entry(route: Route) -> dict:
    """A model as `GET /v1/models` lists it; the /models page shows the same entries."""
    limits = {"context_window": route.context_window, "max_output_tokens": route.max_output_tokens}
    return {"id": route.public_id, "object": "model", "created": 0, "owned_by": "hypereal",
            "capability": route.capability, "endpoints": _endpoints(route), "aliases": list(route.aliases),
            "pricing": _pricing(route), **({"parameters": route.parameters} if route.parameters else {}),
            **{name: value for name, value in limits.items() if value is not None}}


# The chat endpoints, each with the wire format its clients speak.
CHAT_ENDPOINTS = (("/v1/chat/completions", CHAT), ("/v1/responses", RESPONSES), ("/v1/messages", ANTHROPIC),
                  ("/v1/gemini", GEMINI))


# The endpoints of the capabilities served above the gateway, by capability (route → paths): filled by the app
# that routes them (gpu), which the gateway cannot import. A capability not listed shows its main endpoint.
MODEL_ENDPOINTS: dict[str, Callable[[Route], list[str]]] = {}


def _endpoints(route: Route) -> list[str]:
    """Where a model can be called: every chat endpoint whose format admits it, or its capability's own."""
    if route.capability == "chat":
        return [path for path, fmt in CHAT_ENDPOINTS if fmt.admits(route)]
    listed = MODEL_ENDPOINTS.get(route.capability)
    return listed(route) if listed else [route.endpoint]


def _pricing(route: Route) -> dict:
    """Credits per million tokens, or per unit (tier prices of media models are in their ``parameters``)."""
    if route.unit_price is not None:
        return {"unit": f"credits per {route.price_unit}", "price": micro_to_json(route.unit_price.amount)}
    prices = route.prices
    return {"unit": "credits per million tokens", "input": micro_to_json(prices.input),
            "cached_input": micro_to_json(prices.cached_input), "cache_write": micro_to_json(prices.cache_write),
            "output": micro_to_json(prices.output)}


async def credits(scope: Scope, receive: Receive, send: Send) -> None:
    call = Call(endpoint="credits")
    try:
        ctx = await authenticate(scope)
        await meter.flush()  # this process's calls are in the database too, for whoever reads it next
        balance = await quota.balance(ctx.org_id)  # read your own charges, whichever process served them
    except GatewayError as err:
        return await call.send_openai_error(send, err)
    await send_json(send, 200, {"object": "credits", "balance": micro_to_json(balance), "currency": "credits"},
                    {"x-request-id": call.request_id})


async def current_key(scope: Scope, receive: Receive, send: Send) -> None:
    call = Call(endpoint="key")
    try:
        ctx = await authenticate(scope)
        await meter.flush()
        spend = await quota.month_spend(ctx)
    except GatewayError as err:
        return await call.send_openai_error(send, err)
    limit = ctx.monthly_spend_limit
    await send_json(send, 200, {
        "object": "api_key",
        "name": ctx.name,
        "spending_limit": None if limit is None else micro_to_json(limit),
        "month_to_date_spend": micro_to_json(spend),
    }, {"x-request-id": call.request_id})
