"""What the image and audio tests share: a gateway that may fetch the simulator's media on loopback, the media
itself, and reading what the simulator, the wallet and the request log saw."""

import base64
import io
import json
import math
import wave

import av
import httpx
import pytest
from PIL import Image

from tests.live import start_gateway, stop_process
from tests.test_chat_completions import balance, micro
from usage.models import RequestLog

__all__ = ["balance", "micro"]
FETCH_LIMIT = 300_000  # the fetching gateway's HYPEREAL_MEDIA_MAX_BYTES: a 4096×4096 picture is over it


def _test_models_install(sim_url: str) -> None:
    """A DALL·E-style model, whose upstream answers URLs the gateway downloads; and one that never answers."""
    from gateway.models import Provider
    from gateway.services import model_upsert, provider_upsert

    parameters = {"sizes": ["1024x1024"], "response_format": "b64_json"}
    for public_id, path, upstream_model in (("tc-image-url-upstream", "", "dall-e-3"),
                                            ("tc-image-hang", "/x/hang=1", "gpt-image-1")):
        provider = provider_upsert(name=public_id, kind=Provider.Kind.OPENAI, base_url=f"{sim_url}{path}/v1",
                                   api_key="k")
        model_upsert(public_id=public_id, capability="image", price_unit="image", unit_price="2",
                     parameters=parameters, targets=[(provider, upstream_model)])


@pytest.fixture(scope="session")
def fetching_gateway_url(demo_catalog, redis_client, sim_url, tmp_path_factory):
    """A gateway whose image and audio endpoints may fetch http and loopback URLs (the simulator's media, its
    own signed downloads), with a small media limit and its own storage directory."""
    _test_models_install(sim_url)
    url, proc = start_gateway(HYPEREAL_MEDIA_FETCH_ALLOW_LOCAL="true", HYPEREAL_MEDIA_MAX_BYTES=str(FETCH_LIMIT),
                              HYPEREAL_STORAGE_DIR=str(tmp_path_factory.mktemp("media-storage")))
    yield url
    stop_process(proc)


def auth(account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.key}"}


def logged(gateway_url: str, account, request_id: str) -> RequestLog:
    balance(gateway_url, account.key)  # the serving gateway writes what it has served first
    return RequestLog.objects.get(request_id=request_id)


def sim_requests(sim_url: str) -> list[dict]:
    return httpx.get(f"{sim_url}/_sim/requests").json()


def sim_saw(sim_url: str, marker: str) -> bool:
    """Whether any request the simulator recorded carries ``marker`` (a prompt or text unique to a test)."""
    return any(marker in json.dumps(request) for request in sim_requests(sim_url))


def newest(sim_url: str, path: str) -> dict | None:
    """The latest request the simulator got on ``path`` (compare before and after: nothing new, nothing sent)."""
    return next((r for r in sim_requests(sim_url) if r["path"].endswith(path)), None)


def png(width: int = 64, height: int = 48, color: str = "teal") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def picture_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as picture:
        picture.load()  # decodes every pixel: a truncated file fails here
        return picture.size


def wav(seconds: float, rate: int = 8000) -> bytes:
    """A tone as 8-bit mono WAV (small enough to send as a data URL)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(1)
        writer.setframerate(rate)
        writer.writeframes(bytes(128 + int(60 * math.sin(2 * math.pi * 440 * i / rate))
                                 for i in range(int(seconds * rate))))
    return out.getvalue()


def ffmpeg_seconds(data: bytes) -> float:
    """How long audio lasts as FFmpeg reads it (PyAV): decoding it proves it is real audio."""
    with av.open(io.BytesIO(data)) as container:
        assert sum(frame.samples for frame in container.decode(audio=0)) > 0
        return container.duration / av.time_base


def data_url(data: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"
