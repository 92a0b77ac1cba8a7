"""POST /api/v1/chat/completions — OpenAI Chat Completions, streamed chunk by chunk or whole."""

import json

import httpx
from django.conf import settings

from billing.money import micro_to_credits, micro_to_json
from billing.pricing import token_cost
from gateway import upstream
from gateway.auth import KeyContext, authenticate
from gateway.balance import require_llm_balance
from gateway.catalog import Route, Target, catalog
from gateway.errors import GatewayError
from gateway.http import SSE_HEADERS, Receive, Scope, Send, encode_headers, parse_json_object, read_body, send_json
from gateway.pipeline import Call
from gateway.sse import SSEParser, encode_data, event_field
from gateway.usage import Usage

CHARS_PER_TOKEN = 4  # estimate used only when a stream breaks before its usage block


async def chat_completions(scope: Scope, receive: Receive, send: Send) -> None:
    call = Call(endpoint="chat.completions")
    ctx: KeyContext | None = None
    model = ""
    try:
        ctx = await authenticate(scope)
        raw = await read_body(receive, limit=settings.HYPEREAL["MAX_BODY_BYTES"])
        body = parse_json_object(raw)
        model = body.get("model") if isinstance(body.get("model"), str) else ""
        route = (await catalog()).resolve(body.get("model"), capability="chat")
        await require_llm_balance(ctx.org_id)
        if body.get("stream"):
            await _stream(call, ctx, route, body, len(raw), send)
        else:
            await _complete(call, ctx, route, body, send)
    except GatewayError as err:
        if err.status != 499:
            await call.send_openai_error(send, err)
        if ctx is not None:
            call.record(org_id=ctx.org_id, key_id=ctx.key_id, model=model, status=err.status, error_type=err.type)


def _upstream_request(target: Target, body: dict, *, stream: bool) -> tuple[str, bytes, dict[str, str]]:
    payload = {**body, "model": target.upstream_model}
    if stream:  # always ask for usage: a stream is billed from its final usage block
        payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    headers = {"authorization": f"Bearer {target.api_key}", "content-type": "application/json"}
    return f"{target.base_url}/chat/completions", json.dumps(payload).encode(), headers


async def _complete(call: Call, ctx: KeyContext, route: Route, body: dict, send: Send) -> None:
    target = route.targets[0]
    url, content, headers = _upstream_request(target, body, stream=False)
    try:
        resp = await upstream.client().post(url, content=content, headers=headers)
    except httpx.HTTPError as exc:
        raise upstream.transport_error(exc) from None
    try:
        data = resp.json()
    except ValueError:
        data = None
    if resp.status_code >= 400 or not isinstance(data, dict):
        raise upstream.status_error(resp.status_code if resp.status_code >= 400 else 502, data)
    usage = Usage.from_openai_chat(data.get("usage"))
    cost = token_cost(usage, route.prices)
    data["model"] = route.public_id
    data["usage"] = {**(data.get("usage") or usage.to_openai_chat()), "cost": micro_to_json(cost)}
    await send_json(send, 200, data, {"x-request-id": call.request_id,
                                      "x-hypereal-credits": format(micro_to_credits(cost), "f")})
    call.record(org_id=ctx.org_id, key_id=ctx.key_id, model=route.public_id, status=200, usage=usage, cost=cost,
                provider=target.provider, upstream_model=target.upstream_model)


async def _stream(call: Call, ctx: KeyContext, route: Route, body: dict, body_size: int, send: Send) -> None:
    target = route.targets[0]
    url, content, headers = _upstream_request(target, body, stream=True)
    client_wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    http = upstream.client()
    try:
        resp = await http.send(http.build_request("POST", url, content=content, headers=headers), stream=True)
    except httpx.HTTPError as exc:
        raise upstream.transport_error(exc) from None
    usage: Usage | None = None
    produced_chars = 0
    status, error_type = 200, ""
    try:
        if resp.status_code >= 400:
            await resp.aread()
            try:
                payload = resp.json()
            except ValueError:
                payload = None
            raise upstream.status_error(resp.status_code, payload)
        chunks = resp.aiter_raw()
        try:  # the first upstream bytes arrive before we commit to a 200
            first = await anext(chunks)
        except (httpx.HTTPError, StopAsyncIteration) as exc:
            raise upstream.transport_error(exc if isinstance(exc, httpx.HTTPError) else httpx.ReadError("empty"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": SSE_HEADERS + encode_headers({"x-request-id": call.request_id})})
        parser, finished = SSEParser(), False
        pending = first
        while True:
            out = []
            for event in parser.feed(pending):
                data = event_field(event, b"data")
                if data is None or data == b"[DONE]":
                    finished = finished or data == b"[DONE]"
                    out.append(event)
                    continue
                try:
                    chunk = json.loads(data)
                except ValueError:  # not ours to judge: pass it on untouched
                    out.append(event)
                    continue
                if chunk.get("usage"):
                    usage = Usage.from_openai_chat(chunk["usage"])
                    if client_wants_usage:
                        chunk["usage"]["cost"] = micro_to_json(token_cost(usage, route.prices))
                    else:
                        del chunk["usage"]
                    if client_wants_usage or chunk.get("choices"):
                        out.append(encode_data(chunk))
                    continue
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    produced_chars += len(delta.get("content") or "")
                    for tool_call in delta.get("tool_calls") or ():
                        produced_chars += len((tool_call.get("function") or {}).get("arguments") or "")
                if produced_chars:
                    call.first_token()
                out.append(event)
            if out:
                await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
            try:
                pending = await anext(chunks)
            except StopAsyncIteration:
                break
        if not finished:
            raise httpx.RemoteProtocolError("upstream stream ended before [DONE]")
    except httpx.HTTPError:
        # Bytes were already sent: end with an explicit error event, never a clean finish.
        status, error_type = 502, "upstream_stream_interrupted"
        await send({"type": "http.response.body", "more_body": True, "body": encode_data(
            {"error": {"message": "The upstream stream was interrupted.", "type": error_type, "code": None}})})
    finally:
        await resp.aclose()
    await send({"type": "http.response.body", "body": b""})
    if usage is None:  # broken stream: bill what was produced, estimated from what was sent
        usage = Usage(input=body_size // CHARS_PER_TOKEN, output=-(-produced_chars // CHARS_PER_TOKEN))
    call.record(org_id=ctx.org_id, key_id=ctx.key_id, model=route.public_id, status=status, usage=usage,
                cost=token_cost(usage, route.prices), provider=target.provider,
                upstream_model=target.upstream_model, stream=True, error_type=error_type)
