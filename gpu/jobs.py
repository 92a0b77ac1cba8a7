"""The job engine: submit, poll, finish — a job's money moves exactly once.

A job is a row (gpu.models.Job) and the row is the truth. Submit takes a hold for the worst case (the
requested seconds × the per-second price, or the clip's price) before the provider is asked. The poller
claims due jobs (``next_poll_at``), under a lease whose generation only its holder may write progress
with, polls the provider with backoff, and ends each job once: finishing is a compare-and-swap of
``status`` from active to final, in one transaction with the hold's settlement (the actual units at the
price snapshotted at submit, never above the hold) or release, the job's request log row, its webhook
events and, after commit, the Redis counters. Overlapping polls, a provider webhook racing a poll, two
workers or a replayed task therefore find the job already ended and move nothing.
"""

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from apikeys.limits import key_spend_adjust_on_commit
from billing.money import micro_to_credits
from billing.pricing import UnitPrice, billed_seconds, unit_cost
from billing.services import hold_create, hold_release, hold_settle
from billing.tokens import TokenUsage
from gpu import upstreams
from gpu.compute import DRIVERS, result_without_inline
from gpu.models import Job, JobEvent
from gpu.storage import StorageRefusal, stored_file_delete, stored_file_get_unscoped, stored_file_save
from gpu.upstreams import VIDEO_ADAPTERS, JobTarget, Status, Submitted, UpstreamError
from orgs.events import WebhookEvent
from orgs.webhooks import webhook_event_emit
from usage.services import CallRecord, call_records_save

log = logging.getLogger(__name__)
POLL_WORKERS, PROVIDER_CONCURRENCY, CLAIM_BATCH = 32, 16, 500
ADAPTERS = {**VIDEO_ADAPTERS, **DRIVERS}  # where a job runs (its target's kind) → who asks about it
BACKOFF_SECONDS = (2, 4, 8, 16, 32, 60)  # between polls of a job, by how many it has had
ERROR_BUDGET = 10  # failed polls in a row before the job is given up as failed
LEASE_SECONDS = 120  # a claim outlives any one poll; a worker that dies frees its jobs when it runs out
SUBMIT_LOST_SECONDS = 120  # a job the provider never took (its submitter died) is failed after this
READ_POLL_SECONDS = 1.0  # a reader asks the provider about a job at most this often
# What each end is logged as (a request log row needs an HTTP-like status).
LOG_STATUS = {Job.Status.SUCCEEDED: 200, Job.Status.FAILED: 502, Job.Status.CANCELLED: 499,
              Job.Status.TIMED_OUT: 504}
END_EVENTS = {Job.Status.SUCCEEDED: WebhookEvent.JOB_COMPLETED}  # every other end is job.failed


@dataclass(frozen=True, slots=True)
class JobAsk:
    """What a submit asks for, validated by the endpoint: who, which model at which price, and the input."""

    organization_id: int
    api_key_id: int | None
    api_key_name: str
    kind: str
    model: str
    endpoint: str
    request_id: str
    price_unit: str
    price: UnitPrice
    units: int  # what the hold covers: requested seconds, or 1 clip
    input: dict  # as stored: inline media already replaced by a description
    spend_month: str
    idempotency_key: str | None = None
    webhook_url: str = ""


def job_hold_amount(ask: JobAsk) -> int:
    return unit_cost(ask.price, ask.units)


def job_create(*, ask: JobAsk, upstream_model: str, provider_id: int | None = None, compute_id: int | None = None,
               deployment_id: int | None = None) -> tuple[Job, bool]:
    """The job and its hold (402 via InsufficientCredits if the wallet cannot cover it), or the job a
    retried submit with the same idempotency key already made (then False: nothing new is held). It runs
    at a catalog provider (``provider_id``) or at a compute provider's endpoint (``compute_id``)."""
    if ask.idempotency_key and (existing := _job_by_idempotency(ask)):
        return existing, False
    now = timezone.now()
    deadline = now + timedelta(seconds=settings.HYPEREAL["JOB_DEADLINE_SECONDS"])
    job = Job(organization_id=ask.organization_id, api_key_id=ask.api_key_id, kind=ask.kind, model=ask.model,
              endpoint=ask.endpoint, request_id=ask.request_id, idempotency_key=ask.idempotency_key,
              provider_id=provider_id, compute_id=compute_id, deployment_id=deployment_id,
              upstream_model=upstream_model, input=ask.input,
              price_unit=ask.price_unit, unit_price=ask.price.amount, units=ask.units,
              spend_month=ask.spend_month, webhook_url=ask.webhook_url, deadline_at=deadline,
              next_poll_at=now + timedelta(seconds=SUBMIT_LOST_SECONDS))
    try:
        with transaction.atomic():
            # The submit's reservation already took the amount from the spendable counter: the hold is it.
            job.hold = hold_create(organization_id=ask.organization_id, amount=job_hold_amount(ask),
                                   idempotency_key=f"job:{job.public_id}", reference=ask.request_id,
                                   expires_at=deadline + timedelta(hours=1), counted=True)
            job.save()
            _event(job, "submitted", {"model": ask.model, "held": job.hold.amount})
    except IntegrityError:
        if ask.idempotency_key and (existing := _job_by_idempotency(ask)):
            return existing, False  # a concurrent submit with the same key won
        raise
    return job, True


