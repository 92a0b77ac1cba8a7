"""RunPod Serverless: the queue API (``https://api.runpod.ai/v2`` → ``/runpod/v2``) and REST endpoint
management (``https://rest.runpod.io/v1/endpoints`` and ``/templates`` → ``/runpod/rest/v1/…``), state in
memory.

Queue: ``POST /{ep}/run`` → ``{id, status: IN_QUEUE}``; ``/runsync[?wait=ms]`` waits (on the sim clock, 1 s to
5 min, default 90 s) and answers the job as it then is; ``GET /status/{id}`` and ``/stream/{id}`` →
``{delayTime, executionTime, id, status, output | error}`` with IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED,
CANCELLED, TIMED_OUT; ``POST /cancel/{id}``, ``/retry/{id}`` (FAILED or TIMED_OUT only; the rerun succeeds),
``/purge-queue``; ``GET /health``. A body's ``webhook`` gets the status body when the job ends, tried twice more
10 s apart unless answered 2xx; ``policy.executionTimeout`` ends a longer run as TIMED_OUT, ``policy.ttl``
deletes the job (status 404) if still unfinished; results are kept 30 min (1 min for runsync), then 404.
The queue holds more than max(50, workersMax × 500) jobs only by answering 429. Endpoint ids nobody created
work as endpoints with REST defaults (so a fixed id serves the demo); deleted ones answer 404.

Workers: an endpoint's image name (or its id, for endpoints nobody created) says what it runs — see ``_work``.

Scripting: ``input.__sim`` (or a top-level ``sim`` object, or a path prefix) takes the job directives of
``sim.http.Directives``, with RunPod's names ``delay_ms`` for queue_ms and ``exec_ms`` for run_ms; outcomes
may be spelt FAILED, CANCELLED, TIMED_OUT. Workers: a ComfyUI endpoint (its image names comfy) or a job with
a ``workflow`` runs ``sim.comfy``; any other echoes its input as ``{"echo": input}``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import string
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sim import clock, comfy, jobs, media, webhooks
from sim.http import Context, Json, Raw, SimError, sim_object
from sim.jobs import Job

STATUSES = {
    jobs.QUEUED: "IN_QUEUE",
    jobs.RUNNING: "IN_PROGRESS",
    jobs.COMPLETED: "COMPLETED",
    "failed": "FAILED",
    "cancelled": "CANCELLED",
    "timed_out": "TIMED_OUT",
}
ALIASES = {"delay_ms": "queue_ms", "exec_ms": "run_ms"}
RETENTION_MS = {False: 30 * 60_000, True: 60_000}  # by whether the job came through /runsync
WEBHOOK_RETRIES = (10_000, 10_000)
DAY_MS, WEEK_MS = 86_400_000, 7 * 86_400_000
SYNC_WAIT_MS = (1_000, 90_000, 300_000)  # least, default, most
POLL_S = 0.01  # how often a waiting /runsync looks at its job
ENDPOINT_DEFAULTS = {
    "computeType": "GPU",
    "gpuCount": 1,
    "gpuTypeIds": [],
    "workersMin": 0,
    "workersMax": 3,
    "idleTimeout": 5,
    "scalerType": "QUEUE_DELAY",
    "scalerValue": 4,
    "executionTimeoutMs": 600_000,
    "flashboot": False,
    "dataCenterIds": [],
    "env": {},
    "networkVolumeId": None,
}
SCALER_TYPES = ("QUEUE_DELAY", "REQUEST_COUNT")


@dataclass(kw_only=True)
class Run(Job):
    endpoint: str
    input: dict
    output: dict | None
    sync: bool
    retried: bool = False

    def gone(self, now: int) -> bool:
        """Deleted: by its ttl while unfinished, or once its result's retention is over."""
        if self.state(now) == jobs.EXPIRED:
            return True
        ended = self.ended_ms(now)
        return ended is not None and now >= ended + RETENTION_MS[self.sync]


ENDPOINTS: dict[str, dict] = {}
TEMPLATES: dict[str, dict] = {}
DELETED: set[str] = set()
RUNS: dict[str, Run] = {}
_hooks: dict[str, webhooks.Hook] = {}  # by job id, to send again after a retry


def error(status: int, message: str) -> dict:
    return {"error": message}


