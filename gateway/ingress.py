"""Client wire formats: OpenAI chat, OpenAI Responses, Anthropic messages and Gemini.

Each ingress reads its request, says which models it admits, renders errors in its own shape, and
turns answers into its format: upstream answers in the same format are passed on natively (watched
for usage, model id swapped, cost added); others arrive as OpenAI chat and go through gateway.formats.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.catalog import Route
from gateway.errors import GatewayError, invalid_request, openai_error_body
from gateway.formats.anthropic import ChatToAnthropicStream, anthropic_response_from_chat, chat_request_from_anthropic
from gateway.formats.gemini import ChatToGeminiStream, chat_request_from_gemini, gemini_response_from_chat
from gateway.formats.responses import ChatToResponsesStream, chat_request_from_responses, responses_response_from_chat
from gateway.providers import ANTHROPIC, CHAT, GEMINI, RESPONSES, chat_output_chars, load_json
from gateway.sse import encode_data, encode_event, event_field
from billing.tokens import TokenUsage

GATEWAY_FIELDS = ("intent", "hypereal")  # ours: never forwarded upstream
OPENAI_PING = b": ping\n\n"
ANTHROPIC_PING = b'event: ping\ndata: {"type": "ping"}\n\n'
GRPC_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 402: "FAILED_PRECONDITION",
               403: "PERMISSION_DENIED", 404: "NOT_FOUND", 405: "UNIMPLEMENTED", 413: "INVALID_ARGUMENT",
               429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 502: "UNAVAILABLE",
               503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
Price = Callable[[TokenUsage], float]  # usage → cost in credits, for the answer


@dataclass(slots=True)
class ClientRequest:
    body: dict  # in the client's format, without the gateway's own fields
    model: object
    intent: object
    stream: bool
    max_output: object  # the client's output cap, if it set one
    wants_usage: bool = True  # chat streams carry the usage chunk only when asked
    cache: bool = True  # Hypereal Cache on Anthropic upstreams
    headers: dict[str, str] = field(default_factory=dict)  # client headers an upstream of its format reads


def _hypereal_options(body: dict) -> bool:
    """The ``hypereal`` field: ``{"cache": "auto" | false}`` (auto, the default, lets the gateway cache)."""
    options = body.get("hypereal")
    if options is None:
        return True
    cache = options.get("cache", "auto") if isinstance(options, dict) else None
    if cache not in ("auto", True, False):
        raise invalid_request('`hypereal` must be an object like {"cache": "auto"} or {"cache": false}.',
                              code="invalid_hypereal_options")
    return cache is not False


def _strip(body: dict, *extra: str) -> dict:
    return {k: v for k, v in body.items() if k not in GATEWAY_FIELDS and k not in extra}


class Observer:
    """Watches a stream passed on natively: usage, output produced, whether it ended properly."""

    def __init__(self, price: Price) -> None:
        self.price = price
        self.usage: TokenUsage | None = None
        self.produced = 0  # characters of output, for time-to-first-token and estimates
        self.finished = False
        self.failed = False  # the upstream sent an error event

    def feed(self, raw: bytes) -> bytes:
        """The event to send for this upstream event (b"" drops it); events without a JSON object in their
        data (comments, pings, ``[DONE]``) go to ``_other``, which passes them on."""
        data = event_field(raw, b"data")
        payload = load_json(data) if data is not None else None
        return self._watch(raw, payload) if isinstance(payload, dict) else self._other(raw, data)

    def _watch(self, raw: bytes, payload: dict) -> bytes:
        raise NotImplementedError

    def _other(self, raw: bytes, data: bytes | None) -> bytes:
        return raw


class Ingress:
    format: str
    endpoint: str
    ping: bytes | None = OPENAI_PING
    model_field = "model"

    def read(self, body: dict, *, model: object = None, stream: bool | None = None) -> ClientRequest:
        raise NotImplementedError

    def admit(self, route: Route) -> None:
        if route.family == ANTHROPIC:
            raise invalid_request(f"`{route.public_id}` is an Anthropic model: call it at /v1/messages "
                                  "(the Anthropic Messages API).", code="wrong_endpoint_for_model")

    def to_chat(self, request: ClientRequest) -> dict:
        raise NotImplementedError

    def error_body(self, err: GatewayError) -> dict:
        return openai_error_body(err)

    def native_answer(self, data: dict, model: str) -> dict:
        return {**data, self.model_field: model}

    def answer_from_chat(self, chat: dict, model: str) -> dict:
        raise NotImplementedError

    def stamp_answer(self, answer: dict, usage: TokenUsage, cost: float) -> None:
        answer["usage"] = {**(answer.get("usage") or {}), "cost": cost}

    def observer(self, request: ClientRequest, price: Price) -> Observer:
        raise NotImplementedError

    def translator(self, request: ClientRequest, model: str):
        """Chat chunks → this format's stream items (a gateway.formats ChatStreamTranslator)."""
        raise NotImplementedError

    def encode(self, item) -> bytes:
        return encode_data(item)

    def stamp(self, item, cost: float) -> None:
        """Add the cost to the translated item that carries the final usage, if this is it."""

    def stream_error(self, observer: Observer, type: str, message: str) -> bytes:
        raise NotImplementedError


