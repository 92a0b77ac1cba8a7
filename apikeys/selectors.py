from collections.abc import Iterable
from dataclasses import dataclass

from apikeys.limits import spend_month
from apikeys.models import ApiKey, KeyMonthSpend
from apikeys.services import api_key_hash
from orgs.roles import ScopeGrant

# What the gateway's key check reads: the key, its limits and its organization's rate limits, nothing else.
GATEWAY_KEY_FIELDS = ("pk", "organization_id", "name", "monthly_spend_limit", "disabled_at", "revoked_at",
                      "organization__rate_limit_rpm", "organization__rate_limit_tpm")


@dataclass(frozen=True)
class KeyGrant(ScopeGrant):
    """What an API key presented to the management API may do (request.auth of such a call)."""

    key_id: int
    active: bool


def api_key_grant(*, plaintext: str) -> tuple[object, KeyGrant] | None:
    """The key's creator (whom it acts for) and its grant; None for an unknown key."""
    key = ApiKey.objects.filter(key_hash=api_key_hash(plaintext)).select_related("created_by").first()
    if key is None:
        return None
    return key.created_by, KeyGrant(organization_id=key.organization_id, scopes=key.scope_set, key_id=key.pk,
                                    active=key.is_active)


def api_key_for_gateway(*, key_hash: str) -> dict | None:
    """The columns of GATEWAY_KEY_FIELDS for the key with this hash; None for an unknown key."""
    return ApiKey.objects.filter(key_hash=key_hash).values(*GATEWAY_KEY_FIELDS).first()


def api_keys_month_spend(*, key_ids: Iterable[int], month: str | None = None) -> dict[int, int]:
    """Micro-credits each key's calls cost in ``month`` (YYYY-MM, UTC; default: this month); 0 if none."""
    key_ids = list(key_ids)
    spent = dict(KeyMonthSpend.objects.filter(key_id__in=key_ids, month=month or spend_month())
                 .values_list("key_id", "amount"))
    return {key_id: spent.get(key_id, 0) for key_id in key_ids}


def api_keys_with_month_spend(*, organization) -> list[tuple[ApiKey, int]]:
    """The organization's keys, newest first, each with its month-to-date spend in micro-credits."""
    keys = list(ApiKey.objects.filter(organization=organization).select_related("created_by")
                .order_by("-created_at"))
    spent = api_keys_month_spend(key_ids=[key.pk for key in keys])
    return [(key, spent[key.pk]) for key in keys]