def directives(body: dict) -> tuple[dict, dict]:
    """A body's directives: its ``sim`` object, then ``input.__sim`` in RunPod's names (which wins)."""
    overrides, body = sim_object(body)
    job_input = body.get("input")
    if not isinstance(job_input, dict) or "__sim" not in job_input:
        return overrides, body
    script = job_input["__sim"]
    if not isinstance(script, dict):
        raise SimError(400, "input.__sim must be an object of directives.")
    renamed = {ALIASES.get(k, k): v for k, v in script.items()}
    body = {**body, "input": {k: v for k, v in job_input.items() if k != "__sim"}}
    return {**overrides, **renamed}, body


# The queue API


def run(body: dict, ctx: Context) -> Json:
    return Json(_status(_submit(body, ctx, sync=False), clock.now_ms(), brief=True))


async def runsync(body: dict, ctx: Context) -> Json:
    least, default, most = SYNC_WAIT_MS
    wait = min(max(int(ctx.query.get("wait", default)), least), most)
    job = _submit(body, ctx, sync=True)
    deadline = job.submitted_ms + wait
    while job.ended_ms(clock.now_ms()) is None and clock.now_ms() < deadline:
        await asyncio.sleep(POLL_S)
    return Json(_status(job, clock.now_ms()))


def status(body: dict, ctx: Context) -> Json:
    return Json(_status(_job(ctx), clock.now_ms()))


def stream(body: dict, ctx: Context) -> Json:
    job, now = _job(ctx), clock.now_ms()
    body = _status(job, now)
    chunks = [{"output": body["output"]}] if "output" in body else []
    return Json({"status": body["status"], "stream": chunks})


def cancel(body: dict, ctx: Context) -> Json:
    job, now = _job(ctx), clock.now_ms()
    job.cancel(now)
    return Json(_status(job, now, brief=True))


def retry(body: dict, ctx: Context) -> Json:
    job, now = _job(ctx), clock.now_ms()
    state = STATUSES[job.state(now)]
    if state not in ("FAILED", "TIMED_OUT"):
        raise SimError(400, f"Job {job.id} is {state}: only FAILED or TIMED_OUT jobs can be retried.")
    job.rerun(now)
    job.retried = True
    if hook := _hooks.get(job.id):
        webhooks.watch(job, hook)
    return Json(_status(job, now, brief=True))


def purge_queue(body: dict, ctx: Context) -> Json:
    endpoint, now = _endpoint(ctx.params["endpoint"]), clock.now_ms()
    queued = [j for j in RUNS.values() if j.endpoint == endpoint["id"] and j.state(now) == jobs.QUEUED]
    for job in queued:
        del RUNS[job.id]
        webhooks.forget(job)
    return Json({"removed": len(queued), "status": "completed"})


def health(body: dict, ctx: Context) -> Json:
    endpoint, now = _endpoint(ctx.params["endpoint"]), clock.now_ms()
    mine = [j for j in RUNS.values() if j.endpoint == endpoint["id"] and not j.gone(now)]
    states = [STATUSES[j.state(now)] for j in mine]
    running = states.count("IN_PROGRESS")
    return Json(
        {
            "jobs": {
                "completed": states.count("COMPLETED"),
                "failed": states.count("FAILED") + states.count("TIMED_OUT"),
                "inProgress": running,
                "inQueue": states.count("IN_QUEUE"),
                "retried": sum(j.retried for j in mine),
            },
            "workers": {"idle": max(endpoint["workersMin"] - running, 0), "running": running},
        }
    )


def _submit(body: dict, ctx: Context, sync: bool) -> Run:
    endpoint, now = _endpoint(ctx.params["endpoint"]), clock.now_ms()
    job_input = body.get("input")
    if not isinstance(job_input, dict):
        raise SimError(400, "The request needs an 'input' object.")
    policy = body.get("policy") or {}
    timeout = _policy(policy, "executionTimeout", endpoint["executionTimeoutMs"], 5_000)
    ttl = _policy(policy, "ttl", DAY_MS, 10_000)
    limit = max(50, endpoint["workersMax"] * 500)
    queued = sum(1 for j in RUNS.values() if j.endpoint == endpoint["id"] and j.state(now) == jobs.QUEUED)
    if queued > limit:
        raise SimError(429, f"The queue of endpoint {endpoint['id']} is full ({queued} jobs waiting).")
    output, failure = _work(endpoint, job_input)
    script = ctx.directives
    if failure is not None:
        script = replace(script, outcome="failed", error_message=failure)
    job = Run(
        id=f"sync-{uuid.uuid4()}" if sync else str(uuid.uuid4()),
        script=script,
        submitted_ms=now,
        execution_timeout_ms=timeout,
        expires_ms=now + ttl,
        endpoint=endpoint["id"],
        input=job_input,
        output=output,
        sync=sync,
    )
    RUNS[job.id] = job
    if isinstance(url := body.get("webhook"), str) and url:
        hook = webhooks.Hook(url, lambda: _webhook_body(job), retries=WEBHOOK_RETRIES)
        _hooks[job.id] = hook
        webhooks.watch(job, hook)
    return job


