from django.db import models
from django.db.models import Q

from orgs.models import Organization


class Wallet(models.Model):
    """An organization's credit balance: a cached total of its ledger, never below zero."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="wallet")
    balance = models.BigIntegerField(default=0, help_text="Micro-credits (1 credit = 1,000,000).")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(balance__gte=0), name="wallet_balance_non_negative")]

    def __str__(self) -> str:
        return f"wallet of {self.organization}"


class LedgerEntry(models.Model):
    """Append-only, signed movement of micro-credits; the source of truth for a wallet's balance."""

    class Kind(models.TextChoices):
        TOPUP = "topup", "Top-up"
        CHARGE = "charge", "Charge"
        HOLD = "hold", "Hold"
        RELEASE = "release", "Release"
        REFUND = "refund", "Refund"
        ADJUSTMENT = "adjustment", "Adjustment"

    # The (wallet, -created_at) index serves the foreign key too: one index less for every charge to keep.
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="entries", db_index=False)
    amount = models.BigIntegerField(help_text="Signed micro-credits: positive credits the wallet.")
    balance_after = models.BigIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    idempotency_key = models.CharField(max_length=200)  # unique: see Meta
    reference = models.CharField(max_length=200, blank=True, help_text="e.g. the request id charged.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["wallet", "-created_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(balance_after__gte=0), name="ledger_balance_after_non_negative"),
            # Not unique=True, which would add a second, pattern-matching index no query uses.
            models.UniqueConstraint(fields=["idempotency_key"], name="ledger_idempotency_key_unique"),
        ]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Ledger entries are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Ledger entries are append-only.")

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} µcr ({self.idempotency_key})"




class Hold(models.Model):
    """Credits set aside for a long job, settled to the actual amount or released."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        SETTLED = "settled", "Settled"
        RELEASED = "released", "Released"

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="holds")
    amount = models.BigIntegerField(help_text="Micro-credits set aside: the most the job can cost.")
    settled_amount = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    idempotency_key = models.CharField(max_length=200, unique=True)
    reference = models.CharField(max_length=200, blank=True)
    expires_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="hold_amount_positive"),
            models.CheckConstraint(condition=Q(settled_amount__isnull=True) | Q(settled_amount__lte=models.F("amount")),
                                   name="hold_settled_within_amount"),
        ]

    def __str__(self) -> str:
        return f"hold {self.pk} {self.status} {self.amount} µcr"


class PaymentEvent(models.Model):
    """Every event a payment provider sent us, once: the source of truth behind top-ups and refunds."""

    provider = models.CharField(max_length=32, default="stripe")
    event_id = models.CharField(max_length=200, unique=True)
    type = models.CharField(max_length=100)
    organization = models.ForeignKey(Organization, null=True, blank=True, on_delete=models.SET_NULL)
    amount = models.BigIntegerField(default=0, help_text="Micro-credits moved by this event (signed).")
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.provider} {self.type} {self.event_id}"


class TopUp(models.Model):
    """A Stripe Checkout purchase of credits: links Stripe's ids to the organization it pays for."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PAID = "paid", "Paid"
        EXPIRED = "expired", "Expired"

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="topups")
    created_by = models.ForeignKey("orgs.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    checkout_session_id = models.CharField(max_length=200, unique=True)
    payment_intent_id = models.CharField(max_length=200, blank=True, db_index=True)
    amount_cents = models.PositiveIntegerField(help_text="USD cents paid; 1 cent buys 1 credit.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"top-up {self.checkout_session_id} {self.amount_cents}¢ {self.status}"
