"""The job endpoints of the model API (under /api/v1 and /v1): video generation in Hypereal's shape and
OpenAI's, jobs, their content and cancel, and the callback a provider's webhook reaches.

A submit goes through the gateway's admission (key, rate limit, a reservation of the worst-case price,
402 up front), becomes a job whose hold is that reservation, and walks the model's fallback chain until a
target takes it; a job that then fails upstream is not re-run elsewhere. Each surface shows the job's
canonical status in its own vocabulary: Hypereal's (queued, running, succeeded, failed, cancelled,
timed_out), OpenAI's (queued, in_progress, completed, failed).
"""

import asyncio
import base64
import binascii
import functools
import logging
import time
from urllib.parse import parse_qs

from django.conf import settings

from apikeys.limits import spend_month
from billing.money import micro_to_credits
from billing.pricing import unit_cost
from billing.services import InsufficientCredits
from gateway import quota
from gateway.auth import KeyContext, authenticate
from gateway.call import Call
from gateway.catalog import Route, Target, catalog
from gateway.errors import GatewayError, invalid_request
from gateway.fallback import targets_walk
from gateway.http import Receive, Scope, Send, encode_headers, header, send_json
from gateway.routing import choose_route
from gateway.upstream import UpstreamFailure
from gpu import jobs
from gpu.forms import body_read
from gpu.models import Job, StoredFile
from gpu.storage import stored_file_get, stored_file_open, stored_file_url
from gpu.tasks import job_poll_now
from gpu.upstreams import VIDEO_ADAPTERS, JobTarget, Submitted, UpstreamError, VideoSpec
from gpu.work import off_loop
from orgs.services import OrgRuleError
from orgs.webhooks import webhook_url_clean

log = logging.getLogger(__name__)
BODY_LIMIT = 25 * 1024 * 1024  # a prompt and a reference image or two
DEFAULT_ASPECT_RATIO, DEFAULT_RESOLUTION = "16:9", "720p"
OPENAI_STATUS = {Job.Status.QUEUED: "queued", Job.Status.RUNNING: "in_progress",
                 Job.Status.SUCCEEDED: "completed"}  # every other end is "failed" on OpenAI's surface
# The fields each shape reads; any other field the client sends is the model's own, passed on to it.
GENERATE_FIELDS = {"model", "intent", "prompt", "duration", "aspect_ratio", "resolution", "image_urls", "image",
                   "last_image_url", "webhookUrl", "sync", "idempotency_key"}
OPENAI_FIELDS = {"model", "intent", "prompt", "seconds", "size", "sync", "idempotency_key"}
OPENAI_SIZES = {"1280x720": ("16:9", "720p"), "720x1280": ("9:16", "720p"), "1792x1024": ("16:9", "1080p"),
                "1024x1792": ("9:16", "1080p")}


def endpoint(name: str):
    """Give a handler its Call and answer every failure in OpenAI's error shape (never HTML or plain text)."""
    def wrap(handler):
        @functools.wraps(handler)
        async def serve(scope: Scope, receive: Receive, send: Send, **path) -> None:
            call = Call(endpoint=name)
            try:
                await handler(call, scope, receive, send, **path)
            except GatewayError as err:
                if err.status != 499:
                    await call.send_openai_error(send, err)
            except Exception:
                log.exception("%s failed", name)
                await call.send_openai_error(send, GatewayError(500, "server_error", "Something went wrong on "
                                             "our side; the request id identifies it.", "server_error"))
        return serve
    return wrap


# --- reading a video request -----------------------------------------------------------------------------

def _choice(value: object, allowed: list, param: str) -> str:
    text = str(value).lower()
    if allowed and text not in [str(a).lower() for a in allowed]:
        raise invalid_request(f"`{param}` must be one of {', '.join(map(str, allowed))} for this model.",
                              code="invalid_value", param=param)
    return text


