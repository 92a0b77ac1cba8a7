"""Organization webhooks: managed by owners and admins, signed, retried, audited; sent over real HTTP to a
receiver on loopback."""

import hashlib
import hmac
import json
import logging
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.utils import timezone

from apikeys.models import BudgetAlert
from apikeys.services import api_key_create, api_key_update, budget_alert_send
from billing.models import TopUp
from billing.tests.test_stripe import checkout, deliver, event, paid, stripe_api  # noqa: F401 (a fixture)
from hypereal.celery import app as celery_app
from orgs.events import WebhookEvent
from orgs.models import AuditEvent, Webhook, WebhookDelivery
from orgs.roles import ADMIN, API_KEY_SCOPES, OWNER
from orgs.tasks import webhook_deliveries_retry
from orgs.tests.test_api import ROLES_AND_OUTSIDER, as_role, expect
from orgs.webhooks import (
    RETRY_DELAYS,
    webhook_create,
    webhook_deliveries_due,
    webhook_deliveries_prune,
    webhook_delivery_attempt,
    webhook_event_emit,
    webhook_request_secret_issue,
)
from tests.live import free_port
from tests.factories import org_with_member

pytestmark = pytest.mark.django_db
MONTH = "2026-11"
HOOK_URL = "https://hooks.example.test/hypereal"


class Receiver(BaseHTTPRequestHandler):
    """Records every request; answers with the statuses queued in ``server.answers``, then 200."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append({"path": self.path, "headers": self.headers, "body": body})
        status = self.server.answers.pop(0) if self.server.answers else 200
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "/moved")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver(settings):
    settings.HYPEREAL_WEBHOOKS_ALLOW_LOCAL = True  # plain http, on loopback
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.requests, server.answers = [], []
    server.url = f"http://127.0.0.1:{server.server_port}/hooks"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def eager_tasks():
    """Tasks queued once a transaction commits run at once, in this process: no broker, no worker."""
    was = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = was


def owner_of(org):
    return org.memberships.get(role=OWNER).user


def subscribe(org, url: str = HOOK_URL, events=("api_key.budget_alert",)) -> tuple[Webhook, str]:
    return webhook_create(organization=org, url=url, events=list(events), actor=owner_of(org))


def limited_key(org):
    key, _ = api_key_create(organization=org, name="ci", created_by=owner_of(org),
                            monthly_spend_limit=10_000_000)  # 10 credits
    return key


def verified(request: dict, secret: str) -> dict:
    """The body, after checking its signature the way the README tells receivers to."""
    fields = dict(part.split("=", 1) for part in request["headers"]["Hypereal-Signature"].split(","))
    signed = f"{fields['t']}.".encode() + request["body"]
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected), "the signature verifies with the webhook's secret"
    assert abs(time.time() - int(fields["t"])) < 300
    return json.loads(request["body"])


def readme_verify():
    """The README's verification snippet, as receivers copy it."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    snippet = readme.split("### Webhooks", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(snippet, namespace)
    return namespace["verify"]


def make_due(delivery: WebhookDelivery) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())


