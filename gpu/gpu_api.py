"""Serverless GPU on the model API: hosted GPU models (/v1/gpu/{slug}), runs of an organization's own
deployments (/v1/gpu/run/{slug}), and their jobs (/v1/gpu/jobs/{id}).

Each call is a job of the engine (gpu.jobs): its worst case held at submit (the model's or deployment's
max seconds × its per-second price, or its price per call), submitted to the compute provider's endpoint
with ``policy.executionTimeout`` and ``ttl`` so the provider enforces the cap too, and settled on the
execution time the provider reports (every started second, never above the max). A model marked sync is
answered inline when it finishes within the wait (RunPod's /runsync); everything else answers 202 and is
polled — on every read too, at most once a second — until it ends.
"""

import logging

from django.conf import settings

from apikeys.limits import spend_month
from billing.pricing import UnitPrice, unit_cost
from billing.services import InsufficientCredits
from gateway import quota
from gateway.auth import KeyContext, authenticate
from gateway.call import Call
from gateway.errors import GatewayError, invalid_request
from gateway.http import Receive, Scope, Send, send_json
from gpu import jobs
from gpu.compute import RUNPOD
from gpu.deployments import deployment_price
from gpu.forms import body_read
from gpu.jobs_api import (
    BODY_LIMIT,
    endpoint,
    job_json,
    refreshed,
    wait_for,
    wait_seconds,
    webhook_url_checked,
)
from gpu.models import Deployment, GpuModel, Job
from gpu.upstreams import SUCCEEDED, JobTarget, Submitted, UpstreamError
from gpu.work import off_loop

log = logging.getLogger(__name__)


def _found(obj, what: str, slug: str):
    if obj is None:
        code = what.lower().replace(" ", "_") + "_not_found"
        raise GatewayError(404, "invalid_request_error", f"No such {what}: {slug}.", code, {"param": "slug"})
    return obj


def _input(body: dict) -> dict:
    payload = body.get("input")
    if not isinstance(payload, dict):
        raise invalid_request("`input` is required: an object for the worker.", code="missing_required_parameter",
                              param="input")
    return payload


async def _run(call: Call, ctx: KeyContext, *, kind: str, model: str, endpoint_name: str, compute, endpoint_id: str,
               price_unit: str, unit_price: int, max_seconds: int, payload: dict, webhook_url: str,
               deployment_id: int | None, idempotency_key: str | None, sync_wait: float) -> Job:
    """Hold, submit (``sync_wait`` > 0: /runsync waiting that long), and record what the provider said."""
    per_second = price_unit == "second"
    units = max_seconds if per_second else 1
    price = UnitPrice(unit_price, max_units=units)
    ask = jobs.JobAsk(organization_id=ctx.org_id, api_key_id=ctx.key_id, api_key_name=ctx.name, kind=kind,
                      model=model, endpoint=endpoint_name, request_id=call.request_id, price_unit=price_unit,
                      price=price, units=units, input={k: v for k, v in payload.items() if k != "__sim"},
                      spend_month=spend_month(), idempotency_key=idempotency_key, webhook_url=webhook_url)
    amount = unit_cost(price, units)
    reservation = await quota.take(ctx, amount=amount, tokens=0, floor=0)
    taken = 0
    try:
        job, created = await off_loop(jobs.job_create, ask=ask, compute_id=compute.pk, upstream_model=endpoint_id,
                                      deployment_id=deployment_id)
        if not created:
            return job
        taken = amount  # the reservation is the job's hold now
    except InsufficientCredits:
        raise GatewayError(402, "insufficient_credits", "Insufficient credits: the balance cannot cover this "
                           "call's most it can cost. Top up to continue.", "insufficient_credits") from None
    finally:
        quota.settle(reservation, cost=taken, tokens=0)
    target = JobTarget(kind=compute.kind, base_url=compute.queue_url.rstrip("/"), api_key=compute.api_key,
                       upstream_model=endpoint_id)
    callback = f"{settings.PUBLIC_URL}/api/v1/jobs/callbacks/{job.callback_token}"
    try:
        run = await off_loop(RUNPOD.submit, target, payload, max_seconds=max_seconds, webhook=callback,
                             wait_ms=int(sync_wait * 1000) if sync_wait else None)
    except UpstreamError as exc:
        await off_loop(jobs.job_finish, job_id=job.pk, status=Job.Status.FAILED,
                       error=("upstream_error", f"The compute provider refused the job: {exc}."))
        raise GatewayError(502 if exc.retryable else exc.status or 400, "upstream_error",
                           f"The compute provider refused the job: {exc}.") from None
    job = await off_loop(jobs.job_submitted, job=job, submitted=Submitted(upstream_id=run.upstream_id))
    if run.status.state != SUCCEEDED:
        return job
    return await off_loop(refreshed, job.pk)  # it finished inside /runsync: settle it now


