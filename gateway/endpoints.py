"""The model endpoints: one pipeline (key → limits → route → upstream → answer → charge → log) for every
wire format; each endpoint names its format and the endpoint its calls are logged under."""

from urllib.parse import parse_qs

from django.conf import settings

from gateway import quota, upstream
from gateway.auth import KeyContext, authenticate
from gateway.call import Call, cancel_on_disconnect
from gateway.catalog import Route, catalog
from gateway.errors import GatewayError
from gateway.exchange import CHARS_PER_TOKEN, Exchange
from gateway.formats.anthropic import ANTHROPIC
from gateway.formats.base import ClientRequest, WireFormat, load_json
from gateway.formats.chat import CHAT
from gateway.formats.gemini import GEMINI, looks_like_openai
from gateway.formats.responses import RESPONSES
from gateway.http import Receive, Scope, Send, header, parse_json_object, read_body, send_json
from gateway.routing import choose_route
from gateway.upstream import UpstreamFailure, answer_refused


async def chat_completions(scope: Scope, receive: Receive, send: Send) -> None:
    await _serve("chat.completions", CHAT, scope, receive, send)


async def messages(scope: Scope, receive: Receive, send: Send) -> None:
    await _serve("messages", ANTHROPIC, scope, receive, send)


async def count_tokens(scope: Scope, receive: Receive, send: Send) -> None:
    """Anthropic's /messages/count_tokens: the prompt's size in tokens, free and not logged. A model served by
    Anthropic has it counted there (the count its calls are billed by); any other gets the gateway's estimate."""
    call = Call(endpoint="messages.count_tokens")
    call.headers[ANTHROPIC.request_id_header] = call.request_id
    try:
        await authenticate(scope)
        raw = await read_body(receive, limit=settings.HYPEREAL["MAX_BODY_BYTES"])
        request = ANTHROPIC.read(parse_json_object(raw))
        headers = {name.decode(): value for name in ANTHROPIC.forwarded_headers if (value := header(scope, name))}
        route = await choose_route(await catalog(), model=request.model, intent=request.intent, capability="chat")
        tokens = await _upstream_count(route, request.body, headers) or -(-len(raw) // CHARS_PER_TOKEN)
    except GatewayError as err:
        return await send_json(send, err.status, ANTHROPIC.error_body(err), {**call.headers, **err.headers})
    await send_json(send, 200, {"input_tokens": tokens}, call.headers)


COUNT_REFUSED = (400, 413)  # the request is wrong, not the target: the client hears it


async def _upstream_count(route: Route, body: dict, headers: dict[str, str]) -> int | None:
    """The count of the first Anthropic target that gives one; None when none does (or none is Anthropic)."""
    for target in route.targets:
        if target.kind != "anthropic":
            continue
        url, request_headers, payload = ANTHROPIC.build_count_request(target, body, client_headers=headers)
        try:
            response = await upstream.post(url, payload, request_headers, connect_timeout=target.connect_timeout,
                                           read_timeout=target.read_timeout)
            try:
                raw = await response.read()
            finally:
                response.close()
        except UpstreamFailure:
            continue
        answer = load_json(raw)
        if response.status == 200 and isinstance(answer, dict) and isinstance(answer.get("input_tokens"), int):
            return answer["input_tokens"]
        if response.status in COUNT_REFUSED:
            raise answer_refused(response.status, raw)
    return None  # any other answer (no such endpoint there, our key refused, …): the estimate serves


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
        fmt.admit(route, request)
        model_id = route.public_id
        budget = quota.call_budget(route.prices, prompt_bytes=len(raw), max_output=request.max_output,
                                   model_max=route.max_output_tokens, choices=request.choices)
        call.reservation = await quota.take(ctx, amount=budget.least, most=budget.most, share=budget.share,
                                            tokens=_token_estimate(request, len(raw)))
        call.output_cap = budget.output_cap(call.reservation.amount)  # the output its reservation pays for
        call.headers.update(call.reservation.decision.headers())
        exchange = Exchange(fmt, call, ctx, route, request, len(raw), send)  # its record settles the reservation
        await cancel_on_disconnect(receive, exchange.run(), lambda: exchange.answered)
    except GatewayError as err:
        if ctx is not None:
            call.record(ctx, model=model_id, status=err.status, error_type=err.type)
            await call.durable()
        if err.status != 499:
            await send_json(send, err.status, fmt.error_body(err), {**call.headers, **err.headers})


def _token_estimate(request: ClientRequest, body_size: int) -> int:
    """What a TPM reservation takes up front: the prompt's size plus the output the call may produce."""
    max_out = request.max_output
    if not isinstance(max_out, int) or max_out <= 0:
        max_out = settings.HYPEREAL["OUTPUT_TOKENS_RESERVE"]
    return body_size // CHARS_PER_TOKEN + max_out * request.choices