# --- the management API, for every role ---------------------------------------------------------


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_list_webhooks(role):
    client, org, _ = as_role(role)
    subscribe(org)
    resp = client.get(f"/api/orgs/{org.pk}/webhooks")
    assert resp.status_code == expect(role, {OWNER, ADMIN}, 200)
    if resp.status_code == 200:
        [listed] = resp.json()["data"]
        assert (listed["url"], listed["events"]) == (HOOK_URL, ["api_key.budget_alert"])
        assert "secret" not in listed


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_create_webhook(role):
    client, org, _ = as_role(role)
    resp = client.post(f"/api/orgs/{org.pk}/webhooks", {"url": HOOK_URL, "events": ["billing.credits_added"]},
                       content_type="application/json")
    assert resp.status_code == expect(role, {OWNER, ADMIN}, 201)
    assert Webhook.objects.filter(organization=org).exists() == (resp.status_code == 201)
    if resp.status_code == 201:
        body = resp.json()
        assert body["secret"].startswith("whsec_") and body["enabled"] is True
        assert Webhook.objects.get(pk=body["id"]).secret == body["secret"]


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_read_webhook(role):
    client, org, _ = as_role(role)
    webhook, _ = subscribe(org)
    resp = client.get(f"/api/orgs/{org.pk}/webhooks/{webhook.pk}")
    assert resp.status_code == expect(role, {OWNER, ADMIN}, 200)
    if resp.status_code == 200:
        assert resp.json()["id"] == webhook.pk and "secret" not in resp.json()


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_update_webhook(role):
    client, org, _ = as_role(role)
    webhook, _ = subscribe(org)
    resp = client.patch(f"/api/orgs/{org.pk}/webhooks/{webhook.pk}",
                        {"events": ["api_key.disabled", "api_key.budget_alert"], "enabled": False},
                        content_type="application/json")
    assert resp.status_code == expect(role, {OWNER, ADMIN}, 200)
    webhook.refresh_from_db()
    changed = (webhook.events, webhook.enabled) == (["api_key.budget_alert", "api_key.disabled"], False)
    assert changed == (resp.status_code == 200)


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_delete_webhook(role):
    client, org, _ = as_role(role)
    webhook, _ = subscribe(org)
    resp = client.delete(f"/api/orgs/{org.pk}/webhooks/{webhook.pk}")
    assert resp.status_code == expect(role, {OWNER, ADMIN}, 204)
    assert Webhook.objects.filter(pk=webhook.pk).exists() == (resp.status_code != 204)


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_rotate_webhook_secret(role):
    client, org, _ = as_role(role)
    webhook, secret = subscribe(org)
    resp = client.post(f"/api/orgs/{org.pk}/webhooks/{webhook.pk}/rotate-secret")
    assert resp.status_code == expect(role, {OWNER, ADMIN}, 200)
    webhook.refresh_from_db()
    if resp.status_code == 200:
        assert resp.json()["secret"] != secret and webhook.secret == resp.json()["secret"]
    else:
        assert webhook.secret == secret


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_issue_the_request_webhook_secret(role):
    client, org, _ = as_role(role)
    first = client.post(f"/api/orgs/{org.pk}/webhooks/request-secret")
    assert first.status_code == expect(role, {OWNER, ADMIN}, 201)
    if first.status_code == 201:
        again = client.post(f"/api/orgs/{org.pk}/webhooks/request-secret")
        assert first.json()["secret"].startswith("whsec_") and again.json()["secret"] != first.json()["secret"]
        assert Webhook.objects.get(organization=org, for_requests=True).secret == again.json()["secret"]
        assert client.get(f"/api/orgs/{org.pk}/webhooks").json()["data"] == [], "it is no subscription"
        assert AuditEvent.objects.filter(organization=org, action="webhook.request_secret").count() == 2


