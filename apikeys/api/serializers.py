from decimal import Decimal

from rest_framework import serializers

from billing.money import credits_to_micro, micro_to_credits
from orgs.roles import API_KEY_SCOPES


class CreditsField(serializers.DecimalField):
    """Credits on the wire as a decimal string (never a float); micro-credits inside."""

    def __init__(self, **kwargs):
        super().__init__(max_digits=18, decimal_places=6, min_value=Decimal(0), **kwargs)

    def to_internal_value(self, data):
        return credits_to_micro(super().to_internal_value(data))

    def to_representation(self, value):
        return super().to_representation(micro_to_credits(value))


class ScopesField(serializers.ListField):
    """Management-API scopes for the key (none: the model API only)."""

    def __init__(self, **kwargs):
        super().__init__(child=serializers.ChoiceField(choices=API_KEY_SCOPES), **kwargs)

    def to_internal_value(self, data):
        return frozenset(super().to_internal_value(data))


class ApiKeyCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    spendingLimit = CreditsField(required=False, allow_null=True)
    autoDisable = serializers.BooleanField(required=False, default=False)
    scopes = ScopesField(required=False, default=frozenset)


class ApiKeyUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    spendingLimit = CreditsField(required=False, allow_null=True)
    autoDisable = serializers.BooleanField(required=False)
    disabled = serializers.BooleanField(required=False)
    scopes = ScopesField(required=False)


def api_key_output(key, month_spend: int) -> dict:
    limit = key.monthly_spend_limit
    return {
        "id": key.pk,
        "name": key.name,
        "redactedKey": key.redacted,
        "status": "revoked" if key.revoked_at else "disabled" if key.disabled_at else "active",
        "disabledReason": key.disabled_reason or None,
        "spendingLimit": None if limit is None else str(micro_to_credits(limit)),
        "autoDisable": key.auto_disable,
        "scopes": sorted(key.scope_set),
        "monthToDateSpend": str(micro_to_credits(month_spend)),
        "percentOfLimit": None if not limit else round(month_spend * 100 / limit, 1),
        "createdBy": key.created_by.email if key.created_by else None,
        "createdAt": key.created_at,
        "lastUsedAt": key.last_used_at,
    }
