"""Job protocols (OpenAI videos, fal's queue, RunPod Serverless) over real HTTP, driven by the sim clock.

Every job is scripted with delays far longer than a test takes, then moved along with POST /_sim/clock,
which answers once the webhooks it made due are delivered: no test sleeps to see a state change.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import uuid

import av
import httpx
import openai
import pytest
from PIL import Image

from sim import media
from sim.videos import WEBHOOK_SECRET

pytestmark = [pytest.mark.no_services, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
FAL = {"authorization": "Key fal-test"}
RUNPOD = {"authorization": "Bearer rp-test"}
SLOW = {"queue_ms": 10_000, "run_ms": 20_000}  # a job that stays put unless the clock moves


def advance(sim_url: str, ms: int) -> None:
    assert httpx.post(f"{sim_url}/_sim/clock", json={"advance_ms": ms}).status_code == 200


def videos(sim_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim_url}/v1", api_key="sk-test-1234", max_retries=0)


def test_clock_moves_forward_only(sim_url):
    before = httpx.get(f"{sim_url}/_sim/clock").json()["now_ms"]
    after = httpx.post(f"{sim_url}/_sim/clock", json={"advance_ms": 5_000}).json()["now_ms"]
    assert after >= before + 5_000
    assert httpx.post(f"{sim_url}/_sim/clock", json={"advance_ms": -1}).status_code == 400


# OpenAI videos


def test_video_lifecycle_with_the_openai_sdk(sim_url):
    client = videos(sim_url)
    video = client.videos.create(
        model="sora-2", prompt="a red fox", seconds="8", size="1280x720", extra_body={"sim": SLOW}
    )
    assert (video.object, video.status, video.progress, video.seconds, video.size) == (
        "video",
        "queued",
        0,
        "8",
        "1280x720",
    )
    assert video.id.startswith("video_") and video.completed_at is None and video.error is None
    advance(sim_url, 15_000)
    running = client.videos.retrieve(video.id)
    assert running.status == "in_progress" and 20 <= running.progress <= 30
    advance(sim_url, 5_000)
    assert client.videos.retrieve(video.id).progress > running.progress, "progress rises with time"
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content(video.id)
    advance(sim_url, 10_000)
    done = client.videos.retrieve(video.id)
    assert (done.status, done.progress) == ("completed", 100)
    assert done.completed_at >= done.created_at and done.expires_at == done.completed_at + 3600
    mp4 = client.videos.download_content(video.id).content
    with av.open(io.BytesIO(mp4)) as container:
        frames = list(container.decode(video=0))
        assert container.duration / av.time_base == 8.0
        assert container.streams.video[0].codec_context.name == "h264"
    assert {(f.width, f.height) for f in frames} == {(1280, 720)} and len(frames) == media.VIDEO_FRAMES
    thumbnail = client.videos.download_content(video.id, variant="thumbnail")
    assert thumbnail.response.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(thumbnail.content)).size == (1280, 720)
    sheet = client.videos.download_content(video.id, variant="spritesheet").content
    assert Image.open(io.BytesIO(sheet)).format == "JPEG"
    assert video.id in [v.id for v in client.videos.list(limit=100)]
    assert client.videos.delete(video.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)


def test_video_validation_matches_openai(sim_url):
    client = videos(sim_url)
    with pytest.raises(openai.BadRequestError) as seconds:
        client.videos.create(prompt="x", seconds="5")
    assert seconds.value.body == {
        "message": "Invalid value: '5'. Supported values are: '4', '8', '12', '16', and '20'.",
        "type": "invalid_request_error",
        "param": "seconds",
        "code": "invalid_value",
    }
    with pytest.raises(openai.BadRequestError) as size:
        client.videos.create(model="sora-2", prompt="x", size="1792x1024")
    assert size.value.body["param"] == "size", "sora-2 makes only 720p sizes"
    assert client.videos.create(model="sora-2-pro", prompt="x", size="1792x1024").size == "1792x1024"
    missing = httpx.post(f"{sim_url}/v1/videos", headers={"authorization": "Bearer k"}, json={"seconds": "4"})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_required_parameter"
    picture = io.BytesIO()
    Image.new("RGB", (640, 480)).save(picture, "PNG")
    with pytest.raises(openai.BadRequestError) as reference:
        client.videos.create(prompt="x", input_reference=("ref.png", picture.getvalue(), "image/png"))
    assert reference.value.body["message"] == "Inpaint image must match the requested width and height"


def test_video_input_reference_upload_and_remix(sim_url):
    client = videos(sim_url)
    picture = io.BytesIO()
    Image.new("RGB", (720, 1280), (200, 10, 10)).save(picture, "PNG")
    video = client.videos.create(
        prompt="animate this",
        input_reference=("ref.png", picture.getvalue(), "image/png"),
        extra_body={"sim": {"queue_ms": 0, "run_ms": 1_000}},
    )
    assert video.size == "720x1280"
    recorded = httpx.get(f"{sim_url}/_sim/requests", params={"limit": 1}).json()[0]["body"]
    assert recorded["input_reference"] == {
        "filename": "ref.png",
        "content_type": "image/png",
        "size": len(picture.getvalue()),
    }
    advance(sim_url, 1_000)
    remix = client.videos.remix(video.id, prompt="now in blue")
    assert remix.remixed_from_video_id == video.id and remix.status == "queued"


def test_video_failure_unknown_status_and_timeout(sim_url):
    client = videos(sim_url)
    failing = client.videos.create(
        prompt="x",
        extra_body={
            "sim": {**SLOW, "outcome": "failed", "error_code": "moderation_blocked", "error_message": "No."}
        },
    )
    warming = client.videos.create(prompt="x", extra_body={"sim": {**SLOW, "unknown_status": True}})
    endless = client.videos.create(prompt="x", extra_body={"sim": {**SLOW, "outcome": "timeout"}})
    assert warming.status == "warming", "a status the protocol does not define, while queued"
    advance(sim_url, 10_000)
    assert client.videos.retrieve(warming.id).status == "in_progress"
    advance(sim_url, 3_600_000)
    failed = client.videos.retrieve(failing.id)
    assert (
        failed.status == "failed"
        and failed.error.code == "moderation_blocked"
        and failed.error.message == "No."
    )
    assert client.videos.retrieve(endless.id).status == "in_progress", "timeout never finishes"


def test_video_webhooks_are_signed_standard_webhooks(sim_url, receiver):
    client = videos(sim_url)
    target = receiver.target()
    video = client.videos.create(
        prompt="x", extra_body={"sim": {**SLOW, "webhook_url": target, "webhook": "duplicate"}}
    )
    advance(sim_url, 29_000)
    assert receiver.bodies(target) == []
    advance(sim_url, 1_000)
    deliveries = receiver.received[target.removeprefix(receiver.url)]
    assert len(deliveries) == 2 and deliveries[0][1] == deliveries[1][1], "duplicate: the same event twice"
    headers, body = deliveries[0]
    event = client.webhooks.unwrap(body, headers, secret=WEBHOOK_SECRET)
    assert event.type == "video.completed" and event.data.id == video.id
    assert headers["webhook-id"] == deliveries[1][0]["webhook-id"] == event.id
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.unwrap(body, headers, secret="whsec_" + base64.b64encode(b"wrong").decode())
    advance(sim_url, 3_600_000 + 1_000)  # downloads expire an hour after completion
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content(video.id)


# fal queue


def fal_submit(sim_url: str, model: str, body: dict, **params: str) -> dict:
    response = httpx.post(f"{sim_url}/fal/{model}", json=body, params=params, headers=FAL)
    assert response.status_code == 200, response.text
    return response.json()


def test_fal_queue_lifecycle_and_video_result(sim_url, receiver):
    target = receiver.target()
    submitted = fal_submit(
        sim_url,
        "fal-ai/kling-video/v2/master/text-to-video",
        {"prompt": "a fox", "duration": "5", "sim": SLOW},
        fal_webhook=target,
    )
    request_id = submitted["request_id"]
    base = f"{sim_url}/fal/fal-ai/kling-video/requests/{request_id}"
    assert submitted["status_url"] == f"{base}/status" and submitted["response_url"] == base
    assert submitted["cancel_url"] == f"{base}/cancel" and submitted["queue_position"] == 0
    queued = httpx.get(submitted["status_url"], headers=FAL)
    assert queued.status_code == 202 and queued.json()["status"] == "IN_QUEUE"
    assert httpx.get(submitted["status_url"]).status_code == 401, "fal wants Authorization: Key"
    advance(sim_url, 15_000)
    running = httpx.get(submitted["status_url"], params={"logs": 1}, headers=FAL)
    assert running.status_code == 202 and running.json()["status"] == "IN_PROGRESS"
    assert [line["message"] for line in running.json()["logs"]][:2] == [
        "Running fal-ai/kling-video/v2/master/text-to-video",
        "Step 1/4",
    ]
    early = httpx.get(submitted["response_url"], headers=FAL)
    assert early.status_code == 400 and early.json() == {"detail": "Request is still in progress"}
    assert receiver.bodies(target) == []
    advance(sim_url, 15_000)
    done = httpx.get(submitted["status_url"], headers=FAL)
    assert done.status_code == 200 and done.json()["status"] == "COMPLETED"
    assert done.json()["metrics"] == {"inference_time": 20.0}
    result = httpx.get(submitted["response_url"], headers=FAL).json()
    video = result["video"]
    assert video["content_type"] == "video/mp4" and video["file_name"].endswith(".mp4")
    mp4 = httpx.get(video["url"]).content
    assert len(mp4) == video["file_size"]
    with av.open(io.BytesIO(mp4)) as container:
        assert container.duration / av.time_base == 5.0 and container.streams.video[0].width == 1280
    (webhook,) = receiver.bodies(target)
    assert webhook == {
        "request_id": request_id,
        "gateway_request_id": request_id,
        "status": "OK",
        "payload": result,
        "error": None,
    }
    cancel = httpx.put(submitted["cancel_url"], headers=FAL)
    assert cancel.status_code == 400 and cancel.json() == {"status": "ALREADY_COMPLETED"}


def test_fal_image_result_and_queue_positions(sim_url):
    first = fal_submit(
        sim_url, "fal-ai/flux/dev", {"prompt": "x", "image_size": "square_hd", "num_images": 2, "sim": SLOW}
    )
    second = fal_submit(sim_url, "fal-ai/flux/dev", {"prompt": "y", "sim": SLOW})
    assert second["queue_position"] == first["queue_position"] + 1
    assert first["status_url"].startswith(f"{sim_url}/fal/fal-ai/flux/requests/"), (
        "no subpath in request URLs"
    )
    advance(sim_url, 30_000)
    images = httpx.get(first["response_url"], headers=FAL).json()["images"]
    assert [(i["width"], i["height"], i["content_type"]) for i in images] == [(1024, 1024, "image/jpeg")] * 2
    picture = Image.open(io.BytesIO(httpx.get(images[0]["url"]).content))
    assert picture.format == "JPEG" and picture.size == (1024, 1024)
    bad = httpx.post(
        f"{sim_url}/fal/fal-ai/flux/dev", json={"prompt": "x", "image_size": "huge"}, headers=FAL
    )
    assert bad.status_code == 422 and "image_size" in bad.json()["detail"]


def test_fal_cancel_before_start_and_failures(sim_url, receiver):
    queued = fal_submit(sim_url, "fal-ai/flux/dev", {"prompt": "x", "sim": SLOW})
    cancel = httpx.put(queued["cancel_url"], headers=FAL)
    assert cancel.status_code == 202 and cancel.json() == {"status": "CANCELLATION_REQUESTED"}
    status = httpx.get(queued["status_url"], headers=FAL).json()
    assert status["status"] == "COMPLETED" and status["error"] == "Request was cancelled"
    assert httpx.get(queued["response_url"], headers=FAL).status_code == 400
    target = receiver.target()
    failing = fal_submit(
        sim_url, "fal-ai/flux/dev", {"prompt": "x", "sim": {**SLOW, "outcome": "failed"}}, fal_webhook=target
    )
    timing_out = fal_submit(
        sim_url, "fal-ai/flux/dev", {"prompt": "x", "sim": {**SLOW, "outcome": "timed_out"}}
    )
    advance(sim_url, 30_000)
    failed = httpx.get(failing["status_url"], headers=FAL).json()
    assert failed["status"] == "COMPLETED" and failed["error_type"] == "runner_disconnected"
    result = httpx.get(failing["response_url"], headers=FAL)
    assert result.status_code == 503 and result.headers["x-fal-error-type"] == "runner_disconnected"
    (webhook,) = receiver.bodies(target)
    assert webhook["status"] == "ERROR" and webhook["error"] == "Invalid status code: 503"
    assert webhook["payload"] == result.json()
    timed_out = httpx.get(timing_out["response_url"], headers=FAL)
    assert timed_out.status_code == 504 and timed_out.json()["error_type"] == "request_timeout"
    missing = httpx.get(f"{sim_url}/fal/fal-ai/flux/requests/nope/status", headers=FAL)
    assert missing.status_code == 404


def test_fal_429_on_submit_with_retry_after(sim_url):
    limited = httpx.post(
        f"{sim_url}/fal/fal-ai/flux/dev",
        json={"prompt": "x", "sim": {"fail": 429, "retry_after": 7}},
        headers=FAL,
    )
    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    assert limited.json() == {"detail": "Simulated failure 429."}
    prefixed = httpx.post(f"{sim_url}/x/fail=429/fal/fal-ai/flux/dev", json={"prompt": "x"}, headers=FAL)
    assert prefixed.status_code == 429 and prefixed.headers["retry-after"] == "1"


def test_fal_unknown_status_then_progress(sim_url):
    submitted = fal_submit(sim_url, "fal-ai/flux/dev", {"prompt": "x", "sim": {**SLOW, "unknown_status": 1}})
    assert httpx.get(submitted["status_url"], headers=FAL).json()["status"] == "WARMING"
    advance(sim_url, 10_000)
    assert httpx.get(submitted["status_url"], headers=FAL).json()["status"] == "IN_PROGRESS"


@pytest.mark.parametrize(
    ("mode", "count", "before_end"),
    [("duplicate", 2, 0), ("early", 1, 1), ("lost", 0, 0), ("", 1, 0)],
)
def test_fal_webhook_behaviours(sim_url, receiver, mode, count, before_end):
    target = receiver.target()
    submitted = fal_submit(
        sim_url, "fal-ai/flux/dev", {"prompt": "x", "sim": {**SLOW, "webhook": mode}}, fal_webhook=target
    )
    advance(sim_url, 10_000)
    assert len(receiver.bodies(target)) == before_end, "early: sent as the run starts"
    if before_end:
        assert httpx.get(submitted["status_url"], headers=FAL).json()["status"] == "IN_PROGRESS"
        assert receiver.bodies(target)[0]["status"] == "OK", "it already reports the result"
    advance(sim_url, 20_000)
    bodies = receiver.bodies(target)
    assert len(bodies) == count and all(b["request_id"] == submitted["request_id"] for b in bodies)


def test_fal_webhook_retries_until_answered_unless_told_not_to(sim_url, receiver):
    retried, once = receiver.target(500), receiver.target(500)
    fal_submit(sim_url, "fal-ai/flux/dev", {"prompt": "x", "sim": SLOW}, fal_webhook=retried)
    fal_submit(
        sim_url, "fal-ai/flux/dev", {"prompt": "x", "sim": {**SLOW, "webhook": "fail"}}, fal_webhook=once
    )
    advance(sim_url, 30_000)
    assert (len(receiver.bodies(retried)), len(receiver.bodies(once))) == (1, 1)
    for _ in range(3):
        advance(sim_url, 600_000)
    assert (len(receiver.bodies(retried)), len(receiver.bodies(once))) == (4, 1)


def test_webhook_fires_with_nobody_polling(sim_url, receiver):
    target = receiver.target()
    submitted = fal_submit(
        sim_url, "fal-ai/flux/dev", {"prompt": "x", "sim": {"queue_ms": 0, "run_ms": 50}}, fal_webhook=target
    )
    (webhook,) = receiver.wait(target, 1)
    assert webhook["request_id"] == submitted["request_id"] and webhook["status"] == "OK"


# RunPod Serverless


def runpod(sim_url: str, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{sim_url}/runpod{path}", headers=RUNPOD, **kwargs)


def template(sim_url: str, image: str = "example/echo-worker:1") -> str:
    """A template (RunPod endpoints run one): its id."""
    created = runpod(sim_url, "POST", "/rest/v1/templates", json={"name": f"t-{uuid.uuid4().hex[:6]}",
                                                                "imageName": image})
    assert created.status_code == 200, created.text
    return created.json()["id"]


@pytest.fixture
def endpoint(sim_url) -> str:
    created = runpod(
        sim_url, "POST", "/rest/v1/endpoints", json={"templateId": template(sim_url), "workersMax": 2}
    )
    assert created.status_code == 200
    return created.json()["id"]


def test_runpod_job_lifecycle_status_and_health(sim_url, endpoint, receiver):
    target = receiver.target()
    job = {"input": {"prompt": "hi", "__sim": {"delay_ms": 10_000, "exec_ms": 20_000}}, "webhook": target}
    submitted = runpod(sim_url, "POST", f"/v2/{endpoint}/run", json=job).json()
    assert submitted["status"] == "IN_QUEUE" and set(submitted) == {"id", "status"}
    status = f"/v2/{endpoint}/status/{submitted['id']}"
    assert runpod(sim_url, "GET", status).json()["status"] == "IN_QUEUE"
    advance(sim_url, 15_000)
    running = runpod(sim_url, "GET", status).json()
    assert running["status"] == "IN_PROGRESS" and running["delayTime"] == 10_000 and "output" not in running
    health = runpod(sim_url, "GET", f"/v2/{endpoint}/health").json()
    assert health["jobs"]["inProgress"] == 1 and health["workers"]["running"] == 1
    advance(sim_url, 15_000)
    done = runpod(sim_url, "GET", status).json()
    assert done == {
        "delayTime": 10_000,
        "executionTime": 20_000,
        "id": submitted["id"],
        "status": "COMPLETED",
        "output": {"echo": {"prompt": "hi"}},
    }
    assert receiver.bodies(target) == [done], "the webhook carries the /status body"
    streamed = runpod(sim_url, "GET", f"/v2/{endpoint}/stream/{submitted['id']}").json()
    assert streamed == {"status": "COMPLETED", "stream": [{"output": done["output"]}]}
    assert runpod(sim_url, "GET", f"/v2/{endpoint}/health").json()["jobs"]["completed"] == 1
    assert httpx.get(f"{sim_url}/runpod{status}", headers={"authorization": "rp-bare-key"}).status_code == 200
    assert httpx.get(f"{sim_url}/runpod{status}").status_code == 401
    advance(sim_url, 30 * 60_000)
    assert runpod(sim_url, "GET", status).status_code == 404, "results are kept 30 minutes"


def test_runpod_runsync_finishes_or_answers_in_progress(sim_url, endpoint):
    quick = runpod(
        sim_url,
        "POST",
        f"/v2/{endpoint}/runsync",
        json={"input": {"n": 1, "__sim": {"delay_ms": 0, "exec_ms": 0}}},
    )
    assert quick.json()["status"] == "COMPLETED" and quick.json()["id"].startswith("sync-")
    assert quick.json()["output"] == {"echo": {"n": 1}}
    answer: dict = {}
    slow = {"input": {"__sim": {"delay_ms": 0, "exec_ms": 60_000}}}
    thread = threading.Thread(
        target=lambda: answer.update(
            runpod(sim_url, "POST", f"/v2/{endpoint}/runsync?wait=1000", json=slow, timeout=30).json()
        )
    )
    thread.start()
    advance(sim_url, 1_000)  # the wait is on the sim clock: this ends it without anyone sleeping
    thread.join(30)
    assert answer["status"] in ("IN_QUEUE", "IN_PROGRESS") and "output" not in answer


def test_runpod_outcomes_policy_cancel_retry_and_purge(sim_url, endpoint, receiver):
    def submit(sim: dict, **body) -> str:
        return runpod(sim_url, "POST", f"/v2/{endpoint}/run", json={"input": {"__sim": sim}, **body}).json()[
            "id"
        ]

    def state(job_id: str) -> dict:
        return runpod(sim_url, "GET", f"/v2/{endpoint}/status/{job_id}").json()

    slow = {"delay_ms": 10_000, "exec_ms": 20_000}
    failed = submit({**slow, "outcome": "FAILED", "error_message": "CUDA out of memory"})
    timed_out = submit({**slow, "outcome": "TIMED_OUT"})
    endless = submit({**slow, "outcome": "timeout"}, policy={"executionTimeout": 6_000})
    expiring = submit({"delay_ms": 60_000, "exec_ms": 1_000}, policy={"ttl": 10_000})
    hooked = receiver.target()
    cancelled = submit(slow, webhook=hooked)
    queued = [submit({"delay_ms": 600_000, "exec_ms": 1_000}) for _ in range(2)]
    warming = submit({**slow, "unknown_status": 1})
    assert state(warming)["status"] == "WARMING"
    assert runpod(sim_url, "POST", f"/v2/{endpoint}/cancel/{cancelled}").json() == {
        "id": cancelled,
        "status": "CANCELLED",
    }
    advance(sim_url, 0)  # sends what is due now
    assert [hook["status"] for hook in receiver.bodies(hooked)] == ["CANCELLED"]
    advance(sim_url, 30_000)
    assert state(failed)["status"] == "FAILED" and state(failed)["error"] == "CUDA out of memory"
    assert state(timed_out)["status"] == "TIMED_OUT"
    assert state(endless)["status"] == "TIMED_OUT" and state(endless)["executionTime"] == 6_000
    assert runpod(sim_url, "GET", f"/v2/{endpoint}/status/{expiring}").status_code == 404, "ttl deletes it"
    assert runpod(sim_url, "POST", f"/v2/{endpoint}/retry/{cancelled}").status_code == 400
    assert runpod(sim_url, "POST", f"/v2/{endpoint}/retry/{failed}").json() == {
        "id": failed,
        "status": "IN_QUEUE",
    }
    advance(sim_url, 30_000)
    assert state(failed)["status"] == "COMPLETED", "the retry runs again and succeeds"
    assert runpod(sim_url, "GET", f"/v2/{endpoint}/health").json()["jobs"]["retried"] == 1
    purged = runpod(sim_url, "POST", f"/v2/{endpoint}/purge-queue").json()
    assert purged == {"removed": 2, "status": "completed"}
    assert all(runpod(sim_url, "GET", f"/v2/{endpoint}/status/{q}").status_code == 404 for q in queued)


def test_runpod_webhook_retries_twice_unless_failing(sim_url, endpoint, receiver):
    retried, once = receiver.target(500), receiver.target(500)
    job = {"input": {"__sim": {"delay_ms": 0, "exec_ms": 5_000}}}
    runpod(sim_url, "POST", f"/v2/{endpoint}/run", json={**job, "webhook": retried})
    fail = {"input": {"__sim": {"delay_ms": 0, "exec_ms": 5_000, "webhook": "fail"}}, "webhook": once}
    runpod(sim_url, "POST", f"/v2/{endpoint}/run", json=fail)
    advance(sim_url, 5_000)
    for _ in range(4):
        advance(sim_url, 10_000)
    assert len(receiver.bodies(retried)) == 3, "the first try and two more, 10 s apart"
    assert len(receiver.bodies(once)) == 1, "webhook=fail: delivered, never retried"


def test_runpod_queue_full_answers_429(sim_url):
    endpoint = runpod(
        sim_url, "POST", "/rest/v1/endpoints", json={"templateId": template(sim_url), "workersMax": 0}
    ).json()["id"]
    job = {"input": {"__sim": {"delay_ms": 600_000}}}
    with httpx.Client(headers=RUNPOD) as client:
        answers = [
            client.post(f"{sim_url}/runpod/v2/{endpoint}/run", json=job).status_code for _ in range(52)
        ]
    assert answers == [200] * 51 + [429], "more than 50 waiting (workersMax 0) is full"
    forced = httpx.post(f"{sim_url}/x/fail=429,retry_after=3/runpod/v2/other/run", headers=RUNPOD, json=job)
    assert forced.status_code == 429 and forced.headers["retry-after"] == "3"
    assert forced.json() == {"error": "Simulated failure 429."}


def test_runpod_comfyui_worker_returns_real_pngs(sim_url):
    created = runpod(
        sim_url, "POST", "/rest/v1/endpoints", json={"imageName": "runpod/worker-comfyui:5.1.0-base"}
    )
    endpoint = created.json()["id"]
    workflow = {
        "3": {"class_type": "KSampler", "inputs": {"seed": 7}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 768, "height": 512, "batch_size": 2}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0]}},
    }
    picture = base64.b64encode(media.image(8, 8, "in")).decode()
    job = {
        "input": {
            "workflow": workflow,
            "images": [{"name": "in.png", "image": f"data:image/png;base64,{picture}"}],
        }
    }
    answer = runpod(
        sim_url, "POST", f"/v2/{endpoint}/runsync", json={**job, "sim": {"queue_ms": 0, "run_ms": 0}}
    ).json()
    images = answer["output"]["images"]
    assert [(i["filename"], i["type"]) for i in images] == [
        ("ComfyUI_00001_.png", "base64"),
        ("ComfyUI_00002_.png", "base64"),
    ]
    decoded = Image.open(io.BytesIO(base64.b64decode(images[0]["data"])))
    assert decoded.format == "PNG" and decoded.size == (768, 512)
    plain = runpod(
        sim_url,
        "POST",
        f"/v2/{endpoint}/runsync",
        json={"input": {"workflow": {}}, "sim": {"queue_ms": 0, "run_ms": 0}},
    )
    image = base64.b64decode(plain.json()["output"]["images"][0]["data"])
    assert Image.open(io.BytesIO(image)).size == (512, 512)
    missing = runpod(
        sim_url, "POST", f"/v2/{endpoint}/runsync", json={"input": {}, "sim": {"queue_ms": 0, "run_ms": 0}}
    )
    assert missing.json()["status"] == "FAILED" and missing.json()["error"] == "Missing 'workflow' parameter"


def test_runpod_rest_endpoint_management(sim_url):
    body = {
        "name": "flux",
        "templateId": template(sim_url),
        "gpuTypeIds": ["NVIDIA L4"],
        "gpuCount": 1,
        "workersMin": 1,
        "workersMax": 4,
        "idleTimeout": 30,
        "scalerType": "REQUEST_COUNT",
        "scalerValue": 2,
        "executionTimeoutMs": 900_000,
        "flashboot": True,
    }
    created = runpod(sim_url, "POST", "/rest/v1/endpoints", json=body).json()
    assert {k: created[k] for k in body} == body and len(created["id"]) == 14 and created["version"] == 0
    other = runpod(sim_url, "POST", "/rest/v1/endpoints", json=body).json()
    assert other["id"] != created["id"], "ids are random"
    assert created["id"] in [e["id"] for e in runpod(sim_url, "GET", "/rest/v1/endpoints").json()]
    one = f"/rest/v1/endpoints/{created['id']}"
    assert runpod(sim_url, "GET", one).json() == created
    patched = runpod(sim_url, "PATCH", one, json={"workersMax": 8}).json()
    assert patched["workersMax"] == 8 and patched["version"] == 1
    health = runpod(sim_url, "GET", f"/v2/{created['id']}/health").json()
    assert health["workers"] == {"idle": 1, "running": 0}, "workersMin stay warm"
    assert runpod(sim_url, "PATCH", one, json={"workersMin": 9}).status_code == 400
    assert runpod(sim_url, "POST", "/rest/v1/endpoints", json={"name": "no template"}).status_code == 400
    assert (
        runpod(sim_url, "POST", "/rest/v1/endpoints", json={"templateId": template(sim_url), "gpuCount": "1"}).status_code
        == 400
    )
    assert runpod(sim_url, "DELETE", one).status_code == 204
    assert runpod(sim_url, "GET", one).status_code == 404
    gone = runpod(sim_url, "POST", f"/v2/{created['id']}/run", json={"input": {}})
    assert gone.status_code == 404 and "error" in gone.json()


def test_runpod_recorded_request_keeps_its_script(sim_url, endpoint):
    runpod(sim_url, "POST", f"/v2/{endpoint}/run", json={"input": {"x": 1, "__sim": {"delay_ms": 5}}})
    recorded = httpx.get(f"{sim_url}/_sim/requests", params={"limit": 1}).json()[0]
    assert recorded["body"]["input"] == {"x": 1, "__sim": {"delay_ms": 5}}
    assert recorded["headers"]["authorization"] == "***test"
    assert "rp-test" not in json.dumps(recorded)
