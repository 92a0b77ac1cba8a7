"""What every wire format shares: the client's request, the stream observer, and the WireFormat base.

A WireFormat is one API shape, spoken on both sides of the gateway. As the client's format it reads the
request, renders errors and answers, and watches (native) or renders (translated) the stream; as an
upstream's format it builds the HTTP request for a target and reads the answer and the stream back. A
call whose two sides speak the same format passes through natively (only the model id is swapped);
any other pairing is translated through OpenAI chat, the pivot every translator speaks.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from billing.tokens import TokenUsage
from gateway import jsoncodec
from gateway.catalog import Route, Target
from gateway.errors import GatewayError, invalid_request, openai_error_body
from gateway.formats.checks import refused
from gateway.sse import SSEParser, encode_data, encode_event, event_field

GATEWAY_FIELDS = ("intent", "hypereal")  # ours: never forwarded upstream
OPENAI_PING = b": ping\n\n"
SSEEvent = tuple[str, dict]  # (event name, data) of formats whose SSE carries ``event:`` lines
Price = Callable[[TokenUsage], float]  # usage → cost in credits, for the answer


@dataclass(slots=True)
class ClientRequest:
    body: dict  # in the client's format, without the gateway's own fields
    model: object
    intent: object
    stream: bool
    max_output: object  # the client's output cap, if it set one
    max_output_field: str = "max_tokens"  # where the client set it, for an error that names it
    choices: int = 1  # answers asked for (n, candidateCount): each may produce max_output
    wants_usage: bool = True  # chat streams carry the usage chunk only when asked
    cache: bool = True  # Hypereal Cache on Anthropic upstreams
    headers: dict[str, str] = field(default_factory=dict)  # client headers an upstream of its format reads


def client_request(body: dict, *, model: object, stream: bool, max_output: object, max_output_field: str,
                   choices: object = 1, wants_usage: bool = True, not_forwarded: tuple[str, ...] = ()
                   ) -> ClientRequest:
    """The request of a client body (its fields already checked): the gateway's own fields (and
    ``not_forwarded``) are taken out of it."""
    return ClientRequest(
        body={k: v for k, v in body.items() if k not in GATEWAY_FIELDS and k not in not_forwarded},
        model=model, intent=body.get("intent"), stream=stream, max_output=max_output,
        max_output_field=max_output_field, choices=choices if isinstance(choices, int) else 1,
        wants_usage=wants_usage, cache=_hypereal_cache(body))


def _hypereal_cache(body: dict) -> bool:
    """The ``hypereal`` field: ``{"cache": "auto" | false}`` (auto, the default, lets the gateway cache)."""
    options = body.get("hypereal")
    if options is None:
        return True
    cache = options.get("cache", "auto") if isinstance(options, dict) else None
    if cache not in ("auto", True, False):
        raise invalid_request('`hypereal` must be an object like {"cache": "auto"} or {"cache": false}.',
                              code="invalid_hypereal_options")
    return cache is not False


def load_json(raw: bytes) -> object:
    try:
        return jsoncodec.loads(raw)
    except ValueError:
        return None


def json_bytes(body: dict) -> bytes:
    return jsoncodec.dumps(body)


def capped(body: dict, name: str, tokens: int) -> dict:
    """``body`` with its ``name`` field at most ``tokens`` (a copy, when that changes it)."""
    asked = body.get(name)
    return body if type(asked) is int and 0 < asked <= tokens else {**body, name: tokens}


class Observer:
    """Watches a stream passed on natively: usage, output produced, whether it ended properly."""

    # The stream ends with an event SDKs stop at, after which nothing changes its usage (a Gemini stream ends
    # with its body: a usageMetadata may follow the finishReason).
    has_end_event = True
    # What only events that may be more than output contain (in a string, a quote is escaped); none: every
    # event is parsed.
    NOT_PLAIN: tuple[bytes, ...] = ()
    UNPARSED_MAX = 256 * 1024  # bytes of events whose parsing waits (see ``skim``), at most: then counted

    def __init__(self, price: Price) -> None:
        self.price = price
        self.usage: TokenUsage | None = None
        self.produced = 0  # characters of output counted so far (``output_chars`` counts them all)
        self.finished = False
        self.failed = False  # the upstream sent an error event
        self._unparsed: list[bytes] = []
        self._unparsed_size = 0

    def feed(self, raw: bytes) -> bytes:
        """The event to send for this upstream event (b"" drops it); events without a JSON object in their
        data (comments, pings, ``[DONE]``) go to ``_other``, which passes them on."""
        if self.skim(raw):
            return raw
        data = event_field(raw, b"data")
        payload = load_json(data) if data is not None else None
        return self._watch(raw, payload) if isinstance(payload, dict) else self._other(raw, data)

    def skim(self, read: bytes) -> int:
        """How many bytes at the start of ``read`` (which starts an event) are whole events passed on as they
        are, unparsed. Once output has begun (time to first token is known), events that can only add
        output matter only if the stream breaks: one search of what a read brought replaces a parse per
        event, and their characters are counted when asked for."""
        if not self.produced or b"\r" in read:
            return 0
        end = read.rfind(b"\n\n", 0, self._plain_until(read)) + 2  # the end of the last plain event
        if end < 2:
            return 0
        self._unparsed.append(read[:end])  # all of it: the read itself, not a copy
        self._unparsed_size += end
        if self._unparsed_size >= self.UNPARSED_MAX:
            self.output_chars()
        return end

    def output_chars(self) -> int:
        """Characters of output in every event seen: what a stream cut short is billed by."""
        parser = SSEParser()
        for raw in self._unparsed:
            for event in parser.feed(raw):
                data = event_field(event, b"data")
                if data is not None and isinstance(payload := load_json(data), dict):
                    self._watch(b"", payload)
        self._unparsed.clear()
        self._unparsed_size = 0
        return self.produced

    def _plain_until(self, raw: bytes) -> int:
        """Where in raw events the first thing that may be more than output (usage, an error, the end) is;
        ``len(raw)`` when there is none."""
        if not self.NOT_PLAIN:
            return 0
        return min((at for mark in self.NOT_PLAIN if (at := raw.find(mark)) >= 0), default=len(raw))

    def _watch(self, raw: bytes, payload: dict) -> bytes:
        raise NotImplementedError

    def _other(self, raw: bytes, data: bytes | None) -> bytes:
        return raw


class WireFormat:
    """One wire format: its client side, then its upstream side. The defaults are OpenAI's conventions."""

    ping: bytes | None = OPENAI_PING  # the stream keep-alive, or None where the format has no room for one
    model_field = "model"  # where a native answer (and each native stream event) names its model
    request_id_header: str | None = None  # a response header this format's SDK reads the request id from
    forwarded_headers: tuple[bytes, ...] = ()  # client headers an upstream of this format reads

    # --- client side ---------------------------------------------------------------------------------

    def read(self, body: dict, *, model: object = None, stream: bool | None = None) -> ClientRequest:
        """The client's request; ``model`` and ``stream`` when the URL says them rather than the body."""
        raise NotImplementedError

    def admits(self, route: Route) -> bool:
        """Whether this format's clients may call the model: Anthropic's are served on /messages only."""
        return route.family != "anthropic"

    def admit(self, route: Route, request: ClientRequest) -> None:
        """Whether the request may go to the model it was routed to."""
        if not self.admits(route):
            raise invalid_request(f"`{route.public_id}` is an Anthropic model: call it at /v1/messages "
                                  "(the Anthropic Messages API).", code="wrong_endpoint_for_model")
        limit = route.max_output_tokens
        if limit and isinstance(request.max_output, int) and request.max_output > limit:
            raise refused(request.max_output_field, f"at most {limit}, the most `{route.public_id}` writes")

    def to_chat(self, request: ClientRequest) -> dict:
        """The request as OpenAI chat, for an upstream of another format."""
        raise NotImplementedError

    def error_body(self, err: GatewayError) -> dict:
        return openai_error_body(err)

    def native_answer(self, data: dict, model: str) -> dict:
        """An upstream's answer in this format, naming the public model."""
        return {**data, self.model_field: model}

    def answer_from_chat(self, chat: dict, model: str) -> dict:
        raise NotImplementedError

    def stamp_answer(self, answer: dict, usage: TokenUsage, cost: float) -> None:
        """Add the cost (credits) to a whole answer."""
        answer["usage"] = {**(answer.get("usage") or {}), "cost": cost}

    def observer(self, request: ClientRequest, price: Price) -> Observer:
        """The watcher of an upstream stream in this format, passed on natively."""
        raise NotImplementedError

    def translator(self, request: ClientRequest, model: str):
        """Chat chunks → this format's stream items (a gateway.formats.common ChatStreamTranslator)."""
        raise NotImplementedError

    def encode(self, item) -> bytes:
        """One stream item of ``translator`` as SSE bytes."""
        return encode_data(item)

    def stamp(self, item, cost: float) -> None:
        """Add the cost to the translated item that carries the final usage, if this is it."""

    def stream_error(self, observer: Observer, type: str, message: str) -> bytes:
        """The event that ends a native stream which broke after it started."""
        raise NotImplementedError

    # --- upstream side -------------------------------------------------------------------------------

    def spoken_by(self, target: Target, kind_format: "WireFormat") -> bool:
        """Whether ``target``, whose provider kind speaks ``kind_format``, takes this format natively."""
        return kind_format is self

    def build_request(self, target: Target, body: dict, *, stream: bool, cache: bool,
                      client_headers: dict[str, str]) -> tuple[str, dict[str, str], bytes]:
        """URL, headers and body of one attempt. ``body`` is in this format already (native or translated)."""
        raise NotImplementedError

    def request_from_chat(self, chat: dict) -> dict:
        """The pivot request in this format."""
        raise NotImplementedError

    def cap_output(self, body: dict, tokens: int) -> dict:
        """``body`` (in this format) asking for at most ``tokens`` of output, reasoning included."""
        legacy = "max_tokens" in body and "max_completion_tokens" not in body
        return capped(body, "max_tokens" if legacy else "max_completion_tokens", tokens)

    def read_answer(self, raw: bytes, content_type: str) -> object:
        """A non-stream answer's body (a dict, or anything else when the upstream sent no JSON object)."""
        return load_json(raw)

    def usage_of(self, answer: dict) -> TokenUsage:
        raise NotImplementedError

    def chat_from_answer(self, answer: dict, model: str) -> dict:
        raise NotImplementedError

    def sse_item(self, raw: bytes) -> dict | None:
        """One raw upstream SSE event as ``chat_decoder`` takes it (its data); None for comments."""
        data = event_field(raw, b"data")
        if data is None:
            return None
        if data == b"[DONE]":
            return {"done": True}
        payload = load_json(data)
        return payload if isinstance(payload, dict) else None  # None: not an event any decoder could read

    def chat_decoder(self, model: str):
        """This format's stream → chat chunks: ``feed(item)``, ``finish()``, and ``usage`` and ``finished``
        (the upstream said how its stream ends) as it goes, and ``has_end_event`` (as ``Observer``'s). Only
        ``finish()`` yields the chunks that end a stream (finish reason, usage): a translator may turn them
        into the events a client's SDK stops at."""
        raise NotImplementedError


class NamedEventFormat(WireFormat):
    """A format whose SSE events carry an ``event:`` line: stream items are (name, data) pairs both ways."""

    def encode(self, item: SSEEvent) -> bytes:
        return encode_event(*item)

    def sse_item(self, raw: bytes) -> SSEEvent | None:
        data = event_field(raw, b"data")
        if data is None:
            return None
        payload = load_json(data)
        if not isinstance(payload, dict):
            return None
        name = event_field(raw, b"event")
        return (name.decode() if name else payload.get("type", "")), payload
