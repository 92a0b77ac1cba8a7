"""The image and audio endpoints of the model API (under /api/v1 and /v1; GpuConfig.ready() routes them).

Images: ``POST images/generations`` (also ``images/generate``, the path of the intent example) and
``images/edits`` (multipart, as the openai SDK's ``images.edit`` sends it). Audio: ``POST audio/generations``
(Hypereal's shape: speech, voice cloning or transcription, by model), ``audio/speech`` and
``audio/transcriptions`` (OpenAI's).

Every call goes the same way: the key; the body (HYPEREAL_MEDIA_MAX_BYTES); the model, or the cheapest healthy
one of an intent; the request checked against what the model accepts; its full price reserved from the wallet
and the key's monthly limit (402 before anything is fetched or sent upstream; media need no balance beyond
their price); the client's media fetched; the model's fallback chain walked; the answer; one charge, for what
came back (each image returned at its tier's price, or the request), and one request log. A call that fails,
or whose client leaves before the answer, is logged and charged nothing.

What a model accepts is its catalog ``parameters`` (all optional; prices are credits, as decimal strings):

- image models: ``sizes`` (the WxH sizes it makes: a list, or a map of each to its price per image),
  ``default_size``; ``aspect_ratios`` (for models sized by aspect ratio; a ``size`` is then taken as the ratio
  nearest to it), ``default_aspect_ratio``; ``resolutions`` (a list, or a map to prices), ``default_resolution``;
  ``references`` ({"field": "image_urls", "max": 4, "sources": ["https", "data", "file"]}: the field that takes
  reference images, how many, and as what: https URLs, base64 data URLs, stored file ids); ``options`` (the
  provider's own fields passed on as they are, e.g. quality); ``response_format`` (the default: url or b64_json).
- audio models: ``task`` (tts, clone or asr), ``formats`` (the audio formats it makes), ``max_characters``,
  ``min_reference_seconds`` (clone), ``options`` (passed on).
"""

import base64
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from django.conf import settings

from billing.money import credits_to_micro, micro_to_json, micro_to_text
from billing.tokens import TokenUsage
from gateway import quota
from gateway.auth import KeyContext, authenticate
from gateway.call import Call, cancel_on_disconnect
from gateway.catalog import Route, Target, catalog
from gateway.errors import GatewayError, invalid_request
from gateway.fallback import targets_walk
from gateway.http import (
    Receive,
    Scope,
    Send,
    encode_headers,
    header,
    parse_json_object,
    read_body,
    send_bytes,
)
from gateway.routing import choose_route
from gpu.forms import Form, form_parse
from gpu.media_inputs import (
    AUDIO_TYPES,
    EXTENSIONS,
    IMAGE_TYPES,
    MediaRef,
    audio_seconds,
    media_load,
    media_ref,
)
from gpu.media_upstreams import (
    CLONE_ADAPTERS,
    IMAGE_ADAPTERS,
    SPEECH_ADAPTERS,
    TRANSCRIBE_ADAPTERS,
    ImageAsk,
    Pictures,
    SpeechAsk,
    Transcript,
    adapter_for,
)
from gpu.storage import stored_file_save, stored_file_url
from gpu.work import off_loop

log = logging.getLogger(__name__)
MAX_IMAGES = 10
MAX_PROMPT_CHARS = 32_000
ASPECT_TOLERANCE = 0.03  # a size within 3 % of a model's aspect ratio is taken as that ratio
DEFAULT_MAX_CHARACTERS = 5_000
DEFAULT_MIN_REFERENCE_SECONDS = 10
AUDIO_CONTENT_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "opus": "audio/ogg", "flac": "audio/flac",
                       "aac": "audio/aac", "pcm": "audio/pcm"}
STORED_AUDIO_FORMATS = ("mp3", "wav", "opus", "flac")  # what audio/generations keeps and links to
TRANSCRIPT_FORMATS = ("json", "text", "verbose_json")
# Where each audio task is served.
TASK_ENDPOINTS = {"tts": ("/v1/audio/generations", "/v1/audio/speech"), "clone": ("/v1/audio/generations",),
                  "asr": ("/v1/audio/generations", "/v1/audio/transcriptions")}
