"""POST /api/v1/chat/completions: OpenAI Chat Completions, streamed chunk by chunk or whole.

Each call walks its model's fallback chain: a connection error, timeout, 429 or 5xx moves on (one
retry per target, exponential backoff with jitter, inside the call's deadline); other 4xx answers are
the client's to see. A stream is committed only once its first upstream bytes arrived, so a failing
target can still be skipped; after that a failure ends the stream with an explicit error event.
"""

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from django.conf import settings

from billing.money import micro_to_credits, micro_to_json
from billing.pricing import token_cost
from gateway import ratelimit, spend, upstream, wallet
from gateway.auth import KeyContext, authenticate
from gateway.catalog import Route, Target, catalog
from gateway.errors import GatewayError
from gateway.health import health
from gateway.http import (SSE_HEADERS, Receive, Scope, Send, encode_headers, parse_json_object, read_body,
                          send_json)
from gateway.pipeline import Call, cancel_on_disconnect
from gateway.routing import choose_route
from gateway.sse import SSEParser, encode_data, event_field
from gateway.usage import Usage

CHARS_PER_TOKEN = 4  # estimates, used only where an exact count cannot exist
RETRYABLE_STATUS = {408, 409, 429}
_background: set[asyncio.Task] = set()


async def chat_completions(scope: Scope, receive: Receive, send: Send) -> None:
    call = Call(endpoint="chat.completions")
    ctx: KeyContext | None = None
    model = ""
    try:
        ctx = await authenticate(scope)
        raw = await read_body(receive, limit=settings.HYPEREAL["MAX_BODY_BYTES"])
        body = parse_json_object(raw)
        model = body.get("model") if isinstance(body.get("model"), str) else ""
        route = await choose_route(await catalog(), body, capability="chat")
        model = route.public_id
        worst_case = _worst_case_cost(route, body, len(raw))
        exchange = ChatExchange(call, ctx, route, body, len(raw), send)
        held = Held(reserved_tokens=_token_estimate(body, len(raw)))
        try:
            held.wallet_hold = await wallet.reserve(ctx.org_id, worst_case)
            held.decision = await ratelimit.check(org_id=ctx.org_id, rpm=ctx.rpm, tpm=ctx.tpm,
                                                  tokens=held.reserved_tokens)
            call.headers.update(held.decision.headers())
            if not held.decision.allowed:
                raise GatewayError(429, "rate_limit_exceeded", "Rate limit reached for your organization; retry "
                                   f"after {held.decision.retry_after} s.", "rate_limit_exceeded")
            held.spend_hold = await spend.reserve(ctx, worst_case)
            await cancel_on_disconnect(receive, exchange.run())
        finally:
            _in_background(_settle(ctx, held, exchange))
    except GatewayError as err:
        if err.status != 499:
            await call.send_openai_error(send, err)
        if ctx is not None:
            call.record(org_id=ctx.org_id, key_id=ctx.key_id, model=model, status=err.status, error_type=err.type)


def _token_estimate(body: dict, body_size: int) -> int:
    """What a TPM reservation takes up front: the prompt's size plus the output the call may produce."""
    max_out = body.get("max_completion_tokens") or body.get("max_tokens")
    if not isinstance(max_out, int) or max_out <= 0:
        max_out = settings.HYPEREAL["OUTPUT_TOKENS_RESERVE"]
    return body_size // CHARS_PER_TOKEN + max_out


def _worst_case_cost(route: Route, body: dict, body_size: int) -> int:
    """What a spending-limit reservation takes: every body byte as a prompt token, plus max output."""
    return token_cost(Usage(input=body_size, output=_token_estimate(body, 0)), route.prices)


@dataclass(slots=True)
class Held:
    """What a call took up front, each to be settled to the actual usage whatever happens."""

    reserved_tokens: int
    wallet_hold: wallet.WalletReservation | None = None
    decision: ratelimit.Decision | None = None
    spend_hold: spend.Reservation | None = None


async def _settle(ctx: KeyContext, held: Held, exchange: "ChatExchange") -> None:
    """Correct the up-front reservations to what the call really used (after the client has its answer)."""
    if held.wallet_hold is not None:
        await wallet.settle(held.wallet_hold, exchange.cost)
    if held.decision is not None and held.decision.allowed:
        await ratelimit.reconcile(org_id=ctx.org_id, decision=held.decision, reserved_tokens=held.reserved_tokens,
                                  actual_tokens=exchange.usage.total if exchange.usage else 0)
    if held.spend_hold is not None:
        await spend.settle(held.spend_hold, exchange.cost)


def _in_background(coro) -> None:
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


