"""Media a client hands the image and audio endpoints: by URL, as a base64 data URL, as a stored file's id, or as
a multipart upload; what each is (sniffed from its bytes, never taken from its name) and how long audio lasts.

Fetching a client's URL is a request from inside our network on a stranger's behalf, so it goes to https URLs
of public hosts only (HYPEREAL_MEDIA_FETCH_ALLOW_LOCAL lifts both rules, for development and tests): every
address a host name resolves to is checked by the connection's own resolver, so the address checked is the
address connected to (no DNS rebinding between check and connect); IP literals, which skip the resolver, are
checked before; redirects are followed by hand, each hop checked the same way; the body is capped at
HYPEREAL_MEDIA_MAX_BYTES.
"""

import asyncio
import base64
import binascii
import ipaddress
import socket
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from django.conf import settings

from gateway.errors import GatewayError, invalid_request
from gpu.models import StoredFile
from gpu.storage import SIGNATURES, stored_file_get, stored_file_open
from gpu.work import off_loop

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
AUDIO_TYPES = ("audio/wav", "audio/mpeg", "audio/ogg", "audio/flac", "audio/mp4")
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif", "audio/wav": "wav",
              "audio/mpeg": "mp3", "audio/ogg": "ogg", "audio/flac": "flac", "audio/mp4": "m4a"}
FETCH_SECONDS = 30
MAX_REDIRECTS = 3


@dataclass(frozen=True, slots=True)
class Media:
    data: bytes
    content_type: str  # sniffed from the bytes
    filename: str


@dataclass(frozen=True, slots=True)
class MediaRef:
    """Where a piece of the client's media is: exactly one of a URL, a stored file's id, or the bytes themselves
    (a data URL or an upload, already at hand)."""

    param: str  # the request field it came in, for errors
    url: str = ""
    file_id: str = ""
    inline: bytes | None = None


def media_type(data: bytes, kinds: Collection[str] = IMAGE_TYPES + AUDIO_TYPES) -> str | None:
    """The type of ``kinds`` that the bytes' signature says they are."""
    return next((kind for kind in kinds if SIGNATURES[kind](data[:64])), None)


def media_ref(value: object, *, param: str, sources: Collection[str]) -> MediaRef:
    """A client's pointer checked for form (not fetched yet): ``sources`` are what the model takes: "https"
    (URLs), "data" (base64 data URLs), "file" (ids of the organization's stored files)."""
    if not isinstance(value, str) or not value:
        raise invalid_request(f"`{param}` must be a URL string.", code="invalid_value", param=param)
    if value.startswith("data:"):
        if "data" not in sources:
            raise invalid_request(f"`{param}` takes public https URLs; this model does not accept base64 data URLs.",
                                  code="invalid_value", param=param)
        header, _, payload = value.partition(",")
        try:
            if not header.endswith(";base64"):
                raise ValueError("not base64")
            return MediaRef(param=param, inline=base64.b64decode(payload, validate=True))
        except (binascii.Error, ValueError):
            raise invalid_request(f"`{param}` is not a valid base64 data URL (data:<type>;base64,<data>).",
                                  code="invalid_value", param=param) from None
    if value.startswith("file_"):
        if "file" not in sources:
            raise invalid_request(f"`{param}` takes public https URLs; this model does not accept stored file ids.",
                                  code="invalid_value", param=param)
        return MediaRef(param=param, file_id=value)
    if "https" not in sources:
        raise invalid_request(f"`{param}` must be a base64 data URL or a stored file id.", code="invalid_value",
                              param=param)
    _url_checked(value, param)
    return MediaRef(param=param, url=value)


def _url_checked(url: str, param: str) -> None:
    """Scheme and host rules; a host given as an IP address is checked here (the resolver never sees it)."""
    parts = urlsplit(url)
    allow_local = settings.HYPEREAL["MEDIA_FETCH_ALLOW_LOCAL"]
    if parts.scheme not in (("https", "http") if allow_local else ("https",)) or not parts.hostname:
        raise invalid_request(f"`{param}` must be an https URL (or a base64 data URL where the model takes one).",
                              code="invalid_value", param=param)
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return  # a name: its addresses are checked as it is resolved
    if not allow_local and not address.is_global:
        raise invalid_request(f"`{param}` points to a non-public address ({address}).", code="invalid_value",
                              param=param)


class _NonPublicHost(Exception):
    pass


