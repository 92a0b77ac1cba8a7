"""Video jobs end to end: the gateway takes a hold, the simulator runs the clip, the engine settles once.

Real processes throughout: the gateway (uvicorn) and the simulator over HTTP, PostgreSQL and Redis, and a
Celery worker for the webhook path. The poller is the engine's own sweep (``jobs_poll_due``, what the beat
task runs), called here so that a test decides when a sweep happens; the simulator's clock is moved
forward instead of waiting.
"""

import io
import threading
from datetime import timedelta

import av
import httpx
import openai
import pytest
from django.db.models import F, Sum
from django.urls import reverse
from django.utils import timezone

from billing.models import Hold, LedgerEntry, Wallet
from billing.money import MICRO
from billing.spendable import spendable_key
from gateway.models import Provider
from gpu.jobs import BACKOFF_SECONDS, ERROR_BUDGET, job_finish, job_poll, jobs_due_claim, jobs_poll_due
from gpu.models import Job, JobEvent, StoredFile
from orgs.models import WebhookDelivery
from orgs.services import user_create
from orgs.webhooks import webhook_create
from tests.live import free_port
from usage.models import RequestLog

PER_SECOND = 10 * MICRO  # sora-2 in the demo catalog
CLIP = 120 * MICRO  # veo3.1-fast


def advance(sim_url: str, ms: int) -> None:
    httpx.post(f"{sim_url}/_sim/clock", json={"advance_ms": ms}).raise_for_status()


def submit(gateway_url: str, key: str, **body) -> httpx.Response:
    return httpx.post(f"{gateway_url}/api/v1/videos/generate", headers={"Authorization": f"Bearer {key}",
                      "Prefer": "wait=0"}, json={"prompt": "a white cube rotating", **body}, timeout=30)


def job_of(answer: httpx.Response) -> Job:
    return Job.objects.get(public_id=answer.json()["jobId"])


def balance(org) -> int:
    return Wallet.objects.get(organization=org).balance


def ledger(org) -> list[tuple[str, int]]:
    return list(LedgerEntry.objects.filter(wallet__organization=org).exclude(kind="topup").order_by("pk")
                .values_list("kind", "amount"))


def assert_books_balance(org, redis_client) -> None:
    """The ledger proves the wallet, and every process's spendable counter agrees with it."""
    wallet = Wallet.objects.get(organization=org)
    assert LedgerEntry.objects.filter(wallet=wallet).aggregate(total=Sum("amount"))["total"] == wallet.balance
    counter = redis_client.get(spendable_key(org.pk))
    assert counter is None or int(counter) == wallet.balance


def sweep_until_ended(job: Job, sim_url: str, *, sweeps: int = 10) -> Job:
    """Move the simulator past the job's run and sweep until the engine has ended it."""
    for _ in range(sweeps):
        advance(sim_url, 5_000)
        Job.objects.filter(pk=job.pk).update(next_poll_at=timezone.now())
        jobs_poll_due(seconds=2)
        job.refresh_from_db()
        if not job.active:
            return job
    raise AssertionError(f"{job.public_id} still {job.status} after {sweeps} sweeps")