def test_an_event_for_a_requests_own_url_is_signed_with_the_request_secret(
        receiver, eager_tasks, django_capture_on_commit_callbacks):
    org, owner = org_with_member(OWNER)
    _, subscription_secret = subscribe(org, receiver.url, events=["job.completed"])
    secret = webhook_request_secret_issue(organization=org, actor=owner)
    with django_capture_on_commit_callbacks(execute=True):
        webhook_event_emit(organization=org, type=WebhookEvent.JOB_COMPLETED, data={"job": {"id": "job_1"}},
                           idempotency_key="job_1:done", extra_url=receiver.url + "/job_1")
    by_path = {request["path"]: request for request in receiver.requests}
    assert set(by_path) == {"/hooks", "/hooks/job_1"}, "the subscription and the request's own URL"
    assert verified(by_path["/hooks/job_1"], secret)["data"] == {"job": {"id": "job_1"}}
    assert verified(by_path["/hooks"], subscription_secret)["id"] == verified(by_path["/hooks/job_1"], secret)["id"]
    delivery = WebhookDelivery.objects.get(url=receiver.url + "/job_1")
    assert delivery.webhook.for_requests and delivery.status == "delivered"


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_list_webhook_deliveries(role):
    client, org, _ = as_role(role)
    webhook, _ = subscribe(org)
    budget_alert_send(key_id=limited_key(org).pk, month=MONTH, threshold=80)
    resp = client.get(f"/api/orgs/{org.pk}/webhooks/{webhook.pk}/deliveries")
    assert resp.status_code == expect(role, {OWNER, ADMIN}, 200)
    if resp.status_code == 200:
        [delivery] = resp.json()["data"]
        assert (delivery["type"], delivery["status"], delivery["attempts"], delivery["lastStatusCode"]) == (
            "api_key.budget_alert", "pending", 0, None)


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_send_a_test_event(role):
    client, org, _ = as_role(role)
    webhook, _ = subscribe(org)
    resp = client.post(f"/api/orgs/{org.pk}/webhooks/{webhook.pk}/test")
    assert resp.status_code == expect(role, {OWNER, ADMIN}, 202)
    queued = WebhookDelivery.objects.filter(webhook=webhook, event_type="webhook.test")
    assert queued.exists() == (resp.status_code == 202)


def test_another_organizations_webhook_is_not_found():
    client, org, _ = as_role(OWNER)
    other, _ = org_with_member(OWNER)
    webhook, _ = subscribe(other)
    for method in ("get", "patch", "delete"):
        assert getattr(client, method)(f"/api/orgs/{org.pk}/webhooks/{webhook.pk}",
                                       content_type="application/json").status_code == 404
    assert client.post(f"/api/orgs/{org.pk}/webhooks/{webhook.pk}/rotate-secret").status_code == 404
    assert Webhook.objects.filter(pk=webhook.pk).exists()


def test_webhooks_stay_with_signed_in_people_not_api_keys():
    org, owner = org_with_member(OWNER)
    _, plaintext = api_key_create(organization=org, name="ci", created_by=owner, scopes=frozenset(API_KEY_SCOPES))
    client = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert client.get(f"/api/orgs/{org.pk}/webhooks").status_code == 403
    resp = client.post(f"/api/orgs/{org.pk}/webhooks", {"url": HOOK_URL, "events": ["api_key.disabled"]},
                       content_type="application/json")
    assert resp.status_code == 403 and not Webhook.objects.exists()


def test_events_and_urls_are_validated(settings):
    client, org, _ = as_role(ADMIN)
    url = f"/api/orgs/{org.pk}/webhooks"

    def create(body):
        return client.post(url, body, content_type="application/json")

    unknown = create({"url": HOOK_URL, "events": ["api_key.budget_alert", "payment.stolen"]})
    assert unknown.status_code == 400 and "payment.stolen" in unknown.json()["detail"]
    assert "api_key.budget_alert" in unknown.json()["detail"], "the message lists the events there are"
    assert create({"url": HOOK_URL, "events": []}).status_code == 400
    assert create({"url": "ftp://hooks.example.test/x", "events": ["api_key.disabled"]}).status_code == 400
    assert create({"url": "not a url", "events": ["api_key.disabled"]}).status_code == 400
    settings.HYPEREAL_WEBHOOKS_ALLOW_LOCAL = False
    plain = create({"url": "http://hooks.example.test/x", "events": ["api_key.disabled"]})
    assert plain.status_code == 400 and "https" in plain.json()["detail"]
    settings.HYPEREAL_WEBHOOKS_ALLOW_LOCAL = True
    assert create({"url": "http://hooks.example.test/x", "events": ["api_key.disabled"]}).status_code == 201
    webhook = Webhook.objects.get(organization=org)
    resp = client.patch(f"{url}/{webhook.pk}", {"events": ["nope"]}, content_type="application/json")
    assert resp.status_code == 400 and Webhook.objects.get(pk=webhook.pk).events == ["api_key.disabled"]