# --- OpenAI chat completions ---------------------------------------------------------------------------

class ChatObserver(Observer):
    def __init__(self, price: Price, wants_usage: bool) -> None:
        super().__init__(price)
        self.wants_usage = wants_usage

    def _other(self, raw: bytes, data: bytes | None) -> bytes:
        self.finished = self.finished or data == b"[DONE]"
        return raw  # a comment, [DONE], or data not ours to judge: passed on untouched

    def _watch(self, raw: bytes, chunk: dict) -> bytes:
        if chunk.get("error"):
            self.failed = True
            return raw
        if chunk.get("usage"):
            self.usage = TokenUsage.from_openai_chat(chunk["usage"])
            if self.wants_usage:
                chunk["usage"]["cost"] = self.price(self.usage)
            else:
                del chunk["usage"]
            return encode_data(chunk) if self.wants_usage or chunk.get("choices") else b""
        self.produced += chat_output_chars(chunk)
        return raw


class ChatToChat:
    """A translated upstream's chat chunks as a chat client gets them, ending in ``data: [DONE]``."""

    def __init__(self, wants_usage: bool) -> None:
        self.wants_usage = wants_usage
        self._failed = False

    def feed(self, chunk: dict) -> list[dict]:
        if chunk.get("error"):
            self._failed = True
        elif chunk.get("usage") and not self.wants_usage:
            chunk = {k: v for k, v in chunk.items() if k != "usage"}
            if not chunk.get("choices"):
                return []
        return [chunk]

    def finish(self) -> list[dict | str]:
        return [] if self._failed else ["[DONE]"]  # encode_data("[DONE]") is the `data: [DONE]` line

    def error(self, type: str, message: str) -> list[dict]:
        return [{"error": {"message": message, "type": type, "param": None, "code": None}}]


class ChatIngress(Ingress):
    format = CHAT

    def __init__(self, endpoint: str = "chat.completions") -> None:
        self.endpoint = endpoint

    def read(self, body: dict, *, model: object = None, stream: bool | None = None) -> ClientRequest:
        stream = bool(body.get("stream")) if stream is None else stream
        return ClientRequest(
            body=_strip(body), model=body.get("model"), intent=body.get("intent"), stream=stream,
            max_output=body.get("max_completion_tokens") or body.get("max_tokens"),
            wants_usage=bool((body.get("stream_options") or {}).get("include_usage")),
            cache=_hypereal_options(body))

    def to_chat(self, request: ClientRequest) -> dict:
        return request.body

    def answer_from_chat(self, chat: dict, model: str) -> dict:
        return {**chat, "model": model}

    def observer(self, request: ClientRequest, price: Price) -> Observer:
        return ChatObserver(price, request.wants_usage)

    def translator(self, request: ClientRequest, model: str):
        return ChatToChat(request.wants_usage)

    def stamp(self, item, cost: float) -> None:
        if isinstance(item, dict) and item.get("usage"):
            item["usage"]["cost"] = cost

    def stream_error(self, observer: Observer, type: str, message: str) -> bytes:
        return encode_data({"error": {"message": message, "type": type, "param": None, "code": None}})


# --- Anthropic messages --------------------------------------------------------------------------------

