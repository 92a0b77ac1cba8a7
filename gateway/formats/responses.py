"""OpenAI Responses API: the format of Responses clients, and of the upstreams that serve it natively.

A Responses call passes through to OpenAI-compatible providers marked *supports Responses*; on any other
target it is translated onto chat here. Items the gateway cannot keep or replay are refused or skipped:
it stores no responses, so ``previous_response_id`` is refused, and reasoning items (encrypted,
provider-specific) are not replayed.
"""

import time
from collections.abc import Callable

from billing.tokens import TokenUsage
from gateway.catalog import Target
from gateway.errors import invalid_request
from gateway.formats.base import (
    ClientRequest,
    NamedEventFormat,
    Observer,
    Price,
    SSEEvent,
    WireFormat,
    capped,
    client_request,
    json_bytes,
    load_json,
)
from gateway.formats.chat import CHAT, bearer_headers, usage_from_chat
from gateway.formats.checks import boolean, checked, integer, number, objects, string, string_or_list
from gateway.formats.common import (
    ChatStreamTranslator,
    TranslationError,
    assistant_message,
    chat_content,
    compact,
    image_part,
    new_id,
    stream_fields,
    text_of,
    tool_call,
)
from gateway.sse import SSEParser, encode_event

TEXT_PARTS = ("input_text", "output_text", "text", "refusal")  # content parts that become chat text parts
PART_DONE_EVENTS = {"message": "response.output_text.done", "reasoning": "response.reasoning_text.done"}
PART_DELTA_EVENTS = {"message": "response.output_text.delta", "reasoning": "response.reasoning_text.delta"}
RESPONSE_END_EVENTS = ("response.completed", "response.incomplete", "response.failed")
RESPONSE_DELTA_EVENTS = ("response.output_text.delta", "response.reasoning_text.delta",
                         "response.reasoning_summary_text.delta", "response.function_call_arguments.delta",
                         "response.refusal.delta")


# Usage

def usage_from_responses(usage: dict | None) -> TokenUsage:
    if not usage:
        return TokenUsage()
    input_details = usage.get("input_tokens_details") or {}
    output_details = usage.get("output_tokens_details") or {}
    return TokenUsage(
        input=int(usage.get("input_tokens") or 0),
        cached_read=int(input_details.get("cached_tokens") or 0),
        cache_write=int(input_details.get("cache_write_tokens") or 0),
        output=int(usage.get("output_tokens") or 0),
        reasoning=int(output_details.get("reasoning_tokens") or 0),
    )


def responses_usage(usage: TokenUsage) -> dict:
    return {
        "input_tokens": usage.input,
        "input_tokens_details": {"cached_tokens": usage.cached_read, "cache_write_tokens": usage.cache_write},
        "output_tokens": usage.output,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning},
        "total_tokens": usage.total,
    }


# Request

def chat_request_from_responses(body: dict) -> dict:
    if body.get("previous_response_id"):
        raise TranslationError("previous_response_id is not supported: responses are not stored; "
                               "send the whole conversation as input.")
    messages = [{"role": "system", "content": body["instructions"]}] if body.get("instructions") else []
    items = body.get("input")
    for item in [{"role": "user", "content": items}] if isinstance(items, str) else items or []:
        kind = item.get("type") or "message"
        if kind == "message":
            messages.append(_chat_message(item))
        elif kind == "function_call":
            call = tool_call(item.get("call_id", ""), item.get("name", ""), item.get("arguments") or "{}")
            if messages and messages[-1]["role"] == "assistant":  # parallel calls, or calls after text
                messages[-1]["tool_calls"] = [*messages[-1].get("tool_calls", []), call]
            else:
                messages.append(assistant_message(None, [call]))
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"),
                             "content": output if isinstance(output, str) else text_of(output)})
        elif kind != "reasoning":
            raise TranslationError(f"Input item {kind!r} is not supported.")
    text_format = (body.get("text") or {}).get("format")
    reasoning = body.get("reasoning") or {}
    return compact({
        "model": body.get("model"),
        "messages": messages,
        "max_completion_tokens": body.get("max_output_tokens"),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "parallel_tool_calls": body.get("parallel_tool_calls"),
        "user": body.get("user") or body.get("safety_identifier"),
        "response_format": _response_format(text_format) if text_format else None,
        "reasoning_effort": reasoning.get("effort"),
        **_chat_tools(body.get("tools"), body.get("tool_choice")),
        **stream_fields(body.get("stream")),
    })


