import hashlib
import secrets

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone

from apikeys.models import KEY_PREFIX, ApiKey, BudgetAlert, KeyMonthSpend
from billing.money import micro_to_credits
from core.bulk_sql import update_by_pk
from orgs.events import AuditAction, WebhookEvent
from orgs.roles import BILLING, OWNER
from orgs.services import audit_record
from orgs.webhooks import webhook_event_emit


def api_key_hash(plaintext: str) -> str:
    """Unsalted SHA-256: the key carries 256 random bits, so a slow hash would add nothing."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _key_ref(key: ApiKey) -> dict:
    """How webhook events name a key."""
    return {"id": key.pk, "name": key.name, "redactedKey": key.redacted}


def _key_state(key: ApiKey) -> dict:
    return {"name": key.name, "monthly_spend_limit": key.monthly_spend_limit, "auto_disable": key.auto_disable,
            "scopes": sorted(key.scope_set)}


@transaction.atomic
def api_key_create(*, organization, name: str, created_by=None, monthly_spend_limit: int | None = None,
                   auto_disable: bool = False, scopes: frozenset[str] = frozenset(),
                   ip: str | None = None) -> tuple[ApiKey, str]:
    """Returns the key and its plaintext, which is never stored and cannot be shown again."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)  # 32 random bytes
    key = ApiKey.objects.create(organization=organization, name=name, created_by=created_by,
                                key_hash=api_key_hash(plaintext), last4=plaintext[-4:],
                                monthly_spend_limit=monthly_spend_limit, auto_disable=auto_disable,
                                scopes=",".join(sorted(scopes)))
    audit_record(organization=organization, action=AuditAction.API_KEY_CREATE, target=key, actor=created_by, ip=ip,
                 after=_key_state(key))
    return key, plaintext


@transaction.atomic
def api_key_update(*, key: ApiKey, changes: dict, actor=None, ip: str | None = None) -> ApiKey:
    """Rename, change the limit or auto-disable, or disable/enable; audited with before and after."""
    before = _key_state(key)
    if "name" in changes:
        key.name = changes["name"]
    if "spendingLimit" in changes:
        key.monthly_spend_limit = changes["spendingLimit"]
    if "autoDisable" in changes:
        key.auto_disable = changes["autoDisable"]
    if "scopes" in changes:
        key.scopes = ",".join(sorted(changes["scopes"]))
    key.save(update_fields=["name", "monthly_spend_limit", "auto_disable", "scopes"])
    if changes.get("disabled") is True:
        api_key_disable(key=key, reason="Disabled by a member.", actor=actor, ip=ip)
    elif changes.get("disabled") is False:
        api_key_enable(key=key, actor=actor, ip=ip)
    if (after := _key_state(key)) != before:
        audit_record(organization=key.organization, action=AuditAction.API_KEY_UPDATE, target=key, actor=actor, ip=ip,
                     before=before, after=after)
    return key


def api_key_revoke(*, key: ApiKey, actor=None, ip: str | None = None) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_record(organization=key.organization, action=AuditAction.API_KEY_REVOKE, target=key, actor=actor, ip=ip)
    return key


def api_key_disable(*, key: ApiKey, reason: str, actor=None, ip: str | None = None) -> ApiKey:
    if key.disabled_at is None:
        key.disabled_at, key.disabled_reason = timezone.now(), reason
        key.save(update_fields=["disabled_at", "disabled_reason"])
        audit_record(organization=key.organization, action=AuditAction.API_KEY_DISABLE, target=key, actor=actor, ip=ip,
                     after={"reason": reason})
        webhook_event_emit(organization=key.organization, type=WebhookEvent.API_KEY_DISABLED,
                           data={"apiKey": _key_ref(key), "reason": reason})
    return key


