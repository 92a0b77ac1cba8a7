"""Organization webhooks: the event registry, subscriptions, and signed deliveries with retries.

An event becomes one WebhookDelivery per subscribed webhook, written in the transaction of the action
that emits it and sent by a Celery task once that transaction commits; a beat task sends whatever is
due (retries, and first attempts whose task was lost). Delivery is at least once: receivers
deduplicate on the event id.
"""

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.bulk_sql import delete_in_batches
from orgs.events import SUBSCRIBABLE_EVENTS, AuditAction, WebhookEvent
from orgs.models import Organization, User, Webhook, WebhookDelivery
from orgs.services import OrgRuleError, audit_record

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
TIMEOUT_SECONDS = 10
RETRY_DELAYS = (30, 120, 600, 3600, 6 * 3600)  # seconds after failed attempts 1–5; the 6th failure is final
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
# An attempt holds its delivery this long, so a second worker does not send it too; if the worker dies
# mid-attempt, the delivery is due again once the claim runs out.
CLAIM_SECONDS = 120
DUE_BATCH = 500


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The Hypereal-Signature header: HMAC-SHA256 of "<timestamp>.<body>" keyed with the secret."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _public_state(webhook: Webhook) -> dict:
    """What the audit log keeps of a webhook: never the secret."""
    return {"url": webhook.url, "events": webhook.events, "enabled": webhook.enabled}


def webhook_url_clean(url: str) -> str:
    """``url`` if Hypereal may send events there (also for a request's webhookUrl), else OrgRuleError 400."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OrgRuleError("A webhook URL must be an http(s) address.", 400)
    if parts.scheme == "http" and not settings.HYPEREAL_WEBHOOKS_ALLOW_LOCAL:
        raise OrgRuleError("A webhook URL must use https.", 400)
    if reason := _unreachable_by_policy(parts.hostname):
        raise OrgRuleError(f"A webhook URL must point to a public host: {reason}.", 400)
    return url


def _unreachable_by_policy(host: str) -> str:
    """Why Hypereal refuses to call ``host`` (empty when it may): tenants must not reach our own network
    (loopback, private ranges, cloud metadata at link-local addresses). Checked again at every delivery,
    since DNS can change after creation."""
    if settings.HYPEREAL_WEBHOOKS_ALLOW_LOCAL:
        return ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except OSError:
        return ""  # unresolvable now: the attempt fails and is retried like any unreachable receiver
    local = sorted(a for a in addresses if not ipaddress.ip_address(a.split("%", 1)[0]).is_global)
    return f"{host} resolves to a non-public address ({', '.join(local)})" if local else ""


def _events_clean(events: list[str]) -> list[str]:
    if unknown := sorted(set(events) - set(SUBSCRIBABLE_EVENTS)):
        raise OrgRuleError(f"Unknown event(s) {', '.join(unknown)}; the events are "
                           f"{', '.join(SUBSCRIBABLE_EVENTS)}.", 400)
    if not events:
        raise OrgRuleError("Subscribe to at least one event.", 400)
    return sorted(set(events))


@transaction.atomic
def webhook_create(*, organization: Organization, url: str, events: list[str], actor: User,
                   ip: str | None = None) -> tuple[Webhook, str]:
    """Returns the webhook and its signing secret, shown this once (it is stored encrypted)."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    webhook = Webhook(organization=organization, url=webhook_url_clean(url), events=_events_clean(events),
                      created_by=actor)
    webhook.secret = secret
    webhook.save()
    audit_record(organization=organization, action=AuditAction.WEBHOOK_CREATE, target=webhook, actor=actor, ip=ip,
                 after=_public_state(webhook))
    return webhook, secret


@transaction.atomic
def webhook_update(*, webhook: Webhook, changes: dict, actor: User, ip: str | None = None) -> Webhook:
    """Change the URL, the events or enabled; audited with before and after when anything changed."""
    webhook = Webhook.objects.select_for_update(of=("self",)).select_related("created_by").get(pk=webhook.pk)
    before = _public_state(webhook)
    if "url" in changes:
        webhook.url = webhook_url_clean(changes["url"])
    if "events" in changes:
        webhook.events = _events_clean(changes["events"])
    if "enabled" in changes:
        webhook.enabled = changes["enabled"]
    if (after := _public_state(webhook)) != before:
        webhook.save(update_fields=["url", "events", "enabled"])
        audit_record(organization=webhook.organization, action=AuditAction.WEBHOOK_UPDATE, target=webhook, actor=actor,
                     ip=ip, before=before, after=after)
    return webhook