def _spec(route: Route, *, prompt: object, seconds: object, aspect_ratio: object, resolution: object,
          image: bytes | None, image_url: object, last_image_url: object, extra: dict) -> VideoSpec:
    """The request checked against what the model accepts (its catalog ``parameters``)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid_request("`prompt` is required.", code="missing_required_parameter", param="prompt")
    accepts = route.parameters
    durations = accepts.get("durations") or []
    if seconds is None:
        seconds = durations[0] if durations else 5
    if not str(seconds).isdigit() or int(seconds) < 1:
        raise invalid_request("`duration` must be a whole number of seconds.", code="invalid_value",
                              param="duration")
    if durations and int(seconds) not in durations:
        raise invalid_request(f"`duration` must be one of {', '.join(map(str, durations))} seconds for this "
                              "model.", code="invalid_value", param="duration")
    if route.unit_price and route.unit_price.max_units and route.price_unit == "second" \
            and int(seconds) > route.unit_price.max_units:
        raise invalid_request(f"`duration` can be at most {route.unit_price.max_units} seconds for this model.",
                              code="invalid_value", param="duration")
    for url, param in ((image_url, "image_urls"), (last_image_url, "last_image_url")):
        if url is not None and not (isinstance(url, str) and url.startswith("https://")):
            raise invalid_request(f"`{param}` takes public https URLs.", code="invalid_value", param=param)
    if (image is not None or image_url) and not accepts.get("image_input", True):
        raise invalid_request("This model takes no reference image.", code="invalid_value", param="image")
    return VideoSpec(prompt=prompt.strip(), seconds=int(seconds),
                     aspect_ratio=_choice(aspect_ratio or DEFAULT_ASPECT_RATIO, accepts.get("aspect_ratios", []),
                                          "aspect_ratio"),
                     resolution=_choice(resolution or DEFAULT_RESOLUTION, accepts.get("resolutions", []),
                                        "resolution"),
                     image=image, image_url=image_url, last_image_url=last_image_url, extra=extra)


def _inline_image(value: object) -> bytes | None:
    """``image``: base64, or a data URL of it."""
    if value is None:
        return None
    text = str(value)
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_request("`image` must be base64 or a data URL.", code="invalid_value", param="image") from None


def _stored_input(spec: VideoSpec, body_fields: dict) -> dict:
    """What the job keeps of its input: everything but inline bytes, which are described instead."""
    kept = {k: v for k, v in body_fields.items() if k not in ("image", "sim")}
    if spec.image is not None:
        kept["image"] = {"bytes": len(spec.image)}
    return {**kept, "duration": spec.seconds, "aspect_ratio": spec.aspect_ratio, "resolution": spec.resolution}


def wait_seconds(scope: Scope, body: dict, *, default: float) -> float:
    """How long the client lets the submit wait for the result: ``Prefer: wait=N``, ``"sync"``, or the
    endpoint's default — never beyond HYPEREAL_JOB_WAIT_SECONDS."""
    bound = settings.HYPEREAL["JOB_WAIT_SECONDS"]
    prefer = header(scope, b"prefer") or ""
    for part in prefer.split(","):
        name, _, value = part.strip().partition("=")
        if name == "wait":
            return min(float(value), bound) if value.replace(".", "", 1).isdigit() else bound
    sync = body.get("sync")
    if sync is not None:
        return bound if sync in (True, "true") else 0
    return min(default, bound)


# --- submitting ------------------------------------------------------------------------------------------

async def _submit(call: Call, ctx: KeyContext, route: Route, spec: VideoSpec, *, endpoint_name: str, input: dict,
                  idempotency_key: str | None, webhook_url: str) -> Job:
    """Hold the worst case, then hand the job to the first target of the chain that takes it."""
    if route.unit_price is None:
        raise invalid_request(f"`{route.public_id}` has no price per second or per clip.", code="unpriced_model")
    units = spec.seconds if route.price_unit == "second" else 1
    ask = jobs.JobAsk(organization_id=ctx.org_id, api_key_id=ctx.key_id, api_key_name=ctx.name,
                      kind=Job.Kind.VIDEO, model=route.public_id, endpoint=endpoint_name, request_id=call.request_id,
                      price_unit=route.price_unit, price=route.unit_price, units=units, input=input,
                      spend_month=spend_month(), idempotency_key=idempotency_key, webhook_url=webhook_url)
    amount = unit_cost(route.unit_price, units)
    reservation = await quota.take(ctx, amount=amount, tokens=0, floor=0)
    taken = 0
    try:
        first = route.targets[0]
        job, created = await off_loop(jobs.job_create, ask=ask, provider_id=first.provider_id,
                                      upstream_model=first.upstream_model)
        if not created:
            return job
        taken = amount  # the reservation is the job's hold now: it stays taken until the job settles
    except InsufficientCredits:
        raise GatewayError(402, "insufficient_credits", "Insufficient credits: the balance cannot cover this "
                           "job's price. Top up to continue.", "insufficient_credits") from None
    finally:
        quota.settle(reservation, cost=taken, tokens=0)
    callback = f"{settings.PUBLIC_URL}/api/v1/jobs/callbacks/{job.callback_token}"

    async def attempt(target: Target) -> tuple[Target, Submitted]:
        job_target = JobTarget(kind=target.kind, base_url=target.base_url, api_key=target.api_key,
                               upstream_model=target.upstream_model)
        try:
            return target, await off_loop(VIDEO_ADAPTERS[target.kind].submit, job_target, spec, callback)
        except UpstreamError as exc:
            if exc.retryable:
                raise UpstreamFailure("status" if exc.status else "connect", exc.status, str(exc)) from None
            raise _refused(exc) from None

    try:
        target, submitted = await targets_walk(call, route.targets, attempt,
                                               deadline=call.started + settings.HYPEREAL["REQUEST_DEADLINE_SECONDS"])
    except GatewayError as err:
        await off_loop(jobs.job_finish, job_id=job.pk, status=Job.Status.FAILED,
                       error=(err.code or err.type, err.message))
        raise
    return await off_loop(jobs.job_submitted, job=job, provider_id=target.provider_id,
                          upstream_model=target.upstream_model, submitted=submitted)