def _chat_message(item: dict) -> dict:
    # developer is the Responses name for system; not every chat upstream knows it.
    role = "system" if item.get("role") == "developer" else item.get("role", "user")
    content = item.get("content")
    if isinstance(content, str) or role == "assistant":
        return {"role": role, "content": text_of(content, sep="")}
    return {"role": role, "content": chat_content([_chat_part(part) for part in content or []])}


def _chat_part(part: dict) -> dict:
    kind = part.get("type")
    if kind in TEXT_PARTS:
        return {"type": "text", "text": part.get("text") or part.get("refusal") or ""}
    if kind == "input_image" and part.get("image_url"):
        image = image_part(part["image_url"])
        if part.get("detail"):
            image["image_url"]["detail"] = part["detail"]
        return image
    raise TranslationError(f"Content part {kind!r} is not supported (file ids need stored files).")


def _chat_tools(tools: list[dict] | None, choice: object) -> dict:
    # Hosted tools (web_search, file_search, …) have no chat equivalent and are dropped.
    functions = [{"type": "function", "function": compact({key: tool.get(key) for key in
                                                           ("name", "description", "parameters", "strict")})}
                 for tool in tools or [] if tool.get("type") == "function"]
    if not functions:
        return {}
    if isinstance(choice, dict):
        choice = {"type": "function", "function": {"name": choice["name"]}} \
            if choice.get("type") == "function" and choice.get("name") else None
    return compact({"tools": functions, "tool_choice": choice})


def _response_format(text_format: dict) -> dict:
    if text_format.get("type") != "json_schema":
        return {"type": text_format.get("type", "text")}
    schema = compact({key: text_format.get(key) for key in ("name", "description", "schema", "strict")})
    return {"type": "json_schema", "json_schema": schema}


# Response

def responses_response_from_chat(resp: dict, *, model: str, response_id: str | None = None) -> dict:
    choice = (resp.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    calls = message.get("tool_calls") or []
    status, details = _status(choice.get("finish_reason"))
    output = []
    if reasoning := message.get("reasoning_content"):
        output.append(_reasoning_item(new_id("rs"), reasoning, "completed"))
    text = text_of(message.get("content") or message.get("refusal"), sep="")
    if text or not calls:
        output.append(_message_item(new_id("msg"), text, "completed"))
    for call in calls:
        function = call.get("function") or {}
        output.append(_function_call_item(new_id("fc"), call.get("id", ""), function.get("name", ""),
                                          function.get("arguments", ""), "completed"))
    if status == "incomplete":  # the output was cut off at its last item
        output[-1]["status"] = "incomplete"
    return _response(response_id or new_id("resp"), model, int(time.time()), status, details, output,
                     usage_from_chat(resp.get("usage")))


def _status(finish_reason: str | None) -> tuple[str, dict | None]:
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _response(response_id: str, model: str, created_at: int, status: str, incomplete_details: dict | None,
              output: list[dict], usage: TokenUsage | None) -> dict:
    # tools, tool_choice and parallel_tool_calls echo the request, which this layer does not see; they are
    # required fields of the Response type, so neutral values are filled in for the endpoint to overwrite.
    return {"id": response_id, "object": "response", "created_at": created_at, "status": status,
            "model": model, "output": output, "usage": responses_usage(usage) if usage else None,
            "error": None, "incomplete_details": incomplete_details, "tools": [], "tool_choice": "auto",
            "parallel_tool_calls": True}


def _text_part(item_type: str, text: str) -> dict:
    if item_type == "reasoning":
        return {"type": "reasoning_text", "text": text}
    return {"type": "output_text", "text": text, "annotations": []}


def _message_item(item_id: str, text: str | None, status: str) -> dict:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [] if text is None else [_text_part("message", text)]}


def _reasoning_item(item_id: str, text: str | None, status: str) -> dict:
    return {"type": "reasoning", "id": item_id, "status": status, "summary": [],
            "content": [] if text is None else [_text_part("reasoning", text)]}


def _function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


