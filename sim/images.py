"""OpenAI image generation and edits (wire-formats §5): real pictures of the requested size.

GPT image models answer ``b64_json`` only, in ``output_format`` png (default), jpeg or webp, and report token
usage; DALL·E models answer a ``url`` (default, served from /_sim/media) or ``b64_json`` PNG and take no
output_format. Each family takes only its own sizes. Edits (multipart, the SDK's ``images.edit``) take one or
more ``image`` files and answer like generations; ``size`` auto, or none, keeps the first image's size.
"""

from __future__ import annotations

import base64
import io
import time

from PIL import Image, UnidentifiedImageError

from sim import media
from sim.http import Context, Json, SimError, Upload
from sim.text import count_tokens

IMAGE_TOKENS = 272  # what gpt-image-1 bills for a low-quality 1024×1024 image, in or out
SIZES = {
    "gpt-image": ("1024x1024", "1536x1024", "1024x1536", "auto"),
    "gpt-image-2": ("1024x1024", "1536x1024", "1024x1536", "2048x2048", "4096x4096", "auto"),  # 2K/4K square
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
}


def handle(body: dict, ctx: Context) -> Json:
    return _answer(body, ctx, inputs=[])


def edit(body: dict, ctx: Context) -> Json:
    uploads = body.get("image")
    uploads = uploads if isinstance(uploads, list) else [uploads] if uploads is not None else []
    if not uploads or not all(isinstance(u, Upload) for u in uploads):
        raise SimError(
            400, "Missing required parameter: 'image'.", param="image", code="missing_required_parameter"
        )
    sizes = []
    for upload in uploads:
        try:
            sizes.append(Image.open(io.BytesIO(upload.data)).size)
        except UnidentifiedImageError:
            raise SimError(
                400, f"Invalid image file: {upload.filename}.", param="image", code="invalid_image"
            ) from None
    return _answer(body, ctx, inputs=sizes)


def _family(model: str) -> str:
    if model in SIZES:
        return model
    return "gpt-image" if model.startswith("gpt-image") else model


def _answer(body: dict, ctx: Context, inputs: list[tuple[int, int]]) -> Json:
    prompt, n = body.get("prompt"), int(body.get("n") or 1)
    model = str(body.get("model") or ("gpt-image-1" if inputs else "dall-e-2"))
    family = _family(model)
    gpt = family.startswith("gpt-image")
    if not isinstance(prompt, str) or not prompt:
        raise SimError(
            400, "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter"
        )
    if not 1 <= n <= (1 if family == "dall-e-3" else 10):
        raise SimError(
            400, f"'n' must be from 1 to {1 if family == 'dall-e-3' else 10} for {model}.", param="n"
        )
    size = str(body.get("size") or ("auto" if gpt else "1024x1024"))
    allowed = SIZES.get(family)
    if allowed and size not in allowed:
        raise SimError(
            400, f"Invalid value: '{size}'. Supported values are: {', '.join(allowed)}.", param="size"
        )
    if size == "auto":  # an edit keeps its picture's size
        width, height = inputs[0] if inputs else (1024, 1024)
    else:
        width, height = _size(size)
    fmt = str(body.get("output_format") or "png")
    if not gpt and "output_format" in body:
        raise SimError(
            400, "Unknown parameter: 'output_format'.", param="output_format", code="unknown_parameter"
        )
    if fmt not in media.IMAGE_FORMATS:
        raise SimError(
            400, f"Invalid value: '{fmt}'. Supported values are: png, jpeg, webp.", param="output_format"
        )
    url = not gpt and body.get("response_format", "url") == "url"
    seeds = [f"{prompt}/{width}x{height}/{index}" for index in range(n)]
    data = [
        {"url": media.url(ctx.origin, "image.png", width=width, height=height, seed=seed)}
        if url
        else {"b64_json": base64.b64encode(media.image(width, height, seed, fmt)).decode()}
        for seed in seeds
    ]
    if family == "dall-e-3":
        data = [{**image, "revised_prompt": prompt} for image in data]
    payload: dict = {"created": int(time.time()), "data": data}
    if gpt:  # token-priced models describe the picture and report usage
        text, pictures = count_tokens(prompt), IMAGE_TOKENS * len(inputs)
        payload |= {
            "background": "opaque",
            "output_format": fmt,
            "quality": body.get("quality") or "medium",
            "size": f"{width}x{height}",
            "usage": {
                "input_tokens": text + pictures,
                "output_tokens": IMAGE_TOKENS * n,
                "total_tokens": text + pictures + IMAGE_TOKENS * n,
                "input_tokens_details": {"text_tokens": text, "image_tokens": pictures},
            },
        }
    return Json(payload)


def _size(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    if not (
        width.isdigit()
        and height.isdigit()
        and 0 < int(width) <= media.MAX_SIDE
        and 0 < int(height) <= media.MAX_SIDE
    ):
        raise SimError(400, f"Invalid value: '{size}'. A size is WIDTHxHEIGHT.", param="size")
    return int(width), int(height)