def test_a_video_is_generated_while_the_connection_waits(gateway_url, make_account, redis_client):
    acct = make_account(credits="1000")
    answer = httpx.post(f"{gateway_url}/api/v1/videos/generate", headers={"Authorization": f"Bearer {acct.key}"},
                        json={"model": "sora-2", "prompt": "a cat walking on the moon", "duration": 4,
                              "aspect_ratio": "16:9", "resolution": "720P"}, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "succeeded" and body["pollUrl"] == f"/v1/jobs/{body['jobId']}"
    assert body["creditsHeld"] == "40" and body["creditsCharged"] == "40"  # 4 s × 10 credits
    mp4 = httpx.get(body["videoUrl"]).content  # a signed URL: no key needed
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (1280, 720) and 3.5 <= float(container.duration / 1e6) <= 4.5
    assert [step["event"] for step in body["timeline"]][0] == "submitted"
    assert [step["event"] for step in body["timeline"]][-1] == "succeeded"
    content = httpx.get(f"{gateway_url}/v1/jobs/{body['jobId']}/content",
                        headers={"Authorization": f"Bearer {acct.key}"})
    assert content.status_code == 200 and content.content == mp4
    job = Job.objects.get(public_id=body["jobId"])
    assert StoredFile.objects.get(job_id=job.public_id).kind == "output"
    assert ledger(acct.org) == [("hold", -40 * MICRO), ("release", 40 * MICRO), ("charge", -40 * MICRO)]
    assert balance(acct.org) == 960 * MICRO
    log = RequestLog.objects.get(request_id=job.request_id)
    assert (log.endpoint, log.model, log.status, log.cost, log.unit, log.units) == (
        "videos.generate", "sora-2", 200, 40 * MICRO, "second", 4)
    assert_books_balance(acct.org, redis_client)


def test_the_openai_sdk_videos_client_works_unchanged(gateway_url, sim_url, make_account):
    acct = make_account(credits="1000")
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=acct.key, max_retries=0)
    video = client.videos.create(model="sora-2", prompt="a lighthouse at dusk", seconds="8", size="720x1280")
    assert video.status == "queued" and video.id.startswith("job_")
    advance(sim_url, 5_000)
    Job.objects.filter(public_id=video.id).update(polled_at=None)
    video = client.videos.retrieve(video.id)  # read on demand: the gateway asks the provider
    assert video.status == "completed" and video.progress == 100 and video.seconds == "8"
    mp4 = client.videos.download_content(video.id).read()
    with av.open(io.BytesIO(mp4)) as container:
        assert (container.streams.video[0].width, container.streams.video[0].height) == (720, 1280)
    assert Job.objects.get(public_id=video.id).charged == 80 * MICRO


def sim_requests_since(sim_url: str, newest: list[dict]) -> list[dict]:
    """What the simulator was asked since ``newest`` (its newest request then, or [] if none)."""
    since = []
    for request in httpx.get(f"{sim_url}/_sim/requests").json():
        if newest and request == newest[0]:
            break
        since.append(request)
    return since


def test_a_job_the_wallet_cannot_hold_is_refused_before_the_provider_is_asked(gateway_url, sim_url, make_account):
    acct = make_account(credits="100")
    newest = httpx.get(f"{sim_url}/_sim/requests?limit=1").json()
    answer = submit(gateway_url, acct.key, model="veo3.1-fast", duration=8)  # 120 credits a clip
    assert answer.status_code == 402 and answer.json()["error"]["type"] == "insufficient_credits"
    assert not Job.objects.filter(organization=acct.org).exists()
    assert balance(acct.org) == 100 * MICRO and ledger(acct.org) == []
    assert not [r for r in sim_requests_since(sim_url, newest) if "/fal/" in r["path"]]


@pytest.mark.parametrize("outcome, status", [("failed", Job.Status.FAILED), ("cancelled", Job.Status.CANCELLED)])
def test_a_failed_job_releases_its_whole_hold(gateway_url, sim_url, make_account, redis_client, outcome, status):
    acct = make_account(credits="1000")
    answer = submit(gateway_url, acct.key, model="kling-v3", duration=5, sim={"outcome": outcome})
    job = sweep_until_ended(job_of(answer), sim_url)
    assert job.status == status and job.charged == 0 and job.error_code
    assert ledger(acct.org) == [("hold", -35 * MICRO), ("release", 35 * MICRO)]
    assert balance(acct.org) == 1000 * MICRO
    assert RequestLog.objects.get(request_id=job.request_id).cost == 0
    assert_books_balance(acct.org, redis_client)