def _policy(policy: dict, name: str, default: int, least: int) -> int:
    value = policy.get(name, default)
    if not isinstance(value, int) or not least <= value <= WEEK_MS:
        raise SimError(400, f"policy.{name} must be from {least} to {WEEK_MS} ms.")
    return value


def _work(endpoint: dict, job_input: dict) -> tuple[dict | None, str | None]:
    """What the endpoint's worker answers, by what it runs (its image's name, or its id): ComfyUI's output
    or error; a text-to-image model's PNGs (sdxl, flux…) or a video model's MP4 (wan…), in the ComfyUI
    worker's base64 shape; otherwise the input echoed back."""
    worker = f"{(endpoint.get('template') or {}).get('imageName', '')} {endpoint.get('id', '')}".lower()
    if "comfy" in worker or "workflow" in job_input:
        return comfy.run(job_input)
    seed = json.dumps(job_input, sort_keys=True)
    if any(name in worker for name in ("sdxl", "flux", "diffusion")):
        width, height = int(job_input.get("width", 1024)), int(job_input.get("height", 1024))
        data = media.image(width, height, seed)
        return {"images": [{"filename": "out.png", "type": "base64", "data": base64.b64encode(data).decode()}]}, None
    if any(name in worker for name in ("wan", "video")):
        data = media.video(832, 480, float(job_input.get("seconds", 5)), seed)
        return {"video": {"filename": "clip.mp4", "type": "base64", "data": base64.b64encode(data).decode()}}, None
    return {"echo": job_input}, None


def _status(job: Run, now: int, brief: bool = False) -> dict:
    """The /status body (``brief``: just id and status, as /run, /cancel and /retry answer)."""
    state = job.state(now)
    name = "WARMING" if state == jobs.QUEUED and job.script.unknown_status else STATUSES[state]
    if brief:
        return {"id": job.id, "status": name}
    body = {"delayTime": job.queued_for(now), "executionTime": job.ran_for(now), "id": job.id, "status": name}
    if state == jobs.COMPLETED:
        body["output"] = job.output
    elif state == "failed":
        body["error"] = job.script.error_message or "Handler failed"
    return body


def _webhook_body(job: Run) -> bytes:
    end = job.end()
    assert end is not None, "a webhook fires only for a job that ends"
    return json.dumps(_status(job, end[0])).encode()


def _job(ctx: Context) -> Run:
    endpoint = _endpoint(ctx.params["endpoint"])
    job = RUNS.get(ctx.params["id"])
    if job is None or job.endpoint != endpoint["id"] or job.gone(clock.now_ms()):
        raise SimError(404, "request does not exist")
    return job


def _endpoint(endpoint_id: str) -> dict:
    if endpoint_id in DELETED:
        raise SimError(404, f"endpoint {endpoint_id} not found")
    return ENDPOINTS.get(endpoint_id) or {"id": endpoint_id, **ENDPOINT_DEFAULTS}


# REST endpoint management


def create_template(body: dict, ctx: Context) -> Json:
    """``POST /templates``: a worker image and its environment, which endpoints run."""
    name, image = body.get("name"), body.get("imageName")
    if not isinstance(name, str) or not name or not isinstance(image, str) or not image:
        raise SimError(400, "name and imageName are required.")
    if not isinstance(body.get("env", {}), dict):
        raise SimError(400, "env must be an object of strings.")
    template_id = _random_id(10)
    TEMPLATES[template_id] = {
        "id": template_id, "name": name, "imageName": image, "isServerless": bool(body.get("isServerless")),
        "env": body.get("env") or {}, "containerDiskInGb": body.get("containerDiskInGb", 10),
        "category": body.get("category", "NVIDIA"),
    }
    return Json(TEMPLATES[template_id])