def _job_by_idempotency(ask: JobAsk) -> Job | None:
    return Job.objects.filter(organization_id=ask.organization_id, idempotency_key=ask.idempotency_key).first()


def job_submitted(*, job: Job, submitted: Submitted, provider_id: int | None = None,
                  upstream_model: str | None = None) -> Job:
    """The provider took the job (the chain's ``provider_id`` and ``upstream_model``, for a job that fell
    back): from now on it is polled there, and only there."""
    moved = {"provider_id": provider_id, "upstream_model": upstream_model} if provider_id is not None else {}
    Job.objects.filter(pk=job.pk, status__in=Job.ACTIVE).update(
        **moved, upstream_id=submitted.upstream_id, upstream_urls=submitted.urls,
        next_poll_at=timezone.now() + timedelta(seconds=BACKOFF_SECONDS[0]))
    job.refresh_from_db()
    return job


def job_provider_name(job: Job) -> str:
    return job.compute.name if job.compute_id is not None else job.provider.name


def job_target(job: Job) -> JobTarget:
    """The exact target that took the job: a catalog provider, or a compute provider's endpoint."""
    if job.compute_id is not None:
        compute = job.compute
        return JobTarget(kind=compute.kind, base_url=compute.queue_url.rstrip("/"), api_key=compute.api_key,
                         upstream_model=job.upstream_model)
    provider = job.provider
    return JobTarget(kind=provider.kind, base_url=provider.base_url.rstrip("/"), api_key=provider.api_key,
                     upstream_model=job.upstream_model)


# --- ending, exactly once ------------------------------------------------------------------------------

def job_finish(*, job_id: int, status: str, units: int = 0, error: tuple[str, str] = ("", ""),
               output: dict | None = None, exec_ms: int | None = None, queued_ms: int | None = None) -> bool:
    """End an active job as ``status``; False (and nothing moved) if it had already ended.

    A success settles ``units`` at the submit's price, capped at the units held; every other end releases
    the whole hold.
    """
    now = timezone.now()
    with transaction.atomic():
        ended = Job.objects.filter(pk=job_id, status__in=Job.ACTIVE).update(
            status=status, finished_at=now, next_poll_at=None, lease_until=None, error_code=error[0][:64],
            error_message=error[1][:500], progress=100 if status == Job.Status.SUCCEEDED else F("progress"),
            exec_ms=exec_ms if exec_ms is not None else F("exec_ms"),
            queued_ms=queued_ms if queued_ms is not None else F("queued_ms"))
        if not ended:
            return False  # the compare-and-swap lost: another poll, webhook or worker ended it
        job = Job.objects.select_related("organization", "provider", "compute").get(pk=job_id)
        if status == Job.Status.SUCCEEDED:
            charge = unit_cost(UnitPrice(job.unit_price, max_units=job.units), units)
            hold = hold_settle(hold_id=job.hold_id, actual=charge)
        else:
            hold = hold_release(hold_id=job.hold_id)
        job.charged, job.output = hold.settled_amount, {**job.output, **(output or {})}
        job.save(update_fields=["charged", "output"])
        _event(job, status, {"charged": job.charged, **({"error": error[0]} if error[0] else {})})
        _log(job, units=units if status == Job.Status.SUCCEEDED else 0)
        _announce(job, END_EVENTS.get(status, WebhookEvent.JOB_FAILED))
        if job.api_key_id is not None:  # the hold counted against the key's month; now only the charge does
            key_spend_adjust_on_commit(org_id=job.organization_id, key_id=job.api_key_id, month=job.spend_month,
                                       delta=job.charged - hold.amount)
    return True


