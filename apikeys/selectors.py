from dataclasses import dataclass

from django.db.models import Sum

from apikeys.models import ApiKey
from apikeys.services import api_key_hash
from usage.models import RequestLog
from usage.selectors import month_start


@dataclass(frozen=True)
class KeyGrant:
    """What an API key presented to the management API may do (request.auth of such a call)."""

    key_id: int
    organization_id: int
    scopes: frozenset[str]
    active: bool


def api_key_grant(*, plaintext: str) -> tuple[object, KeyGrant] | None:
    """The key's creator (whom it acts for) and its grant; None for an unknown key."""
    key = api_key_by_hash(key_hash=api_key_hash(plaintext))
    if key is None:
        return None
    return key.created_by, KeyGrant(key_id=key.pk, organization_id=key.organization_id, scopes=key.scope_set,
                                    active=key.is_active)


def api_key_by_hash(*, key_hash: str) -> ApiKey | None:
    return ApiKey.objects.filter(key_hash=key_hash).select_related("organization", "created_by").first()


def api_keys_with_month_spend(*, organization) -> list[tuple[ApiKey, int]]:
    """The organization's keys, newest first, each with its month-to-date spend in micro-credits."""
    keys = list(ApiKey.objects.filter(organization=organization).select_related("created_by")
                .order_by("-created_at"))
    spend = dict(RequestLog.objects.filter(api_key__in=keys, created_at__gte=month_start())
                 .values_list("api_key").annotate(total=Sum("cost")).values_list("api_key", "total"))
    return [(key, spend.get(key.pk, 0)) for key in keys]
