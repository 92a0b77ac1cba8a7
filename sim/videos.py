"""OpenAI videos (Sora): create (JSON or multipart), retrieve, list, delete, remix and download content.

A video is a job (``sim.jobs``): queued → in_progress (progress rising) → completed, or failed with an
``error {code, message}``; scripted outcomes cancelled and timed_out are failures too, as Sora has no such
states. ``webhook_url`` (a directive: OpenAI configures webhooks per project, not per request) receives
``video.completed`` / ``video.failed`` events signed the Standard Webhooks way with WEBHOOK_SECRET, which
``openai.OpenAI().webhooks.unwrap`` verifies. Content is a real H.264 MP4 of the video's size and length.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import time
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from sim import clock, jobs, media, webhooks
from sim.http import Context, Json, Raw, SimError, Upload
from sim.jobs import Job
from sim.plan import new_id

SECONDS = ("4", "8", "12", "16", "20")
SIZES = {"sora-2": ("720x1280", "1280x720"), "sora-2-pro": ("720x1280", "1280x720", "1024x1792", "1792x1024")}
EXPIRES_S = 3600  # downloads stay available for an hour after completion
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"hypereal-simulator-openai-webhooks").decode()
FAILURES = {  # how a scripted end reads as a Sora error
    "failed": ("video_generation_failed", "Video generation failed."),
    "cancelled": ("video_generation_cancelled", "Video generation was cancelled."),
    "timed_out": ("video_generation_timeout", "Video generation timed out."),
}
CONTENT = {"video": "video/mp4", "thumbnail": "image/webp", "spritesheet": "image/jpeg"}
WEBHOOK_RETRIES = (5_000, 60_000, 300_000)  # OpenAI backs off between tries (for days; a few suffice here)


@dataclass(kw_only=True)
class Video(Job):
    model: str
    prompt: str
    seconds: str
    size: str
    remixed_from: str | None = None

    @property
    def dimensions(self) -> tuple[int, int]:
        width, height = self.size.split("x")
        return int(width), int(height)


VIDEOS: dict[str, Video] = {}


def invalid(param: str, value: object, allowed: tuple[str, ...]) -> SimError:
    """OpenAI's answer to a value outside a list: "… Supported values are: 'a', 'b', and 'c'."."""
    *rest, last = [f"'{a}'" for a in allowed]
    listed = f"{', '.join(rest)}{',' if len(rest) > 1 else ''} and {last}"
    return SimError(
        400, f"Invalid value: '{value}'. Supported values are: {listed}.", param=param, code="invalid_value"
    )


def _prompt(body: dict) -> str:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise SimError(
            400, "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter"
        )
    return prompt


def create(body: dict, ctx: Context) -> Json:
    prompt = _prompt(body)
    model = str(body.get("model") or "sora-2")
    seconds, size = str(body.get("seconds") or "4"), str(body.get("size") or "720x1280")
    if seconds not in SECONDS:
        raise invalid("seconds", seconds, SECONDS)
    sizes = SIZES["sora-2-pro" if model.startswith("sora-2-pro") else "sora-2"]
    if size not in sizes:
        raise invalid("size", size, sizes)
    reference = body.get("input_reference")
    if isinstance(reference, Upload):
        _check_reference(reference, size)
    video = _submit(ctx, model=model, prompt=prompt, seconds=seconds, size=size)
    return Json(render(video, clock.now_ms()))


def _check_reference(reference: Upload, size: str) -> None:
    try:
        width, height = Image.open(io.BytesIO(reference.data)).size
    except UnidentifiedImageError:
        raise SimError(
            400, "input_reference must be a JPEG, PNG or WebP image.", param="input_reference"
        ) from None
    if f"{width}x{height}" != size:
        raise SimError(
            400, "Inpaint image must match the requested width and height", param="input_reference"
        )


def _submit(ctx: Context, **fields: str | None) -> Video:
    video = Video(id=new_id("video_"), script=ctx.directives, **fields)
    VIDEOS[video.id] = video
    if url := ctx.directives.webhook_url:
        webhooks.watch(video, webhooks.Hook(url, lambda: _event(video), retries=WEBHOOK_RETRIES, sign=_sign))
    return video