def gpu_json(job: Job) -> dict:
    """A GPU job as /v1/gpu answers it: the reference's fields for models and deployment runs alike."""
    answer = job_json(job)
    result = job.output.get("result")
    return {"id": job.public_id, "job_id": job.public_id, "object": "gpu.job", "model": job.model,
            "status": job.status, "provider_job_id": job.upstream_id or None,
            "pollUrl": f"/v1/gpu/jobs/{job.public_id}",
            "outputs": [o["url"] for o in answer["outputs"]],
            "output": _output_with_urls(result, answer["outputs"]) if result is not None else None,
            "error": answer["error"], "executionMs": job.exec_ms, "durationMs": job.exec_ms,
            "queueMs": job.queued_ms, "costCredits": answer["creditsCharged"],
            "creditsCharged": answer["creditsCharged"], "creditsHeld": answer["creditsHeld"],
            "createdAt": answer["createdAt"], "completedAt": answer["completedAt"]}


def _output_with_urls(result: object, outputs: list[dict]) -> object:
    """The worker's output with each inline file replaced by its stored copy's URL (in order)."""
    if not isinstance(result, dict):
        return result
    urls = {kind: iter([o["url"] for o in outputs if o["contentType"].startswith(kind)])
            for kind in ("image/", "video/")}

    def linked(item: object, kind: str) -> object:
        return next(urls[kind], None) if isinstance(item, dict) and item.get("type") == "base64" else item

    shown = dict(result)
    if isinstance(result.get("images"), list):
        shown["images"] = [linked(image, "image/") for image in result["images"]]
    if "video" in result:
        shown["video"] = linked(result["video"], "video/")
    return shown


async def _answer(send: Send, call: Call, job: Job) -> None:
    await send_json(send, 202 if job.active else 200, await off_loop(gpu_json, job), call.headers)


@endpoint("gpu")
async def gpu_model_call(call: Call, scope: Scope, receive: Receive, send: Send, slug: str) -> None:
    """POST /v1/gpu/{slug} {"input": …}: sync models answer inline when done in time, others 202 — unless
    the client waits for them, as for a deployment's run."""
    ctx = await authenticate(scope)
    body, _ = await body_read(scope, receive, limit=BODY_LIMIT)
    model = _found(await off_loop(_gpu_model, slug), "GPU model", slug)
    job = await _run(call, ctx, kind=Job.Kind.GPU, model=model.slug, endpoint_name="gpu", compute=model.compute,
                     endpoint_id=model.endpoint_id, price_unit=model.price_unit, unit_price=model.unit_price,
                     max_seconds=model.max_seconds, payload=_input(body),
                     webhook_url=webhook_url_checked(body.get("webhookUrl")), deployment_id=None,
                     idempotency_key=body.get("idempotency_key"),
                     sync_wait=min(model.max_seconds, settings.HYPEREAL["JOB_WAIT_SECONDS"]) if model.sync else 0)
    job = await wait_for(job, wait_seconds(scope, body, default=0))  # `Prefer: wait=N` or "sync": true
    await _answer(send, call, job)


@endpoint("gpu.run")
async def deployment_run(call: Call, scope: Scope, receive: Receive, send: Send, slug: str) -> None:
    """POST /v1/gpu/run/{slug} {"input": {..., "workflow_overrides": …}}: a run of the organization's
    deployment; async (202) unless ``"sync": true``, which waits up to 240 s."""
    ctx = await authenticate(scope)
    body, _ = await body_read(scope, receive, limit=BODY_LIMIT)
    deployment = _found(await off_loop(_deployment, ctx.org_id, slug), "deployment", slug)
    if deployment.status != Deployment.Status.READY or not deployment.endpoint_id:
        raise GatewayError(409, "invalid_request_error", f"The deployment {slug} is not ready.", "deployment_not_ready")
    job = await _run(call, ctx, kind=Job.Kind.GPU_RUN, model=deployment.slug, endpoint_name="gpu.run",
                     compute=deployment.compute, endpoint_id=deployment.endpoint_id, price_unit="second",
                     unit_price=deployment_price(deployment), max_seconds=deployment.max_seconds,
                     payload=_input(body), webhook_url=deployment.webhook_url, deployment_id=deployment.pk,
                     idempotency_key=body.get("idempotency_key"), sync_wait=0)
    job = await wait_for(job, wait_seconds(scope, body, default=0))
    await _answer(send, call, job)


@endpoint("gpu")
async def gpu_job_retrieve(call: Call, scope: Scope, receive: Receive, send: Send, job_id: str) -> None:
    """GET /v1/gpu/jobs/{id}: asks the provider first (at most once a second) while the job runs."""
    ctx = await authenticate(scope)

    def load() -> Job | None:
        job = jobs.job_get(organization_id=ctx.org_id, job_id=job_id)
        if job is None or job.kind not in (Job.Kind.GPU, Job.Kind.GPU_RUN):
            return None
        return refreshed(job.pk) if job.active else job

    job = await off_loop(load)
    if job is None:
        raise GatewayError(404, "invalid_request_error", f"No such job: {job_id}.", "job_not_found",
                           {"param": "id"})
    await send_json(send, 200, await off_loop(gpu_json, job), call.headers)


def _gpu_model(slug: str) -> GpuModel | None:
    return GpuModel.objects.filter(slug=slug, enabled=True, compute__enabled=True).select_related("compute").first()


def _deployment(organization_id: int, slug: str) -> Deployment | None:
    return Deployment.objects.filter(organization_id=organization_id, slug=slug).select_related("compute").first()