class _PublicResolver(AbstractResolver):
    """Resolves as usual, then refuses a host with any address that is not public (loopback, private ranges,
    link-local cloud metadata…): the connection is made to the addresses checked here."""

    def __init__(self) -> None:
        self._resolver = aiohttp.ThreadedResolver()  # the system's getaddrinfo; holds nothing to close

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        if local := sorted({r["host"] for r in results if not ipaddress.ip_address(r["host"].split("%")[0]).is_global}):
            raise _NonPublicHost(f"{host} resolves to a non-public address ({', '.join(local)})")
        return results

    async def close(self) -> None:
        await self._resolver.close()


def fetch_session() -> aiohttp.ClientSession:
    """A session for one request's fetches (clients' URLs are rarely the same host twice: nothing to pool)."""
    resolver = None if settings.HYPEREAL["MEDIA_FETCH_ALLOW_LOCAL"] else _PublicResolver()
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver),
                                 timeout=aiohttp.ClientTimeout(total=FETCH_SECONDS))


async def media_fetch(session: aiohttp.ClientSession, url: str, *, param: str) -> bytes:
    """The body at ``url``, following up to MAX_REDIRECTS redirects, each hop held to the same rules."""
    limit = settings.HYPEREAL["MEDIA_MAX_BYTES"]

    def refused(reason: str, code: str = "media_unreachable") -> GatewayError:
        return invalid_request(f"`{param}` could not be fetched: {reason}.", code=code, param=param)

    for _ in range(MAX_REDIRECTS + 1):
        _url_checked(url, param)
        try:
            async with session.get(url, allow_redirects=False) as response:
                if response.status in (301, 302, 303, 307, 308) and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status != 200:
                    raise refused(f"the server answered {response.status}")
                if (response.content_length or 0) > limit:
                    raise refused(f"it is larger than {limit} bytes", "media_too_large")
                body = bytearray()
                async for chunk in response.content.iter_chunked(1 << 16):
                    body += chunk
                    if len(body) > limit:
                        raise refused(f"it is larger than {limit} bytes", "media_too_large")
                return bytes(body)
        except _NonPublicHost as exc:
            raise invalid_request(f"`{param}` cannot be fetched: {exc}.", code="invalid_value", param=param) from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise refused(type(exc).__name__) from None
    raise refused(f"more than {MAX_REDIRECTS} redirects")


def _stored_bytes(organization_id: int, file_id: str, param: str) -> bytes:
    file = stored_file_get(organization_id=organization_id, file_id=file_id)
    if file is None or file.status != StoredFile.Status.AVAILABLE:
        raise invalid_request(f"`{param}`: no such file: {file_id}.", code="file_not_found", param=param)
    if file.size > settings.HYPEREAL["MEDIA_MAX_BYTES"]:
        raise invalid_request(f"`{param}`: the file is larger than {settings.HYPEREAL['MEDIA_MAX_BYTES']} bytes.",
                              code="media_too_large", param=param)
    with stored_file_open(file) as stream:
        return stream.read()


async def media_load(refs: list[MediaRef], *, organization_id: int, kinds: Collection[str]) -> list[Media]:
    """The bytes of every ref (fetched and read concurrently), each checked to be one of ``kinds``."""
    async def load(ref: MediaRef, session: aiohttp.ClientSession) -> Media:
        if ref.inline is not None:
            data = ref.inline
        elif ref.file_id:
            data = await off_loop(_stored_bytes, organization_id, ref.file_id, ref.param)
        else:
            data = await media_fetch(session, ref.url, param=ref.param)
        return media_checked(data, param=ref.param, kinds=kinds)

    if not refs:
        return []
    async with fetch_session() as session:
        loaded = await asyncio.gather(*(load(ref, session) for ref in refs), return_exceptions=True)
    if failed := next((item for item in loaded if isinstance(item, BaseException)), None):
        raise failed
    return loaded


def media_checked(data: bytes, *, param: str, kinds: Collection[str]) -> Media:
    if len(data) > settings.HYPEREAL["MEDIA_MAX_BYTES"]:
        raise invalid_request(f"`{param}` is larger than {settings.HYPEREAL['MEDIA_MAX_BYTES']} bytes.",
                              code="media_too_large", param=param)
    kind = media_type(data, kinds)
    if kind is None:
        names = ", ".join(EXTENSIONS[k].upper() for k in kinds)
        raise invalid_request(f"`{param}` is not a file this endpoint reads ({names}).", code="invalid_media",
                              param=param)
    return Media(data=data, content_type=kind, filename=f"{param}.{EXTENSIONS[kind]}")


# --- how long audio lasts ------------------------------------------------------------------------------------