class AnthropicObserver(Observer):
    def __init__(self, price: Price) -> None:
        super().__init__(price)
        self._usage: dict = {}

    def _watch(self, raw: bytes, payload: dict) -> bytes:
        kind = payload.get("type")
        if kind == "content_block_delta":
            delta = payload.get("delta") or {}
            self.produced += len(delta.get("text") or delta.get("thinking") or delta.get("partial_json") or "")
        elif kind == "message_start":
            self._merge((payload.get("message") or {}).get("usage"))
        elif kind == "message_delta":
            self.finished = True
            self._merge(payload.get("usage"))
            payload["usage"] = {**(payload.get("usage") or {}), "cost": self.price(self.usage)}
            return encode_event("message_delta", payload)
        elif kind == "message_stop":
            self.finished = True
        elif kind == "error":
            self.failed = True
        return raw

    def _merge(self, usage: dict | None) -> None:
        self._usage.update({k: v for k, v in (usage or {}).items() if v is not None})
        self.usage = TokenUsage.from_anthropic(self._usage)


class NamedEventIngress(Ingress):
    """Formats whose SSE events carry an ``event:`` line: translated items are (name, data) pairs."""

    def encode(self, item) -> bytes:
        return encode_event(*item)


class AnthropicIngress(NamedEventIngress):
    format = ANTHROPIC
    endpoint = "messages"
    ping = ANTHROPIC_PING

    def read(self, body: dict, *, model: object = None, stream: bool | None = None) -> ClientRequest:
        if not isinstance(body.get("messages"), list):
            raise invalid_request("messages: Field required (a list of messages).", code="invalid_messages")
        return ClientRequest(body=_strip(body), model=body.get("model"), intent=body.get("intent"),
                             stream=bool(body.get("stream")), max_output=body.get("max_tokens"),
                             cache=_hypereal_options(body))

    def admit(self, route: Route) -> None:
        """Every chat model: non-Anthropic ones are translated both ways."""

    def to_chat(self, request: ClientRequest) -> dict:
        return chat_request_from_anthropic(request.body)

    def error_body(self, err: GatewayError) -> dict:
        return {"type": "error", "error": {"type": err.type, "message": err.message, **err.extra}}

    def answer_from_chat(self, chat: dict, model: str) -> dict:
        return anthropic_response_from_chat(chat, model=model)

    def observer(self, request: ClientRequest, price: Price) -> Observer:
        return AnthropicObserver(price)

    def translator(self, request: ClientRequest, model: str):
        return ChatToAnthropicStream(model)

    def stamp(self, item, cost: float) -> None:
        if item[0] == "message_delta":
            item[1]["usage"]["cost"] = cost

    def stream_error(self, observer: Observer, type: str, message: str) -> bytes:
        return encode_event("error", {"type": "error", "error": {"type": type, "message": message}})


# --- OpenAI Responses ----------------------------------------------------------------------------------

RESPONSE_END_EVENTS = ("response.completed", "response.incomplete", "response.failed")
RESPONSE_DELTA_EVENTS = ("response.output_text.delta", "response.reasoning_text.delta",
                         "response.reasoning_summary_text.delta", "response.function_call_arguments.delta",
                         "response.refusal.delta")


class ResponsesObserver(Observer):
    def __init__(self, price: Price) -> None:
        super().__init__(price)
        self.sequence = -1

    def _watch(self, raw: bytes, payload: dict) -> bytes:
        kind = payload.get("type")
        if isinstance(payload.get("sequence_number"), int):
            self.sequence = payload["sequence_number"]
        if kind in RESPONSE_DELTA_EVENTS:
            self.produced += len(payload.get("delta") or "")
        elif kind in RESPONSE_END_EVENTS:
            self.finished = True
            response = payload.get("response") or {}
            if response.get("usage"):
                self.usage = TokenUsage.from_responses(response["usage"])
                response["usage"]["cost"] = self.price(self.usage)
                return encode_event(kind, payload)
        elif kind == "error":
            self.failed = True
        return raw