def test_the_secret_is_shown_once_and_never_again(caplog, receiver):
    caplog.set_level(logging.DEBUG)
    client, org, _ = as_role(OWNER)
    created = client.post(f"/api/orgs/{org.pk}/webhooks",
                          {"url": receiver.url, "events": ["api_key.budget_alert"]},
                          content_type="application/json").json()
    webhook_id, secret = created["id"], created["secret"]
    base = f"/api/orgs/{org.pk}/webhooks/{webhook_id}"
    rotated = client.post(f"{base}/rotate-secret").json()["secret"]
    budget_alert_send(key_id=limited_key(org).pk, month=MONTH, threshold=80)
    webhook_delivery_attempt(delivery_id=WebhookDelivery.objects.get(webhook_id=webhook_id).pk)
    client.patch(base, {"enabled": False}, content_type="application/json")

    seen = [client.get(f"/api/orgs/{org.pk}/webhooks").content, client.get(base).content,
            client.get(f"{base}/deliveries").content,
            client.patch(base, {}, content_type="application/json").content]
    audit_rows = json.dumps(list(AuditEvent.objects.filter(organization=org).values()), default=str)
    stored = Webhook.objects.get(pk=webhook_id)
    for value in (secret, rotated):
        assert all(value.encode() not in page for page in seen)
        assert value not in stored.secret_encrypted and value not in caplog.text
        assert value not in audit_rows
        assert value.encode() not in receiver.requests[0]["body"]
    assert b"secret" not in b"".join(seen)
    assert stored.secret == rotated, "stored encrypted, readable only by the server"
    verified(receiver.requests[0], rotated)


def test_every_change_is_audited_without_the_secret():
    client, org, owner = as_role(OWNER)
    url = f"/api/orgs/{org.pk}/webhooks"
    created = client.post(url, {"url": HOOK_URL, "events": ["api_key.disabled"]},
                          content_type="application/json")
    webhook_id, secret = created.json()["id"], created.json()["secret"]
    client.patch(f"{url}/{webhook_id}", {"url": f"{HOOK_URL}/v2"}, content_type="application/json")
    rotated = client.post(f"{url}/{webhook_id}/rotate-secret").json()["secret"]
    client.delete(f"{url}/{webhook_id}")

    events = AuditEvent.objects.filter(organization=org, target_type="orgs.webhook").order_by("pk")
    assert [e.action for e in events] == ["webhook.create", "webhook.update", "webhook.rotate_secret",
                                          "webhook.delete"]
    create, update, _, delete = events
    assert create.after == {"url": HOOK_URL, "events": ["api_key.disabled"], "enabled": True}
    assert update.before["url"] == HOOK_URL and update.after["url"] == f"{HOOK_URL}/v2"
    assert delete.before["url"] == f"{HOOK_URL}/v2"
    assert {(e.actor, e.ip, e.target_id) for e in events} == {(owner.user, "203.0.113.7", str(webhook_id))}
    trail = json.dumps([[e.before, e.after] for e in events])
    assert secret not in trail and rotated not in trail and "whsec_" not in trail


# --- events and deliveries ----------------------------------------------------------------------


