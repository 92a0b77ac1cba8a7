"""Real media bytes made on the CPU: images (Pillow), H.264 MP4 video and audio (PyAV, whose wheels carry
FFmpeg). Everything is a pure function of its arguments, so a URL can name media and regenerate it on demand;
results are cached because clients fetch the same asset repeatedly while polling and downloading.

Pictures are a gradient between four colours picked from a hash of ``seed``; a video moves a white bar across that
picture in VIDEO_FRAMES frames spread evenly over its duration (a low frame rate keeps the largest clip well under
a second to encode). Audio is one short tone per word.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import tempfile
import wave
from array import array
from fractions import Fraction
from functools import lru_cache
from urllib.parse import urlencode

import av
from PIL import Image, ImageDraw

from sim.http import Raw

IMAGE_FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}
AUDIO_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "pcm": "audio/pcm",
}
# format -> (FFmpeg muxer, encoder); wav and pcm are written without FFmpeg.
ENCODERS = {
    "mp3": ("mp3", "libmp3lame"),
    "opus": ("ogg", "libopus"),
    "aac": ("adts", "aac"),
    "flac": ("flac", "flac"),
}
SECONDS_PER_CHARACTER = 0.06  # about what a voice reads: "Hello there." lasts 0.72 s
SPRITE_WIDTH = 160  # a spritesheet tile's width
VIDEO_FRAMES = 4
MAX_SIDE = 4096  # /_sim/media refuses larger pictures
MAX_SECONDS = 120


@lru_cache(maxsize=32)
def picture(width: int, height: int, seed: str) -> Image.Image:
    """A smooth gradient between four corner colours picked by ``seed`` (a 2×2 image scaled up in C)."""
    corners = Image.frombytes("RGB", (2, 2), hashlib.sha256(seed.encode()).digest()[:12])
    return corners.resize((width, height), Image.Resampling.BILINEAR)


@lru_cache(maxsize=64)
def image(width: int, height: int, seed: str, fmt: str = "png") -> bytes:
    """An encoded picture: ``fmt`` is png, jpeg or webp."""
    codec, _ = IMAGE_FORMATS[fmt]
    out = io.BytesIO()
    picture(width, height, seed).save(out, codec, **({"compress_level": 1} if codec == "PNG" else {}))
    return out.getvalue()


def _frames(width: int, height: int, seed: str, count: int) -> list[Image.Image]:
    bar = max(width // 40, 2)
    frames = []
    for number in range(count):
        frame = picture(width, height, seed).copy()
        left = (width - bar) * number // max(count - 1, 1)
        ImageDraw.Draw(frame).rectangle((left, 0, left + bar - 1, height - 1), fill=(255, 255, 255))
        frames.append(frame)
    return frames


@lru_cache(maxsize=16)
def video(width: int, height: int, seconds: float, seed: str) -> bytes:
    """An H.264 MP4 (yuv420p, faststart: browsers stream it) lasting ``seconds``."""
    with tempfile.TemporaryDirectory() as folder:  # faststart rewrites the file: it needs a real one
        path = os.path.join(folder, "video.mp4")
        _encode_video(path, width, height, seconds, seed)
        with open(path, "rb") as written:
            return written.read()


def _encode_video(path: str, width: int, height: int, seconds: float, seed: str) -> None:
    with av.open(path, "w", options={"movflags": "+faststart"}) as container:
        # Each frame lasts seconds / VIDEO_FRAMES: the clip's duration is exactly ``seconds``.
        stream = container.add_stream(
            "libx264", rate=VIDEO_FRAMES / Fraction(seconds).limit_denominator(1000)
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "32"}
        for number, frame in enumerate(_frames(width, height, seed, VIDEO_FRAMES)):
            encoded = av.VideoFrame.from_image(frame)
            encoded.pts = number
            container.mux(stream.encode(encoded))
        container.mux(stream.encode())


def thumbnail(width: int, height: int, seed: str) -> bytes:
    """The first frame as WebP, as Sora's ``variant=thumbnail`` is."""
    out = io.BytesIO()
    _frames(width, height, seed, 1)[0].save(out, "WEBP", method=0)  # the fastest method, still small
    return out.getvalue()


