from django.conf import settings
from django.db import models

from orgs.models import Organization

KEY_PREFIX = "ck_"


class ApiKey(models.Model):
    """A model-API key. Only its SHA-256 is stored; the plaintext is shown once, at creation."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="api_keys")
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    last4 = models.CharField(max_length=4, editable=False)
    monthly_spend_limit = models.BigIntegerField(null=True, blank=True,
                                                 help_text="Micro-credits per calendar month (UTC); empty = none.")
    auto_disable = models.BooleanField(default=False, help_text="Disable the key when it reaches its limit.")
    scopes = models.CharField(max_length=300, blank=True,
                              help_text="Comma-separated management-API scopes (orgs.roles.API_KEY_SCOPES); "
                                        "empty = the model API only.")
    disabled_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "-created_at"])]

    @property
    def is_active(self) -> bool:
        return self.disabled_at is None and self.revoked_at is None

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(scope for scope in self.scopes.split(",") if scope)

    @property
    def redacted(self) -> str:
        return f"{KEY_PREFIX}…{self.last4}"

    def __str__(self) -> str:
        return f"{self.name} ({self.redacted})"


class BudgetAlert(models.Model):
    """A key's spend crossed a share of its monthly limit; unique so each alert goes out once a month."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="budget_alerts")
    month = models.CharField(max_length=7, help_text="YYYY-MM, UTC.")
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the monthly limit: 80 or 100.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "month", "threshold"], name="budget_alert_once")]

    def __str__(self) -> str:
        return f"{self.key} {self.month} {self.threshold}%"


class KeyMonthSpend(models.Model):
    """What a key's calls cost in one calendar month (UTC): written with each batch of calls, read against
    the key's monthly limit."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="month_spend")
    month = models.CharField(max_length=7, help_text="YYYY-MM, UTC.")
    amount = models.BigIntegerField(default=0, help_text="Micro-credits.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "month"], name="key_month_spend_unique")]

    def __str__(self) -> str:
        return f"{self.key} {self.month}: {self.amount} µcr"