@transaction.atomic
def webhook_delete(*, webhook: Webhook, actor: User, ip: str | None = None) -> None:
    """The webhook and its delivery history go; the audit trail keeps what it was."""
    audit_record(organization=webhook.organization, action=AuditAction.WEBHOOK_DELETE, target=webhook, actor=actor,
                 ip=ip, before=_public_state(webhook))
    webhook.delete()


@transaction.atomic
def webhook_secret_rotate(*, webhook: Webhook, actor: User, ip: str | None = None) -> tuple[Webhook, str]:
    """A new signing secret, shown this once; deliveries sent from now on are signed with it."""
    webhook = Webhook.objects.select_for_update(of=("self",)).select_related("created_by").get(pk=webhook.pk)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    webhook.secret = secret
    webhook.save(update_fields=["secret_encrypted"])
    audit_record(organization=webhook.organization, action=AuditAction.WEBHOOK_ROTATE_SECRET, target=webhook,
                 actor=actor, ip=ip)
    return webhook, secret


def _event_id(type: WebhookEvent, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return "evt_" + secrets.token_hex(12)
    return "evt_" + hashlib.sha256(f"{type}:{idempotency_key}".encode()).hexdigest()[:24]


def _deliveries_record(*, targets: list[tuple[Webhook, str]], organization: Organization, type: WebhookEvent,
                       data: dict, event_id: str) -> list[WebhookDelivery]:
    """One delivery per (webhook, URL override) that does not have this event yet, sent once the transaction
    commits."""
    now = timezone.now()
    payload = {"id": event_id, "type": type, "created": int(now.timestamp()),
               "organization": {"id": organization.pk, "slug": organization.slug}, "data": data}
    recorded = set(WebhookDelivery.objects.filter(webhook__in=[w for w, _ in targets], event_id=event_id)
                   .values_list("webhook_id", flat=True))
    deliveries = WebhookDelivery.objects.bulk_create([
        WebhookDelivery(webhook=webhook, url=url, event_id=event_id, event_type=type, payload=payload,
                        next_attempt_at=now)
        for webhook, url in targets if webhook.pk not in recorded])
    if ids := [delivery.pk for delivery in deliveries]:
        transaction.on_commit(lambda: _deliveries_queue(ids), robust=True)
    return deliveries


def _deliveries_queue(delivery_ids: list[int]) -> None:
    from orgs.tasks import webhook_deliver

    for delivery_id in delivery_ids:
        # No publish retries: the caller never waits on the broker, and the beat task sends what this missed.
        webhook_deliver.apply_async((delivery_id,), retry=False)


def webhook_event_emit(*, organization: Organization, type: WebhookEvent, data: dict,
                       idempotency_key: str | None = None, extra_url: str = "") -> list[WebhookDelivery]:
    """Record the event for each enabled webhook of the organization subscribed to ``type``, and for
    ``extra_url`` (a request's own webhookUrl, checked when the request named it), signed with the
    organization's request-webhook secret.

    Written in the caller's transaction (an action rolled back announces nothing) and sent after it
    commits. Never raises: the action has happened, and an event that cannot be recorded is logged
    rather than allowed to undo it. An ``idempotency_key`` gives the event a stable id, so an action
    replayed (a redelivered payment event) is announced once.
    """
    if not isinstance(type, WebhookEvent):
        raise TypeError(f"Webhook events are orgs.events.WebhookEvent members, not {type!r}.")
    try:
        with transaction.atomic():  # a savepoint: a failure here leaves the caller's transaction usable
            targets = [(w, "") for w in organization.webhooks.filter(enabled=True, for_requests=False)
                       if type in w.events]
            if extra_url:
                targets.append((_request_webhook(organization), extra_url))
            if not targets:
                return []
            return _deliveries_record(targets=targets, organization=organization, type=type, data=data,
                                      event_id=_event_id(type, idempotency_key))
    except Exception:
        log.exception("webhook event %s of organization %s could not be recorded", type, organization.pk)
        return []


def _request_webhook(organization: Organization) -> Webhook:
    """The organization's request webhook, made (with a secret no one has seen yet) the first time a request
    names a webhookUrl; webhook_request_secret_issue shows a member a secret for it."""
    webhook = organization.webhooks.filter(for_requests=True).first()
    if webhook is None:
        webhook = Webhook(organization=organization, for_requests=True)
        webhook.secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        webhook.save()
    return webhook


@transaction.atomic
def webhook_request_secret_issue(*, organization: Organization, actor: User, ip: str | None = None) -> str:
    """A new signing secret for the events sent to requests' webhookUrls, shown this once (stored encrypted)."""
    webhook = _request_webhook(organization)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    webhook.secret = secret
    webhook.save(update_fields=["secret_encrypted"])
    audit_record(organization=organization, action=AuditAction.WEBHOOK_REQUEST_SECRET, target=webhook,
                 actor=actor, ip=ip)
    return secret


@transaction.atomic
def webhook_test_send(*, webhook: Webhook) -> WebhookDelivery:
    """Queue a webhook.test event to this webhook alone."""
    if not webhook.enabled:
        raise OrgRuleError("The webhook is disabled; enable it to send a test event.", 409)
    [delivery] = _deliveries_record(targets=[(webhook, "")], organization=webhook.organization,
                                    type=WebhookEvent.WEBHOOK_TEST,
                                    data={"webhook": {"id": webhook.pk, "url": webhook.url}},
                                    event_id=_event_id(WebhookEvent.WEBHOOK_TEST, None))
    return delivery


def _post(webhook: Webhook, delivery: WebhookDelivery) -> int:
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    signature = webhook_signature(secret=webhook.secret, timestamp=int(time.time()), body=body)
    headers = {"Content-Type": "application/json", "User-Agent": "Hypereal-Webhooks/1.0",
               "Hypereal-Event": delivery.event_type, "Hypereal-Delivery": str(delivery.pk),
               "Hypereal-Signature": signature}
    # Redirects are not followed (a 3xx is a failed attempt); the answer's body is never read.
    with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False) as http, \
            http.stream("POST", delivery.url or webhook.url, content=body, headers=headers) as response:
        return response.status_code