TASK_NAMES = {"tts": "speaks text", "clone": "speaks text in a reference voice", "asr": "transcribes speech"}
GENERATION_FIELDS = {"tts": ("text", "voice_id", "format", "speed"), "clone": ("text", "audio", "format", "speed"),
                     "asr": ("audio", "language")}  # what audio/generations takes for each task


def image_endpoints(route: Route) -> list[str]:
    return ["/v1/images/generations"] + (["/v1/images/edits"] if route.parameters.get("references") else [])


def audio_endpoints(route: Route) -> list[str]:
    return list(TASK_ENDPOINTS.get(route.parameters.get("task"), ()))


# --- the plumbing every media call shares --------------------------------------------------------------------

@dataclass(slots=True)
class _Served:
    """A call's answer, and what it is billed and logged as."""

    target: Target
    cost: int  # micro-credits
    unit: str
    units: int
    body: bytes  # the answer, as sent
    content_type: str
    usage: TokenUsage = TokenUsage()


class _MediaCall:
    """One media call: key, body, route, reservation, disconnect watch, answer, the one log and charge."""

    def __init__(self, endpoint: str, scope: Scope, receive: Receive, send: Send) -> None:
        self.call = Call(endpoint=endpoint)
        self.scope, self.receive, self.send = scope, receive, send
        self.ctx: KeyContext | None = None
        self.route: Route | None = None
        self.answered = False

    async def serve(self, handle: Callable[["_MediaCall"], Awaitable[None]]) -> None:
        try:
            self.ctx = await authenticate(self.scope)
            await handle(self)
        except GatewayError as err:
            await self._failed(err)
        except Exception:
            log.exception("%s failed", self.call.endpoint)
            await self._failed(GatewayError(500, "server_error", "Something went wrong on our side; the request "
                                            "id identifies it.", "server_error"))

    async def _failed(self, err: GatewayError) -> None:
        if err.status != 499 and not self.answered:
            await self.call.send_openai_error(self.send, err)
        if self.ctx is not None:
            self.call.record(self.ctx, model=self.route.public_id if self.route else "", status=err.status,
                             error_type=err.type)

    async def body(self) -> bytes:
        return await read_body(self.receive, limit=settings.HYPEREAL["MEDIA_MAX_BYTES"])

    async def form(self) -> Form:
        return form_parse(await self.body(), header(self.scope, b"content-type") or "")

    async def choose(self, fields: dict, capability: str) -> Route:
        self.route = await choose_route(await catalog(), model=fields.get("model"),
                                        intent=fields.get("intent"), capability=capability)
        return self.route

    @property
    def deadline(self) -> float:
        return self.call.started + settings.HYPEREAL["REQUEST_DEADLINE_SECONDS"]

    async def bill(self, amount: int, work: Callable[[], Awaitable[_Served]]) -> None:
        """Reserve ``amount`` (the most the call can cost), run ``work`` (cancelled if the client leaves), send
        its answer and record its charge; the reservation is settled to that charge whatever happens."""
        reservation = await quota.take(self.ctx, amount=amount, tokens=0, floor=0)
        self.call.headers.update(reservation.decision.headers())
        charged = 0

        async def run() -> None:
            nonlocal charged
            served = await work()
            self.answered = True
            await send_bytes(self.send, 200, served.body, encode_headers({
                **self.call.headers, "content-type": served.content_type,
                "x-hypereal-credits": micro_to_text(served.cost)}))
            target = served.target
            self.call.record(self.ctx, model=self.route.public_id, status=200, usage=served.usage, cost=served.cost,
                             provider=target.provider, upstream_model=target.upstream_model, unit=served.unit,
                             units=served.units)
            charged = served.cost

        try:
            await cancel_on_disconnect(self.receive, run(), lambda: self.answered)
        finally:
            quota.settle(reservation, cost=charged, tokens=0)

    async def walk(self, attempt: Callable[[Target], Awaitable]) -> tuple[Target, object]:
        """The first answer of the model's fallback chain, and the target that gave it."""
        async def tried(target: Target) -> tuple[Target, object]:
            return target, await attempt(target)
        return await targets_walk(self.call, self.route.targets, tried, deadline=self.deadline)