def spritesheet(width: int, height: int, seed: str) -> bytes:
    """The video's frames, SPRITE_WIDTH wide, side by side in one JPEG."""
    tile = (SPRITE_WIDTH, max(height * SPRITE_WIDTH // width, 1))
    sheet = Image.new("RGB", (tile[0] * VIDEO_FRAMES, tile[1]))
    for number, frame in enumerate(_frames(*tile, seed, VIDEO_FRAMES)):
        sheet.paste(frame, (tile[0] * number, 0))
    out = io.BytesIO()
    sheet.save(out, "JPEG")
    return out.getvalue()


def speech_seconds(text: str) -> float:
    return max(len(text), 1) * SECONDS_PER_CHARACTER


def _pcm(text: str, rate: int) -> bytes:
    """16-bit mono samples lasting ``speech_seconds(text)``: one tone a word, its pitch from the word."""
    total = round(speech_seconds(text) * rate)
    words = text.split() or [text]
    share = total // len(words)
    samples = array("h")
    for word in words:
        pitch = 180 + hashlib.sha256(word.encode()).digest()[0] * 2  # 180–690 Hz
        cycle = array(
            "h", (int(8000 * math.sin(2 * math.pi * i * pitch / rate)) for i in range(rate // pitch))
        )
        tone = cycle * (share // len(cycle) + 1)
        samples.extend(tone[:share])
    samples.extend(array("h", bytes(2 * (total - len(samples)))))  # the rounding remainder, silent
    return samples.tobytes()


@lru_cache(maxsize=32)
def speech(text: str, fmt: str = "wav", rate: int = 44100) -> bytes:
    """Audio of ``text`` in ``fmt`` (wav, pcm, mp3, opus, aac or flac); opus is always 48 kHz Ogg Opus."""
    pcm = _pcm(text, 48000 if fmt == "opus" else rate)
    if fmt == "pcm":
        return pcm
    if fmt == "wav":
        out = io.BytesIO()
        with wave.open(out, "wb") as writer:
            writer.setnchannels(1)
            writer.setsampwidth(2)
            writer.setframerate(rate)
            writer.writeframes(pcm)
        return out.getvalue()
    muxer, encoder = ENCODERS[fmt]
    rate = 48000 if fmt == "opus" else rate
    out = io.BytesIO()
    with av.open(out, "w", format=muxer) as container:
        stream = container.add_stream(encoder, rate=rate, layout="mono")
        frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
        frame.planes[0].update(pcm)
        frame.sample_rate, frame.pts = rate, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return out.getvalue()


def duration(data: bytes) -> float:
    """Seconds of audio in an uploaded file: from the WAV header when it is one, else as FFmpeg reads it."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        try:
            with wave.open(io.BytesIO(data)) as reader:
                return reader.getnframes() / reader.getframerate()
        except (wave.Error, EOFError):
            pass
    try:
        with av.open(io.BytesIO(data)) as container:
            return (container.duration or 0) / av.time_base
    except av.FFmpegError as exc:
        raise ValueError(f"not an audio file: {exc}") from None


def url(origin: str, name: str, **params: object) -> str:
    """Where /_sim/media serves ``name`` made from ``params``: the URL alone regenerates it, so it never expires."""
    return f"{origin}/_sim/media/{name}?{urlencode(params)}"


def serve(name: str, query: dict[str, str]) -> Raw:
    """GET /_sim/media/{image.png|image.jpeg|image.webp|video.mp4}?width=&height=&seed=[&seconds=]."""
    width, height, seed = int(query["width"]), int(query["height"]), query.get("seed", "")
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise ValueError(f"{width}x{height} is not a size from 1x1 to {MAX_SIDE}x{MAX_SIDE}")
    if name == "video.mp4":
        seconds = float(query["seconds"])
        if not 0 < seconds <= MAX_SECONDS:
            raise ValueError(f"seconds must be more than 0 and at most {MAX_SECONDS}")
        return Raw(video(width, height, seconds, seed), "video/mp4")
    stem, _, fmt = name.partition(".")
    if stem != "image" or fmt not in IMAGE_FORMATS:
        raise KeyError(name)
    return Raw(image(width, height, seed, fmt), IMAGE_FORMATS[fmt][1])
