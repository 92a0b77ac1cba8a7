from django.db.models import Sum

from apikeys.models import ApiKey
from usage.models import RequestLog
from usage.selectors import month_start


def api_key_by_hash(*, key_hash: str) -> ApiKey | None:
    return ApiKey.objects.filter(key_hash=key_hash).select_related("organization").first()


def api_keys_with_month_spend(*, organization) -> list[tuple[ApiKey, int]]:
    """The organization's keys, newest first, each with its month-to-date spend in micro-credits."""
    keys = list(ApiKey.objects.filter(organization=organization).select_related("created_by")
                .order_by("-created_at"))
    spend = dict(RequestLog.objects.filter(api_key__in=keys, created_at__gte=month_start())
                 .values_list("api_key").annotate(total=Sum("cost")).values_list("api_key", "total"))
    return [(key, spend.get(key.pk, 0)) for key in keys]
