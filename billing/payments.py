"""Stripe top-ups: Checkout Sessions to buy credits, webhooks that move them through the ledger.

Every webhook is verified (Stripe-Signature), stored once per event id, and applied with ledger
idempotency keys derived from Stripe's own ids, so a redelivered or duplicated event credits once.
"""

import json
import logging

import stripe
from django.conf import settings
from django.db import transaction

from billing.models import LedgerEntry, PaymentEvent, TopUp
from billing.money import MICRO, micro_to_credits
from billing.services import wallet_credit, wallet_debit_available
from orgs.events import AuditAction, WebhookEvent
from orgs.services import audit_record
from orgs.webhooks import webhook_event_emit

log = logging.getLogger(__name__)
MIN_TOPUP_CENTS = 200  # 2 USD = 200 credits
MAX_TOPUP_CENTS = 1_000_000


class PaymentsNotConfigured(Exception):
    pass


class InvalidWebhook(Exception):
    pass


def _client() -> stripe.StripeClient:
    if not settings.STRIPE_SECRET_KEY:
        raise PaymentsNotConfigured("Set STRIPE_SECRET_KEY to enable top-ups.")
    base = {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else None
    return stripe.StripeClient(settings.STRIPE_SECRET_KEY, base_addresses=base, max_network_retries=2)


def credits_for_cents(cents: int) -> int:
    """Micro-credits bought by ``cents`` US cents (100 credits = 1 USD)."""
    return cents * MICRO


def topup_checkout_create(*, organization, user, amount_cents: int, ip: str | None = None) -> tuple[TopUp, str]:
    """A Checkout Session for ``amount_cents``; returns the top-up and the URL to send the payer to."""
    if not MIN_TOPUP_CENTS <= amount_cents <= MAX_TOPUP_CENTS:
        raise ValueError(f"Top-ups are between {MIN_TOPUP_CENTS / 100:.2f} and {MAX_TOPUP_CENTS / 100:.2f} USD.")
    org_ref = {"organization_id": str(organization.pk)}
    session = _client().v1.checkout.sessions.create(params={
        "mode": "payment",
        "client_reference_id": str(organization.pk),
        "customer_email": user.email,
        "line_items": [{"quantity": 1, "price_data": {
            "currency": "usd", "unit_amount": amount_cents,
            "product_data": {"name": f"{amount_cents:,} Hypereal credits"}}}],
        "metadata": org_ref,
        "payment_intent_data": {"metadata": org_ref},
        "success_url": f"{settings.PUBLIC_URL}/billing/top-up?paid={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{settings.PUBLIC_URL}/billing/top-up",
    })
    topup = TopUp.objects.create(organization=organization, created_by=user, checkout_session_id=session.id,
                                 payment_intent_id=session.payment_intent or "", amount_cents=amount_cents)
    audit_record(organization=organization, action=AuditAction.BILLING_TOPUP_STARTED, target=topup, actor=user, ip=ip,
                 after={"amount_cents": amount_cents})
    return topup, session.url


@transaction.atomic
def stripe_webhook_handle(*, payload: bytes, signature: str | None) -> PaymentEvent:
    if not settings.STRIPE_WEBHOOK_SECRET:
        raise PaymentsNotConfigured("Set STRIPE_WEBHOOK_SECRET to accept Stripe webhooks.")
    try:
        stripe.Webhook.construct_event(payload, signature, settings.STRIPE_WEBHOOK_SECRET)
    except (stripe.SignatureVerificationError, ValueError) as exc:
        raise InvalidWebhook(str(exc)) from None
    event = json.loads(payload)
    record, created = PaymentEvent.objects.get_or_create(
        event_id=event["id"], defaults={"type": event["type"], "payload": event})
    if not created:
        return record  # redelivered: already applied
    handler = _HANDLERS.get(event["type"])
    if handler is not None:
        handler(record, event["data"]["object"])
    return record


def _topup_for(*, session_id: str | None = None, payment_intent: str | None = None) -> TopUp | None:
    topups = TopUp.objects.select_for_update().select_related("organization")
    if session_id:
        return topups.filter(checkout_session_id=session_id).first()
    return topups.filter(payment_intent_id=payment_intent).first() if payment_intent else None


def _moved(record: PaymentEvent, topup: TopUp, entry: LedgerEntry | None, reason: str) -> None:
    """Note what the event moved and tell the organization's webhooks, once per ledger entry."""
    amount = entry.amount if entry else 0
    record.organization, record.amount = topup.organization, amount
    record.save(update_fields=["organization", "amount"])
    if amount:
        webhook_event_emit(
            organization=topup.organization,
            type=WebhookEvent.BILLING_CREDITS_ADDED if amount > 0 else WebhookEvent.BILLING_CREDITS_REMOVED,
            data={"credits": str(micro_to_credits(abs(amount))),
                  "balance": str(micro_to_credits(entry.balance_after)), "reason": reason,
                  "reference": entry.reference},
            idempotency_key=f"ledger:{entry.pk}")


def _checkout_paid(record: PaymentEvent, session: dict) -> None:
    if session.get("payment_status") != "paid":
        return  # asynchronous methods complete later, with async_payment_succeeded
    topup = _topup_for(session_id=session["id"])
    if topup is None:
        log.warning("Stripe session %s is not one of our top-ups; ignored", session["id"])
        return
    amount = credits_for_cents(topup.amount_cents)
    entry = wallet_credit(organization_id=topup.organization_id, amount=amount, reference=session["id"],
                          idempotency_key=f"stripe:checkout:{session['id']}", kind=LedgerEntry.Kind.TOPUP)
    topup.status, topup.payment_intent_id = TopUp.Status.PAID, session.get("payment_intent") or ""
    topup.save(update_fields=["status", "payment_intent_id"])
    audit_record(organization=topup.organization, action=AuditAction.BILLING_TOPUP_PAID, target=topup,
                 after={"credits": topup.amount_cents})
    _moved(record, topup, entry, "topup")


def _charge_refunded(record: PaymentEvent, charge: dict) -> None:
    """``amount_refunded`` is cumulative: take back only what earlier refunds of this charge did not."""
    topup = _topup_for(payment_intent=charge.get("payment_intent"))
    if topup is None:
        return
    refunds = LedgerEntry.objects.filter(wallet__organization=topup.organization_id, kind=LedgerEntry.Kind.REFUND,
                                         reference=charge["id"])
    taken = -sum(refunds.values_list("amount", flat=True))
    due = credits_for_cents(charge["amount_refunded"]) - taken
    if due > 0:
        entry = wallet_debit_available(organization_id=topup.organization_id, amount=due, reference=charge["id"],
                                       idempotency_key=f"stripe:refund:{charge['id']}:{charge['amount_refunded']}",
                                       kind=LedgerEntry.Kind.REFUND)
        _moved(record, topup, entry, "refund")


def _dispute_opened(record: PaymentEvent, dispute: dict) -> None:
    topup = _topup_for(payment_intent=dispute.get("payment_intent"))
    if topup is None:
        return
    entry = wallet_debit_available(organization_id=topup.organization_id, amount=credits_for_cents(dispute["amount"]),
                                   idempotency_key=f"stripe:dispute:{dispute['id']}", reference=dispute["id"],
                                   kind=LedgerEntry.Kind.ADJUSTMENT)
    audit_record(organization=topup.organization, action=AuditAction.BILLING_DISPUTE_OPENED, target=topup,
                 after={"dispute": dispute["id"], "amount_cents": dispute["amount"]})
    _moved(record, topup, entry, "dispute")


def _dispute_closed(record: PaymentEvent, dispute: dict) -> None:
    """A won dispute gives back exactly what opening it took."""
    if dispute.get("status") != "won":
        return
    taken = LedgerEntry.objects.filter(idempotency_key=f"stripe:dispute:{dispute['id']}").first()
    topup = _topup_for(payment_intent=dispute.get("payment_intent"))
    if taken is None or topup is None:
        return
    entry = wallet_credit(organization_id=topup.organization_id, amount=-taken.amount, reference=dispute["id"],
                          idempotency_key=f"stripe:dispute:{dispute['id']}:won",
                          kind=LedgerEntry.Kind.ADJUSTMENT)
    _moved(record, topup, entry, "dispute_won")


_HANDLERS = {
    "checkout.session.completed": _checkout_paid,
    "checkout.session.async_payment_succeeded": _checkout_paid,
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _dispute_opened,
    "charge.dispute.closed": _dispute_closed,
}