def _log(job: Job, *, units: int) -> None:
    """The job's one request log row, with its charge (already moved by the hold's settlement)."""
    end = job.finished_at or timezone.now()
    call_records_save(records=[CallRecord(
        request_id=job.request_id, organization_id=job.organization_id, api_key_id=job.api_key_id,
        endpoint=job.endpoint, model=job.model, provider=job_provider_name(job), upstream_model=job.upstream_model,
        status=LOG_STATUS[job.status], latency_ms=int((end - job.created_at).total_seconds() * 1000),
        usage=TokenUsage(), cost=job.charged or 0, created_at=job.created_at, error_type=job.error_code,
        unit=job.price_unit, units=units, prepaid=True)])


def job_webhook_payload(job: Job) -> dict:
    return {"job": {"id": job.public_id, "kind": job.kind, "model": job.model, "status": job.status,
                    "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
                    "creditsCharged": None if job.charged is None else str(micro_to_credits(job.charged)),
                    "outputs": job.output.get("files", [])}}


def _announce(job: Job, event: WebhookEvent) -> None:
    webhook_event_emit(organization=job.organization, type=event, data=job_webhook_payload(job),
                       idempotency_key=f"{job.public_id}:{event}", extra_url=job.webhook_url)


def _event(job: Job, kind: str, detail: dict | None = None, dedupe_key: str | None = None) -> bool:
    """Add to the job's timeline; False when ``dedupe_key`` was recorded already (a redelivered webhook)."""
    try:
        with transaction.atomic():
            JobEvent.objects.create(job=job, kind=kind, detail=detail or {}, dedupe_key=dedupe_key)
    except IntegrityError:
        return False
    return True


# --- polling -------------------------------------------------------------------------------------------

def jobs_due_claim(*, limit: int) -> list[tuple[int, int]]:
    """Claim up to ``limit`` jobs due for a poll (or past their deadline): (job id, lease) each.

    SKIP LOCKED lets several workers claim side by side without waiting on each other's rows; the lease
    keeps a job with one worker until it is polled or the lease runs out.
    """
    now = timezone.now()
    with transaction.atomic():
        due = (Job.objects.select_for_update(skip_locked=True)
               .filter(Q(next_poll_at__lte=now) | Q(deadline_at__lte=now), status__in=Job.ACTIVE)
               .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now)).order_by("next_poll_at"))
        ids = list(due.values_list("pk", flat=True)[:limit])
        Job.objects.filter(pk__in=ids).update(lease=F("lease") + 1, lease_until=now + timedelta(seconds=LEASE_SECONDS))
    return list(Job.objects.filter(pk__in=ids).values_list("pk", "lease"))


def jobs_poll_due(*, seconds: float) -> int:
    """Poll every due job, a claimed batch at a time, until none is due or ``seconds`` are spent: many at
    once, at most PROVIDER_CONCURRENCY of them at one provider. Returns how many were polled."""
    started, polled = time.monotonic(), 0
    with ThreadPoolExecutor(max_workers=POLL_WORKERS, thread_name_prefix="job-poll") as pool:
        while time.monotonic() - started < seconds and (claimed := jobs_due_claim(limit=CLAIM_BATCH)):
            leases = dict(claimed)
            by_provider: dict[int, list[tuple[Job, int]]] = {}
            for job in Job.objects.filter(pk__in=leases).select_related("provider", "compute"):
                by_provider.setdefault(job.provider_id, []).append((job, leases[job.pk]))
            # Each provider's jobs in PROVIDER_CONCURRENCY lanes, each lane polled in turn by one thread.
            lanes = [jobs[lane::PROVIDER_CONCURRENCY] for jobs in by_provider.values()
                     for lane in range(min(PROVIDER_CONCURRENCY, len(jobs)))]
            for future in [pool.submit(_poll_lane, lane) for lane in lanes]:
                future.result()
            polled += len(claimed)
    return polled


def _poll_lane(lane: list[tuple[Job, int]]) -> None:
    targets: dict[tuple[int, str], JobTarget] = {}  # one decrypted key per provider and model, not per job
    try:
        for job, lease in lane:
            target = None
            if job.upstream_id:
                target = targets.setdefault((job.provider_id, job.upstream_model), job_target(job))
            try:
                _poll(job, lease, target)
            except Exception:  # its lease runs out and it is due again: one bad job never stops the others
                log.exception("polling job %s failed", job.public_id)
    finally:
        connection.close()  # this thread's own connection: the pool goes when the sweep ends