def api_key_enable(*, key: ApiKey, actor=None, ip: str | None = None) -> ApiKey:
    if key.disabled_at is not None:
        before = {"disabled_at": key.disabled_at.isoformat(), "reason": key.disabled_reason}
        key.disabled_at, key.disabled_reason = None, ""
        key.save(update_fields=["disabled_at", "disabled_reason"])
        audit_record(organization=key.organization, action=AuditAction.API_KEY_ENABLE, target=key, actor=actor, ip=ip,
                     before=before)
    return key


def budget_alert_recipients(key: ApiKey) -> list[str]:
    """The key's creator and the organization's owners and billing members."""
    emails = {m.user.email for m in key.organization.memberships.select_related("user")
              .filter(role__in=[OWNER, BILLING], user__is_active=True)}
    if key.created_by and key.created_by.is_active:
        emails.add(key.created_by.email)
    return sorted(emails)


BUDGET_THRESHOLDS = (80, 100)


def budget_alert_send(*, key_id: int, month: str, threshold: int) -> bool:
    """Send the 80 % heads-up or the 100 % hard-cap email once per key and month; False if already sent.

    A lower threshold still owed is sent first, so that one call taking a key past both never has the
    100 % email arrive before the 80 % one, however its alerts were queued.
    """
    for lower in (t for t in BUDGET_THRESHOLDS if t < threshold):
        budget_alert_send(key_id=key_id, month=month, threshold=lower)
    with transaction.atomic():
        key = ApiKey.objects.select_for_update(of=("self",)).select_related("organization", "created_by").get(pk=key_id)
        _, created = BudgetAlert.objects.get_or_create(key=key, month=month, threshold=threshold)
        if not created:
            return False
        disabled = threshold >= 100 and key.auto_disable and key.is_active
        if disabled:
            api_key_disable(key=key, reason=f"Reached its monthly spending limit ({month}).")
        limit = micro_to_credits(key.monthly_spend_limit or 0)
        webhook_event_emit(organization=key.organization, type=WebhookEvent.API_KEY_BUDGET_ALERT,
                           data={"apiKey": _key_ref(key), "month": month, "threshold": threshold,
                                 "spendingLimit": str(limit), "disabled": disabled})
        if threshold >= 100:
            subject = f'[Hypereal] API key "{key.name}" reached its monthly limit of {limit} credits'
            action = ("It has been disabled automatically; an admin can re-enable it."
                      if disabled else "Further calls are refused with 402 until the limit is raised or the "
                                       "month ends (UTC).")
        else:
            subject = f'[Hypereal] API key "{key.name}" has used {threshold}% of its monthly limit'
            action = "Calls continue until the limit is reached."
        body = (f'The API key "{key.name}" ({key.redacted}) of {key.organization.name} has spent {threshold}% '
                f"of its monthly limit of {limit} credits in {month}.\n\n{action}\n")
        recipients = budget_alert_recipients(key)
        if recipients:  # sent inside the transaction: a failed send retries the whole alert
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    return True


def api_keys_touch(*, last_used: dict[int, object]) -> None:
    """Record last use (the metering writer already throttles it per key): one statement for all the keys."""
    adapt_datetime = connection.ops.adapt_datetimefield_value
    update_by_pk(ApiKey, "last_used_at", [(pk, adapt_datetime(when)) for pk, when in sorted(last_used.items())])


def api_key_spend_add(*, spend: dict[tuple[int, str], int]) -> None:
    """Add (key, month) → micro-credits to the keys' month spend, inside the caller's transaction.

    One upsert per (key, month) that increments on conflict (Django's upsert can only overwrite), valid
    on PostgreSQL and SQLite; sorted, so concurrent batches lock the rows they share in the same order.
    """
    if not spend:
        return
    meta = KeyMonthSpend._meta
    table, key, month, amount = (meta.db_table, meta.get_field("key").column, meta.get_field("month").column,
                                 meta.get_field("amount").column)
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {table} ({key}, {month}, {amount}) VALUES (%s, %s, %s) "
                           f"ON CONFLICT ({key}, {month}) DO UPDATE SET {amount} = {table}.{amount} + excluded.{amount}",
                           [(key_id, when, value) for (key_id, when), value in sorted(spend.items())])
