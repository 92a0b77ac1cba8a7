"""One call's trip upstream and back, in any client format to any upstream format.

Each call walks its model's fallback chain: a connection error, timeout, 408/409/429 or 5xx moves on
(one retry per target, exponential backoff with jitter, inside the call's deadline); other 4xx answers
are the client's to see. A stream is committed only once its first upstream bytes arrived, so a failing
target can still be skipped; after that a failure ends the stream with an explicit error event in the
client's format, never a clean finish. Exactly one RequestLog and charge are recorded however it ends.
What differs per format is asked of the client's and the target's WireFormat (gateway.formats).
"""

import asyncio
import contextlib
import time
from dataclasses import dataclass, replace

from django.conf import settings

from billing.money import micro_to_json, micro_to_text
from billing.pricing import token_cost
from billing.tokens import TokenUsage
from gateway import upstream
from gateway.auth import KeyContext
from gateway.call import Call
from gateway.catalog import Route, Target
from gateway.errors import GatewayError, invalid_request
from gateway.fallback import targets_walk
from gateway.formats import upstream_format
from gateway.formats.base import ClientRequest, Observer, WireFormat
from gateway.formats.chat import chat_output_chars
from gateway.formats.common import TranslationError
from gateway.http import SSE_HEADERS, Send, encode_headers, json_response, send_bytes
from gateway.sse import SSEParser
from gateway.upstream import UpstreamFailure, UpstreamResponse

CHARS_PER_TOKEN = 4  # estimates, used only where an exact count cannot exist
# What a translator raises on a request it cannot read or express; the client gets a 400.
UNTRANSLATABLE = (TranslationError, KeyError, TypeError, AttributeError, ValueError)


@dataclass(slots=True)
class Opened:
    target: Target
    format: WireFormat  # the one the target was sent the call in
    native: bool  # the upstream speaks the client's format: passed on, not translated
    response: UpstreamResponse
    data: dict | None = None  # non-stream: the whole answer
    first: bytes = b""  # stream: the first bytes