def _refused(exc: UpstreamError) -> GatewayError:
    """A provider's refusal of the request itself (a 4xx other than 408/409/429), passed on."""
    body = exc.body if isinstance(exc.body, dict) else {}
    upstream = body.get("error") if isinstance(body.get("error"), dict) else body
    message = upstream.get("message") or upstream.get("detail") or f"The provider refused the job ({exc})."
    return GatewayError(exc.status or 400, "invalid_request_error", str(message), "upstream_refused")


async def wait_for(job: Job, seconds: float) -> Job:
    """Hold the request while the job runs, up to ``seconds``, asking the provider as a reader may; then
    the job as it is (a job still running is not an error)."""
    deadline = time.monotonic() + seconds
    while job.active and time.monotonic() < deadline:
        await asyncio.sleep(min(jobs.READ_POLL_SECONDS, max(deadline - time.monotonic(), 0)))
        job = await off_loop(refreshed, job.pk)
    return job


def refreshed(job_id: int) -> Job:
    """The job after a poll, if a reader may poll it now; if a poll is under way elsewhere (the sweep, a
    webhook's), after that one, so that a reader never gets an answer older than the provider's."""
    if (lease := jobs.job_claim_for_read(job_id=job_id)) is not None:
        jobs.job_poll(job_id=job_id, lease=lease)
    else:
        jobs.job_poll_awaited(job_id=job_id, seconds=jobs.READ_POLL_SECONDS * 3)
    return Job.objects.select_related("provider", "compute").get(pk=job_id)


# --- rendering ---------------------------------------------------------------------------------------

def _credits(micro: int | None) -> str | None:
    return None if micro is None else str(micro_to_credits(micro))


def _iso(moment) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _outputs(job: Job) -> list[dict]:
    outputs = []
    for output in job.output.get("files", []):
        if file := stored_file_get(organization_id=job.organization_id, file_id=output["id"]):
            url, expires_at = stored_file_url(file)
            outputs.append({"id": file.public_id, "url": url, "urlExpiresAt": _iso(expires_at),
                            "contentType": file.content_type, "bytes": file.size})
    return outputs


def job_json(job: Job) -> dict:
    """A job in Hypereal's shape (GET /v1/jobs/{id}, and what /videos/generate answers)."""
    outputs = _outputs(job)
    video = next((o for o in outputs if o["contentType"].startswith("video/")), None)
    return {"jobId": job.public_id, "object": "job", "kind": job.kind, "model": job.model, "status": job.status,
            "progress": job.progress, "pollUrl": f"/v1/jobs/{job.public_id}",
            "contentUrl": f"/v1/jobs/{job.public_id}/content" if outputs else None,
            "videoUrl": video["url"] if video else None, "outputs": outputs,
            "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
            "input": job.input, "creditsHeld": _credits(job.hold.amount if job.hold_id else None),
            "creditsCharged": _credits(job.charged), "createdAt": _iso(job.created_at),
            "startedAt": _iso(job.started_at), "completedAt": _iso(job.finished_at),
            "timeline": [{"event": event.kind, "at": _iso(event.created_at), **({"detail": event.detail}
                                                                                 if event.detail else {})}
                         for event in job.events.order_by("created_at", "pk")]}