class ChatToResponsesStream(ChatStreamTranslator[SSEEvent]):
    """Chat chunks → Responses SSE events, as (event name, data) pairs with a global sequence_number.

    One output item is open at a time (reasoning, message, or one function call); a change of kind closes it
    with its .done events, innermost first. A fragment for a function call already closed is dropped.
    """

    def __init__(self, model: str, response_id: str | None = None) -> None:
        super().__init__()
        self._model = model
        self._id = response_id or new_id("resp")
        self._created_at = int(time.time())
        self._sequence = 0
        self._output: list[dict] = []  # closed items, in output order
        self._item: dict | None = None  # the open item as it was added
        self._key: object = None  # what the open item holds: "message", "reasoning", ("tool", n)
        self._buffer = ""  # the open item's text or arguments so far

    def _start(self) -> list[SSEEvent]:
        snapshot = _response(self._id, self._model, self._created_at, "in_progress", None, [], None)
        return [self._event("response.created", response=snapshot),
                self._event("response.in_progress", response=snapshot)]

    def _on_text(self, text: str) -> list[SSEEvent]:
        opened = self._enter("message", lambda: _message_item(new_id("msg"), None, "in_progress"))
        return opened + self._text(text)

    def _on_reasoning(self, text: str) -> list[SSEEvent]:
        opened = self._enter("reasoning", lambda: _reasoning_item(new_id("rs"), None, "in_progress"))
        return opened + self._text(text)

    def _on_tool_start(self, index: int, call_id: str, name: str) -> list[SSEEvent]:
        return self._enter(("tool", index),
                           lambda: _function_call_item(new_id("fc"), call_id, name, "", "in_progress"))

    def _on_tool_arguments(self, index: int, fragment: str) -> list[SSEEvent]:
        if self._key != ("tool", index):
            return []
        assert self._item is not None
        self._buffer += fragment
        return [self._event("response.function_call_arguments.delta", item_id=self._item["id"],
                            output_index=len(self._output), delta=fragment)]

    def _end(self, finish_reason: str | None) -> list[SSEEvent]:
        status, details = _status(finish_reason)
        out = self._close(status)
        response = _response(self._id, self._model, self._created_at, status, details, list(self._output),
                             self._usage)
        return out + [self._event(f"response.{status}", response=response)]

    def _error(self, type: str, message: str) -> list[SSEEvent]:
        # The error event's shape is unconfirmed (flat or nested under "error"). Flat is what the openai SDK's
        # ResponseErrorEvent models; a nested "error" key would instead make the SDK raise on the first
        # error-shaped line, bypassing the typed event.
        return [self._event("error", code=type, message=message, param=None)]

    def _event(self, kind: str, /, **fields: object) -> SSEEvent:
        data = {"type": kind, **fields, "sequence_number": self._sequence}
        self._sequence += 1
        return kind, data

    def _text(self, text: str) -> list[SSEEvent]:
        assert self._item is not None
        self._buffer += text
        extra = {"logprobs": []} if self._item["type"] == "message" else {}
        return [self._event(PART_DELTA_EVENTS[self._item["type"]], item_id=self._item["id"],
                            output_index=len(self._output), content_index=0, delta=text, **extra)]

    def _enter(self, key: object, make_item: Callable[[], dict]) -> list[SSEEvent]:
        # make_item is called only when an item opens: most deltas continue the open one.
        if key == self._key:
            return []
        out = self._close("completed")
        self._key, self._item, self._buffer = key, make_item(), ""
        index, item_id = len(self._output), self._item["id"]
        out.append(self._event("response.output_item.added", output_index=index, item=self._item))
        if self._item["type"] in PART_DONE_EVENTS:
            out.append(self._event("response.content_part.added", item_id=item_id, output_index=index,
                                   content_index=0, part=_text_part(self._item["type"], "")))
        return out

    def _close(self, status: str) -> list[SSEEvent]:
        item, text = self._item, self._buffer
        if item is None:
            return []
        index, kind = len(self._output), item["type"]
        where = {"item_id": item["id"], "output_index": index}
        if kind == "function_call":
            out = [self._event("response.function_call_arguments.done", **where, name=item["name"],
                               arguments=text)]
            done = {**item, "arguments": text, "status": status}
        else:
            part = _text_part(kind, text)
            extra = {"logprobs": []} if kind == "message" else {}
            out = [self._event(PART_DONE_EVENTS[kind], **where, content_index=0, text=text, **extra),
                   self._event("response.content_part.done", **where, content_index=0, part=part)]
            done = {**item, "status": status, "content": [part]}
        out.append(self._event("response.output_item.done", output_index=index, item=done))
        self._output.append(done)
        self._item = self._key = None
        return out