def test_a_budget_alert_reaches_the_receiver_signed_once_the_alert_commits(
        receiver, eager_tasks, django_capture_on_commit_callbacks):
    org, _ = org_with_member(OWNER)
    webhook, secret = subscribe(org, receiver.url)
    key = limited_key(org)
    with django_capture_on_commit_callbacks(execute=True) as queued:
        assert budget_alert_send(key_id=key.pk, month=MONTH, threshold=80)
        assert not receiver.requests, "nothing is sent inside the alert's transaction"
    assert len(queued) == 1

    [request] = receiver.requests
    delivery = WebhookDelivery.objects.get(webhook=webhook)
    assert request["path"] == "/hooks"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Hypereal-Event"] == "api_key.budget_alert"
    assert request["headers"]["Hypereal-Delivery"] == str(delivery.pk)
    body = verified(request, secret)
    verify, header = readme_verify(), request["headers"]["Hypereal-Signature"]
    assert verify(request["body"], header, secret) and not verify(request["body"] + b" ", header, secret)
    assert abs(body.pop("created") - time.time()) < 60
    assert body == {"id": delivery.event_id, "type": "api_key.budget_alert",
                    "organization": {"id": org.pk, "slug": org.slug},
                    "data": {"apiKey": {"id": key.pk, "name": "ci", "redactedKey": key.redacted},
                             "month": MONTH, "threshold": 80, "spendingLimit": "10", "disabled": False}}
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None
    assert not budget_alert_send(key_id=key.pk, month=MONTH, threshold=80)
    assert WebhookDelivery.objects.filter(webhook=webhook).count() == 1, "an alert already sent emits nothing"


def test_a_500_is_retried_after_the_backoff_and_delivered_by_the_beat_task(receiver, eager_tasks):
    org, _ = org_with_member(OWNER)
    webhook, secret = subscribe(org, receiver.url)
    receiver.answers[:] = [500]
    budget_alert_send(key_id=limited_key(org).pk, month=MONTH, threshold=80)
    delivery = WebhookDelivery.objects.get(webhook=webhook)

    before = timezone.now()
    delivery = webhook_delivery_attempt(delivery_id=delivery.pk)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert delivery.last_error == "HTTP 500"
    assert before + timedelta(seconds=29) < delivery.next_attempt_at < timezone.now() + timedelta(seconds=31)
    assert webhook_delivery_attempt(delivery_id=delivery.pk) is None, "not again before its retry is due"
    assert webhook_deliveries_retry() == 0 and len(receiver.requests) == 1

    make_due(delivery)
    assert webhook_deliveries_retry() == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 2, 200)
    first, second = receiver.requests
    assert first["body"] == second["body"], "a retry sends the same event"
    assert first["headers"]["Hypereal-Delivery"] == second["headers"]["Hypereal-Delivery"]
    verified(second, secret)

    client = Client()
    client.force_login(owner_of(org))
    [listed] = client.get(f"/api/orgs/{org.pk}/webhooks/{webhook.pk}/deliveries").json()["data"]
    assert (listed["status"], listed["attempts"], listed["lastStatusCode"]) == ("delivered", 2, 200)


def test_delivery_gives_up_after_six_failed_attempts(receiver):
    org, _ = org_with_member(OWNER)
    webhook, _ = subscribe(org, receiver.url, events=["api_key.disabled"])
    key = limited_key(org)
    api_key_update(key=key, changes={"disabled": True}, actor=owner_of(org))
    delivery = WebhookDelivery.objects.get(webhook=webhook)
    assert delivery.payload["data"] == {"apiKey": {"id": key.pk, "name": "ci", "redactedKey": key.redacted},
                                        "reason": "Disabled by a member."}
    receiver.answers[:] = [503] * 6
    delays = []
    for _ in range(6):
        make_due(delivery)
        started = timezone.now()
        delivery = webhook_delivery_attempt(delivery_id=delivery.pk)
        if delivery.next_attempt_at:
            delays.append(round((delivery.next_attempt_at - started).total_seconds()))
    assert delays == list(RETRY_DELAYS)
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 6, None)
    assert len(receiver.requests) == 6 and not webhook_deliveries_due()


def test_redirects_are_not_followed(receiver):
    org, _ = org_with_member(OWNER)
    webhook, _ = subscribe(org, receiver.url)
    receiver.answers[:] = [307]
    budget_alert_send(key_id=limited_key(org).pk, month=MONTH, threshold=80)
    delivery = webhook_delivery_attempt(delivery_id=WebhookDelivery.objects.get(webhook=webhook).pk)
    assert (delivery.status, delivery.last_status_code) == ("pending", 307)
    assert [r["path"] for r in receiver.requests] == ["/hooks"], "the Location was not visited"