def video_json(job: Job) -> dict:
    """A job as OpenAI's video object (the openai SDK's client.videos)."""
    size = next((s for s, shape in OPENAI_SIZES.items()
                 if shape == (job.input.get("aspect_ratio"), job.input.get("resolution"))), "1280x720")
    files = job.output.get("files", [])
    expires = None
    if files and (file := stored_file_get(organization_id=job.organization_id, file_id=files[0]["id"])):
        expires = file.expires_at
    return {"id": job.public_id, "object": "video", "model": job.model,
            "status": OPENAI_STATUS.get(job.status, "failed"), "progress": job.progress,
            "created_at": int(job.created_at.timestamp()),
            "completed_at": int(job.finished_at.timestamp()) if job.finished_at else None,
            "expires_at": int(expires.timestamp()) if expires else None,
            "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
            "seconds": str(job.input.get("duration", "")), "size": size, "remixed_from_video_id": None}


async def _answer(send: Send, call: Call, job: Job, render, *, created: bool = False) -> None:
    body = await off_loop(render, job)
    status = 200 if not job.active else 202 if created else 200
    await send_json(send, status, body, call.headers)


# --- handlers --------------------------------------------------------------------------------------------

async def _route(body: dict, capability: str) -> Route:
    return await choose_route(await catalog(), model=body.get("model"), intent=body.get("intent"),
                              capability=capability)


def _idempotency_key(scope: Scope, body: dict) -> str | None:
    key = header(scope, b"idempotency-key") or body.get("idempotency_key")
    return str(key)[:200] if key else None


def webhook_url_checked(value: object) -> str:
    if not value:
        return ""
    try:
        return webhook_url_clean(str(value))
    except OrgRuleError as exc:
        raise invalid_request(str(exc), code="invalid_webhook_url", param="webhookUrl") from None


