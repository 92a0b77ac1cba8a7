from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction

from apikeys.services import api_keys_touch
from billing.services import UsageCharge, usage_charges_apply
from gateway.usage import Usage
from usage.models import RequestLog
from usage.rollups import rollups_add


@dataclass(slots=True)
class CallRecord:
    """What one finished gateway call produced; the metering queue carries these."""

    request_id: str
    organization_id: int
    api_key_id: int | None
    endpoint: str
    model: str
    provider: str
    upstream_model: str
    status: int
    latency_ms: int
    usage: Usage
    cost: int
    created_at: datetime
    stream: bool = False
    ttft_ms: int | None = None
    error_type: str = ""
    attempts: list[dict] = field(default_factory=list)


@transaction.atomic
def call_records_save(*, records: list[CallRecord], touched_keys: dict[int, datetime] | None = None) -> None:
    """Charge and log a batch of calls in one transaction.

    Idempotent per request id, so a batch replayed after a crash neither logs nor charges twice.
    """
    seen = set(RequestLog.objects.filter(request_id__in=[r.request_id for r in records])
               .values_list("request_id", flat=True))
    fresh = []
    for record in records:
        if record.request_id not in seen:
            seen.add(record.request_id)
            fresh.append(record)
    shortfalls = usage_charges_apply([
        UsageCharge(organization_id=r.organization_id, amount=r.cost, idempotency_key=f"call:{r.request_id}",
                    reference=r.request_id)
        for r in fresh if r.cost > 0
    ])
    RequestLog.objects.bulk_create([
        RequestLog(
            organization_id=r.organization_id, api_key_id=r.api_key_id, request_id=r.request_id,
            endpoint=r.endpoint, model=r.model, provider=r.provider, upstream_model=r.upstream_model,
            status=r.status, latency_ms=r.latency_ms, ttft_ms=r.ttft_ms, input_tokens=r.usage.input,
            cached_tokens=r.usage.cached_read, cache_write_tokens=r.usage.cache_write,
            output_tokens=r.usage.output, reasoning_tokens=r.usage.reasoning, cost=r.cost,
            uncollected=shortfalls.get(f"call:{r.request_id}", 0), error_type=r.error_type,
            stream=r.stream, created_at=r.created_at, attempts=r.attempts,
        )
        for r in fresh
    ])
    rollups_add(fresh)
    if touched_keys:
        api_keys_touch(last_used=touched_keys)


def request_logs_prune(*, batch_size: int = 10_000) -> int:
    """Delete request logs older than the retention age, a batch at a time (rollups are kept)."""
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    cutoff = timezone.now() - timedelta(days=settings.HYPEREAL["LOG_RETENTION_DAYS"])
    deleted = 0
    while ids := list(RequestLog.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:batch_size]):
        deleted += RequestLog.objects.filter(pk__in=ids).delete()[0]
    return deleted
