from django.db import models

from apikeys.models import ApiKey
from orgs.models import Organization


class RequestLog(models.Model):
    """One gateway call. Written in the same transaction as its ledger charge."""

    # Every index is paid for by every call's insert, in the metering writer's batches: the composite
    # indexes below serve the foreign keys too, and request ids are only ever looked up whole.
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="request_logs",
                                     db_index=False)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="request_logs", db_index=False)
    request_id = models.CharField(max_length=64)
    endpoint = models.CharField(max_length=64)
    model = models.CharField(max_length=120, blank=True)
    provider = models.CharField(max_length=80, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    status = models.PositiveSmallIntegerField()
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Time to first token (streams).")
    input_tokens = models.PositiveIntegerField(default=0, help_text="All prompt tokens, cached included.")
    cached_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0, help_text="Reasoning included.")
    reasoning_tokens = models.PositiveIntegerField(default=0)
    unit = models.CharField(max_length=16, blank=True,
                            help_text="What a call not priced in tokens counts: image, second, clip, request, "
                                      "character…")
    units = models.PositiveIntegerField(default=0, help_text="How many of them it was billed for.")
    cost = models.BigIntegerField(default=0, help_text="Micro-credits priced for this call.")
    uncollected = models.BigIntegerField(default=0, help_text="Part of the cost the wallet could not cover.")
    error_type = models.CharField(max_length=64, blank=True)
    stream = models.BooleanField(default=False)
    attempts = models.JSONField(default=list, blank=True,
                                help_text="Each upstream attempt: provider, upstream model, status, latency.")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="log_org_time"),
            models.Index(fields=["organization", "model", "-created_at"], name="log_org_model_time"),
            models.Index(fields=["organization", "status", "-created_at"], name="log_org_status_time"),
            models.Index(fields=["api_key", "-created_at"], name="log_key_time"),
            models.Index(fields=["organization", "-cost"], name="log_org_cost"),  # most expensive first
        ]
        # A constraint, not unique=True: that would add a second, pattern-matching index for LIKE queries.
        constraints = [models.UniqueConstraint(fields=["request_id"], name="log_request_id_unique")]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model} {self.status}"


class DailyUsage(models.Model):
    """Organization × model × day totals, kept up to date as calls are written (charts never scan logs)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="daily_usage")
    model = models.CharField(max_length=120)
    day = models.DateField()
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    cost = models.BigIntegerField(default=0, help_text="Micro-credits.")

    class Meta:
        verbose_name_plural = "daily usage"
        constraints = [models.UniqueConstraint(fields=["organization", "model", "day"], name="daily_usage_unique")]
        indexes = [models.Index(fields=["organization", "day"], name="daily_org_day")]