def test_a_job_past_its_deadline_is_cancelled_upstream_and_released(gateway_url, sim_url, make_account):
    acct = make_account(credits="1000")
    job = job_of(submit(gateway_url, acct.key, model="kling-v3", duration=5, sim={"outcome": "timeout"}))
    advance(sim_url, 5_000)
    Job.objects.filter(pk=job.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
    jobs_poll_due(seconds=2)
    job.refresh_from_db()
    assert job.status == Job.Status.TIMED_OUT and job.charged == 0 and balance(acct.org) == 1000 * MICRO
    cancels = [r for r in httpx.get(f"{sim_url}/_sim/requests").json()
               if r["path"].endswith(f"/requests/{job.upstream_id}/cancel")]
    assert cancels, "the provider was told to stop"


def test_duplicate_and_early_webhooks_settle_once(gateway_url, sim_url, make_account, celery_worker,
                                                  redis_client):
    acct = make_account(credits="1000")
    job = job_of(submit(gateway_url, acct.key, model="gemini_omni_flash", duration=4,
                        sim={"webhook": "duplicate"}))
    assert job.upstream_urls["status_url"].startswith(sim_url)
    job = sweep_until_ended(job, sim_url)  # the webhooks arrive too, each followed by a poll of its own
    assert job.status == Job.Status.SUCCEEDED and job.charged == 32 * MICRO
    assert ledger(acct.org) == [("hold", -32 * MICRO), ("release", 32 * MICRO), ("charge", -32 * MICRO)]
    assert JobEvent.objects.filter(job=job, kind="webhook").count() >= 1
    assert JobEvent.objects.filter(job=job, kind="succeeded").count() == 1
    assert RequestLog.objects.filter(request_id=job.request_id).count() == 1
    assert_books_balance(acct.org, redis_client)


def test_overlapping_polls_and_replays_move_money_once(gateway_url, sim_url, make_account, redis_client):
    acct = make_account(credits="1000")
    # No completion webhook: its poll, on the suite's live worker, would race the claim this test makes.
    job = job_of(submit(gateway_url, acct.key, model="veo3.1-fast", duration=8, sim={"webhook": "lost"}))
    advance(sim_url, 5_000)
    Job.objects.filter(pk=job.pk).update(next_poll_at=timezone.now())
    job_id, lease = job.pk, dict(jobs_due_claim(limit=10))[job.pk]  # (with any other test's job due now)
    stale = Job.objects.get(pk=job_id)
    # Two pollers at once on the same lease (a worker whose claim is reused), then a replayed finish.
    pollers = [threading.Thread(target=job_poll, kwargs={"job_id": job_id, "lease": lease}) for _ in range(2)]
    for poller in pollers:
        poller.start()
    for poller in pollers:
        poller.join()
    assert not job_finish(job_id=job_id, status=Job.Status.FAILED), "an ended job cannot end again"
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.charged == CLIP
    assert ledger(acct.org) == [("hold", -CLIP), ("release", CLIP), ("charge", -CLIP)]
    assert Hold.objects.get(pk=stale.hold_id).status == Hold.Status.SETTLED
    assert StoredFile.objects.filter(job_id=job.public_id).count() == 1, "the loser's copy is discarded"
    assert_books_balance(acct.org, redis_client)


def test_a_worker_that_dies_mid_poll_leaves_the_job_to_the_next_sweep(gateway_url, sim_url, make_account):
    acct = make_account(credits="1000")
    # No completion webhook: its poll, on the suite's live worker, would race the claims this test makes.
    job = job_of(submit(gateway_url, acct.key, model="kling-v3", duration=5, sim={"webhook": "lost"}))
    advance(sim_url, 5_000)
    Job.objects.filter(pk=job.pk).update(next_poll_at=timezone.now())
    assert job.pk in dict(jobs_due_claim(limit=10))  # claimed… and its worker is killed before it polls
    assert job.pk not in dict(jobs_due_claim(limit=10)), "a live lease keeps the job with its worker"
    Job.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))  # the lease ran out
    jobs_poll_due(seconds=2)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.charged == 35 * MICRO
    assert [kind for kind, _ in ledger(acct.org)] == ["hold", "release", "charge"]


def test_a_retried_submit_with_the_same_idempotency_key_holds_once(gateway_url, make_account):
    acct = make_account(credits="1000")
    headers = {"Authorization": f"Bearer {acct.key}", "Prefer": "wait=0", "Idempotency-Key": "render-42"}
    first, again = (httpx.post(f"{gateway_url}/v1/videos/generate", headers=headers,
                               json={"model": "kling-v3", "prompt": "waves", "duration": 5}) for _ in range(2))
    assert first.json()["jobId"] == again.json()["jobId"]
    assert [kind for kind, _ in ledger(acct.org)] == ["hold"]


def test_a_cancel_before_the_job_starts_releases_it(gateway_url, make_account):
    acct = make_account(credits="1000")
    job = job_of(submit(gateway_url, acct.key, model="kling-v3", duration=5, sim={"queue_ms": 600_000}))
    answer = httpx.post(f"{gateway_url}/v1/jobs/{job.public_id}/cancel", headers={"Authorization":
                        f"Bearer {acct.key}"})
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    assert balance(acct.org) == 1000 * MICRO and [kind for kind, _ in ledger(acct.org)] == ["hold", "release"]