def test_private_and_loopback_hosts_are_refused_unless_local_receivers_are_allowed(receiver, settings):
    org, _ = org_with_member(OWNER)
    webhook, _ = subscribe(org, receiver.url)  # created while local receivers were allowed
    budget_alert_send(key_id=limited_key(org).pk, month=MONTH, threshold=80)
    settings.HYPEREAL_WEBHOOKS_ALLOW_LOCAL = False
    delivery = webhook_delivery_attempt(delivery_id=WebhookDelivery.objects.get(webhook=webhook).pk)
    assert delivery.status == "pending" and "non-public address (127.0.0.1)" in delivery.last_error
    assert not receiver.requests, "nothing was sent into our own network"
    client = Client()
    client.force_login(owner_of(org))
    # A name counts by what it resolves to, at creation as at every delivery (localhost is 127.0.0.1 here).
    for url in ("https://127.0.0.1/hook", "https://169.254.169.254/latest/meta-data", "https://10.1.2.3/x",
                "https://localhost/hook"):
        resp = client.post(f"/api/orgs/{org.pk}/webhooks", {"url": url, "events": ["api_key.disabled"]},
                           content_type="application/json")
        assert resp.status_code == 400 and "public host" in resp.json()["detail"]


def test_events_a_webhook_does_not_subscribe_to_are_not_delivered(receiver):
    org, _ = org_with_member(OWNER)
    webhook, _ = subscribe(org, receiver.url, events=["billing.credits_added"])
    key = limited_key(org)
    key.auto_disable = True
    key.save()
    budget_alert_send(key_id=key.pk, month=MONTH, threshold=100)  # a budget alert and a disabled key
    assert not WebhookDelivery.objects.filter(webhook=webhook).exists()
    assert webhook_deliveries_retry() == 0 and not receiver.requests


def test_a_disabled_webhook_gets_nothing(receiver):
    org, _ = org_with_member(OWNER)
    webhook, _ = subscribe(org, receiver.url)
    budget_alert_send(key_id=limited_key(org).pk, month=MONTH, threshold=80)
    recorded = WebhookDelivery.objects.get(webhook=webhook)
    Webhook.objects.filter(pk=webhook.pk).update(enabled=False)

    budget_alert_send(key_id=limited_key(org).pk, month=MONTH, threshold=80)
    assert WebhookDelivery.objects.filter(webhook=webhook).count() == 1, "no new event for a disabled webhook"
    delivery = webhook_delivery_attempt(delivery_id=recorded.pk)
    assert delivery.status == "failed" and "disabled" in delivery.last_error, "nor one recorded before"
    assert not receiver.requests
    client = Client()
    client.force_login(owner_of(org))
    assert client.post(f"/api/orgs/{org.pk}/webhooks/{webhook.pk}/test").status_code == 409


def test_the_test_event_goes_to_one_webhook_whatever_it_subscribes_to(
        receiver, eager_tasks, django_capture_on_commit_callbacks):
    client, org, _ = as_role(ADMIN)
    webhook, secret = subscribe(org, receiver.url, events=["billing.credits_removed"])
    other, _ = subscribe(org, receiver.url, events=["billing.credits_removed"])
    with django_capture_on_commit_callbacks(execute=True):
        resp = client.post(f"/api/orgs/{org.pk}/webhooks/{webhook.pk}/test")
    assert resp.status_code == 202 and resp.json()["type"] == "webhook.test"
    [request] = receiver.requests
    body = verified(request, secret)
    assert body["type"] == "webhook.test"
    assert body["data"] == {"webhook": {"id": webhook.pk, "url": receiver.url}}
    assert not other.deliveries.exists()


