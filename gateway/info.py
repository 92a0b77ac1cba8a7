"""Read-only model-API endpoints: the model list, the wallet balance and the calling key."""

from billing.money import micro_to_json
from billing.selectors import wallet_balance
from gateway.auth import authenticate
from gateway.catalog import Route, catalog
from gateway.db import run_db
from gateway.errors import GatewayError
from gateway.http import Receive, Scope, Send, send_json
from gateway.metering import meter
from gateway.call import Call
from usage.selectors import api_key_month_spend


async def list_models(scope: Scope, receive: Receive, send: Send) -> None:
    call = Call(endpoint="models")
    try:
        await authenticate(scope)
    except GatewayError as err:
        return await call.send_openai_error(send, err)
    data = [{"id": r.public_id, "object": "model", "created": 0, "owned_by": "hypereal",
             "capability": r.capability, "endpoints": _endpoints(r), "aliases": list(r.aliases),
             "pricing": {"unit": "credits per million tokens", "input": micro_to_json(r.prices.input),
                         "cached_input": micro_to_json(r.prices.cached_input),
                         "cache_write": micro_to_json(r.prices.cache_write), "output": micro_to_json(r.prices.output)}}
            for r in (await catalog()).routes]
    await send_json(send, 200, {"object": "list", "data": data}, {"x-request-id": call.request_id})


def _endpoints(route: Route) -> list[str]:
    """Where a chat model can be called: Anthropic models on /messages only, the others everywhere."""
    if route.capability != "chat":
        return []
    if route.family == "anthropic":
        return ["/v1/messages"]
    return ["/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/gemini"]


async def credits(scope: Scope, receive: Receive, send: Send) -> None:
    call = Call(endpoint="credits")
    try:
        ctx = await authenticate(scope)
    except GatewayError as err:
        return await call.send_openai_error(send, err)
    await meter.flush()  # read your own writes: calls this process served are charged first
    balance = await run_db(wallet_balance, organization_id=ctx.org_id)
    await send_json(send, 200, {"object": "credits", "balance": micro_to_json(balance), "currency": "credits"},
                    {"x-request-id": call.request_id})


async def current_key(scope: Scope, receive: Receive, send: Send) -> None:
    call = Call(endpoint="key")
    try:
        ctx = await authenticate(scope)
    except GatewayError as err:
        return await call.send_openai_error(send, err)
    await meter.flush()
    spend = await run_db(api_key_month_spend, api_key_id=ctx.key_id)
    limit = ctx.monthly_spend_limit
    await send_json(send, 200, {
        "object": "api_key",
        "name": ctx.name,
        "spending_limit": None if limit is None else micro_to_json(limit),
        "month_to_date_spend": micro_to_json(spend),
    }, {"x-request-id": call.request_id})