def job_claim_for_read(*, job_id: int) -> int | None:
    """Claim one job for a reader who wants fresh news (at most every READ_POLL_SECONDS): its lease."""
    now = timezone.now()
    claimed = (Job.objects.filter(pk=job_id, status__in=Job.ACTIVE).exclude(upstream_id="")
               .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
               .filter(Q(polled_at__isnull=True) | Q(polled_at__lte=now - timedelta(seconds=READ_POLL_SECONDS)))
               .update(lease=F("lease") + 1, lease_until=now + timedelta(seconds=LEASE_SECONDS)))
    return Job.objects.values_list("lease", flat=True).get(pk=job_id) if claimed else None


def job_poll_awaited(*, job_id: int, seconds: float) -> None:
    """Wait (at most ``seconds``) for a poll another worker holds the job's lease for."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and Job.objects.filter(
            pk=job_id, status__in=Job.ACTIVE, lease_until__gt=timezone.now()).exists():
        time.sleep(0.05)  # a poll is a round trip to the provider: its end is a few polls of the row away


def job_poll(*, job_id: int, lease: int) -> None:
    """Ask the provider about a claimed job and act on the answer."""
    job = Job.objects.select_related("provider", "compute").get(pk=job_id)
    if job.lease == lease and job.active:  # else claimed again since, or already ended
        _poll(job, lease, job_target(job) if job.upstream_id else None)


def _poll(job: Job, lease: int, target: JobTarget | None) -> None:
    now = timezone.now()
    if not job.upstream_id:  # the provider never took it: the submitter died on the way
        job_finish(job_id=job.pk, status=Job.Status.FAILED, error=("submit_lost", "The job never reached the "
                   "provider; nothing was charged."))
        return
    adapter = ADAPTERS[target.kind]
    if job.deadline_at <= now:
        try:
            adapter.cancel(target, job.upstream_id, job.upstream_urls)
        except UpstreamError:
            log.warning("cancelling timed-out job %s upstream failed", job.public_id, exc_info=True)
        job_finish(job_id=job.pk, status=Job.Status.TIMED_OUT, error=("timeout", "The job did not finish "
                   "before its deadline; nothing was charged."))
        return
    try:
        status = adapter.status(target, job.upstream_id, job.upstream_urls)
        if status.state == upstreams.SUCCEEDED:
            outputs = _outputs_store(job, target, status)
    except (UpstreamError, StorageRefusal) as exc:
        _poll_failed(job, lease, exc)
        return
    if status.state in (upstreams.QUEUED, upstreams.RUNNING):
        _progress(job, lease, status)
    elif status.state == upstreams.SUCCEEDED:
        output = {"files": outputs, "seconds": status.seconds}
        if status.result is not None:
            output["result"] = result_without_inline(status.result)
        if not job_finish(job_id=job.pk, status=Job.Status.SUCCEEDED, units=_billed_units(job, status),
                          exec_ms=status.exec_ms, queued_ms=status.queued_ms, output=output):
            _outputs_discard(outputs)
    else:
        job_finish(job_id=job.pk, status=status.state, exec_ms=status.exec_ms,
                   error=(status.error_code or status.state, status.error_message or f"The job {status.state}."))


# A running job's poll, the commonest write of a sweep: one statement, with no ORM compiling per job (a
# sweep polls thousands). It counts only for the lease's holder, and only while the job is active.
_PROGRESS_SQL = ("UPDATE {table} SET polls = polls + 1, polled_at = %s, error_streak = 0, lease_until = NULL, "
                 "next_poll_at = %s, progress = COALESCE(%s, progress) "
                 "WHERE id = %s AND lease = %s AND status IN ({active})").format(
    table=Job._meta.db_table, active=", ".join(f"'{status}'" for status in Job.ACTIVE))


def _billed_units(job: Job, status: Status) -> int:
    """What a success is billed for, never above the units held (job_finish caps it): a video per second by
    the clip's reported length, a GPU job per second by its reported run time (every started second), and
    anything priced per call or clip once. A provider that reports nothing is billed what was held."""
    if job.price_unit != "second":
        return 1
    if job.kind == Job.Kind.VIDEO:
        return status.seconds or job.units
    return billed_seconds(status.exec_ms) if status.exec_ms is not None else job.units


def _progress(job: Job, lease: int, status: Status) -> None:
    now = timezone.now()
    wait = BACKOFF_SECONDS[min(job.polls, len(BACKOFF_SECONDS) - 1)]
    progress = None if status.progress is None else max(0, min(int(status.progress), 99))
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(_PROGRESS_SQL, [adapt(now), adapt(now + timedelta(seconds=wait)), progress, job.pk, lease])
    if status.state == upstreams.RUNNING and Job.objects.filter(
            pk=job.pk, status=Job.Status.QUEUED).update(status=Job.Status.RUNNING, started_at=now):
        with transaction.atomic():
            _event(job, "started")
            _announce(Job.objects.select_related("organization").get(pk=job.pk), WebhookEvent.JOB_STARTED)


def _poll_failed(job: Job, lease: int, exc: Exception) -> None:
    """A burst of errors is tolerated; ERROR_BUDGET of them in a row fail the job (its hold released)."""
    streak = job.error_streak + 1
    if streak >= ERROR_BUDGET:
        job_finish(job_id=job.pk, status=Job.Status.FAILED, error=("upstream_unreachable", f"The provider could "
                   f"not be asked about the job {streak} times in a row ({exc})."))
        return
    wait = BACKOFF_SECONDS[min(streak, len(BACKOFF_SECONDS) - 1)]
    if isinstance(exc, UpstreamError) and exc.retry_after:
        wait = max(wait, exc.retry_after)
    now = timezone.now()
    Job.objects.filter(pk=job.pk, lease=lease, status__in=Job.ACTIVE).update(
        error_streak=streak, polls=F("polls") + 1, polled_at=now, lease_until=None,
        next_poll_at=now + timedelta(seconds=wait))
    _event(job, "poll_failed", {"error": str(exc)[:300], "streak": streak})


def _outputs_store(job: Job, target: JobTarget, status: Status) -> list[dict]:
    """Copy the provider's outputs into storage (its URLs expire): what the job's outputs are from now on."""
    stored, adapter = [], ADAPTERS[target.kind]
    for output in adapter.outputs(target, job.upstream_id, job.upstream_urls, status):
        file = stored_file_save(organization_id=job.organization_id, kind="output", job_id=job.public_id,
                                content=upstreams.download_chunks(output, adapter.download_headers(target)
                                                                  if output.with_key else {}),
                                filename=output.filename,
                                content_type=output.content_type, api_key_id=job.api_key_id)
        stored.append({"id": file.public_id, "contentType": file.content_type, "bytes": file.size,
                       "filename": file.filename})
    return stored


def _outputs_discard(outputs: list[dict]) -> None:
    """The copies of a job another poll ended first: that one's copies are the job's."""
    for output in outputs:
        if file := stored_file_get_unscoped(file_id=output["id"]):
            stored_file_delete(file=file)


def job_cancel(*, job: Job) -> bool:
    """A client's cancel: the provider is told, and the job ends cancelled with its hold released (a job
    the provider had already finished is settled by the next poll instead). False if it had ended."""
    if not job.active:
        return False
    if job.upstream_id:
        target = job_target(job)
        try:
            ADAPTERS[target.kind].cancel(target, job.upstream_id, job.upstream_urls)
        except UpstreamError as exc:
            if not exc.retryable:  # e.g. already completed upstream: the poller settles what it made
                Job.objects.filter(pk=job.pk).update(next_poll_at=timezone.now())
                return False
            raise
    return job_finish(job_id=job.pk, status=Job.Status.CANCELLED, error=("cancelled", "Cancelled by the client."))


def job_callback(*, token: str, dedupe_key: str, payload: dict) -> Job | None:
    """A provider's webhook for a job: recorded once per delivery id, and the job polled at once — its
    status is always re-read from the provider, never taken from the webhook's body. None: no such job."""
    job = Job.objects.filter(callback_token=token).first()
    if job is None:
        return None
    if _event(job, "webhook", {"status": payload.get("status")}, dedupe_key=dedupe_key[:200]) and job.active:
        Job.objects.filter(pk=job.pk, status__in=Job.ACTIVE).update(next_poll_at=timezone.now())
    return job


def job_get(*, organization_id: int, job_id: str) -> Job | None:
    """An organization's job; another organization's is None, exactly like an unknown id."""
    return Job.objects.filter(organization_id=organization_id, public_id=job_id).select_related("provider", "compute").first()
