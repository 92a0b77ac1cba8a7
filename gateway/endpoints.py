"""The model endpoints: one pipeline (key → limits → route → upstream → answer → charge → log) for every
wire format; each endpoint names its format and the endpoint its calls are logged under."""

from urllib.parse import parse_qs

from django.conf import settings

from billing.pricing import token_cost
from billing.tokens import TokenUsage
from gateway import quota
from gateway.auth import KeyContext, authenticate
from gateway.call import Call, cancel_on_disconnect
from gateway.catalog import Route, catalog
from gateway.errors import GatewayError
from gateway.exchange import CHARS_PER_TOKEN, Exchange
from gateway.formats.anthropic import ANTHROPIC
from gateway.formats.base import ClientRequest, WireFormat
from gateway.formats.chat import CHAT
from gateway.formats.gemini import GEMINI, looks_like_openai
from gateway.formats.responses import RESPONSES
from gateway.http import Receive, Scope, Send, header, parse_json_object, read_body, send_json
from gateway.routing import choose_route


async def chat_completions(scope: Scope, receive: Receive, send: Send) -> None:
    await _serve("chat.completions", CHAT, scope, receive, send)


async def messages(scope: Scope, receive: Receive, send: Send) -> None:
    await _serve("messages", ANTHROPIC, scope, receive, send)


async def responses(scope: Scope, receive: Receive, send: Send) -> None:
    await _serve("responses", RESPONSES, scope, receive, send)


async def gemini(scope: Scope, receive: Receive, send: Send) -> None:
    """/gemini: Gemini-native bodies (``contents``) or OpenAI-shaped ones (``messages``), model in the body."""
    alt_sse = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("alt") == ["sse"]
    await _serve("gemini", GEMINI, scope, receive, send, stream=True if alt_sse else None, sniff=True)


async def gemini_generate(scope: Scope, receive: Receive, send: Send, model: str, method: str) -> None:
    """/v1beta/models/{model}:generateContent and :streamGenerateContent, as google-genai calls them."""
    stream = method == "streamGenerateContent"
    await _serve("gemini", GEMINI, scope, receive, send, model=model, stream=stream)


async def _serve(endpoint: str, fmt: WireFormat, scope: Scope, receive: Receive, send: Send, *,
                 model: str | None = None, stream: bool | None = None, sniff: bool = False) -> None:
    """``sniff``: an OpenAI-shaped body is served as chat (still logged under ``endpoint``)."""
    call = Call(endpoint=endpoint)
    if fmt.request_id_header:
        call.headers[fmt.request_id_header] = call.request_id
    ctx: KeyContext | None = None
    model_id = ""
    try:
        ctx = await authenticate(scope)
        raw = await read_body(receive, limit=settings.HYPEREAL["MAX_BODY_BYTES"])
        body = parse_json_object(raw)
        if sniff and looks_like_openai(body):
            fmt = CHAT
        request = fmt.read(body, model=model, stream=stream)
        request.headers = {name.decode(): value for name in fmt.forwarded_headers
                           if (value := header(scope, name))}
        model_id = request.model if isinstance(request.model, str) else ""
        route = await choose_route(await catalog(), model=request.model, intent=request.intent, capability="chat")
        fmt.admit(route)
        model_id = route.public_id
        reservation = await quota.take(ctx, amount=_worst_case_cost(route, request, len(raw)),
                                tokens=_token_estimate(request, len(raw)))
        call.headers.update(reservation.decision.headers())
        exchange = Exchange(fmt, call, ctx, route, request, len(raw), send)
        try:
            await cancel_on_disconnect(receive, exchange.run(), lambda: exchange.answered)
        finally:
            quota.settle(reservation, cost=exchange.cost, tokens=exchange.usage.total if exchange.usage else 0)
    except GatewayError as err:
        if err.status != 499:
            await send_json(send, err.status, fmt.error_body(err), {**call.headers, **err.headers})
        if ctx is not None:
            call.record(ctx, model=model_id, status=err.status, error_type=err.type)


def _token_estimate(request: ClientRequest, body_size: int) -> int:
    """What a TPM reservation takes up front: the prompt's size plus the output the call may produce."""
    max_out = request.max_output
    if not isinstance(max_out, int) or max_out <= 0:
        max_out = settings.HYPEREAL["OUTPUT_TOKENS_RESERVE"]
    return body_size // CHARS_PER_TOKEN + max_out


def _worst_case_cost(route: Route, request: ClientRequest, body_size: int) -> int:
    """What the wallet and spending-limit reservations take: every body byte as a prompt token, plus max output."""
    return token_cost(TokenUsage(input=body_size, output=_token_estimate(request, 0)), route.prices)