def test_another_organizations_job_is_not_found(gateway_url, make_account):
    owner, stranger = make_account(credits="1000"), make_account(credits="1000")
    job = job_of(submit(gateway_url, owner.key, model="kling-v3", duration=5))
    for path in (f"/v1/jobs/{job.public_id}", f"/v1/jobs/{job.public_id}/content", f"/v1/videos/{job.public_id}"):
        answer = httpx.get(f"{gateway_url}{path}", headers={"Authorization": f"Bearer {stranger.key}"})
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "job_not_found"
    cancel = httpx.post(f"{gateway_url}/v1/jobs/{job.public_id}/cancel",
                        headers={"Authorization": f"Bearer {stranger.key}"})
    assert cancel.status_code == 404 and Job.objects.get(pk=job.pk).active


@pytest.mark.parametrize("body, param", [
    ({"model": "sora-2", "duration": 5}, "duration"),
    ({"model": "sora-2", "duration": 4, "aspect_ratio": "21:9"}, "aspect_ratio"),
    ({"model": "sora-2", "duration": 4, "resolution": "4K"}, "resolution"),
    ({"model": "sora-2", "prompt": ""}, "prompt"),
    ({"model": "kling-v3", "image_urls": ["http://example.com/a.png"]}, "image_urls"),
    ({"model": "kling-v3", "webhookUrl": "http://127.0.0.1:9/hook"}, "webhookUrl"),
])
def test_bad_video_requests_are_refused_naming_the_field(gateway_url, make_account, body, param):
    acct = make_account(credits="1000")
    answer = submit(gateway_url, acct.key, **body)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == param
    assert ledger(acct.org) == []


def test_a_thousand_queued_jobs_are_polled_in_one_sweep(gateway_url, sim_url, make_account):
    acct = make_account(credits="1000")
    fal = Provider.objects.get(name="simulator-fal")
    with httpx.Client(base_url=f"{sim_url}/fal", headers={"Authorization": "Key k"}) as sim:
        submitted = [sim.post("/fal-ai/kling-video/v3/text-to-video",
                              json={"prompt": "p", "duration": "5", "sim": {"queue_ms": 600_000}}).json()
                     for _ in range(1000)]
    now = timezone.now()
    Job.objects.bulk_create([
        Job(organization=acct.org, kind="video", model="kling-v3", endpoint="videos.generate",
            request_id=f"req_bulk_{n}_{acct.key_id}", provider=fal, upstream_model="fal-ai/kling-video/v3",
            upstream_id=s["request_id"], upstream_urls={k: s[k] for k in ("status_url", "response_url",
                                                                           "cancel_url")},
            price_unit="second", unit_price=PER_SECOND, units=5, spend_month=now.strftime("%Y-%m"),
            deadline_at=now + timedelta(hours=1), next_poll_at=now)
        for n, s in enumerate(submitted)])
    jobs = Job.objects.filter(organization=acct.org)
    try:
        polled = jobs_poll_due(seconds=4)  # one beat's sweep
        assert polled >= 1000 and not jobs.filter(polls=0).exists(), "every job was asked about"
        assert not jobs.filter(next_poll_at__lte=F("polled_at")).exists(), "each is scheduled for later"
        assert not jobs.exclude(status="queued").exists()
    finally:  # out of the later tests' sweeps
        jobs.update(status=Job.Status.CANCELLED, next_poll_at=None)


def test_job_events_reach_subscriptions_and_the_requests_own_webhook_url(gateway_url, sim_url, make_account):
    acct = make_account(credits="1000")
    owner = acct.org.memberships.get().user
    webhook_create(organization=acct.org, url="https://hooks.example.test/all", actor=owner,
                   events=["job.started", "job.completed", "job.failed"])
    job = job_of(submit(gateway_url, acct.key, model="kling-v3", duration=5,
                        webhookUrl="https://hooks.example.test/render-7"))
    job = sweep_until_ended(job, sim_url)
    events = list(WebhookDelivery.objects.filter(webhook__organization=acct.org).order_by("pk")
                  .values_list("event_type", "url", "webhook__for_requests"))
    assert ("job.completed", "", False) in events and ("job.completed", "https://hooks.example.test/render-7",
                                                       True) in events
    assert not [e for e in events if e[0] == "job.failed"]
    completed = WebhookDelivery.objects.filter(event_type="job.completed", webhook__organization=acct.org).first()
    assert completed.payload["data"]["job"] | {"outputs": None} == {
        "id": job.public_id, "kind": "video", "model": "kling-v3", "status": "succeeded", "error": None,
        "creditsCharged": "35", "outputs": None}
    assert [o["contentType"] for o in completed.payload["data"]["job"]["outputs"]] == ["video/mp4"]