@endpoint("videos.generate")
async def videos_generate(call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """POST /videos/generate: holds the connection until the clip is ready (up to a bound), and answers the
    job either way — 200 once it ended, 202 while it runs — with jobId and pollUrl."""
    ctx = await authenticate(scope)
    body, _ = await body_read(scope, receive, limit=BODY_LIMIT)
    route = await _route(body, "video")
    image_urls = body.get("image_urls") or []
    if not isinstance(image_urls, list):
        raise invalid_request("`image_urls` is a list of URLs.", code="invalid_value", param="image_urls")
    spec = _spec(route, prompt=body.get("prompt"), seconds=body.get("duration"),
                 aspect_ratio=body.get("aspect_ratio"), resolution=body.get("resolution"),
                 image=_inline_image(body.get("image")), image_url=image_urls[0] if image_urls else None,
                 last_image_url=body.get("last_image_url"),
                 extra={k: v for k, v in body.items() if k not in GENERATE_FIELDS})
    job = await _submit(call, ctx, route, spec, endpoint_name="videos.generate", input=_stored_input(spec, body),
                        idempotency_key=_idempotency_key(scope, body),
                        webhook_url=webhook_url_checked(body.get("webhookUrl")))
    job = await wait_for(job, wait_seconds(scope, body, default=settings.HYPEREAL["JOB_WAIT_SECONDS"]))
    await _answer(send, call, job, job_json, created=True)


@endpoint("videos")
async def videos_create(call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """POST /videos in OpenAI's shape (multipart or JSON: model, prompt, seconds, size, input_reference)."""
    ctx = await authenticate(scope)
    body, files = await body_read(scope, receive, limit=BODY_LIMIT)
    route = await _route(body, "video")
    size = body.get("size") or "1280x720"
    if size not in OPENAI_SIZES:
        raise invalid_request(f"`size` must be one of {', '.join(OPENAI_SIZES)}.", code="invalid_value",
                              param="size")
    aspect_ratio, resolution = OPENAI_SIZES[size]
    reference = files.get("input_reference") or [None]
    spec = _spec(route, prompt=body.get("prompt"), seconds=body.get("seconds"), aspect_ratio=aspect_ratio,
                 resolution=resolution, image=reference[0], image_url=None,
                 last_image_url=None, extra={k: v for k, v in body.items() if k not in OPENAI_FIELDS})
    job = await _submit(call, ctx, route, spec, endpoint_name="videos", input=_stored_input(spec, body),
                        idempotency_key=_idempotency_key(scope, body), webhook_url="")
    job = await wait_for(job, wait_seconds(scope, body, default=0))
    await _answer(send, call, job, video_json)


async def _job(ctx: KeyContext, job_id: str, *, fresh: bool) -> Job:
    """The caller's organization's job (404 for anyone else's), polled first when a reader may."""
    def load() -> Job | None:
        job = jobs.job_get(organization_id=ctx.org_id, job_id=job_id)
        return refreshed(job.pk) if job is not None and fresh and job.active else job

    job = await off_loop(load)
    if job is None:
        raise GatewayError(404, "invalid_request_error", f"No such job: {job_id}.", "job_not_found",
                           {"param": "id"})
    return job


@endpoint("jobs")
async def job_retrieve(call: Call, scope: Scope, receive: Receive, send: Send, job_id: str) -> None:
    ctx = await authenticate(scope)
    await _answer(send, call, await _job(ctx, job_id, fresh=True), job_json)


@endpoint("videos")
async def video_retrieve(call: Call, scope: Scope, receive: Receive, send: Send, job_id: str) -> None:
    ctx = await authenticate(scope)
    await _answer(send, call, await _job(ctx, job_id, fresh=True), video_json)


@endpoint("jobs")
async def job_cancel(call: Call, scope: Scope, receive: Receive, send: Send, job_id: str) -> None:
    """POST /jobs/{id}/cancel: the hold is released unless the provider had already finished the job."""
    ctx = await authenticate(scope)
    job = await _job(ctx, job_id, fresh=False)
    try:
        await off_loop(jobs.job_cancel, job=job)
    except UpstreamError as exc:
        raise GatewayError(502, "upstream_error", f"The provider could not be told to cancel: {exc}.") from None
    await _answer(send, call, await _job(ctx, job_id, fresh=False), job_json)


def _first_output(job: Job) -> StoredFile | None:
    files = job.output.get("files", [])
    return stored_file_get(organization_id=job.organization_id, file_id=files[0]["id"]) if files else None


async def _content(call: Call, send: Send, job: Job) -> None:
    file = await off_loop(_first_output, job)
    if file is None:
        raise GatewayError(404, "invalid_request_error", "This job has no output yet.", "content_not_ready")
    stream = await off_loop(stored_file_open, file)
    try:
        await send({"type": "http.response.start", "status": 200, "headers": encode_headers({
            **call.headers, "content-type": file.content_type, "content-length": str(file.size),
            "content-disposition": f'inline; filename="{file.filename}"'})})
        while chunk := await off_loop(stream.read, 1 << 20):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        await off_loop(stream.close)


@endpoint("jobs")
async def job_content(call: Call, scope: Scope, receive: Receive, send: Send, job_id: str) -> None:
    """GET /jobs/{id}/content: the job's (first) output file, streamed."""
    await _content(call, send, await _job(await authenticate(scope), job_id, fresh=False))


@endpoint("videos")
async def video_content(call: Call, scope: Scope, receive: Receive, send: Send, job_id: str) -> None:
    """GET /videos/{id}/content?variant=video: the mp4, as the openai SDK's download_content reads it."""
    variant = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("variant", ["video"])[0]
    if variant != "video":
        raise invalid_request("Only `variant=video` is kept.", code="invalid_value", param="variant")
    await _content(call, send, await _job(await authenticate(scope), job_id, fresh=False))


@endpoint("jobs.callback")
async def job_callback(call: Call, scope: Scope, receive: Receive, send: Send, token: str) -> None:
    """A provider's webhook for one job, on its unguessable path: recorded once per delivery (fal's
    request_id with its status, a Standard Webhooks webhook-id), then the job is polled at once."""
    body, _ = await body_read(scope, receive, limit=BODY_LIMIT)
    dedupe = header(scope, b"webhook-id") or f"{body.get('request_id') or body.get('id')}:{body.get('status')}"
    job = await off_loop(jobs.job_callback, token=token, dedupe_key=dedupe, payload=body)
    if job is None:
        raise GatewayError(404, "invalid_request_error", "No such job callback.", "not_found")
    if job.active:
        await off_loop(job_poll_now.delay, job.pk)
    await send_json(send, 200, {"received": True}, call.headers)

