"""Compute providers: the engines GPU models and deployments run on. Hypereal schedules nothing itself.

One interface — endpoint create/update/delete, health, purge, and a job's submit, status, outputs and
cancel — with one driver today, RunPod serverless, speaking its REST API (templates and endpoints) and its
queue API (``/v2/{endpoint}/run``, ``/runsync``, ``/status/{id}``, ``/cancel/{id}``, ``/purge-queue``,
``/health``). The simulator speaks the same protocol, so "the simulator driver" is this driver pointed at
it (a ComputeProvider whose URLs are the simulator's). The job methods are the job engine's adapter for
GPU jobs: ``policy.executionTimeout`` and ``ttl`` go with every submit so RunPod enforces the caps too.
"""

import base64
import binascii
import secrets
from dataclasses import dataclass, field

from gpu.upstreams import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TIMED_OUT,
    JobTarget,
    Output,
    Status,
    UpstreamError,
    send,
)

RUNPOD_STATES = {"IN_QUEUE": QUEUED, "IN_PROGRESS": RUNNING, "RUNNING": RUNNING, "COMPLETED": SUCCEEDED,
                 "FAILED": FAILED, "CANCELLED": CANCELLED, "TIMED_OUT": TIMED_OUT}
TTL_GRACE_MS = 10 * 60_000  # a queued job may wait this long beyond its run time before RunPod drops it


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """What a deployment asks of its endpoint."""

    name: str
    image: str
    gpu_types: list[str]
    workers_min: int
    workers_max: int
    idle_timeout: int
    execution_timeout_ms: int
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Endpoint:
    endpoint_id: str
    template_id: str


@dataclass(frozen=True, slots=True)
class EndpointHealth:
    """The provider's own view of an endpoint: its workers and its queue."""

    workers_idle: int
    workers_running: int
    jobs_in_queue: int
    jobs_in_progress: int
    jobs_completed: int
    jobs_failed: int


@dataclass(frozen=True, slots=True)
class Run:
    """A submitted job as the provider first answered it (a sync submit may have finished it already)."""

    upstream_id: str
    status: Status
    output: object = None


@dataclass(frozen=True, slots=True)
class ComputeTarget:
    """Where a compute provider's APIs are, and its key (decrypted at use)."""

    queue_url: str
    rest_url: str
    api_key: str


