"""Upstream job APIs: submit a job to a provider, read its status, fetch its result, cancel it.

One adapter per provider kind, each speaking that provider's protocol exactly and answering in the
engine's canonical terms (``Status``): OpenAI's videos API (``POST /videos``, ``GET /videos/{id}``,
``GET /videos/{id}/content``) and fal's queue (submit, then the status, result and cancel URLs its
answer names). A job keeps the exact target that submitted it (``JobTarget``), and every later call
goes to that target, never to a re-resolved one.
"""

import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

from gpu.storage import media_type_of

CONNECT_TIMEOUT, READ_TIMEOUT = 10.0, 60.0
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, TIMED_OUT = (
    "queued", "running", "succeeded", "failed", "cancelled", "timed_out")


@dataclass(frozen=True, slots=True)
class JobTarget:
    kind: str  # the provider's kind: which adapter speaks to it
    base_url: str
    api_key: str
    upstream_model: str


@dataclass(frozen=True, slots=True)
class VideoSpec:
    """A validated video request, in the engine's terms (each adapter maps it onto its provider's fields)."""

    prompt: str
    seconds: int
    aspect_ratio: str
    resolution: str
    image: bytes | None = None  # a first frame sent inline
    image_url: str | None = None  # a first frame by URL
    last_image_url: str | None = None
    extra: dict = field(default_factory=dict)  # model-specific fields the client sent, passed on as they are


@dataclass(frozen=True, slots=True)
class Submitted:
    upstream_id: str
    urls: dict[str, str] = field(default_factory=dict)  # the provider's own status/result/cancel URLs


@dataclass(frozen=True, slots=True)
class Status:
    state: str  # QUEUED … TIMED_OUT
    progress: int | None = None
    error_code: str = ""
    error_message: str = ""
    exec_ms: int | None = None  # how long the provider says it ran
    queued_ms: int | None = None  # how long it waited for a worker
    result: object = None  # a worker's own output, when the status carries it (RunPod)
    seconds: int | None = None  # the clip's length as the provider reports it


@dataclass(frozen=True, slots=True)
class Output:
    url: str
    content_type: str
    filename: str
    with_key: bool  # the download needs the provider's key (OpenAI), or is a plain URL (fal's CDN)
    data: bytes | None = None  # the bytes themselves, when the provider sent them inline (a worker's base64)


class UpstreamError(Exception):
    """The provider could not be asked. ``retryable``: worth asking again (connection errors, 408, 409,
    429, 5xx) rather than the request's own fault; ``retry_after`` is the provider's Retry-After."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True,
                 retry_after: float | None = None, body: object = None):
        super().__init__(message)
        self.status, self.retryable, self.retry_after, self.body = status, retryable, retry_after, body


_clients: dict[int, httpx.Client] = {}  # per process (a forked worker must not share its parent's sockets)


def _client() -> httpx.Client:
    """One pooled client per process, shared by its threads: polls reuse their providers' connections."""
    pid = os.getpid()
    if (client := _clients.get(pid)) is None:
        # One client serves every organization's jobs: a jar that keeps no cookie, so none carries over.
        client = _clients[pid] = httpx.Client(timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
                                              limits=httpx.Limits(max_connections=100), follow_redirects=True,
                                              cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])))
    return client


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code < 400:
        return response
    retry_after = response.headers.get("retry-after")
    try:
        body = response.json()
    except ValueError:
        body = response.text[:500]
    retryable = response.status_code in (408, 409, 429) or response.status_code >= 500
    raise UpstreamError(f"answered {response.status_code}", status=response.status_code, retryable=retryable,
                        retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
                        body=body)


def send(method: str, url: str, **kwargs) -> httpx.Response:
    try:
        return _checked(_client().request(method, url, **kwargs))
    except httpx.HTTPError as exc:
        raise UpstreamError(f"{type(exc).__name__}: {exc}") from None


