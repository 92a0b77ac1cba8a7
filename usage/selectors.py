from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db.models import QuerySet, Sum
from django.utils import timezone

from usage.models import DailyUsage, RequestLog

SORTS = {"newest": "-created_at", "oldest": "created_at", "cost": "-cost", "cheapest": "cost",
         "slowest": "-latency_ms", "fastest": "latency_ms"}


@dataclass(frozen=True)
class Period:
    """Whole UTC days, ``first`` to ``last`` inclusive."""

    first: date
    last: date

    @classmethod
    def last_days(cls, days: int) -> "Period":
        today = timezone.now().astimezone(UTC).date()
        return cls(first=today - timedelta(days=days - 1), last=today)

    @property
    def since(self) -> datetime:
        return datetime.combine(self.first, datetime.min.time(), tzinfo=UTC)

    @property
    def until(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), datetime.min.time(), tzinfo=UTC)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


@dataclass(frozen=True)
class LogFilters:
    endpoint: str | None = None
    model: str | None = None
    status: int | None = None
    errors_only: bool = False
    api_key_id: int | None = None
    min_latency_ms: int | None = None
    max_latency_ms: int | None = None
    min_cost: int | None = None  # micro-credits
    max_cost: int | None = None
    request_id: str | None = None


def request_logs(*, organization_id: int, period: Period, filters: LogFilters = LogFilters(),
                 sort: str = "newest") -> QuerySet:
    logs = RequestLog.objects.filter(organization_id=organization_id, created_at__gte=period.since,
                                     created_at__lt=period.until).select_related("api_key")
    f = filters
    conditions = {
        "endpoint": f.endpoint, "model": f.model, "status": f.status, "api_key_id": f.api_key_id,
        "latency_ms__gte": f.min_latency_ms, "latency_ms__lte": f.max_latency_ms, "cost__gte": f.min_cost,
        "cost__lte": f.max_cost, "request_id": f.request_id,
    }
    logs = logs.filter(**{k: v for k, v in conditions.items() if v is not None})
    if f.errors_only:
        logs = logs.filter(status__gte=400)
    return logs.order_by(SORTS[sort], "-id")


def usage_summary(*, organization_id: int, period: Period) -> dict:
    """Totals, cost by model and the daily trend, from the rollups."""
    rows = DailyUsage.objects.filter(organization_id=organization_id, day__gte=period.first, day__lte=period.last)
    sums = {f: Sum(f) for f in ("requests", "errors", "input_tokens", "cached_tokens", "cache_write_tokens",
                                "output_tokens", "reasoning_tokens", "cost")}
    totals = {k: v or 0 for k, v in rows.aggregate(**sums).items()}
    by_model = list(rows.values("model").annotate(cost=Sum("cost"), requests=Sum("requests"))
                    .order_by("-cost", "model"))
    by_day = {r["day"]: r for r in rows.values("day").annotate(cost=Sum("cost"), requests=Sum("requests"),
                                                                errors=Sum("errors"))}
    daily = [by_day.get(period.first + timedelta(days=i)) or
             {"day": period.first + timedelta(days=i), "cost": 0, "requests": 0, "errors": 0}
             for i in range(period.days)]
    return {"totals": totals, "by_model": by_model, "daily": daily}


def top_expensive(*, organization_id: int, period: Period, limit: int = 10) -> list[RequestLog]:
    return list(RequestLog.objects.filter(organization_id=organization_id, created_at__gte=period.since,
                                          created_at__lt=period.until)
                .select_related("api_key").order_by("-cost", "-id")[:limit])


def usage_models(*, organization_id: int) -> list[str]:
    return list(DailyUsage.objects.filter(organization_id=organization_id).values_list("model", flat=True)
                .distinct().order_by("model"))