class RunPod:
    """RunPod serverless. Its key goes as a bearer token to both APIs."""

    def _headers(self, api_key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"}

    # --- endpoints (REST) ----------------------------------------------------------------------------

    def endpoint_create(self, target: ComputeTarget, spec: EndpointSpec) -> Endpoint:
        """A template for the image and its environment, then an endpoint running it."""
        template = self._template_create(target, spec)
        endpoint = send("POST", f"{target.rest_url}/endpoints", headers=self._headers(target.api_key),
                        json={"name": spec.name, "templateId": template, **self._scaling(spec)}).json()
        return Endpoint(endpoint_id=endpoint["id"], template_id=template)

    def template_switch(self, target: ComputeTarget, endpoint: Endpoint, spec: EndpointSpec) -> str:
        """A new template for a new image or environment, the endpoint moved onto it, the old one deleted."""
        template = self._template_create(target, spec)
        send("PATCH", f"{target.rest_url}/endpoints/{endpoint.endpoint_id}", headers=self._headers(target.api_key),
             json={"templateId": template})
        self._delete(target, f"templates/{endpoint.template_id}")
        return template

    def _template_create(self, target: ComputeTarget, spec: EndpointSpec) -> str:
        return send("POST", f"{target.rest_url}/templates", headers=self._headers(target.api_key), json={
            "name": f"{spec.name}-{secrets.token_hex(3)}", "imageName": spec.image, "isServerless": True,
            "env": spec.env, "containerDiskInGb": 20}).json()["id"]

    def endpoint_update(self, target: ComputeTarget, endpoint_id: str, spec: EndpointSpec) -> None:
        send("PATCH", f"{target.rest_url}/endpoints/{endpoint_id}", headers=self._headers(target.api_key),
             json={"name": spec.name, **self._scaling(spec)})

    def endpoint_delete(self, target: ComputeTarget, endpoint: Endpoint) -> None:
        """The endpoint, then its template."""
        self._delete(target, f"endpoints/{endpoint.endpoint_id}")
        self._delete(target, f"templates/{endpoint.template_id}")

    def _delete(self, target: ComputeTarget, path: str) -> None:
        try:
            send("DELETE", f"{target.rest_url}/{path}", headers=self._headers(target.api_key))
        except UpstreamError as exc:
            if exc.status != 404:  # already gone counts as deleted
                raise

    @staticmethod
    def _scaling(spec: EndpointSpec) -> dict:
        return {"gpuTypeIds": spec.gpu_types, "gpuCount": 1, "workersMin": spec.workers_min,
                "workersMax": spec.workers_max, "idleTimeout": spec.idle_timeout,
                "executionTimeoutMs": spec.execution_timeout_ms, "scalerType": "QUEUE_DELAY", "scalerValue": 4}

    def health(self, target: ComputeTarget, endpoint_id: str) -> EndpointHealth:
        answer = send("GET", f"{target.queue_url}/{endpoint_id}/health", headers=self._headers(target.api_key)).json()
        jobs, workers = answer.get("jobs") or {}, answer.get("workers") or {}
        return EndpointHealth(workers_idle=workers.get("idle", 0), workers_running=workers.get("running", 0),
                              jobs_in_queue=jobs.get("inQueue", 0), jobs_in_progress=jobs.get("inProgress", 0),
                              jobs_completed=jobs.get("completed", 0), jobs_failed=jobs.get("failed", 0))

    def purge(self, target: ComputeTarget, endpoint_id: str) -> int:
        """Drop the endpoint's queued jobs (running ones go on); how many were removed."""
        answer = send("POST", f"{target.queue_url}/{endpoint_id}/purge-queue", headers=self._headers(target.api_key))
        return int(answer.json().get("removed", 0))

    # --- jobs (queue) --------------------------------------------------------------------------------

    def submit(self, target: JobTarget, payload: dict, *, max_seconds: int, webhook: str | None,
               wait_ms: int | None = None) -> Run:
        """``/run``, or ``/runsync`` waiting up to ``wait_ms`` (it answers the job as it then is)."""
        body = {"input": payload, "policy": {"executionTimeout": max_seconds * 1000,
                                             "ttl": max_seconds * 1000 + TTL_GRACE_MS}}
        if webhook:
            body["webhook"] = webhook
        path, params = ("runsync", {"wait": wait_ms}) if wait_ms else ("run", None)
        answer = send("POST", f"{target.base_url}/{target.upstream_model}/{path}", params=params, json=body,
                      headers=self._headers(target.api_key)).json()
        return Run(upstream_id=answer["id"], status=self._status(answer), output=answer.get("output"))

    def status(self, target: JobTarget, upstream_id: str, urls: dict[str, str]) -> Status:
        answer = send("GET", f"{target.base_url}/{target.upstream_model}/status/{upstream_id}",
                      headers=self._headers(target.api_key)).json()
        return self._status(answer)

    def outputs(self, target: JobTarget, upstream_id: str, urls: dict[str, str], status: Status) -> list[Output]:
        return outputs_of(status.result)  # a COMPLETED status carries the output (kept 30 minutes)

    def download_headers(self, target: JobTarget) -> dict[str, str]:
        return {}

    def cancel(self, target: JobTarget, upstream_id: str, urls: dict[str, str]) -> None:
        send("POST", f"{target.base_url}/{target.upstream_model}/cancel/{upstream_id}",
             headers=self._headers(target.api_key))

    @staticmethod
    def _status(answer: dict) -> Status:
        state = RUNPOD_STATES.get(answer.get("status"), RUNNING)  # an unknown state is still running
        error = answer.get("error")
        return Status(state=state, exec_ms=answer.get("executionTime"), queued_ms=answer.get("delayTime"),
                      error_code="worker_error" if error else "", error_message=str(error or "")[:500],
                      result=answer.get("output"))


def outputs_of(output: object) -> list[Output]:
    """The files in a worker's output, in the ComfyUI worker's shape (``{filename, type: base64 | s3_url,
    data}``): its ``images``, and a video model's ``video``. Other output is JSON, kept with the job."""
    if not isinstance(output, dict):
        return []
    items = [(item, "image/png") for item in output.get("images") or [] if isinstance(item, dict)]
    if isinstance(output.get("video"), dict):
        items.append((output["video"], "video/mp4"))
    files = []
    for item, content_type in items:
        name = str(item.get("filename") or ("clip.mp4" if content_type == "video/mp4" else "image.png"))
        if item.get("type") == "base64":
            try:
                data = base64.b64decode(str(item.get("data", "")), validate=True)
            except (binascii.Error, ValueError):
                continue
            files.append(Output(url="", content_type=content_type, filename=name, with_key=False, data=data))
        elif item.get("type") == "s3_url":
            files.append(Output(url=str(item.get("data")), content_type=content_type, filename=name,
                                with_key=False))
    return files


RUNPOD = RunPod()
DRIVERS = {"runpod": RUNPOD}  # compute provider kind → its driver


def result_without_inline(result: object) -> object:
    """A worker's output as a job keeps it: inline file bytes (base64) dropped, being in storage."""
    if not isinstance(result, dict):
        return result

    def slim(item: object) -> object:
        inline = isinstance(item, dict) and item.get("type") == "base64"
        return {k: v for k, v in item.items() if k != "data"} if inline else item

    kept = dict(result)
    if isinstance(result.get("images"), list):
        kept["images"] = [slim(image) for image in result["images"]]
    if isinstance(result.get("video"), dict):
        kept["video"] = slim(result["video"])
    return kept
