"""Fish Audio (``https://api.fish.audio`` → ``/fish``): ``POST /v1/tts``, ``POST /v1/asr`` and voice models
(``POST /model``, ``GET`` and ``DELETE /model/{id}``), with ``Authorization: Bearer``.

TTS takes the ``model`` header (s1, s2-pro, s2.1-pro, s2.1-pro-free; anything else falls back to s2.1-pro)
and a JSON body; the answer is raw audio, sent chunked, in ``format`` wav, pcm, mp3 (default) or opus, lasting
``media.speech_seconds(text)``. ASR reads a multipart ``audio`` file: ``{text, duration, segments}`` with the
duration from the file itself and the transcript of ``sim.audio.transcribe``. Errors are ``{status, message}``,
validation errors (422) a list of ``{loc, type, msg, in}``; ``fail=402`` plays an empty wallet.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sim import audio, clock, media
from sim.http import Context, Json, Raw, SimError, Upload

TTS_MODELS = ("s1", "s2-pro", "s2.1-pro", "s2.1-pro-free")
FORMATS = ("wav", "pcm", "mp3", "opus")
VISIBILITIES = ("public", "unlist", "private")
MODELS: dict[str, dict] = {}  # voice models by _id


def error(status: int, message: str, field: str | None = None) -> dict | list:
    if status == 422:
        return [{"loc": ["body", field or ""], "type": "value_error", "msg": message, "in": "body"}]
    return {"status": status, "message": message}


def tts(body: dict, ctx: Context) -> Raw:
    text, fmt = body.get("text"), body.get("format") or "mp3"
    if not isinstance(text, str) or not text:
        raise SimError(422, "Field required", field="text")
    if fmt not in FORMATS:
        raise SimError(422, f"Input should be {', '.join(FORMATS)}", field="format")
    rate = body.get("sample_rate") or 44100
    if not isinstance(rate, int) or not 8000 <= rate <= 48000:
        raise SimError(422, "sample_rate must be from 8000 to 48000", field="sample_rate")
    model = ctx.headers.get("model")
    headers = ((b"x-fish-model", (model if model in TTS_MODELS else "s2.1-pro").encode()),)
    return Raw(media.speech(text, fmt, rate), media.AUDIO_TYPES[fmt], headers=headers, chunked=True)


def asr(body: dict, ctx: Context) -> Json:
    upload = body.get("audio")
    if not isinstance(upload, Upload):
        raise SimError(422, "Field required", field="audio")
    seconds, segments = audio.transcribe(upload.data)
    language = str(body.get("language") or "en")
    return Json(
        {
            "text": " ".join(s.text for s in segments),
            "duration": round(seconds, 3),
            "segments": [{"text": s.text, "start": s.start, "end": s.end} for s in segments],
            "language_code": language,
            "language": audio.LANGUAGES.get(language, language).title(),
        }
    )


def create_model(body: dict, ctx: Context) -> Json:
    voices = body.get("voices")
    voices = voices if isinstance(voices, list) else [voices] if voices is not None else []
    if body.get("type") != "tts":
        raise SimError(422, "Input should be 'tts'", field="type")
    if body.get("train_mode") != "fast":
        raise SimError(422, "Input should be 'fast'", field="train_mode")
    if not isinstance(body.get("title"), str) or not body["title"]:
        raise SimError(422, "Field required", field="title")
    if not 1 <= len(voices) <= 20 or not all(isinstance(v, Upload) for v in voices):
        raise SimError(422, "From 1 to 20 audio files are required", field="voices")
    visibility = body.get("visibility") or "public"
    if visibility not in VISIBILITIES:
        raise SimError(422, f"Input should be {', '.join(VISIBILITIES)}", field="visibility")
    if visibility == "public" and not isinstance(body.get("cover_image"), Upload):
        raise SimError(422, "A public model needs a cover_image", field="cover_image")
    texts = body.get("texts")
    texts = texts if isinstance(texts, list) else [texts] if texts else []
    transcripts = list(texts) or [" ".join(s.text for s in audio.transcribe(v.data)[1]) for v in voices]
    tags = body.get("tags")
    now = datetime.fromtimestamp(clock.now_ms() / 1000, UTC).isoformat().replace("+00:00", "Z")
    model_id = secrets.token_hex(16)
    MODELS[model_id] = {
        "_id": model_id,
        "type": "tts",
        "title": body["title"],
        "description": body.get("description") or "",
        "cover_image": f"coverimage/{model_id}" if body.get("cover_image") else "",
        "train_mode": "fast",
        "state": "trained",  # fast mode: usable at once
        "tags": tags if isinstance(tags, list) else [tags] if tags else [],
        "samples": [
            {"title": v.filename, "text": t, "task_id": secrets.token_hex(16), "audio": f"task/{v.filename}"}
            for v, t in zip(voices, transcripts, strict=False)
        ],
        "created_at": now,
        "updated_at": now,
        "languages": ["en"],
        "visibility": visibility,
        "lock_visibility": False,
        "like_count": 0,
        "mark_count": 0,
        "shared_count": 0,
        "task_count": 0,
        "liked": False,
        "marked": False,
        "author": {"_id": "simulator", "nickname": "Simulator", "avatar": ""},
    }
    return Json(MODELS[model_id], 201)


def get_model(body: dict, ctx: Context) -> Json:
    return Json(_model(ctx))


def delete_model(body: dict, ctx: Context) -> Raw:
    del MODELS[_model(ctx)["_id"]]
    return Raw(b"", "application/json")


def _model(ctx: Context) -> dict:
    model = MODELS.get(ctx.params["id"])
    if model is None:
        raise SimError(404, "Model not found")
    return model