def render(video: Video, now: int) -> dict:
    state = video.state(now)
    ended = video.ended_ms(now)
    error = None
    if failure := FAILURES.get(state):
        error = {
            "code": video.script.error_code or failure[0],
            "message": video.script.error_message or failure[1],
        }
    queued = state == jobs.QUEUED
    status = {jobs.QUEUED: "queued", jobs.RUNNING: "in_progress", jobs.COMPLETED: "completed"}.get(
        state, "failed"
    )
    return {
        "id": video.id,
        "object": "video",
        "model": video.model,
        "status": "warming" if queued and video.script.unknown_status else status,
        "progress": video.progress(now),
        "created_at": video.submitted_ms // 1000,
        "completed_at": ended // 1000 if ended is not None else None,
        "expires_at": ended // 1000 + EXPIRES_S if state == jobs.COMPLETED else None,
        "error": error,
        "prompt": video.prompt,
        "seconds": video.seconds,
        "size": video.size,
        "remixed_from_video_id": video.remixed_from,
    }


def _event(video: Video) -> bytes:
    end = video.end()
    assert end is not None, "a webhook fires only for a job that ends"
    kind = "video.completed" if end[1] == jobs.COMPLETED else "video.failed"
    event = {"id": new_id("evt_"), "object": "event", "created_at": end[0] // 1000, "type": kind}
    return json.dumps({**event, "data": {"id": video.id}}).encode()


def _sign(body: bytes) -> dict[str, str]:
    """Standard Webhooks headers; the timestamp is the real time of the attempt, as receivers check it."""
    event_id, timestamp = json.loads(body)["id"], str(int(time.time()))
    key = base64.b64decode(WEBHOOK_SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    signature = "v1," + base64.b64encode(digest).decode()
    return {"webhook-id": event_id, "webhook-timestamp": timestamp, "webhook-signature": signature}


def _find(ctx: Context) -> Video:
    video = VIDEOS.get(ctx.params["id"])
    if video is None:
        raise SimError(404, f"Video with id '{ctx.params['id']}' not found.", param="video_id")
    return video


def retrieve(body: dict, ctx: Context) -> Json:
    return Json(render(_find(ctx), clock.now_ms()))


def list_videos(body: dict, ctx: Context) -> Json:
    now, order = clock.now_ms(), ctx.query.get("order", "desc")
    videos = sorted(VIDEOS.values(), key=lambda v: v.submitted_ms, reverse=order != "asc")
    if after := ctx.query.get("after"):
        ids = [v.id for v in videos]
        videos = videos[ids.index(after) + 1 :] if after in ids else []
    limit = int(ctx.query.get("limit", 20))
    page = videos[:limit]
    return Json(
        {
            "object": "list",
            "data": [render(v, now) for v in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(videos) > limit,
        }
    )


def delete(body: dict, ctx: Context) -> Json:
    video = _find(ctx)
    if video.ended_ms(clock.now_ms()) is None:
        raise SimError(400, "Only a completed or failed video can be deleted.", param="video_id")
    del VIDEOS[video.id]
    return Json({"id": video.id, "object": "video.deleted", "deleted": True})


def remix(body: dict, ctx: Context) -> Json:
    source, prompt = _find(ctx), _prompt(body)
    if source.state(clock.now_ms()) != jobs.COMPLETED:
        raise SimError(400, "Only a completed video can be remixed.", param="video_id")
    video = _submit(
        ctx,
        model=source.model,
        prompt=prompt,
        seconds=source.seconds,
        size=source.size,
        remixed_from=source.id,
    )
    return Json(render(video, clock.now_ms()))


def content(body: dict, ctx: Context) -> Raw:
    video, now = _find(ctx), clock.now_ms()
    variant = ctx.query.get("variant", "video")
    if variant not in CONTENT:
        raise invalid("variant", variant, tuple(CONTENT))
    if video.state(now) != jobs.COMPLETED:
        raise SimError(404, f"Video '{video.id}' has no content: it is not completed.")
    if now // 1000 > render(video, now)["expires_at"]:
        raise SimError(404, f"The content of video '{video.id}' has expired.")
    width, height = video.dimensions
    if variant == "thumbnail":
        return Raw(media.thumbnail(width, height, video.id), CONTENT[variant])
    if variant == "spritesheet":
        return Raw(media.spritesheet(width, height, video.id), CONTENT[variant])
    return Raw(media.video(width, height, int(video.seconds), video.id), CONTENT[variant])