@pytest.mark.usefixtures("stripe_api")
def test_a_top_up_announces_credits_added_once_and_a_refund_credits_removed(receiver):
    org, _ = checkout(amount="25.00")
    webhook, secret = subscribe(org, receiver.url,
                                events=["billing.credits_added", "billing.credits_removed"])
    topup = TopUp.objects.get(organization=org)
    completed = paid(topup, payment_intent="pi_hooks")
    assert deliver(completed).status_code == 200
    # Stripe may send another event for the same payment: credited once, so announced once.
    assert deliver({**completed, "id": "evt_same_payment_again"}).status_code == 200
    deliver(event("charge.refunded", {"id": "ch_hooks", "object": "charge", "payment_intent": "pi_hooks",
                                      "amount": 2500, "amount_refunded": 1000}))

    added, removed = WebhookDelivery.objects.filter(webhook=webhook).order_by("pk")
    for delivery in (added, removed):
        webhook_delivery_attempt(delivery_id=delivery.pk)
    first, second = (verified(r, secret) for r in receiver.requests)
    assert first["type"] == "billing.credits_added" and first["data"] == {
        "credits": "2500", "balance": "2500", "reason": "topup", "reference": topup.checkout_session_id}
    assert second["type"] == "billing.credits_removed" and second["data"] == {
        "credits": "1000", "balance": "1500", "reason": "refund", "reference": "ch_hooks"}
    assert first["organization"] == {"id": org.pk, "slug": org.slug}


def test_an_unreachable_receiver_never_breaks_the_alert(
        settings, eager_tasks, django_capture_on_commit_callbacks):
    settings.HYPEREAL_WEBHOOKS_ALLOW_LOCAL = True
    org, _ = org_with_member(OWNER)
    webhook, _ = subscribe(org, f"http://127.0.0.1:{free_port()}/nobody-listens")
    key = limited_key(org)
    with django_capture_on_commit_callbacks(execute=True):
        assert budget_alert_send(key_id=key.pk, month=MONTH, threshold=80)
    assert len(mail.outbox) == 1 and BudgetAlert.objects.filter(key=key).exists()
    delivery = WebhookDelivery.objects.get(webhook=webhook)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert delivery.last_error.startswith("ConnectError") and delivery.next_attempt_at > timezone.now()


def test_an_event_that_cannot_be_recorded_leaves_the_alert_standing(monkeypatch, caplog):
    org, _ = org_with_member(OWNER)
    subscribe(org)
    key = limited_key(org)

    def broken_insert(*args, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")  # a real database error, which aborts the transaction it runs in

    monkeypatch.setattr(WebhookDelivery.objects, "bulk_create", broken_insert)
    assert budget_alert_send(key_id=key.pk, month=MONTH, threshold=80)
    assert BudgetAlert.objects.filter(key=key).exists() and len(mail.outbox) == 1
    assert not WebhookDelivery.objects.exists()
    assert "webhook event api_key.budget_alert" in caplog.text


def test_settled_deliveries_past_the_retention_age_are_pruned(receiver, settings):
    org, _ = org_with_member(OWNER)
    webhook, _ = subscribe(org, receiver.url)
    for month in ("2026-01", "2026-02", "2026-03"):
        budget_alert_send(key_id=limited_key(org).pk, month=month, threshold=80)
    old, kept, waiting = WebhookDelivery.objects.filter(webhook=webhook).order_by("pk")
    long_ago = timezone.now() - timedelta(days=settings.HYPEREAL["LOG_RETENTION_DAYS"] + 1)
    WebhookDelivery.objects.filter(pk__in=[old.pk, waiting.pk]).update(created_at=long_ago)
    WebhookDelivery.objects.filter(pk__in=[old.pk, kept.pk]).update(status=WebhookDelivery.Status.DELIVERED)
    assert webhook_deliveries_prune() == 1
    assert set(WebhookDelivery.objects.filter(webhook=webhook).values_list("pk", flat=True)) == {kept.pk, waiting.pk}