def webhook_delivery_attempt(*, delivery_id: int) -> WebhookDelivery | None:
    """POST a due delivery once: a 2xx delivers it; anything else schedules the next attempt, or after the
    last one fails it. None when it is not due (settled, waiting for a retry, or taken by another worker)."""
    now = timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now,
    ).update(attempts=F("attempts") + 1, next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None:
        return None  # its webhook was deleted meanwhile
    webhook, status_code, error = delivery.webhook, None, ""
    if not webhook.enabled:
        error = "The webhook was disabled before this event was sent."
    elif refused := _unreachable_by_policy(urlsplit(delivery.url or webhook.url).hostname or ""):
        error = f"Refused: {refused}."
    else:
        try:
            status_code = _post(webhook, delivery)
        except httpx.HTTPError as exc:  # refused, timed out, reset: retried like an error status
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # ours (e.g. a secret that no longer decrypts): recorded, never left claimed
            log.exception("webhook delivery %s could not be sent", delivery_id)
            error = f"{type(exc).__name__}: {exc}"
        else:
            error = "" if 200 <= status_code < 300 else f"HTTP {status_code}"
    delivery.last_status_code, delivery.last_error = status_code, error[:500]
    if not error:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = (
            WebhookDelivery.Status.DELIVERED, timezone.now(), None)
    elif delivery.attempts >= MAX_ATTEMPTS or not webhook.enabled:
        delivery.status, delivery.next_attempt_at = WebhookDelivery.Status.FAILED, None
    else:
        delivery.next_attempt_at = timezone.now() + timedelta(seconds=RETRY_DELAYS[delivery.attempts - 1])
    delivery.save(update_fields=["status", "last_status_code", "last_error", "next_attempt_at",
                                 "delivered_at"])
    log.info("webhook delivery %s (%s, attempt %s): %s", delivery.pk, delivery.event_type, delivery.attempts,
             error or "delivered")
    return delivery


def webhook_deliveries_due(*, limit: int = DUE_BATCH) -> list[int]:
    """Ids of pending deliveries whose next attempt is due, the longest waiting first."""
    return list(WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING,
                                               next_attempt_at__lte=timezone.now())
                .order_by("next_attempt_at").values_list("pk", flat=True)[:limit])


def webhook_deliveries_prune(*, batch_size: int = 10_000) -> int:
    """Delete settled deliveries older than the request-log retention age, a batch at a time."""
    cutoff = timezone.now() - timedelta(days=settings.HYPEREAL["LOG_RETENTION_DAYS"])
    settled = WebhookDelivery.objects.filter(created_at__lt=cutoff).exclude(status=WebhookDelivery.Status.PENDING)
    return delete_in_batches(settled, batch_size=batch_size)
