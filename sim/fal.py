"""fal's queue (``https://queue.fal.run``) under ``/fal``: submit, status, result, cancel, and webhooks.

A model id is owner/app[/path]: the submit URL carries all of it, the status, result and cancel URLs only
owner/app, as fal builds them (clients should use the URLs the submit answer gives). Auth is
``Authorization: Key <key>``. Status is IN_QUEUE (queue_position) → IN_PROGRESS (logs) → COMPLETED (logs,
metrics.inference_time), answered 202 until COMPLETED and 200 then; a request that failed is COMPLETED with
``error`` and ``error_type``, and its result is the error (``{detail, error_type}``, X-Fal-Error-Type) with its
status code. ``?fal_webhook=URL`` on submit gets ``{request_id, gateway_request_id, status: OK|ERROR, payload,
error}`` when the request ends; unanswered deliveries are retried 10 times, 10 minutes apart.

Results: a video model (an id containing one of VIDEO_WORDS) answers ``{"video": {url, content_type,
file_name, file_size}}``, any other model ``{"images": [{url, width, height, content_type}], ...}``; the URLs
serve real media from /_sim/media.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sim import clock, jobs, media, webhooks
from sim.http import Context, Json, SimError
from sim.jobs import Job

VIDEO_WORDS = ("video", "veo", "kling", "sora", "seedance", "hailuo")
ERROR_STATUSES = {  # fal's request error types and the status codes they come with
    "request_timeout": 504,
    "startup_timeout": 504,
    "runner_scheduling_failure": 503,
    "runner_connection_timeout": 503,
    "runner_disconnected": 503,
    "runner_connection_refused": 503,
}
FAILURES = {  # a scripted end -> (error_type, detail)
    "failed": ("runner_disconnected", "The runner disconnected unexpectedly during processing."),
    "timed_out": ("request_timeout", "Request timed out"),
}
CANCELLED = "Request was cancelled"
IMAGE_SIZES = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
ASPECT_RATIOS = {"16:9": (1280, 720), "9:16": (720, 1280), "1:1": (720, 720)}
LOG_STEPS = 4  # progress log lines over a run
RETRIES = (600_000,) * 10


@dataclass(kw_only=True)
class Request(Job):
    app: str  # owner/app, what the status, result and cancel URLs name
    model: str  # owner/app[/path], what was submitted
    input: dict
    origin: str  # where media URLs point: this server as the client addressed it
    base_url: str  # …/fal/owner/app/requests/{id}, under the client's own origin and directive prefix


REQUESTS: dict[str, Request] = {}


def error(status: int, message: str) -> dict:
    return {"detail": message}


def submit(body: dict, ctx: Context) -> Json:
    app = f"{ctx.params['owner']}/{ctx.params['app']}"
    model = f"{app}/{ctx.params['path']}" if ctx.params.get("path") else app
    request_id = str(uuid.uuid4())
    request = Request(
        id=request_id,
        script=ctx.directives,
        app=app,
        model=model,
        input=_checked(model, body),
        origin=ctx.origin,
        base_url=f"{ctx.origin}{ctx.prefix}/fal/{app}/requests/{request_id}",
    )
    REQUESTS[request_id] = request
    if url := ctx.query.get("fal_webhook"):
        webhooks.watch(request, webhooks.Hook(url, lambda: _webhook(request), retries=RETRIES))
    return Json(
        {"status": "IN_QUEUE", **_frame(request), "queue_position": _position(request, clock.now_ms())}
    )


def status(body: dict, ctx: Context) -> Json:
    request, now = _find(ctx), clock.now_ms()
    state = request.state(now)
    logs = _logs(request, now) if ctx.query.get("logs") in ("1", "true") else None
    if state == jobs.QUEUED:
        name = "WARMING" if request.script.unknown_status else "IN_QUEUE"
        return Json({"status": name, **_frame(request), "queue_position": _position(request, now)}, 202)
    if state == jobs.RUNNING:
        return Json({"status": "IN_PROGRESS", **_frame(request), "logs": logs}, 202)
    payload = {"status": "COMPLETED", **_frame(request), "logs": logs}
    payload["metrics"] = {"inference_time": request.ran_for(now) / 1000}
    if state != jobs.COMPLETED:
        failure = _failure(request, state)
        payload |= {"error": failure["detail"], "error_type": failure.get("error_type")}
    return Json(payload)


def result(body: dict, ctx: Context) -> Json:
    request, now = _find(ctx), clock.now_ms()
    state = request.state(now)
    if state in (jobs.QUEUED, jobs.RUNNING):
        raise SimError(400, "Request is still in progress")
    if state == jobs.COMPLETED:
        return Json(_output(request))
    failure = _failure(request, state)
    kind = failure.get("error_type")
    return Json(failure, _failure_status(failure), ((b"x-fal-error-type", kind.encode()),) if kind else ())


def cancel(body: dict, ctx: Context) -> Json:
    request = REQUESTS.get(ctx.params["id"])
    if request is None or request.app != f"{ctx.params['owner']}/{ctx.params['app']}":
        return Json({"status": "NOT_FOUND"}, 404)
    now = clock.now_ms()
    if request.ended_ms(now) is not None:
        return Json({"status": "ALREADY_COMPLETED"}, 400)
    request.cancel(now)
    return Json({"status": "CANCELLATION_REQUESTED"}, 202)


def _find(ctx: Context) -> Request:
    request = REQUESTS.get(ctx.params["id"])
    if request is None or request.app != f"{ctx.params['owner']}/{ctx.params['app']}":
        raise SimError(404, f"Request {ctx.params['id']} not found")
    return request


def _frame(request: Request) -> dict:
    return {
        "request_id": request.id,
        "response_url": request.base_url,
        "status_url": f"{request.base_url}/status",
        "cancel_url": f"{request.base_url}/cancel",
        "logs": None,
        "metrics": {},
    }


def _position(request: Request, now: int) -> int:
    """How many requests to the same app wait ahead of this one."""
    return sum(
        1
        for other in REQUESTS.values()
        if other.app == request.app
        and other.submitted_ms < request.submitted_ms
        and other.state(now) == jobs.QUEUED
    )


def _logs(request: Request, now: int) -> list[dict]:
    def line(at_ms: int, message: str) -> dict:
        when = datetime.fromtimestamp(at_ms / 1000, UTC).isoformat()
        return {"message": message, "level": "INFO", "source": "user", "timestamp": when}

    if request.state(now) == jobs.QUEUED:
        return []
    ran = request.ran_for(now)
    steps = [
        line(request.started_ms + request.script.run_ms * step // LOG_STEPS, f"Step {step}/{LOG_STEPS}")
        for step in range(1, LOG_STEPS + 1)
        if request.script.run_ms * step // LOG_STEPS <= ran
    ]
    return [line(request.started_ms, f"Running {request.model}"), *steps]


def _failure(request: Request, state: str) -> dict:
    """The error a request that did not complete answers with: ``{detail, error_type?}``."""
    if state == "cancelled":
        return {"detail": CANCELLED}
    kind, detail = FAILURES[state]
    return {"detail": request.script.error_message or detail, "error_type": request.script.error_code or kind}


def _failure_status(failure: dict) -> int:
    kind = failure.get("error_type")
    return 400 if kind is None else ERROR_STATUSES.get(kind, 500)


def _webhook(request: Request) -> bytes:
    end = request.end()
    assert end is not None, "a webhook fires only for a request that ends"
    frame = {"request_id": request.id, "gateway_request_id": request.id}
    if end[1] == jobs.COMPLETED:
        return json.dumps({**frame, "status": "OK", "payload": _output(request), "error": None}).encode()
    failure = _failure(request, end[1])
    code = _failure_status(failure)
    return json.dumps(
        {**frame, "status": "ERROR", "payload": failure, "error": f"Invalid status code: {code}"}
    ).encode()


def _is_video(model: str) -> bool:
    return any(word in model for word in VIDEO_WORDS)


def _checked(model: str, params: dict) -> dict:
    """The input, once the fields that shape the output are known to be usable (fal answers 422 otherwise)."""
    if _is_video(model):
        if str(params.get("aspect_ratio", "16:9")) not in ASPECT_RATIOS:
            raise SimError(422, f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}")
        duration = float(str(params.get("duration", "5")).removesuffix("s"))
        if not 0 < duration <= media.MAX_SECONDS:
            raise SimError(422, f"duration must be more than 0 and at most {media.MAX_SECONDS}")
        return params
    size = params.get("image_size", "landscape_4_3")
    if not (size in IMAGE_SIZES or isinstance(size, dict) and {"width", "height"} <= size.keys()):
        raise SimError(422, f"image_size must be one of {', '.join(IMAGE_SIZES)} or {{width, height}}")
    if params.get("output_format", "jpeg") not in media.IMAGE_FORMATS:
        raise SimError(422, f"output_format must be one of {', '.join(media.IMAGE_FORMATS)}")
    return params


def _output(request: Request) -> dict:
    """The model's answer: a video for video models, else images, real bytes served from /_sim/media."""
    params, seed, origin = request.input, int(request.id[:8], 16), request.origin
    if _is_video(request.model):
        width, height = ASPECT_RATIOS[str(params.get("aspect_ratio", "16:9"))]
        seconds = float(str(params.get("duration", "5")).removesuffix("s"))
        data = media.video(width, height, seconds, request.id)
        link = media.url(origin, "video.mp4", width=width, height=height, seconds=seconds, seed=request.id)
        return {
            "video": {
                "url": link,
                "content_type": "video/mp4",
                "file_name": "output.mp4",
                "file_size": len(data),
            },
            "seed": seed,
        }
    size = params.get("image_size", "landscape_4_3")
    width, height = (int(size["width"]), int(size["height"])) if isinstance(size, dict) else IMAGE_SIZES[size]
    fmt = params.get("output_format", "jpeg")
    images = [
        {
            "url": media.url(origin, f"image.{fmt}", width=width, height=height, seed=f"{request.id}/{n}"),
            "width": width,
            "height": height,
            "content_type": media.IMAGE_FORMATS[fmt][1],
        }
        for n in range(int(params.get("num_images", 1)))
    ]
    return {
        "images": images,
        "timings": {"inference": request.script.run_ms / 1000},
        "seed": seed,
        "has_nsfw_concepts": [False] * len(images),
        "prompt": params.get("prompt", ""),
    }
