"""OpenAI image generation (wire-formats §5): ``n`` copies of one tiny valid PNG."""

from __future__ import annotations

import base64
import struct
import time
import zlib

from sim.http import Context, Json, SimError
from sim.text import count_tokens

IMAGE_TOKENS = 272  # what gpt-image-1 bills for a low-quality 1024×1024 image


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1×1 pixel, 8-bit RGB
    pixels = zlib.compress(b"\x00\x5b\x3c\xdd")  # filter byte, then one violet pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


PNG = _png()


def handle(body: dict, ctx: Context) -> Json:
    prompt, n = body.get("prompt"), body.get("n") or 1
    if not isinstance(prompt, str) or not prompt:
        raise SimError(400, "'prompt' is required.")
    if not isinstance(n, int) or not 1 <= n <= 10:
        raise SimError(400, "'n' must be an integer from 1 to 10.")
    if body.get("response_format") == "b64_json":
        image = {"b64_json": base64.b64encode(PNG).decode()}
    else:
        image = {"url": f"{ctx.origin}/_sim/image.png"}
    payload = {"created": int(time.time()), "data": [image] * n}
    if str(body.get("model", "")).startswith("gpt-image"):  # token-priced models report usage
        text = count_tokens(prompt)
        payload["usage"] = {
            "input_tokens": text,
            "output_tokens": IMAGE_TOKENS * n,
            "total_tokens": text + IMAGE_TOKENS * n,
            "input_tokens_details": {"text_tokens": text, "image_tokens": 0},
        }
    return Json(payload)
