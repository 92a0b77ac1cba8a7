from datetime import UTC, datetime

from django.db.models import Sum
from django.utils import timezone

from usage.models import RequestLog


def month_start(now: datetime | None = None) -> datetime:
    """Spending caps run per calendar month in UTC."""
    now = now or timezone.now()
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def api_key_month_spend(*, api_key_id: int) -> int:
    """Micro-credits this key has cost since the start of the month."""
    logs = RequestLog.objects.filter(api_key_id=api_key_id, created_at__gte=month_start())
    return logs.aggregate(total=Sum("cost"))["total"] or 0