class Exchange:
    def __init__(self, client_format: WireFormat, call: Call, ctx: KeyContext, route: Route,
                 request: ClientRequest, body_size: int, send: Send) -> None:
        self.client_format, self.call, self.ctx, self.route = client_format, call, ctx, route
        self.request, self.body_size, self.send = request, body_size, send
        self.deadline = call.started + settings.HYPEREAL["REQUEST_DEADLINE_SECONDS"]
        self.target: Target | None = None
        self.usage: TokenUsage | None = None
        self.produced = 0  # characters of output a translated stream sent (a native one's observer counts them)
        self.observer: Observer | None = None  # a native stream's
        self.cost = 0  # micro-credits, once recorded
        self._priced: TokenUsage | None = None  # the last usage priced, and its cost in micro-credits
        self._priced_cost = 0
        self.status, self.error_type = 200, ""
        self.answered = False  # the last byte of the response is on its way
        self._chat: dict | None = None
        self._last_sent = 0.0
        self._ping_every = 0.0
        self._ping_timer: asyncio.TimerHandle | None = None
        self._ping: asyncio.Future | None = None

    async def run(self) -> None:
        try:
            opened = await self._open()
            self.target = opened.target
            if self.request.stream:
                await self._relay(opened)
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

    def price(self, usage: TokenUsage) -> float:
        """The cost of ``usage`` in credits, as the client is told it."""
        return micro_to_json(self._cost(usage))

    def _cost(self, usage: TokenUsage) -> int:
        """Micro-credits of ``usage``, priced once however often it is asked: the cost the client is told,
        the x-hypereal-credits header, the charge and the log are one number."""
        if usage is not self._priced:  # usage records are immutable: a new one is a new usage
            self._priced, self._priced_cost = usage, token_cost(usage, self.route.prices)
        return self._priced_cost

    def _output_chars(self) -> int:
        """Characters of output the client was sent: what a stream cut short is billed by."""
        return self.observer.output_chars() if self.observer is not None else self.produced

    def _record(self) -> None:
        if self.call.recorded:
            return
        if self.status != 200 and ((produced := self._output_chars()) or self.status == 499):
            # The stream broke before its final usage (Anthropic's first usage says 1 output token, Gemini's
            # counts may lag): bill at least what was produced, estimated from what was sent — never more
            # than the output cap allowed, which the reservation covers.
            produced = -(-produced // CHARS_PER_TOKEN)
            if self.call.output_cap is not None:
                produced = min(produced, self.call.output_cap)
            if self.usage is None:
                self.usage = TokenUsage(input=self.body_size // CHARS_PER_TOKEN, output=produced)
            else:
                self.usage = replace(self.usage, output=max(self.usage.output, produced))
        usage, target = self.usage or TokenUsage(), self.target
        self.cost = self._cost(usage)
        self.call.record(self.ctx, model=self.route.public_id, status=self.status, usage=usage, cost=self.cost,
                         provider=target.provider if target else "",
                         upstream_model=target.upstream_model if target else "", stream=self.request.stream,
                         error_type=self.error_type)

    # --- upstream, with fallback ---------------------------------------------------------------------

    async def _open(self) -> Opened:
        return await targets_walk(self.call, self.route.targets, self._attempt, deadline=self.deadline)

    def _chat_request(self) -> dict:
        """The request as OpenAI chat, for upstreams of another format (computed once)."""
        if self._chat is None:
            try:
                self._chat = self.client_format.to_chat(self.request)
            except UNTRANSLATABLE as exc:
                raise invalid_request(f"The request could not be read: {exc}", code="invalid_request") from None
        return self._chat

    def _upstream_body(self, fmt: WireFormat, native: bool) -> dict:
        if native:
            return self.request.body
        try:
            return fmt.request_from_chat(self._chat_request())
        except UNTRANSLATABLE as exc:
            raise invalid_request(f"The request cannot be sent to this model: {exc}",
                                  code="unsupported_for_model") from None

    async def _attempt(self, target: Target) -> Opened:
        remaining = self.deadline - time.perf_counter()
        if remaining <= 0:
            raise UpstreamFailure("timeout")
        fmt = upstream_format(target, self.client_format)
        native = fmt is self.client_format
        stream = self.request.stream
        body = self._upstream_body(fmt, native)
        if self.call.output_cap is not None:  # what the reservation pays for
            body = fmt.cap_output(body, self.call.output_cap)
        url, headers, body = fmt.build_request(target, body, stream=stream, cache=self.request.cache,
                                               client_headers=self.request.headers)
        response = await upstream.post(url, body, headers, connect_timeout=min(target.connect_timeout, remaining),
                                       read_timeout=min(target.read_timeout, remaining))
        try:
            if response.status >= 400 or not stream:
                raw = await response.read()
                if response.status >= 400:
                    raise upstream.answer_refused(response.status, raw)
                data = fmt.read_answer(raw, response.content_type)
                if not isinstance(data, dict):
                    raise UpstreamFailure("status", 502, "answered with invalid JSON")
                response.close()
                return Opened(target, fmt, native, response, data=data)
            first = await response.chunk()  # commit to this target only once it has started talking
            if not first:
                raise UpstreamFailure("connect", message="empty stream")
            return Opened(target, fmt, native, response, first=first)  # the relay reads the rest, then closes
        except BaseException:
            response.close()
            raise

    # --- answers -------------------------------------------------------------------------------------

    async def _answer(self, opened: Opened) -> None:
        data, model, client = opened.data, self.route.public_id, self.client_format
        self.usage = opened.format.usage_of(data)
        if opened.native:
            answer = client.native_answer(data, model)
        else:
            answer = client.answer_from_chat(opened.format.chat_from_answer(data, model), model)
        cost = self._cost(self.usage)
        client.stamp_answer(answer, self.usage, micro_to_json(cost))
        self._record()
        await self.call.journal_sent()
        body, headers = json_response(answer, {**self.call.headers,
                                               "x-hypereal-credits": micro_to_text(cost)})
        await self.call.durable()  # an answer is sent only once its charge would survive a crash
        self.answered = True
        await send_bytes(self.send, 200, body, headers)

    async def _relay(self, opened: Opened) -> None:
        await self.send({"type": "http.response.start", "status": 200,
                         "headers": SSE_HEADERS + encode_headers(self.call.headers)})
        self._last_sent = time.monotonic()
        loop = asyncio.get_running_loop()
        self._ping_every = settings.HYPEREAL["STREAM_PING_SECONDS"]
        pings = self.client_format.ping is not None
        self._ping_timer = loop.call_later(self._ping_every, self._ping_due) if pings else None
        relay = _NativeRelay(self, opened) if opened.native else _TranslatedRelay(self, opened)
        # What one read brought goes out in one write, never held back — until the read that brings the
        # stream's end (the events a client's SDK stops at): from it on, the rest goes out in one last write,
        # with the body's end, once the charge would survive a crash. The charge is recorded as soon as it is
        # known, so that its journal write is on its way while the rest is read.
        pending, last = opened.first, b""
        try:
            while pending:
                events, ending = relay.feed(pending)
                if relay.charge_known and not self.call.recorded:
                    self.usage = relay.usage
                    self._record()
                    await self.call.journal_sent()
                if self.call.recorded:
                    last += events + ending
                else:
                    last += ending
                    await self._emit(events)
                if time.perf_counter() > self.deadline:
                    raise UpstreamFailure("timeout", message="the call's deadline passed")
                pending = await opened.response.chunk()
            last += relay.end()
        except UpstreamFailure:
            if self.call.recorded:  # it broke after its end: the answer is whole, and charged as such
                last += relay.end()
            else:  # bytes were already sent: end with an explicit error event, never a clean finish
                self.status, self.error_type = 502, "upstream_stream_interrupted"
                last = relay.error("upstream_stream_interrupted", "The upstream stream was interrupted.")
        finally:
            self.usage = relay.usage  # a disconnect too bills the usage seen so far
            if self._ping_timer is not None:
                self._ping_timer.cancel()
            opened.response.close()
            if self._ping is not None:
                with contextlib.suppress(Exception):
                    await self._ping
        self._record()
        await self.call.durable()
        self.answered = True
        await self.send({"type": "http.response.body", "body": last})

    async def _emit(self, body: bytes) -> None:
        if body:
            self._last_sent = time.monotonic()
            await self.send({"type": "http.response.body", "body": body, "more_body": True})

    def _ping_due(self) -> None:
        """SSE keep-alives, so proxies don't close a stream that thinks for a long time."""
        idle = time.monotonic() - self._last_sent
        if idle >= self._ping_every and (self._ping is None or self._ping.done()):
            self._ping, idle = asyncio.ensure_future(self._emit(self.client_format.ping)), 0.0
        self._ping_timer = asyncio.get_running_loop().call_later(self._ping_every - idle, self._ping_due)


class _NativeRelay:
    """The upstream speaks the client's format: events pass through, watched, the model id swapped."""

    def __init__(self, exchange: Exchange, opened: Opened) -> None:
        self.exchange = exchange
        self.observer = exchange.observer = exchange.client_format.observer(exchange.request, exchange.price)
        self.parser = SSEParser()
        key, public, private = opened.format.model_field.encode(), exchange.route.public_id, \
            opened.target.upstream_model
        self.swaps = [] if public == private else [
            (b'"%s":%s"%s"' % (key, sep, private.encode()), b'"%s":%s"%s"' % (key, sep, public.encode()))
            for sep in (b"", b" ")]

    @property
    def usage(self) -> TokenUsage | None:
        return self.observer.usage

    @property
    def charge_known(self) -> bool:
        """The upstream said how its stream ends, and nothing after that can change the charge."""
        observer = self.observer
        return observer.finished and observer.has_end_event and not observer.failed

    def feed(self, read: bytes) -> tuple[bytes, bytes]:
        """What to send for the bytes one upstream read brought: before the stream's end event, and from it
        on (a stream without one ends with its body)."""
        observer, head = self.observer, b""
        if self.parser.idle and (plain := observer.skim(read)):
            head, read = self._swapped(read[:plain]), read[plain:]
            if not read:
                return head, b""
        out, ending = [head], []
        for event in self.parser.feed(read):
            sent = observer.feed(self._swapped(event))
            (ending if observer.finished and observer.has_end_event else out).append(sent)
        if observer.produced:
            self.exchange.call.first_token()
        return b"".join(out), b"".join(ending)

    def _swapped(self, events: bytes) -> bytes:
        """Whole events with the upstream's model id replaced by the public one (a read may end mid-event,
        and so mid-id: only whole events are searched)."""
        for old, new in self.swaps:
            events = events.replace(old, new)
        return events

    def end(self) -> bytes:
        if self.observer.failed:
            self.exchange.status, self.exchange.error_type = 502, "upstream_stream_error"
        elif not self.observer.finished:
            raise UpstreamFailure("connect", message="upstream stream ended early")
        return b""

    def error(self, type: str, message: str) -> bytes:
        return self.exchange.client_format.stream_error(self.observer, type, message)


class _TranslatedRelay:
    """Upstream events → chat chunks → the client's events."""

    def __init__(self, exchange: Exchange, opened: Opened) -> None:
        self.exchange = exchange
        model = exchange.route.public_id
        self.sse_item = opened.format.sse_item
        self.decoder = opened.format.chat_decoder(model)
        self.parser = SSEParser()
        self.translator = exchange.client_format.translator(exchange.request, model)

    @property
    def usage(self) -> TokenUsage | None:
        return self.decoder.usage

    @property
    def charge_known(self) -> bool:
        """The upstream said how its stream ends, and nothing after that can change the charge."""
        decoder = self.decoder
        return decoder.finished and decoder.has_end_event and self.exchange.status == 200

    def feed(self, read: bytes) -> tuple[bytes, bytes]:
        """What to send for the bytes one upstream read brought: all of it at once, since the client's end
        comes from ``end`` (a decoder yields the chunks that end a stream only from ``finish``)."""
        chunks, sse_item, decoder = [], self.sse_item, self.decoder
        for event in self.parser.feed(read):
            if (item := sse_item(event)) is not None:
                chunks += decoder.feed(item)
        return self._out(chunks), b""

    def end(self) -> bytes:
        if not self.decoder.finished:
            raise UpstreamFailure("connect", message="upstream stream ended early")
        return self._out(self.decoder.finish(), ending=True)

    def _out(self, chunks: list[dict], ending: bool = False) -> bytes:
        exchange, client = self.exchange, self.exchange.client_format
        items = []
        for chunk in chunks:
            exchange.produced += chat_output_chars(chunk)
            if chunk.get("error"):
                exchange.status, exchange.error_type = 502, "upstream_stream_error"
            items += self.translator.feed(chunk)
        if ending:
            items += self.translator.finish()
        if exchange.produced:
            exchange.call.first_token()
        if not items:
            return b""
        if (usage := self.decoder.usage) is not None:
            cost = exchange.price(usage)
            for item in items:
                client.stamp(item, cost)
        return b"".join(client.encode(item) for item in items)

    def error(self, type: str, message: str) -> bytes:
        client = self.exchange.client_format
        return b"".join(client.encode(item) for item in self.translator.error(type, message))