class UpstreamFailure(Exception):
    """A target failed in a way the next target might not: connection, timeout, 408/409/429, 5xx."""

    def __init__(self, kind: str, status: int | None = None, message: str = ""):
        super().__init__(message or kind)
        self.kind, self.status, self.message = kind, status, message

    def to_gateway_error(self) -> GatewayError:
        if self.kind == "timeout":
            return GatewayError(504, "upstream_timeout", "The upstream provider did not answer in time.")
        if self.status == 429:
            return GatewayError(503, "upstream_rate_limited", "Every upstream provider is rate limiting.",
                                headers={"retry-after": "1"})
        return GatewayError(502, "upstream_error", f"The upstream provider failed: {self.message or self.kind}.")


@dataclass(slots=True)
class Opened:
    target: Target
    response: httpx.Response
    data: dict | None = None  # non-stream: the whole answer
    chunks: AsyncIterator[bytes] | None = None  # stream: the rest, after ``first``
    first: bytes = b""


class ChatExchange:
    """One call's trip upstream and back; records exactly one RequestLog and charge however it ends."""

    def __init__(self, call: Call, ctx: KeyContext, route: Route, body: dict, body_size: int, send: Send):
        self.call, self.ctx, self.route, self.body, self.body_size, self.send = call, ctx, route, body, body_size, send
        self.stream = bool(body.get("stream"))
        self.deadline = call.started + settings.HYPEREAL["REQUEST_DEADLINE_SECONDS"]
        self.target: Target | None = None
        self.usage: Usage | None = None
        self.produced_chars = 0
        self.cost = 0
        self.status, self.error_type = 200, ""

    async def run(self) -> None:
        try:
            opened = await self._open()
            self.target = opened.target
            if self.stream:
                await self._relay_stream(opened)
            else:
                await self._answer(opened)
        except GatewayError as err:
            self.status, self.error_type = err.status, err.type
            raise
        except asyncio.CancelledError:
            self.status, self.error_type = 499, "client_disconnected"
            raise
        finally:
            self._record()

    def _record(self) -> None:
        if self.usage is None and (self.produced_chars or self.status == 499):
            # The stream broke before its usage block: bill what was produced, estimated from what was sent.
            self.usage = Usage(input=self.body_size // CHARS_PER_TOKEN,
                               output=-(-self.produced_chars // CHARS_PER_TOKEN))
        usage = self.usage or Usage()
        target = self.target
        self.cost = token_cost(usage, self.route.prices)
        self.call.record(org_id=self.ctx.org_id, key_id=self.ctx.key_id, model=self.route.public_id,
                         status=self.status, usage=usage, cost=self.cost,
                         provider=target.provider if target else "",
                         upstream_model=target.upstream_model if target else "", stream=self.stream,
                         error_type=self.error_type)

    # --- upstream, with fallback -------------------------------------------------------------------

    async def _open(self) -> Opened:
        targets = await health.usable(self.route.targets)
        if not targets:
            wait = max(1, int(health.cooling_until(self.route.targets) - time.time()))
            raise GatewayError(503, "upstream_unavailable", "Every upstream for this model is cooling down after "
                               f"repeated failures; retry in {wait} s.", headers={"retry-after": str(wait)})
        failure = UpstreamFailure("unavailable")
        backoff = settings.HYPEREAL["RETRY_BACKOFF_MS"] / 1000
        for target in targets:
            for attempt in range(2):  # one retry per target
                if attempt:
                    pause = backoff * random.uniform(0.5, 1.5)
                    if time.perf_counter() + pause >= self.deadline:
                        break
                    await asyncio.sleep(pause)
                started = time.perf_counter()
                try:
                    opened = await self._attempt(target)
                except UpstreamFailure as exc:
                    self._attempted(target, exc.status, started, exc.kind)
                    await health.failed(target)
                    failure = exc
                    continue
                except GatewayError as err:  # a client error: the upstream is healthy, the request is not
                    self._attempted(target, err.status, started, err.type)
                    await health.succeeded(target)
                    raise
                self._attempted(target, 200, started)
                await health.succeeded(target)
                return opened
            backoff *= 2
        raise failure.to_gateway_error()

    def _attempted(self, target: Target, status: int | None, started: float, error: str = "") -> None:
        self.call.attempts.append({"provider": target.provider, "upstream_model": target.upstream_model,
                                   "status": status, "latency_ms": int((time.perf_counter() - started) * 1000),
                                   **({"error": error} if error else {})})

    async def _attempt(self, target: Target) -> Opened:
        remaining = self.deadline - time.perf_counter()
        if remaining <= 0:
            raise UpstreamFailure("timeout")
        payload = {**self.body, "model": target.upstream_model}
        payload.pop("intent", None)
        if self.stream:  # always ask for usage: a stream is billed from its final usage block
            payload["stream_options"] = {**(self.body.get("stream_options") or {}), "include_usage": True}
        client = upstream.client()
        request = client.build_request(
            "POST", f"{target.base_url}/chat/completions", content=json.dumps(payload).encode(),
            headers={"authorization": f"Bearer {target.api_key}", "content-type": "application/json"},
            timeout=httpx.Timeout(min(target.read_timeout, remaining),
                                  connect=min(target.connect_timeout, remaining)))
        try:
            response = await client.send(request, stream=True)
        except httpx.TimeoutException:
            raise UpstreamFailure("timeout") from None
        except httpx.HTTPError as exc:
            raise UpstreamFailure("connect", message=type(exc).__name__) from None
        try:
            if response.status_code >= 400 or not self.stream:
                await response.aread()
                payload = _json_or_none(response)
                if response.status_code in RETRYABLE_STATUS or response.status_code >= 500:
                    raise UpstreamFailure("status", response.status_code, f"answered {response.status_code}")
                if response.status_code >= 400:
                    raise upstream.status_error(response.status_code, payload)
                if not isinstance(payload, dict):
                    raise UpstreamFailure("status", 502, "answered with invalid JSON")
                return Opened(target, response, data=payload)
            chunks = response.aiter_raw()
            first = await anext(chunks)  # commit to this target only once it has started talking
            return Opened(target, response, chunks=chunks, first=first)
        except httpx.TimeoutException:
            await response.aclose()
            raise UpstreamFailure("timeout") from None
        except (httpx.HTTPError, StopAsyncIteration) as exc:
            await response.aclose()
            raise UpstreamFailure("connect", message=type(exc).__name__) from None
        except BaseException:
            await response.aclose()
            raise

    # --- answers -----------------------------------------------------------------------------------

    async def _answer(self, opened: Opened) -> None:
        data = opened.data
        self.usage = Usage.from_openai_chat(data.get("usage"))
        cost = token_cost(self.usage, self.route.prices)
        data["model"] = self.route.public_id
        data["usage"] = {**(data.get("usage") or self.usage.to_openai_chat()), "cost": micro_to_json(cost)}
        await send_json(self.send, 200, data,
                        {**self.call.headers, "x-hypereal-credits": format(micro_to_credits(cost), "f")})

    async def _relay_stream(self, opened: Opened) -> None:
        client_wants_usage = bool((self.body.get("stream_options") or {}).get("include_usage"))
        await self.send({"type": "http.response.start", "status": 200,
                         "headers": SSE_HEADERS + encode_headers(self.call.headers)})
        parser, finished, pending = SSEParser(), False, opened.first
        try:
            while True:
                out = []
                for event in parser.feed(pending):
                    data = event_field(event, b"data")
                    if data is None or data == b"[DONE]":
                        finished = finished or data == b"[DONE]"
                        out.append(event)
                    elif (rewritten := self._inspect(data, client_wants_usage)) is not None:
                        out.append(rewritten)
                    else:
                        out.append(event)
                if out:
                    await self.send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
                if time.perf_counter() > self.deadline:
                    raise httpx.ReadTimeout("the call's deadline passed")
                try:
                    pending = await anext(opened.chunks)
                except StopAsyncIteration:
                    break
            if not finished:
                raise httpx.RemoteProtocolError("upstream stream ended before [DONE]")
        except httpx.HTTPError:
            # Bytes were already sent: end with an explicit error event, never a clean finish.
            self.status, self.error_type = 502, "upstream_stream_interrupted"
            await self.send({"type": "http.response.body", "more_body": True, "body": encode_data(
                {"error": {"message": "The upstream stream was interrupted.", "type": self.error_type,
                           "code": None}})})
        finally:
            await opened.response.aclose()
        await self.send({"type": "http.response.body", "body": b""})

    def _inspect(self, data: bytes, client_wants_usage: bool) -> bytes | None:
        """Track output and usage; returns the event to send instead of the upstream's, if it differs."""
        try:
            chunk = json.loads(data)
        except ValueError:
            return None  # not ours to judge: passed on untouched
        if chunk.get("usage"):
            self.usage = Usage.from_openai_chat(chunk["usage"])
            if client_wants_usage:
                chunk["usage"]["cost"] = micro_to_json(token_cost(self.usage, self.route.prices))
            else:
                del chunk["usage"]
            return encode_data(chunk) if client_wants_usage or chunk.get("choices") else b""
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            self.produced_chars += len(delta.get("content") or "")
            for tool_call in delta.get("tool_calls") or ():
                self.produced_chars += len((tool_call.get("function") or {}).get("arguments") or "")
        if self.produced_chars:
            self.call.first_token()
        return None


def _json_or_none(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None