class OpenAIVideos:
    """OpenAI's videos API (Sora's shape, which OpenAI-compatible video providers keep)."""

    STATES = {"queued": QUEUED, "in_progress": RUNNING, "completed": SUCCEEDED, "failed": FAILED}
    SIZES = {("16:9", "720p"): "1280x720", ("9:16", "720p"): "720x1280",
             ("16:9", "1080p"): "1792x1024", ("9:16", "1080p"): "1024x1792"}

    def _headers(self, target: JobTarget) -> dict[str, str]:
        return {"authorization": f"Bearer {target.api_key}"}

    def submit(self, target: JobTarget, spec: VideoSpec, callback_url: str | None) -> Submitted:
        # OpenAI configures webhooks per project, not per request: the engine polls.
        fields = {**spec.extra, "model": target.upstream_model, "prompt": spec.prompt, "seconds": str(spec.seconds),
                  "size": self.SIZES.get((spec.aspect_ratio, spec.resolution), "1280x720")}
        if spec.image is None:
            body = {"json": fields}
        else:  # a first frame travels as a file part
            media_type = media_type_of(spec.image) or "application/octet-stream"
            body = {"data": fields, "files": {
                "input_reference": ("reference." + media_type.rsplit("/", 1)[-1], spec.image, media_type)}}
        answer = send("POST", f"{target.base_url}/videos", headers=self._headers(target), **body).json()
        return Submitted(upstream_id=answer["id"])

    def status(self, target: JobTarget, upstream_id: str, urls: dict[str, str]) -> Status:
        video = send("GET", f"{target.base_url}/videos/{upstream_id}", headers=self._headers(target)).json()
        error = video.get("error") or {}
        seconds = video.get("seconds")
        return Status(state=self.STATES.get(video.get("status"), RUNNING),  # an unknown state is still running
                      progress=video.get("progress"), error_code=error.get("code") or "",
                      error_message=error.get("message") or "",
                      seconds=int(seconds) if str(seconds or "").isdigit() else None)

    def outputs(self, target: JobTarget, upstream_id: str, urls: dict[str, str], status: Status) -> list[Output]:
        return [Output(url=f"{target.base_url}/videos/{upstream_id}/content", content_type="video/mp4",
                       filename=f"{upstream_id}.mp4", with_key=True)]

    def download_headers(self, target: JobTarget) -> dict[str, str]:
        return self._headers(target)

    def cancel(self, target: JobTarget, upstream_id: str, urls: dict[str, str]) -> None:
        send("DELETE", f"{target.base_url}/videos/{upstream_id}", headers=self._headers(target))


class FalQueue:
    """fal's queue: the submit answer names the request's status, result and cancel URLs."""

    STATES = {"IN_QUEUE": QUEUED, "IN_PROGRESS": RUNNING, "COMPLETED": SUCCEEDED}
    CANCELLED_ERROR = "Request was cancelled"

    def _headers(self, target: JobTarget) -> dict[str, str]:
        return {"authorization": f"Key {target.api_key}"}

    def submit(self, target: JobTarget, spec: VideoSpec, callback_url: str | None) -> Submitted:
        payload = {**spec.extra, "prompt": spec.prompt, "duration": str(spec.seconds),
                   "aspect_ratio": spec.aspect_ratio, "resolution": spec.resolution}
        if spec.image is not None:
            media_type = media_type_of(spec.image) or "image/png"
            payload["image_url"] = f"data:{media_type};base64,{base64.b64encode(spec.image).decode()}"
        elif spec.image_url:
            payload["image_url"] = spec.image_url
        if spec.last_image_url:
            payload["end_image_url"] = spec.last_image_url
        params = {"fal_webhook": callback_url} if callback_url else None
        answer = send("POST", f"{target.base_url}/{target.upstream_model}", json=payload, params=params,
                       headers=self._headers(target)).json()
        return Submitted(upstream_id=answer["request_id"],
                         urls={name: answer[name] for name in ("status_url", "response_url", "cancel_url")})

    def status(self, target: JobTarget, upstream_id: str, urls: dict[str, str]) -> Status:
        answer = send("GET", urls["status_url"], headers=self._headers(target)).json()
        state = self.STATES.get(answer.get("status"), RUNNING)  # an unknown state is still running
        exec_ms = None
        if inference := (answer.get("metrics") or {}).get("inference_time"):
            exec_ms = int(float(inference) * 1000)
        if state == SUCCEEDED and answer.get("error"):  # fal ends failed requests as COMPLETED with an error
            cancelled = answer["error"] == self.CANCELLED_ERROR
            return Status(state=CANCELLED if cancelled else FAILED, exec_ms=exec_ms,
                          error_code=answer.get("error_type") or ("cancelled" if cancelled else "upstream_failed"),
                          error_message=str(answer["error"]))
        return Status(state=state, exec_ms=exec_ms)

    def outputs(self, target: JobTarget, upstream_id: str, urls: dict[str, str], status: Status) -> list[Output]:
        result = send("GET", urls["response_url"], headers=self._headers(target)).json()
        files = [result["video"]] if isinstance(result.get("video"), dict) else result.get("images") or []
        return [Output(url=item["url"], content_type=item.get("content_type") or "application/octet-stream",
                       filename=item.get("file_name") or item["url"].rsplit("/", 1)[-1].split("?")[0],
                       with_key=False) for item in files]

    def download_headers(self, target: JobTarget) -> dict[str, str]:
        return {}

    def cancel(self, target: JobTarget, upstream_id: str, urls: dict[str, str]) -> None:
        send("PUT", urls["cancel_url"], headers=self._headers(target))


VIDEO_ADAPTERS = {"openai": OpenAIVideos(), "fal": FalQueue()}  # provider kind → its video job API


def download_chunks(output: Output, headers: dict[str, str], *, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """``output``'s bytes as they arrive (``headers``: the provider's key when the download needs it)."""
    if output.data is not None:
        yield output.data
        return
    try:
        with _client().stream("GET", output.url, headers=headers) as response:
            _checked(response)
            yield from response.iter_bytes(chunk_size)
    except httpx.HTTPError as exc:
        raise UpstreamError(f"{type(exc).__name__}: {exc}") from None