def responses_from_sse_events(events: list[SSEEvent]) -> dict:
    """The final response object of an upstream's Responses SSE stream (for clients that asked stream: false).

    The last lifecycle event's response is the base; its output is rebuilt from the output_item.done events
    when the upstream left it empty. An error event, or a stream that stopped before a terminal status,
    yields a ``failed`` response carrying the error, which is how the Responses API reports a failed run.
    """
    response: dict = {}
    items: dict[int, dict] = {}
    error: dict | None = None
    for name, data in events:
        kind = data.get("type") or name
        if kind == "response.output_item.done" and isinstance(data.get("item"), dict):
            items[data.get("output_index", len(items))] = data["item"]
        elif kind == "error":
            detail = data.get("error") if isinstance(data.get("error"), dict) else data  # flat or nested
            error = {"code": detail.get("code") or detail.get("type"), "message": detail.get("message", "")}
        elif isinstance(data.get("response"), dict):
            response = data["response"]
    if not response.get("output"):
        response = {**response, "output": [items[index] for index in sorted(items)]}
    if error is not None or response.get("status") in (None, "queued", "in_progress"):
        error = error or {"code": "server_error",
                          "message": "The upstream stream ended before the response completed."}
        response = {**response, "status": "failed", "error": error}
    return response


# The format

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
                self.usage = usage_from_responses(response["usage"])
                response["usage"]["cost"] = self.price(self.usage)
                return encode_event(kind, payload)
        elif kind == "error":
            self.failed = True
        return raw


RESPONSES_FIELDS = {
    "model": string, "input": string_or_list, "max_output_tokens": integer(1), "temperature": number(0, 2),
    "top_p": number(0, 1), "stream": boolean, "tools": objects(),
}


class ResponsesFormat(NamedEventFormat):
    """Upstreams take it natively or not at all, so it has no request from chat, chat answer or decoder."""

    def read(self, body: dict, *, model: object = None, stream: bool | None = None) -> ClientRequest:
        if "input" not in body:
            raise invalid_request("Missing required parameter: `input`.", code="missing_input")
        checked(body, RESPONSES_FIELDS)
        return client_request(body, model=body.get("model"), stream=bool(body.get("stream")),
                              max_output=body.get("max_output_tokens"), max_output_field="max_output_tokens")

    def to_chat(self, request: ClientRequest) -> dict:
        return chat_request_from_responses(request.body)

    def answer_from_chat(self, chat: dict, model: str) -> dict:
        return responses_response_from_chat(chat, model=model)

    def observer(self, request: ClientRequest, price: Price) -> Observer:
        return ResponsesObserver(price)

    def translator(self, request: ClientRequest, model: str) -> ChatToResponsesStream:
        return ChatToResponsesStream(model)

    def stamp(self, item: SSEEvent, cost: float) -> None:
        usage = (item[1].get("response") or {}).get("usage")
        if item[0] in RESPONSE_END_EVENTS and usage:
            usage["cost"] = cost

    def stream_error(self, observer: ResponsesObserver, type: str, message: str) -> bytes:
        return encode_event("error", {"type": "error", "code": type, "message": message, "param": None,
                                      "sequence_number": observer.sequence + 1})

    def spoken_by(self, target: Target, kind_format: WireFormat) -> bool:
        """OpenAI-compatible providers marked *supports Responses* in admin; the others get it as chat."""
        return kind_format is CHAT and target.responses

    def build_request(self, target: Target, body: dict, *, stream: bool, cache: bool,
                      client_headers: dict[str, str]) -> tuple[str, dict[str, str], bytes]:
        payload = {**body, "model": target.upstream_model}
        return f"{target.base_url}/responses", bearer_headers(target), json_bytes(payload)

    def cap_output(self, body: dict, tokens: int) -> dict:
        return capped(body, "max_output_tokens", tokens)

    def read_answer(self, raw: bytes, content_type: str) -> object:
        if content_type == "text/event-stream":
            # Some Responses upstreams always stream: the client asked for one answer, so it gets one.
            return responses_from_sse_events([item for event in SSEParser().feed(raw + b"\n\n")
                                              if (item := self.sse_item(event))])
        return load_json(raw)

    def usage_of(self, answer: dict) -> TokenUsage:
        return usage_from_responses(answer.get("usage"))


RESPONSES = ResponsesFormat()
