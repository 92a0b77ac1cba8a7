"""Stripe top-ups end to end. Stripe's servers are the one thing stood in for, at the HTTP boundary."""

import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from django.test import Client

from billing.models import LedgerEntry, PaymentEvent, TopUp, Wallet
from billing.money import MICRO
from orgs.roles import BILLING, DEVELOPER, OWNER, VIEWER
from tests.factories import org_with_member

pytestmark = pytest.mark.django_db
WEBHOOK_SECRET = "whsec_test_secret"


class FakeStripe(BaseHTTPRequestHandler):
    """Answers POST /v1/checkout/sessions the way Stripe does, and remembers what it was sent."""

    received: list[dict] = []

    def do_POST(self):
        form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        FakeStripe.received.append({"path": self.path, "form": form, "auth": self.headers["Authorization"]})
        session_id = f"cs_test_{uuid.uuid4().hex}"
        body = json.dumps({"id": session_id, "object": "checkout.session", "payment_intent": None,
                           "url": f"https://checkout.stripe.test/c/pay/{session_id}", "payment_status": "unpaid",
                           "amount_total": int(form["line_items[0][price_data][unit_amount]"][0])}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def stripe_api(settings):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeStripe)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.STRIPE_SECRET_KEY = "sk_test_hypereal"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{server.server_port}"
    FakeStripe.received.clear()
    yield FakeStripe.received
    server.shutdown()


def signed(event: dict, secret: str = WEBHOOK_SECRET) -> tuple[bytes, str]:
    """The payload and Stripe-Signature header exactly as Stripe computes them."""
    payload = json.dumps(event).encode()
    timestamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return payload, f"t={timestamp},v1={digest}"


def deliver(event: dict, secret: str = WEBHOOK_SECRET):
    payload, signature = signed(event, secret)
    return Client().post("/api/billing/stripe/webhook", payload, content_type="application/json",
                         HTTP_STRIPE_SIGNATURE=signature)


def event(kind: str, obj: dict) -> dict:
    return {"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": kind, "data": {"object": obj}}


def checkout(role=OWNER, amount="25.00"):
    org, member = org_with_member(role)
    client = Client(HTTP_X_ORGANIZATION=org.slug)
    client.force_login(member)
    return org, client.post("/api/billing/checkout", {"amountUsd": amount}, content_type="application/json")


def paid(topup: TopUp, payment_intent: str = "pi_1") -> dict:
    return event("checkout.session.completed", {
        "id": topup.checkout_session_id, "object": "checkout.session", "payment_status": "paid",
        "amount_total": topup.amount_cents, "payment_intent": payment_intent})


def balance(org) -> int:
    return Wallet.objects.get(organization=org).balance


def test_checkout_session_asks_stripe_for_the_right_purchase(stripe_api):
    org, resp = checkout(amount="25.00")
    assert resp.status_code == 201 and resp.json()["url"].startswith("https://checkout.stripe.test/")
    [call] = stripe_api
    assert call["path"] == "/v1/checkout/sessions" and call["auth"] == "Bearer sk_test_hypereal"
    assert call["form"]["line_items[0][price_data][unit_amount]"] == ["2500"]
    assert call["form"]["metadata[organization_id]"] == [str(org.pk)]
    assert TopUp.objects.get(organization=org).amount_cents == 2500


@pytest.mark.parametrize("amount", ["1.99", "0", "-5"])
def test_top_ups_under_two_dollars_are_refused(stripe_api, amount):
    _, resp = checkout(amount=amount)
    assert resp.status_code == 400 and not stripe_api


@pytest.mark.parametrize("role,status", [(OWNER, 201), (BILLING, 201), (DEVELOPER, 403), (VIEWER, 403)])
def test_only_owners_and_billing_members_buy_credits(stripe_api, role, status):
    assert checkout(role=role)[1].status_code == status


def test_the_same_webhook_delivered_three_times_credits_once(stripe_api):
    org, _ = checkout(amount="25.00")
    completed = paid(TopUp.objects.get(organization=org))
    for _ in range(3):
        assert deliver(completed).status_code == 200
    assert balance(org) == 2500 * MICRO
    assert LedgerEntry.objects.filter(wallet__organization=org, kind="topup").count() == 1
    assert PaymentEvent.objects.filter(event_id=completed["id"]).count() == 1
    # Stripe may also send a different event for the same payment: still one credit.
    completed_again = {**completed, "id": f"evt_{uuid.uuid4().hex}"}
    assert deliver(completed_again).status_code == 200 and balance(org) == 2500 * MICRO


def test_a_bad_signature_is_refused_and_changes_nothing(stripe_api):
    org, _ = checkout()
    completed = paid(TopUp.objects.get(organization=org))
    assert deliver(completed, secret="whsec_wrong").status_code == 400
    payload, _ = signed(completed)
    assert Client().post("/api/billing/stripe/webhook", payload, content_type="application/json").status_code == 400
    assert balance(org) == 0 and not PaymentEvent.objects.exists()


def test_refunds_and_disputes_debit_through_the_ledger(stripe_api):
    org, _ = checkout(amount="50.00")
    deliver(paid(TopUp.objects.get(organization=org), payment_intent="pi_refund"))
    charge = {"id": "ch_1", "object": "charge", "payment_intent": "pi_refund", "amount": 5000}
    deliver(event("charge.refunded", {**charge, "amount_refunded": 1000}))
    deliver(event("charge.refunded", {**charge, "amount_refunded": 1500}))  # a second, partial refund
    assert balance(org) == 3500 * MICRO
    dispute = {"id": "dp_1", "object": "dispute", "payment_intent": "pi_refund", "amount": 2000}
    deliver(event("charge.dispute.created", {**dispute, "status": "needs_response"}))
    assert balance(org) == 1500 * MICRO
    deliver(event("charge.dispute.closed", {**dispute, "status": "won"}))
    assert balance(org) == 3500 * MICRO
    entries = LedgerEntry.objects.filter(wallet__organization=org)
    assert sum(entries.values_list("amount", flat=True)) == balance(org)
    assert sorted(entries.values_list("kind", flat=True)) == ["adjustment", "adjustment", "refund", "refund", "topup"]


def test_a_refund_of_credits_already_spent_takes_only_what_is_left(stripe_api):
    org, _ = checkout(amount="10.00")
    deliver(paid(TopUp.objects.get(organization=org), payment_intent="pi_spent"))
    Wallet.objects.filter(organization=org).update(balance=300 * MICRO)  # as if 700 credits were spent
    LedgerEntry.objects.create(wallet=org.wallet, amount=-700 * MICRO, balance_after=300 * MICRO, kind="charge",
                               idempotency_key=f"spent:{org.pk}")
    deliver(event("charge.refunded", {"id": "ch_2", "object": "charge", "payment_intent": "pi_spent",
                                      "amount": 1000, "amount_refunded": 1000}))
    assert balance(org) == 0, "never negative"


def test_top_up_page_shows_the_balance_and_sends_the_payer_to_checkout(stripe_api):
    org, member = org_with_member(OWNER)
    client = Client()
    assert client.get("/billing/top-up").status_code == 302  # to the login page
    client.force_login(member)
    page = client.get("/billing/top-up", HTTP_X_ORGANIZATION=org.slug)
    assert page.status_code == 200 and b"Buy credits" in page.content
    resp = client.post(f"/billing/top-up?org={org.slug}", {"amount_usd": "20"})
    assert resp.status_code == 302 and resp["Location"].startswith("https://checkout.stripe.test/")