def test_an_operator_cancels_a_job_in_admin_and_its_hold_is_released(gateway_url, make_account, client):
    acct = make_account(credits="1000")
    job = job_of(submit(gateway_url, acct.key, model="kling-v3", duration=5, sim={"queue_ms": 600_000}))
    operator = user_create(email=f"ops-{job.public_id}@example.test", password="pw", is_staff=True,
                           is_superuser=True)
    client.force_login(operator)
    page = client.get(reverse("admin:gpu_job_change", args=[job.pk])).content.decode()
    assert "submitted" in page and job.callback_token not in page  # the timeline, never the callback path
    answer = client.post(reverse("admin:gpu_job_changelist"), {"action": "cancel", "_selected_action": [job.pk]})
    assert answer.status_code == 302
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED and balance(acct.org) == 1000 * MICRO


def test_a_burst_of_poll_errors_is_tolerated_until_the_budget_runs_out(gateway_url, sim_url, make_account):
    acct = make_account(credits="1000")
    # Only this test's sweeps may poll it: no webhook from the provider, which would have it polled too.
    job = job_of(submit(gateway_url, acct.key, model="kling-v3", duration=5, sim={"webhook": "lost"}))
    unreachable = f"http://127.0.0.1:{free_port()}/fal/requests/{job.upstream_id}/status"
    Job.objects.filter(pk=job.pk).update(upstream_urls={**job.upstream_urls, "status_url": unreachable},
                                         next_poll_at=timezone.now())
    jobs_poll_due(seconds=1)
    job.refresh_from_db()
    assert job.active and job.error_streak == 1
    assert job.next_poll_at - job.polled_at >= timedelta(seconds=BACKOFF_SECONDS[1]), "asked again later"
    Job.objects.filter(pk=job.pk).update(error_streak=ERROR_BUDGET - 1, next_poll_at=timezone.now())
    jobs_poll_due(seconds=1)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and job.error_code == "upstream_unreachable"
    assert balance(acct.org) == 1000 * MICRO
    assert JobEvent.objects.filter(job=job, kind="poll_failed").count() == 1


def test_a_wait_that_runs_out_answers_the_job_as_it_is(gateway_url, make_account):
    acct = make_account(credits="1000")
    answer = httpx.post(f"{gateway_url}/v1/videos/generate", headers={"Authorization": f"Bearer {acct.key}",
                        "Prefer": "wait=1"}, json={"model": "kling-v3", "prompt": "slow", "duration": 5,
                                                   "sim": {"queue_ms": 600_000}}, timeout=30)
    assert answer.status_code == 202 and answer.json()["status"] == "queued" and answer.json()["pollUrl"]


def test_members_see_their_jobs_with_outputs_and_timeline_in_the_dashboard(gateway_url, make_account, client):
    acct = make_account(credits="1000")
    answer = httpx.post(f"{gateway_url}/v1/videos/generate", headers={"Authorization": f"Bearer {acct.key}"},
                        json={"model": "sora-2", "prompt": "a cube", "duration": 4}, timeout=60)
    job = job_of(answer)
    client.force_login(acct.org.memberships.get().user)
    listing = client.get(f"/jobs?org={acct.org.slug}").content.decode()
    assert job.public_id in listing and "Succeeded" in listing
    page = client.get(f"/jobs/{job.public_id}?org={acct.org.slug}").content.decode()
    assert 'data-testid="output-video"' in page and "submitted" in page and "succeeded" in page
    stranger = make_account(credits="1")
    client.force_login(stranger.org.memberships.get().user)
    assert client.get(f"/jobs/{job.public_id}?org={stranger.org.slug}").status_code == 404