def audio_seconds(data: bytes) -> float | None:
    """The duration of WAV, MP3, FLAC, Ogg (Opus, Vorbis) or MP4/M4A audio, read from its headers or frames;
    None for anything else or a file that does not say."""
    kind = media_type(data, AUDIO_TYPES)
    reader = {"audio/wav": _wav_seconds, "audio/mpeg": _mp3_seconds, "audio/flac": _flac_seconds,
              "audio/ogg": _ogg_seconds, "audio/mp4": _mp4_seconds}.get(kind)
    try:
        return reader(data) if reader else None
    except (IndexError, ValueError, ZeroDivisionError):  # a truncated or inconsistent header
        return None


def _wav_seconds(data: bytes) -> float | None:
    byte_rate, position = None, 12
    while position + 8 <= len(data):
        chunk, size = data[position:position + 4], int.from_bytes(data[position + 4:position + 8], "little")
        if chunk == b"fmt ":
            byte_rate = int.from_bytes(data[position + 16:position + 20], "little")
        elif chunk == b"data" and byte_rate:
            return min(size, len(data) - position - 8) / byte_rate  # a streamed WAV may declare 0xFFFFFFFF
        position += 8 + size + (size & 1)
    return None


_MP3_BITRATES = {  # kbit/s by (MPEG-1?, layer), index 1–14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # by version bits


def _mp3_seconds(data: bytes) -> float | None:
    """The frames' samples over the sample rate, frame by frame (constant and variable bitrates alike)."""
    position = 0
    if data.startswith(b"ID3"):  # ID3v2 tag: a syncsafe size, plus a footer when flagged
        position = 10 + sum((data[6 + i] & 0x7F) << (21 - 7 * i) for i in range(4)) + (10 if data[5] & 0x10 else 0)
    samples, rate = 0, None
    while position + 4 <= len(data):
        b1, b2 = data[position + 1], data[position + 2]
        version, layer = (b1 >> 3) & 3, 4 - ((b1 >> 1) & 3)
        if data[position] != 0xFF or b1 & 0xE0 != 0xE0 or version == 1 or layer == 4 or not 0 < b2 >> 4 < 15 \
                or (b2 >> 2) & 3 == 3:
            break  # not a frame: the end of the audio (an ID3v1 tag, padding)
        mpeg1 = version == 3
        bitrate = _MP3_BITRATES[(mpeg1, min(layer, 2) if not mpeg1 else layer)][(b2 >> 4) - 1] * 1000
        rate = _MP3_RATES[version][(b2 >> 2) & 3]
        padding = (b2 >> 1) & 1
        if layer == 1:
            length, per_frame = (12 * bitrate // rate + padding) * 4, 384
        else:
            per_frame = 1152 if layer == 2 or mpeg1 else 576
            length = per_frame // 8 * bitrate // rate + padding
        samples += per_frame
        position += length
    return samples / rate if rate else None


def _flac_seconds(data: bytes) -> float | None:
    streaminfo = int.from_bytes(data[18:26], "big")  # after "fLaC", the block header and 10 bytes of sizes
    rate, total = streaminfo >> 44, streaminfo & ((1 << 36) - 1)
    return total / rate if rate and total else None


def _ogg_seconds(data: bytes) -> float | None:
    """The last page's granule position in the stream's sample rate (Opus: 48 kHz, less its pre-skip)."""
    position, first, granule = 0, b"", 0
    while data[position:position + 4] == b"OggS":
        segments = data[position + 26]
        table = data[position + 27:position + 27 + segments]
        start = position + 27 + segments
        if not first:
            first = data[start:start + 20]
        granule = max(granule, int.from_bytes(data[position + 6:position + 14], "little", signed=True))
        position = start + sum(table)
    if first.startswith(b"OpusHead"):
        return (granule - int.from_bytes(first[10:12], "little")) / 48000
    if first.startswith(b"\x01vorbis"):
        return granule / int.from_bytes(first[12:16], "little")
    return None


def _mp4_seconds(data: bytes) -> float | None:
    """The movie header's duration over its timescale (moov → mvhd)."""
    def boxes(start: int, end: int):
        while start + 8 <= end:
            size, kind = int.from_bytes(data[start:start + 4], "big"), data[start + 4:start + 8]
            header = 8
            if size == 1:
                size, header = int.from_bytes(data[start + 8:start + 16], "big"), 16
            elif size == 0:
                size = end - start
            if size < header:
                return
            yield kind, start + header, start + size
            start += size

    for kind, start, end in boxes(0, len(data)):
        if kind == b"moov":
            for inner, body, _ in boxes(start, end):
                if inner == b"mvhd":
                    if data[body] == 1:  # version 1: 64-bit times and duration
                        return int.from_bytes(data[body + 24:body + 32], "big") / int.from_bytes(
                            data[body + 20:body + 24], "big")
                    return int.from_bytes(data[body + 16:body + 20], "big") / int.from_bytes(
                        data[body + 12:body + 16], "big")
    return None