class ResponsesIngress(NamedEventIngress):
    format = RESPONSES
    endpoint = "responses"

    def read(self, body: dict, *, model: object = None, stream: bool | None = None) -> ClientRequest:
        if "input" not in body:
            raise invalid_request("Missing required parameter: `input`.", code="missing_input")
        return ClientRequest(body=_strip(body), model=body.get("model"), intent=body.get("intent"),
                             stream=bool(body.get("stream")), max_output=body.get("max_output_tokens"),
                             cache=_hypereal_options(body))

    def to_chat(self, request: ClientRequest) -> dict:
        return chat_request_from_responses(request.body)

    def answer_from_chat(self, chat: dict, model: str) -> dict:
        return responses_response_from_chat(chat, model=model)

    def observer(self, request: ClientRequest, price: Price) -> Observer:
        return ResponsesObserver(price)

    def translator(self, request: ClientRequest, model: str):
        return ChatToResponsesStream(model)

    def stamp(self, item, cost: float) -> None:
        usage = (item[1].get("response") or {}).get("usage")
        if item[0] in RESPONSE_END_EVENTS and usage:
            usage["cost"] = cost

    def stream_error(self, observer: Observer, type: str, message: str) -> bytes:
        return encode_event("error", {"type": "error", "code": type, "message": message, "param": None,
                                      "sequence_number": observer.sequence + 1})


# --- Gemini ----------------------------------------------------------------------------------------------

class GeminiObserver(Observer):
    def _watch(self, raw: bytes, payload: dict) -> bytes:
        if payload.get("error"):
            self.failed = True
            return raw
        if payload.get("usageMetadata"):
            self.usage = TokenUsage.from_gemini(payload["usageMetadata"])  # the last one is authoritative
        for candidate in payload.get("candidates") or ():
            for part in (candidate.get("content") or {}).get("parts") or ():
                self.produced += len(part.get("text") or "")
            self.finished = self.finished or bool(candidate.get("finishReason"))
        if self.finished and payload.get("usageMetadata"):  # the last chunk carries the cost of the call
            payload["usageMetadata"] = {**payload["usageMetadata"], "cost": self.price(self.usage)}
            return encode_data(payload)
        return raw


class GeminiIngress(Ingress):
    format = GEMINI
    endpoint = "gemini"
    ping = None  # google-genai reads every line of the stream as JSON: no room for comments
    model_field = "modelVersion"

    def read(self, body: dict, *, model: object = None, stream: bool | None = None) -> ClientRequest:
        config = body.get("generationConfig") or body.get("generation_config") or {}
        return ClientRequest(
            body=_strip(body, "model", "stream"), model=model or body.get("model"), intent=body.get("intent"),
            stream=bool(body.get("stream")) if stream is None else stream,
            max_output=config.get("maxOutputTokens") or config.get("max_output_tokens"),
            cache=_hypereal_options(body))

    def to_chat(self, request: ClientRequest) -> dict:
        return chat_request_from_gemini(request.body, model=str(request.model), stream=request.stream)

    def error_body(self, err: GatewayError) -> dict:
        return {"error": {"code": err.status, "message": err.message,
                          "status": GRPC_STATUS.get(err.status, "UNKNOWN"), "reason": err.type, **err.extra}}

    def answer_from_chat(self, chat: dict, model: str) -> dict:
        return gemini_response_from_chat(chat, model=model)

    def stamp_answer(self, answer: dict, usage: TokenUsage, cost: float) -> None:
        answer["usageMetadata"] = {**(answer.get("usageMetadata") or usage.to_gemini()), "cost": cost}

    def observer(self, request: ClientRequest, price: Price) -> Observer:
        return GeminiObserver(price)

    def translator(self, request: ClientRequest, model: str):
        return ChatToGeminiStream(model)

    def stamp(self, item, cost: float) -> None:
        if item.get("usageMetadata") and item["candidates"][0].get("finishReason"):
            item["usageMetadata"]["cost"] = cost

    def stream_error(self, observer: Observer, type: str, message: str) -> bytes:
        return encode_data({"error": {"code": 500, "message": message, "status": "INTERNAL", "reason": type}})


CHAT_INGRESS = ChatIngress()
GEMINI_CHAT_INGRESS = ChatIngress(endpoint="gemini")  # OpenAI-shaped bodies sent to /gemini
ANTHROPIC_INGRESS = AnthropicIngress()
RESPONSES_INGRESS = ResponsesIngress()
GEMINI_INGRESS = GeminiIngress()
