"""Upstream adapters of the image and audio endpoints: one per provider kind and task, each speaking its
provider's protocol and answering in the endpoints' terms (``Pictures``, audio bytes, ``Transcript``).

- Images: OpenAI's images API (``POST /images/generations``, or ``/images/edits`` as multipart when there are
  reference images or a mask) and Gemini's image output (``generateContent``, the picture in an ``inlineData``
  part; Gemini makes one image a call, so ``n`` images are ``n`` concurrent calls).
- Speech: Fish Audio's ``POST /v1/tts`` (``model`` header, the voice as ``reference_id``, raw audio back) and
  OpenAI's ``POST /audio/speech``.
- Voice cloning: Fish Audio. Its JSON TTS cannot carry reference audio (only msgpack can), so the reference
  becomes a private fast-trained voice model (``POST /model``), speaks the text, and is deleted afterwards.
- Transcription: Fish Audio's ``POST /v1/asr`` and OpenAI's ``POST /audio/transcriptions`` (multipart both).

Failures are what gateway.fallback acts on: UpstreamFailure for connection errors, timeouts, 408/409/429 and 5xx,
and also for 401/402/403, which say that our key or our account at the provider failed (an empty Fish wallet
answers 402), never the client's credits; a GatewayError (400) for the provider refusing the request itself.
The job engine can add adapters for its own kinds (fal) to the registries at the end.
"""

import asyncio
import base64
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from gateway import upstream
from gateway.catalog import Target
from gateway.errors import GatewayError
from gateway.upstream import RETRYABLE_STATUS, UpstreamFailure
from gpu.media_inputs import IMAGE_TYPES, Media, media_type

log = logging.getLogger(__name__)
PROVIDER_FAULTS = {401, 402, 403}  # the provider refused our credentials or our account
GEMINI_IMAGE_SIZES = {"0.5K": "512", "1K": "1K", "2K": "2K", "4K": "4K"}  # imageConfig.imageSize
OPENAI_DEFAULT_VOICE = "alloy"  # OpenAI's speech needs a voice; Fish has a default of its own
DOWNLOAD_SECONDS = 60


@dataclass(frozen=True, slots=True)
class ImageAsk:
    prompt: str
    n: int
    size: str = ""  # WxH (OpenAI)
    aspect_ratio: str = ""  # Gemini
    resolution: str = ""  # Gemini: 0.5K, 1K, 2K, 4K
    references: tuple[Media, ...] = ()
    mask: Media | None = None
    options: dict = field(default_factory=dict)  # OpenAI's own fields, passed on (quality, background…)
    user: str = ""


@dataclass(frozen=True, slots=True)
class Picture:
    data: bytes
    content_type: str
    revised_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class Pictures:
    pictures: tuple[Picture, ...]
    usage: dict | None  # token counts in OpenAI's images shape, when the provider reports them
    details: dict  # what OpenAI says of the result: background, output_format, quality, size


@dataclass(frozen=True, slots=True)
class SpeechAsk:
    text: str
    voice: str  # the provider's voice id; empty: its default
    format: str  # mp3, wav, opus, …
    speed: float | None = None
    options: dict = field(default_factory=dict)  # OpenAI's instructions


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    duration: float | None
    segments: tuple[dict, ...]  # {text, start, end}
    language: str | None


# --- HTTP ----------------------------------------------------------------------------------------------------

async def _post(target: Target, path: str, body: bytes, headers: dict[str, str], *, deadline: float) -> bytes:
    remaining = deadline - time.perf_counter()
    if remaining <= 0:
        raise UpstreamFailure("timeout")
    response = await upstream.post(f"{target.base_url}{path}", body, headers,
                                   connect_timeout=min(target.connect_timeout, remaining),
                                   read_timeout=min(target.read_timeout, remaining))
    try:
        raw = await response.read()
    finally:
        response.close()
    if response.status >= 400:
        raise _refused(response.status, raw)
    return raw