def get_template(body: dict, ctx: Context) -> Json:
    return Json(_template(ctx.params["template"]))


def delete_template(body: dict, ctx: Context) -> Raw:
    del TEMPLATES[_template(ctx.params["template"])["id"]]
    return Raw(b"", "application/json", 204)


def _template(template_id: str) -> dict:
    if template_id not in TEMPLATES:
        raise SimError(404, "Template not found.")
    return TEMPLATES[template_id]


def _random_id(length: int) -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(length))


def create_endpoint(body: dict, ctx: Context) -> Json:
    template_id, image = body.get("templateId"), body.get("imageName")
    if not template_id and not image:
        raise SimError(400, "templateId is required (or imageName, which makes a template for it).")
    if template_id and template_id not in TEMPLATES:
        raise SimError(400, f"Template {template_id} does not exist.")
    endpoint_id = _random_id(14)
    template = TEMPLATES.get(template_id) or {"id": _random_id(10), "imageName": image, "isServerless": True}
    endpoint = {
        "id": endpoint_id,
        "name": body.get("name") or f"endpoint-{endpoint_id}",
        "templateId": template["id"],
        "template": template,
        **ENDPOINT_DEFAULTS,
        "createdAt": datetime.fromtimestamp(clock.now_ms() / 1000, UTC).isoformat().replace("+00:00", "Z"),
        "userId": "user_simulator",
        "version": 0,
        "workers": [],
    }
    ENDPOINTS[endpoint_id] = _configured(endpoint, body)
    return Json(ENDPOINTS[endpoint_id])


def list_endpoints(body: dict, ctx: Context) -> Json:
    return Json(list(ENDPOINTS.values()))


def get_endpoint(body: dict, ctx: Context) -> Json:
    return Json(_managed(ctx))


def update_endpoint(body: dict, ctx: Context) -> Json:
    endpoint = _managed(ctx)
    updated = _configured(endpoint, body)
    updated["version"] = endpoint["version"] + 1
    if "templateId" in body:
        updated["template"] = _template(body["templateId"]) if body["templateId"] in TEMPLATES else {
            **endpoint["template"], "id": body["templateId"]}
    ENDPOINTS[endpoint["id"]] = updated
    return Json(updated)


def delete_endpoint(body: dict, ctx: Context) -> Raw:
    endpoint = _managed(ctx)
    del ENDPOINTS[endpoint["id"]]
    DELETED.add(endpoint["id"])
    return Raw(b"", "application/json", 204)


def _managed(ctx: Context) -> dict:
    endpoint = ENDPOINTS.get(ctx.params["endpoint"])
    if endpoint is None:
        raise SimError(404, "Endpoint not found.")
    return endpoint


SETTINGS = {  # what create and update accept, and the type each must have
    "name": str,
    "templateId": str,
    "computeType": str,
    "gpuTypeIds": list,
    "gpuCount": int,
    "workersMin": int,
    "workersMax": int,
    "idleTimeout": int,
    "scalerType": str,
    "scalerValue": int,
    "executionTimeoutMs": int,
    "flashboot": bool,
    "dataCenterIds": list,
    "env": dict,
    "networkVolumeId": str,
}


def _configured(endpoint: dict, body: dict) -> dict:
    """``endpoint`` with the settings in ``body`` applied, once they are valid."""
    settings = {k: v for k, v in body.items() if k in SETTINGS}
    for name, value in settings.items():
        kind = SETTINGS[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise SimError(400, f"{name} must be of type {kind.__name__}.")
    merged = {**endpoint, **settings}
    if merged["workersMin"] < 0 or merged["workersMax"] < merged["workersMin"]:
        raise SimError(400, "workersMax must be at least workersMin, and workersMin at least 0.")
    if merged["scalerType"] not in SCALER_TYPES or merged["scalerValue"] < 1:
        raise SimError(
            400, f"scalerType must be one of {', '.join(SCALER_TYPES)} and scalerValue at least 1."
        )
    if not 1 <= merged["idleTimeout"] <= 3600 or merged["gpuCount"] < 1:
        raise SimError(400, "idleTimeout must be from 1 to 3600 seconds and gpuCount at least 1.")
    return merged