def _json_answer(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


# --- reading requests ----------------------------------------------------------------------------------------

def _fields_checked(fields: dict, accepted: set[str], route: Route) -> None:
    """A field the model does not take is refused by name: a misspelt reference field must not quietly turn an
    image-to-image call into a (billed) text-to-image one."""
    for name in fields:
        if name not in accepted:
            raise invalid_request(f"`{name}` is not a parameter {route.public_id} accepts here; it takes: "
                                  f"{', '.join(sorted(accepted - {'model', 'intent'}))}.",
                                  code="unsupported_parameter", param=name)


def _text(fields: dict, name: str, *, required: bool = False, limit: int = 200) -> str:
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise invalid_request(f"`{name}` is required.", code="missing_required_parameter", param=name)
        return ""
    if not isinstance(value, str):
        raise invalid_request(f"`{name}` must be a string.", code="invalid_type", param=name)
    if len(value) > limit:
        raise invalid_request(f"`{name}` is longer than {limit} characters.", code="string_above_max_length",
                              param=name)
    return value


def _choice(value: str, allowed, name: str) -> str:
    if value not in allowed:
        raise invalid_request(f"`{name}` must be one of {', '.join(allowed)} for this model.", code="invalid_value",
                              param=name)
    return value


def _count(value: object) -> int:
    """``n``: a whole number from 1 to MAX_IMAGES (a form sends it as text)."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_IMAGES:
        raise invalid_request(f"`n` must be a whole number from 1 to {MAX_IMAGES}.", code="invalid_value", param="n")
    return value


def _number(fields: dict, name: str, low: float, high: float) -> float | None:
    value = fields.get(name)
    if value is None:
        return None
    try:
        number = float(value)  # a form sends it as text
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not low <= number <= high:
        raise invalid_request(f"`{name}` must be a number from {low} to {high}.", code="invalid_value", param=name)
    return number


def _tier_price(tiers: object, tier: str) -> int | None:
    """µcr per image at ``tier`` when the model prices its tiers (a map of tier → credits)."""
    return credits_to_micro(tiers[tier]) if isinstance(tiers, dict) else None


def _nearest_ratio(size: str, ratios: list[str]) -> str:
    width, _, height = size.partition("x")
    if not (width.isdigit() and height.isdigit() and int(width) and int(height)):
        raise invalid_request("`size` must be WIDTHxHEIGHT, e.g. 1024x1024.", code="invalid_value", param="size")
    wanted = int(width) / int(height)
    best = min(ratios, key=lambda r: abs(math.log(wanted / _ratio_value(r))))
    if abs(wanted / _ratio_value(best) - 1) > ASPECT_TOLERANCE:
        raise invalid_request(f"`size` {size} is not one of this model's aspect ratios ({', '.join(ratios)}); "
                              "send `aspect_ratio`.", code="invalid_value", param="size")
    return best


def _ratio_value(ratio: str) -> float:
    width, _, height = ratio.partition(":")
    return int(width) / int(height)


@dataclass(frozen=True, slots=True)
class _ImageRequest:
    ask: ImageAsk  # its references still to be loaded
    references: tuple[MediaRef, ...]
    mask: MediaRef | None
    response_format: str
    price: int  # µcr per image, at the tier asked for


def _image_request(route: Route, fields: dict, *, uploads: list[bytes] | None = None,
                   mask: bytes | None = None) -> _ImageRequest:
    """The request checked against the model's parameters; ``uploads`` are an edit's images (multipart)."""
    accepts = route.parameters
    sizes, ratios, resolutions = accepts.get("sizes"), accepts.get("aspect_ratios"), accepts.get("resolutions")
    references = accepts.get("references") or {}
    options = list(accepts.get("options") or [])
    accepted = {"model", "intent", "prompt", "n", "response_format", "user", "size", *options}
    accepted |= {"aspect_ratio"} if ratios else set()
    accepted |= {"resolution"} if resolutions else set()
    if references and uploads is None:
        accepted |= {references["field"], "image"}
    _fields_checked(fields, accepted, route)
    if uploads and not references:
        raise invalid_request(f"{route.public_id} does not take images to edit.", code="unsupported_parameter",
                              param="image")
    if mask is not None and not accepts.get("mask"):
        raise invalid_request(f"{route.public_id} takes no mask.", code="unsupported_parameter", param="mask")
    prompt = _text(fields, "prompt", required=True, limit=MAX_PROMPT_CHARS)
    n = _count(fields.get("n", 1))
    response_format = _choice(_text(fields, "response_format") or accepts.get("response_format", "url"),
                              ("url", "b64_json"), "response_format")
    size, aspect_ratio, resolution = _text(fields, "size"), _text(fields, "aspect_ratio"), _text(fields, "resolution")
    price = None
    if sizes:
        size = _choice(size or accepts.get("default_size") or list(sizes)[0], list(sizes), "size")
        price = _tier_price(sizes, size)
    elif ratios:
        if size and aspect_ratio:
            raise invalid_request("Send `size` or `aspect_ratio`, not both.", code="invalid_value", param="size")
        aspect_ratio = _choice(aspect_ratio or (_nearest_ratio(size, ratios) if size else "")
                               or accepts.get("default_aspect_ratio") or ratios[0], ratios, "aspect_ratio")
        size = ""  # a Gemini-style model is sized by its aspect ratio
    if resolutions:
        resolution = _choice(resolution or accepts.get("default_resolution") or list(resolutions)[0],
                             list(resolutions), "resolution")
        price = _tier_price(resolutions, resolution) if price is None else price
    refs = _image_refs(fields, references, uploads)
    ask = ImageAsk(prompt=prompt, n=n, size=size, aspect_ratio=aspect_ratio, resolution=resolution,
                   options={name: fields[name] for name in options if name in fields},
                   user=_text(fields, "user"))
    return _ImageRequest(ask=ask, references=refs, response_format=response_format,
                         mask=MediaRef(param="mask", inline=mask) if mask is not None else None,
                         price=route.unit_price.amount if price is None else price)


def _image_refs(fields: dict, references: dict, uploads: list[bytes] | None) -> tuple[MediaRef, ...]:
    if uploads is not None:
        refs = tuple(MediaRef(param="image", inline=data) for data in uploads)
        param = "image"
    else:
        param = references.get("field", "")
        listed = fields.get(param) or []
        if not isinstance(listed, list):
            raise invalid_request(f"`{param}` must be a list of images.", code="invalid_type", param=param)
        sources = references.get("sources", ("https",))
        refs = tuple(media_ref(value, param=param, sources=sources) for value in listed)
        if "image" in fields:
            refs = (media_ref(fields["image"], param="image", sources=sources), *refs)
    if len(refs) > (limit := references.get("max", 1)):
        raise invalid_request(f"`{param}` takes at most {limit} images for this model.", code="invalid_value",
                              param=param)
    return refs


# --- images --------------------------------------------------------------------------------------------------

async def images_generations(scope: Scope, receive: Receive, send: Send) -> None:
    """POST images/generations and images/generate: JSON, references by URL, data URL or file id."""
    async def handle(media: _MediaCall) -> None:
        fields = parse_json_object(await media.body())
        route = await media.choose(fields, "image")
        await _images(media, _image_request(route, fields))

    await _MediaCall("images.generations", scope, receive, send).serve(handle)


async def images_edits(scope: Scope, receive: Receive, send: Send) -> None:
    """POST images/edits: multipart with one or more `image` files (``image[]``) and an optional `mask`."""
    async def handle(media: _MediaCall) -> None:
        form = await media.form()
        route = await media.choose(form.fields, "image")
        images, masks = form.files.get("image", []), form.files.get("mask", [])
        if not images:
            raise invalid_request("`image` is required: the image(s) to edit.", code="missing_required_parameter",
                                  param="image")
        if len(masks) > 1 or set(form.files) - {"image", "mask"}:
            raise invalid_request("Send `image` files and at most one `mask`.", code="invalid_value", param="image")
        await _images(media, _image_request(route, form.fields, uploads=images, mask=masks[0] if masks else None))

    await _MediaCall("images.edits", scope, receive, send).serve(handle)


async def _images(media: _MediaCall, request: _ImageRequest) -> None:
    async def work() -> _Served:
        refs = [*request.references, *([request.mask] if request.mask else [])]
        loaded = await media_load(refs, organization_id=media.ctx.org_id, kinds=IMAGE_TYPES)
        mask = loaded.pop() if request.mask else None
        ask = replace(request.ask, references=tuple(loaded), mask=mask)
        target, pictures = await media.walk(
            lambda t: adapter_for(IMAGE_ADAPTERS, t, "make images")(t, ask, deadline=media.deadline))
        return await _images_served(media, request, target, pictures)

    await media.bill(request.price * request.ask.n, work)


async def _images_served(media: _MediaCall, request: _ImageRequest, target: Target, pictures: Pictures) -> _Served:
    cost = request.price * len(pictures.pictures)
    if request.response_format == "url":
        stored = await off_loop(_outputs_store, media.ctx, media.call.request_id,
                                [(p.data, p.content_type) for p in pictures.pictures])
        data = [{"url": url, "file_id": file_id} for file_id, url in stored]
    else:
        data = [{"b64_json": base64.b64encode(p.data).decode()} for p in pictures.pictures]
    for item, picture in zip(data, pictures.pictures):
        if picture.revised_prompt:
            item["revised_prompt"] = picture.revised_prompt
    usage = pictures.usage or {}
    answer = {"created": int(time.time()), "data": data, **pictures.details,
              "usage": {**usage, "cost": micro_to_json(cost)}}
    return _Served(target=target, cost=cost, unit="image", units=len(data), body=_json_answer(answer),
                   content_type="application/json",
                   usage=TokenUsage(input=usage.get("input_tokens") or 0, output=usage.get("output_tokens") or 0))


def _outputs_store(ctx: KeyContext, request_id: str, outputs: list[tuple[bytes, str]]) -> list[tuple[str, str]]:
    """Keep a call's outputs in the organization's storage: (file id, signed download URL) of each."""
    stored = []
    for number, (data, content_type) in enumerate(outputs, 1):
        file = stored_file_save(organization_id=ctx.org_id, api_key_id=ctx.key_id, kind="output", content=data,
                                filename=f"{request_id}-{number}.{EXTENSIONS.get(content_type, 'bin')}",
                                content_type=content_type)
        stored.append((file.public_id, stored_file_url(file)[0]))
    return stored


# --- audio ---------------------------------------------------------------------------------------------------

def _task(route: Route, *tasks: str) -> str:
    """The model's task, which this endpoint must serve; else a 400 naming the endpoints that do."""
    task = route.parameters.get("task", "")
    if task not in tasks:
        where = " or ".join(TASK_ENDPOINTS.get(task, ("/v1/audio/generations",)))
        raise invalid_request(f"`{route.public_id}` {TASK_NAMES.get(task, 'is not served here')}: call it at {where}.",
                              code="wrong_endpoint_for_model")
    return task


def _speech_ask(route: Route, fields: dict, *, text: str, voice: str, fmt: str, formats) -> SpeechAsk:
    accepts = route.parameters
    limit = accepts.get("max_characters", DEFAULT_MAX_CHARACTERS)
    text_value = _text(fields, text, required=True, limit=limit)
    made = [f for f in accepts.get("formats") or STORED_AUDIO_FORMATS if f in formats]
    return SpeechAsk(text=text_value, voice=_text(fields, voice), speed=_number(fields, "speed", 0.25, 4.0),
                     format=_choice(_text(fields, fmt) or "mp3", made, fmt),
                     options={name: fields[name] for name in accepts.get("options") or [] if name in fields})


def _audio_ref(fields: dict) -> MediaRef:
    if fields.get("audio") in (None, ""):
        raise invalid_request("`audio` is required.", code="missing_required_parameter", param="audio")
    return media_ref(fields["audio"], param="audio", sources=("https", "data", "file"))


def _request_price(route: Route) -> int:
    return route.unit_price.amount if route.unit_price else 0


async def audio_generations(scope: Scope, receive: Receive, send: Send) -> None:
    """POST audio/generations: `text` (+ `voice_id`) for tts, `text` and a reference `audio` (≥ 10 s) for clone,
    `audio` for asr; the audio is given as a URL, a base64 data URL or a stored file's id."""
    async def handle(media: _MediaCall) -> None:
        fields = parse_json_object(await media.body())
        route = await media.choose(fields, "audio")
        task = _task(route, "tts", "clone", "asr")
        _fields_checked(fields, {"model", "intent", *GENERATION_FIELDS[task], *route.parameters.get("options", ())},
                        route)
        if task == "asr":
            return await _transcription(media, _audio_ref(fields), language=_text(fields, "language", limit=16),
                                        options={}, render=_generation_transcript)
        ask = _speech_ask(route, fields, text="text", voice="voice_id", fmt="format", formats=STORED_AUDIO_FORMATS)
        await _speech(media, ask, reference=_audio_ref(fields) if task == "clone" else None, stored=True)

    await _MediaCall("audio.generations", scope, receive, send).serve(handle)


async def audio_speech(scope: Scope, receive: Receive, send: Send) -> None:
    """POST audio/speech (OpenAI's): `input`, `voice`, `response_format`, `speed`; the audio bytes come back."""
    async def handle(media: _MediaCall) -> None:
        fields = parse_json_object(await media.body())
        route = await media.choose(fields, "audio")
        _task(route, "tts")
        _fields_checked(fields, {"model", "intent", "input", "voice", "response_format", "speed", "stream_format",
                                 *route.parameters.get("options", ())}, route)
        if fields.get("stream_format", "audio") != "audio":
            raise invalid_request("`stream_format` must be audio: audio is sent whole, not as events.",
                                  code="invalid_value", param="stream_format")
        ask = _speech_ask(route, fields, text="input", voice="voice", fmt="response_format",
                          formats=tuple(AUDIO_CONTENT_TYPES))
        await _speech(media, ask, reference=None, stored=False)

    await _MediaCall("audio.speech", scope, receive, send).serve(handle)


async def _speech(media: _MediaCall, ask: SpeechAsk, *, reference: MediaRef | None, stored: bool) -> None:
    route = media.route
    minimum = route.parameters.get("min_reference_seconds", DEFAULT_MIN_REFERENCE_SECONDS)

    async def work() -> _Served:
        if reference is None:
            target, audio = await media.walk(
                lambda t: adapter_for(SPEECH_ADAPTERS, t, "speak")(t, ask, deadline=media.deadline))
        else:
            voice = (await media_load([reference], organization_id=media.ctx.org_id, kinds=AUDIO_TYPES))[0]
            seconds = await off_loop(audio_seconds, voice.data)
            if seconds is None:
                raise invalid_request("`audio`: the reference's length could not be read; send WAV, MP3, FLAC, "
                                      "Ogg (Opus or Vorbis) or M4A.", code="invalid_media", param="audio")
            if seconds < minimum:
                raise invalid_request(f"`audio`: the reference lasts {seconds:.1f} s; {route.public_id} needs at "
                                      f"least {minimum} s of speech.", code="reference_too_short", param="audio")
            target, audio = await media.walk(
                lambda t: adapter_for(CLONE_ADAPTERS, t, "clone voices")(t, ask, voice, deadline=media.deadline))
        cost = _request_price(route)
        content_type = AUDIO_CONTENT_TYPES[ask.format]
        if not stored:
            return _Served(target=target, cost=cost, unit="request", units=1, body=audio, content_type=content_type)
        (file_id, url), = await off_loop(_outputs_store, media.ctx, media.call.request_id, [(audio, content_type)])
        item = {"url": url, "file_id": file_id, "content_type": content_type}
        if (seconds := await off_loop(audio_seconds, audio)) is not None:
            item["duration"] = round(seconds, 3)
        answer = {"created": int(time.time()), "data": [item],
                  "usage": {"characters": len(ask.text), "cost": micro_to_json(cost)}}
        return _Served(target=target, cost=cost, unit="request", units=1, body=_json_answer(answer),
                       content_type="application/json")

    await media.bill(_request_price(route), work)


async def audio_transcriptions(scope: Scope, receive: Receive, send: Send) -> None:
    """POST audio/transcriptions (OpenAI's, multipart): `file`, `model`, `language`, `prompt`, `temperature`,
    `response_format` json, text or verbose_json."""
    async def handle(media: _MediaCall) -> None:
        form = await media.form()
        route = await media.choose(form.fields, "audio")
        _task(route, "asr")
        _fields_checked(form.fields, {"model", "intent", "language", "prompt", "response_format", "temperature",
                                      "timestamp_granularities"}, route)
        files = form.files.get("file", [])
        if len(files) != 1 or set(form.files) != {"file"}:
            raise invalid_request("Send the audio as one `file`.", code="missing_required_parameter", param="file")
        response_format = _choice(form.fields.get("response_format") or "json", TRANSCRIPT_FORMATS,
                                  "response_format")
        options = {name: form.fields[name] for name in ("prompt", "temperature") if name in form.fields}
        await _transcription(media, MediaRef(param="file", inline=files[0]),
                             language=_text(form.fields, "language", limit=16), options=options,
                             render=lambda transcript, cost: _openai_transcript(transcript, cost, response_format))

    await _MediaCall("audio.transcriptions", scope, receive, send).serve(handle)


async def _transcription(media: _MediaCall, audio: MediaRef, *, language: str, options: dict,
                         render: Callable[[Transcript, int], tuple[bytes, str]]) -> None:
    route = media.route

    async def work() -> _Served:
        speech = (await media_load([audio], organization_id=media.ctx.org_id, kinds=AUDIO_TYPES))[0]
        target, transcript = await media.walk(lambda t: adapter_for(TRANSCRIBE_ADAPTERS, t, "transcribe")(
            t, speech, language=language, options=options, deadline=media.deadline))
        if transcript.duration is None:
            transcript = replace(transcript, duration=await off_loop(audio_seconds, speech.data))
        cost = _request_price(route)
        body, content_type = render(transcript, cost)
        return _Served(target=target, cost=cost, unit="request", units=1, body=body, content_type=content_type)

    await media.bill(_request_price(route), work)


def _generation_transcript(transcript: Transcript, cost: int) -> tuple[bytes, str]:
    answer = {"text": transcript.text, "duration": transcript.duration, "segments": list(transcript.segments),
              **({"language": transcript.language} if transcript.language else {}),
              "usage": {"cost": micro_to_json(cost)}}
    return _json_answer(answer), "application/json"


def _openai_transcript(transcript: Transcript, cost: int, response_format: str) -> tuple[bytes, str]:
    if response_format == "text":
        return f"{transcript.text}\n".encode(), "text/plain; charset=utf-8"
    usage = {"type": "duration", "seconds": math.ceil(transcript.duration or 0), "cost": micro_to_json(cost)}
    if response_format == "json":
        return _json_answer({"text": transcript.text, "usage": usage}), "application/json"
    segments = [{"id": number, "start": s["start"], "end": s["end"], "text": s["text"]}
                for number, s in enumerate(transcript.segments)]
    return _json_answer({"task": "transcribe", "language": transcript.language or "", "duration": transcript.duration,
                         "text": transcript.text, "segments": segments, "usage": usage}), "application/json"
