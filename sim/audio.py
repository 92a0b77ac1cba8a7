"""OpenAI audio: ``POST /v1/audio/speech`` (raw audio of the input) and ``/v1/audio/transcriptions``
(multipart ``file``), plus the deterministic transcript Fish's ASR shares.

Speech lasts ``media.speech_seconds(input)`` at 24 kHz, in ``response_format`` mp3 (default), opus, aac, flac,
wav or pcm. A transcript is a function of the audio's bytes (WORDS_PER_SECOND words over its real duration,
read from the file), so a test knows it in advance; ``json`` reports usage as whisper-1 (seconds) or the
gpt-4o transcribe models (tokens) do, ``verbose_json`` (whisper-1 only) adds segments and, when asked,
words; ``text``, ``srt`` and ``vtt`` answer plain text.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from sim import media
from sim.http import Context, Json, Raw, SimError, Upload
from sim.text import count_tokens, reply_words

WORDS_PER_SECOND = 2.5
SEGMENT_WORDS = 6
SPEECH_RATE = 24000  # OpenAI speech is 24 kHz (pcm is raw 16-bit little-endian at that rate)
MAX_INPUT = 4096
SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
LANGUAGES = {
    "en": "english",
    "de": "german",
    "fr": "french",
    "es": "spanish",
    "ja": "japanese",
    "zh": "chinese",
}
AUDIO_TOKENS_PER_SECOND = 10  # the gpt-4o transcribe models' audio input


@dataclass(frozen=True)
class Segment:
    text: str
    start: float
    end: float


def transcribe(data: bytes) -> tuple[float, list[Segment]]:
    """The audio's duration and its transcript in segments of up to SEGMENT_WORDS words."""
    try:
        seconds = media.duration(data)
    except ValueError as exc:
        raise SimError(400, f"The audio file could not be decoded: {exc}") from None
    words = reply_words(hashlib.sha256(data).hexdigest(), max(1, round(seconds * WORDS_PER_SECOND)))
    spans = [words[i : i + SEGMENT_WORDS] for i in range(0, len(words), SEGMENT_WORDS)]
    per_word = seconds / len(words)
    segments = []
    for number, span in enumerate(spans):
        start = number * SEGMENT_WORDS * per_word
        segments.append(Segment(" ".join(span), round(start, 3), round(start + len(span) * per_word, 3)))
    return seconds, segments


def speech(body: dict, ctx: Context) -> Raw:
    text, fmt = body.get("input"), body.get("response_format") or "mp3"
    if not isinstance(text, str) or not text:
        raise SimError(
            400, "Missing required parameter: 'input'.", param="input", code="missing_required_parameter"
        )
    if len(text) > MAX_INPUT:
        raise SimError(
            400,
            f"'input' is longer than {MAX_INPUT} characters.",
            param="input",
            code="string_above_max_length",
        )
    if not body.get("voice"):
        raise SimError(
            400, "Missing required parameter: 'voice'.", param="voice", code="missing_required_parameter"
        )
    if fmt not in SPEECH_FORMATS:
        raise SimError(
            400,
            f"Invalid value: '{fmt}'. Supported values are: {', '.join(SPEECH_FORMATS)}.",
            param="response_format",
        )
    return Raw(media.speech(text, fmt, SPEECH_RATE), media.AUDIO_TYPES[fmt], chunked=True)


def transcription(body: dict, ctx: Context) -> Json | Raw:
    upload, model = body.get("file"), str(body.get("model") or "")
    if not isinstance(upload, Upload):
        raise SimError(
            400, "Missing required parameter: 'file'.", param="file", code="missing_required_parameter"
        )
    if not model:
        raise SimError(
            400, "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
        )
    fmt = body.get("response_format") or "json"
    if fmt not in (
        ("json", "text") if model.startswith("gpt-") else ("json", "text", "srt", "verbose_json", "vtt")
    ):
        raise SimError(
            400, f"response_format '{fmt}' is not compatible with model '{model}'.", param="response_format"
        )
    seconds, segments = transcribe(upload.data)
    text = " ".join(s.text for s in segments)
    if fmt == "text":
        return Raw(f"{text}\n".encode(), "text/plain; charset=utf-8")
    if fmt in ("srt", "vtt"):
        return Raw(_subtitles(segments, fmt).encode(), "text/plain; charset=utf-8")
    if model.startswith("gpt-"):
        audio, written = math.ceil(seconds * AUDIO_TOKENS_PER_SECOND), count_tokens(text)
        usage = {
            "type": "tokens",
            "input_tokens": audio,
            "input_token_details": {"text_tokens": 0, "audio_tokens": audio},
            "output_tokens": written,
            "total_tokens": audio + written,
        }
        return Json({"text": text, "usage": usage})
    usage = {"type": "duration", "seconds": math.ceil(seconds)}
    if fmt == "json":
        return Json({"text": text, "usage": usage})
    granularities = body.get("timestamp_granularities") or ["segment"]
    verbose = {
        "task": "transcribe",
        "language": LANGUAGES.get(str(body.get("language", "en")), "english"),
        "duration": round(seconds, 3),
        "text": text,
        "segments": [_segment(number, s) for number, s in enumerate(segments)],
        "usage": usage,
    }
    if "word" in granularities:
        verbose["words"] = [word for s in segments for word in _words(s)]
    return Json(verbose)


def _segment(number: int, segment: Segment) -> dict:
    return {
        "id": number,
        "seek": 0,
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": -0.1,
        "compression_ratio": 1.0,
        "no_speech_prob": 0.0,
    }


def _words(segment: Segment) -> list[dict]:
    words = segment.text.split()
    step = (segment.end - segment.start) / len(words)
    return [
        {
            "word": word,
            "start": round(segment.start + n * step, 3),
            "end": round(segment.start + (n + 1) * step, 3),
        }
        for n, word in enumerate(words)
    ]


def _subtitles(segments: list[Segment], fmt: str) -> str:
    def stamp(seconds: float) -> str:
        whole, millis = divmod(round(seconds * 1000), 1000)
        minutes, secs = divmod(whole, 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours:02}:{minutes:02}:{secs:02}{',' if fmt == 'srt' else '.'}{millis:03}"

    cues = [
        f"{number}\n{stamp(s.start)} --> {stamp(s.end)}\n{s.text}\n"
        if fmt == "srt"
        else f"{stamp(s.start)} --> {stamp(s.end)}\n{s.text}\n"
        for number, s in enumerate(segments, 1)
    ]
    return ("" if fmt == "srt" else "WEBVTT\n\n") + "\n".join(cues)