def _refused(status: int, raw: bytes) -> Exception:
    if status in PROVIDER_FAULTS or status in RETRYABLE_STATUS or status >= 500:
        return UpstreamFailure("status", status, f"answered {status}")
    return GatewayError(400, "invalid_request_error", f"The provider refused the request: {_message(raw, status)}",
                        "upstream_refused")


def _message(raw: bytes, status: int) -> str:
    """The message of an error body: OpenAI's and Gemini's {error: {message}}, Fish's {message} or its
    validation list [{msg}]."""
    try:
        payload = json.loads(raw)
    except ValueError:
        return f"answered {status}"
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        return str(payload[0].get("msg") or status)
    if isinstance(payload, dict):
        error = payload.get("error")
        return str((error.get("message") if isinstance(error, dict) else None) or payload.get("message") or status)
    return f"answered {status}"


def _json(raw: bytes) -> dict:
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise UpstreamFailure("status", 502, "answered with invalid JSON")
    return payload


def _multipart(fields: dict[str, str], files: list[tuple[str, Media]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    boundary = secrets.token_hex(16)
    out = bytearray()
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for name, media in files:
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{media.filename}"\r\n'
                f"Content-Type: {media.content_type}\r\n\r\n").encode() + media.data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def _json_body(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


async def _download(url: str) -> bytes:
    """A result the provider left at a URL of its own (DALL·E answers URLs), fetched before it expires."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DOWNLOAD_SECONDS)) as session, \
                session.get(url) as response:
            if response.status != 200:
                raise UpstreamFailure("status", 502, f"its result URL answered {response.status}")
            return await response.read()
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise UpstreamFailure("connect", message=f"its result URL failed: {type(exc).__name__}") from None


# --- images --------------------------------------------------------------------------------------------------

async def _openai_images(target: Target, ask: ImageAsk, *, deadline: float) -> Pictures:
    auth = {"authorization": f"Bearer {target.api_key}"}
    fields = {"model": target.upstream_model, "prompt": ask.prompt, "n": ask.n, **ask.options}
    if ask.size:
        fields["size"] = ask.size
    if ask.user:
        fields["user"] = ask.user
    if ask.references or ask.mask:
        files = [("image[]", image) for image in ask.references] + ([("mask", ask.mask)] if ask.mask else [])
        body, content_type = _multipart({name: str(value) for name, value in fields.items()}, files)
        raw = await _post(target, "/images/edits", body, {**auth, "content-type": content_type}, deadline=deadline)
    else:
        raw = await _post(target, "/images/generations", _json_body(fields),
                          {**auth, "content-type": "application/json"}, deadline=deadline)
    answer = _json(raw)
    pictures = []
    for item in answer.get("data") or []:
        if b64 := item.get("b64_json"):
            data = base64.b64decode(b64)
        elif url := item.get("url"):
            data = await _download(url)
        else:
            continue
        pictures.append(Picture(data, media_type(data, IMAGE_TYPES) or "application/octet-stream",
                                item.get("revised_prompt")))
    details = {name: answer[name] for name in ("background", "output_format", "quality", "size") if name in answer}
    return Pictures(tuple(pictures), answer.get("usage"), details)


async def _gemini_images(target: Target, ask: ImageAsk, *, deadline: float) -> Pictures:
    parts = [{"text": ask.prompt}] + [
        {"inlineData": {"mimeType": image.content_type, "data": base64.b64encode(image.data).decode()}}
        for image in ask.references]
    image_config = {"aspectRatio": ask.aspect_ratio} if ask.aspect_ratio else {}
    if ask.resolution:
        image_config["imageSize"] = GEMINI_IMAGE_SIZES.get(ask.resolution, ask.resolution)
    body = _json_body({"contents": [{"role": "user", "parts": parts}],
                       "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": image_config}})
    headers = {"x-goog-api-key": target.api_key, "content-type": "application/json"}
    path = f"/models/{target.upstream_model}:generateContent"
    results = await asyncio.gather(*(_post(target, path, body, headers, deadline=deadline) for _ in range(ask.n)),
                                   return_exceptions=True)
    answers = [_json(raw) for raw in results if isinstance(raw, bytes)]
    if not answers:  # every call failed: the first failure is the target's answer
        raise results[0]
    pictures, reasons = [], []
    for answer in answers:
        candidate = (answer.get("candidates") or [{}])[0]
        inline = [part["inlineData"] for part in (candidate.get("content") or {}).get("parts") or []
                  if isinstance(part.get("inlineData"), dict)]
        for picture in inline:
            data = base64.b64decode(picture.get("data") or "")
            pictures.append(Picture(data, media_type(data, IMAGE_TYPES) or picture.get("mimeType") or "image/png"))
        if not inline:
            reasons.append(candidate.get("finishReason") or (answer.get("promptFeedback") or {}).get("blockReason")
                           or "no image part")
    if not pictures:
        raise GatewayError(400, "invalid_request_error", f"The model made no image ({', '.join(set(reasons))}).",
                           "no_image_returned")
    return Pictures(tuple(pictures), _gemini_usage([a.get("usageMetadata") or {} for a in answers]), {})


def _gemini_usage(metadata: list[dict]) -> dict:
    """Gemini's usageMetadata of every call, summed into OpenAI's images usage shape."""
    counts = {"input": {"TEXT": 0, "IMAGE": 0}, "output": {"TEXT": 0, "IMAGE": 0}}
    totals = {"input": 0, "output": 0}
    for usage in metadata:
        totals["input"] += usage.get("promptTokenCount") or 0
        totals["output"] += usage.get("candidatesTokenCount") or 0
        for side, key in (("input", "promptTokensDetails"), ("output", "candidatesTokensDetails")):
            for detail in usage.get(key) or []:
                if detail.get("modality") in counts[side]:
                    counts[side][detail["modality"]] += detail.get("tokenCount") or 0
    return {"input_tokens": totals["input"], "output_tokens": totals["output"],
            "total_tokens": totals["input"] + totals["output"],
            "input_tokens_details": {"text_tokens": counts["input"]["TEXT"], "image_tokens": counts["input"]["IMAGE"]},
            "output_tokens_details": {"text_tokens": counts["output"]["TEXT"],
                                      "image_tokens": counts["output"]["IMAGE"]}}


# --- speech and voice cloning --------------------------------------------------------------------------------

def _audio(raw: bytes) -> bytes:
    if not raw:
        raise UpstreamFailure("status", 502, "answered no audio")
    return raw


def _fish_headers(target: Target, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {target.api_key}", **extra}


async def _fish_speech(target: Target, ask: SpeechAsk, *, deadline: float) -> bytes:
    body = {"text": ask.text, "format": ask.format}
    if ask.voice:
        body["reference_id"] = ask.voice
    if ask.speed is not None:
        body["prosody"] = {"speed": ask.speed}
    headers = _fish_headers(target, model=target.upstream_model, **{"content-type": "application/json"})
    return _audio(await _post(target, "/v1/tts", _json_body(body), headers, deadline=deadline))


async def _openai_speech(target: Target, ask: SpeechAsk, *, deadline: float) -> bytes:
    body = {"model": target.upstream_model, "input": ask.text, "voice": ask.voice or OPENAI_DEFAULT_VOICE,
            "response_format": ask.format, **ask.options}
    if ask.speed is not None:
        body["speed"] = ask.speed
    headers = {"authorization": f"Bearer {target.api_key}", "content-type": "application/json"}
    return _audio(await _post(target, "/audio/speech", _json_body(body), headers, deadline=deadline))


_deletions: set[asyncio.Task] = set()


async def _fish_clone(target: Target, ask: SpeechAsk, reference: Media, *, deadline: float) -> bytes:
    fields = {"type": "tts", "title": f"hypereal-{secrets.token_hex(8)}", "train_mode": "fast",
              "visibility": "private"}
    body, content_type = _multipart(fields, [("voices", reference)])
    voice = _json(await _post(target, "/model", body, _fish_headers(target, **{"content-type": content_type}),
                              deadline=deadline)).get("_id")
    if not isinstance(voice, str) or not voice:
        raise UpstreamFailure("status", 502, "answered no voice model id")
    try:
        return await _fish_speech(target, SpeechAsk(text=ask.text, voice=voice, format=ask.format, speed=ask.speed),
                                  deadline=deadline)
    finally:  # the voice served this one request: delete it, without making the client wait
        task = asyncio.ensure_future(_fish_voice_delete(target, voice))
        _deletions.add(task)
        task.add_done_callback(_deletions.discard)


async def _fish_voice_delete(target: Target, voice: str) -> None:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DOWNLOAD_SECONDS)) as session, \
                session.delete(f"{target.base_url}/model/{voice}", headers=_fish_headers(target)) as response:
            if response.status >= 400:
                log.warning("deleting the cloned voice %s at %s answered %s", voice, target.provider, response.status)
    except (aiohttp.ClientError, asyncio.TimeoutError):
        log.warning("deleting the cloned voice %s at %s failed", voice, target.provider, exc_info=True)


# --- transcription -------------------------------------------------------------------------------------------

async def _fish_transcribe(target: Target, audio: Media, *, language: str, options: dict,
                           deadline: float) -> Transcript:
    fields = {"ignore_timestamps": "false", **({"language": language} if language else {})}
    body, content_type = _multipart(fields, [("audio", audio)])
    answer = _json(await _post(target, "/v1/asr", body, _fish_headers(target, **{"content-type": content_type}),
                               deadline=deadline))
    return _transcript(answer)


async def _openai_transcribe(target: Target, audio: Media, *, language: str, options: dict,
                             deadline: float) -> Transcript:
    # The gpt-4o transcribe models answer json only; whisper's verbose_json adds the duration and segments.
    verbose = not target.upstream_model.startswith("gpt-")
    fields = {"model": target.upstream_model, "response_format": "verbose_json" if verbose else "json",
              **({"language": language} if language else {}), **options}
    body, content_type = _multipart(fields, [("file", audio)])
    headers = {"authorization": f"Bearer {target.api_key}", "content-type": content_type}
    return _transcript(_json(await _post(target, "/audio/transcriptions", body, headers, deadline=deadline)))


def _transcript(answer: dict) -> Transcript:
    segments = tuple({"text": s.get("text", ""), "start": s.get("start"), "end": s.get("end")}
                     for s in answer.get("segments") or [] if isinstance(s, dict))
    duration = answer.get("duration")
    return Transcript(text=str(answer.get("text") or ""), duration=duration if isinstance(duration, int | float)
                      else None, segments=segments, language=answer.get("language") or None)


# --- by provider kind ----------------------------------------------------------------------------------------

ImageAdapter = Callable[..., Awaitable[Pictures]]
IMAGE_ADAPTERS: dict[str, ImageAdapter] = {"openai": _openai_images, "gemini": _gemini_images}
SPEECH_ADAPTERS: dict[str, Callable[..., Awaitable[bytes]]] = {"fish": _fish_speech, "openai": _openai_speech}
CLONE_ADAPTERS: dict[str, Callable[..., Awaitable[bytes]]] = {"fish": _fish_clone}
TRANSCRIBE_ADAPTERS: dict[str, Callable[..., Awaitable[Transcript]]] = {"fish": _fish_transcribe,
                                                                         "openai": _openai_transcribe}


def adapter_for(adapters: dict[str, Callable], target: Target, task: str) -> Callable:
    """The kind's adapter; a target of a kind that cannot do the task is skipped like a failing one."""
    if (adapter := adapters.get(target.kind)) is None:
        raise UpstreamFailure("unsupported", message=f"{target.provider} ({target.kind}) cannot {task}")
    return adapter
