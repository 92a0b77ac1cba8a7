"""Money that never leaks: spending limits and wallets under concurrency, budget alerts, auto-disable."""

import asyncio
import time

import httpx
import openai
import pytest
from django.core import mail
from django.utils import timezone
from openai import OpenAI

from apikeys.models import ApiKey, BudgetAlert
from apikeys.services import api_key_create, api_key_revoke, budget_alert_send
from billing.models import LedgerEntry, Wallet
from billing.money import MICRO
from orgs.models import AuditEvent, Membership
from orgs.roles import BILLING, VIEWER
from orgs.services import user_create
from tests.test_chat_completions import balance
from usage.models import RequestLog

KEY_LIMIT = 30_000  # micro-credits: room for about ten small gpt-5.4-mini calls


def burst(urls: list[str], key: str, payload: dict, n: int = 100) -> list[httpx.Response]:
    async def run():
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n)) as http:
            return await asyncio.gather(*(
                http.post(f"{urls[i % len(urls)]}/api/v1/chat/completions", json=payload,
                          headers={"Authorization": f"Bearer {key}"}) for i in range(n)))
    return asyncio.run(run())


def settle_everywhere(urls: list[str], key: str) -> None:
    for url in urls:  # every process writes what it served
        balance(url, key)


def test_concurrent_calls_never_spend_past_the_key_limit(gateway_url, second_gateway_url, make_account):
    acct = make_account(spending_limit=KEY_LIMIT)
    urls = [gateway_url, second_gateway_url]
    responses = burst(urls, acct.key, {"model": "gpt-5.4-mini", "max_tokens": 20,
                                       "messages": [{"role": "user", "content": "spend"}]})
    settle_everywhere(urls, acct.key)
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 402]
    assert len(ok) + len(refused) == 100, "every call is either served or refused"
    assert all(r.json()["error"]["type"] == "spending_limit_exceeded" for r in refused)
    assert ok, "the burst is served until reservations fill the limit"
    # Once the burst settled, the rest of the limit is still usable, call by call.
    client = OpenAI(base_url=f"{gateway_url}/api/v1", api_key=acct.key, max_retries=0)
    for _ in range(30):
        try:
            client.chat.completions.create(model="gpt-5.4-mini", max_tokens=20,
                                           messages=[{"role": "user", "content": "spend"}])
        except openai.APIStatusError as exc:
            assert exc.status_code == 402
            break
    settle_everywhere(urls, acct.key)

    logs = RequestLog.objects.filter(api_key_id=acct.key_id)
    served = logs.filter(status=200).count()
    assert 8 <= served <= 12, "a limit that allows about ten calls serves about ten"
    spent = sum(logs.filter(status=200).values_list("cost", flat=True))
    charges = LedgerEntry.objects.filter(wallet__organization=acct.org, kind=LedgerEntry.Kind.CHARGE)
    assert spent <= KEY_LIMIT, "with max_tokens set, the reservation bound is exact: never past the limit"
    assert charges.count() == served and -sum(charges.values_list("amount", flat=True)) == spent
    assert logs.filter(status=402).count() == len(refused) + 1 and not logs.filter(status=402, cost__gt=0).exists()


def test_concurrent_calls_never_overdraw_a_small_wallet(gateway_url, second_gateway_url, make_account):
    acct = make_account(credits="300")
    urls = [gateway_url, second_gateway_url]
    responses = burst(urls, acct.key, {"model": "tc-expensive", "max_tokens": 20,
                                       "messages": [{"role": "user", "content": "drain"}]})
    settle_everywhere(urls, acct.key)
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 402]
    assert ok and len(ok) + len(refused) == 100
    assert all(r.json()["error"]["type"] == "insufficient_credits" for r in refused)

    wallet = Wallet.objects.get(organization=acct.org)
    entries = LedgerEntry.objects.filter(wallet=wallet)
    assert wallet.balance >= 0 and sum(entries.values_list("amount", flat=True)) == wallet.balance
    logs = RequestLog.objects.filter(organization=acct.org, status=200)
    assert not logs.filter(uncollected__gt=0).exists(), "every served call was paid in full"
    assert 300 * MICRO - wallet.balance == sum(logs.values_list("cost", flat=True))


@pytest.mark.django_db
def test_budget_alerts_go_out_once_each_to_creator_owners_and_billing():
    creator = user_create(email="dev@example.test")
    org = creator.memberships.get().organization
    billing_member = user_create(email="money@example.test")
    viewer = user_create(email="look@example.test")
    Membership.objects.create(organization=org, user=billing_member, role=BILLING)
    Membership.objects.create(organization=org, user=viewer, role=VIEWER)
    key, _ = api_key_create(organization=org, name="ci", created_by=creator, monthly_spend_limit=10 * MICRO)
    month = timezone.now().strftime("%Y-%m")

    assert budget_alert_send(key_id=key.pk, month=month, threshold=80)
    assert not budget_alert_send(key_id=key.pk, month=month, threshold=80)
    assert budget_alert_send(key_id=key.pk, month=month, threshold=100)
    assert not budget_alert_send(key_id=key.pk, month=month, threshold=100)
    assert len(mail.outbox) == 2
    heads_up, hard_cap = mail.outbox
    assert "80%" in heads_up.subject and "reached its monthly limit" in hard_cap.subject
    assert sorted(heads_up.to) == ["dev@example.test", "money@example.test"]
    key.refresh_from_db()
    assert key.is_active, "without auto-disable the key stays on (calls get 402 at the limit)"


@pytest.mark.django_db
def test_the_heads_up_never_arrives_after_the_hard_cap():
    creator = user_create(email="leap@example.test")
    key, _ = api_key_create(organization=creator.memberships.get().organization, name="ci", created_by=creator,
                            monthly_spend_limit=10 * MICRO)
    month = timezone.now().strftime("%Y-%m")
    assert budget_alert_send(key_id=key.pk, month=month, threshold=100)  # one call took it past both
    assert ["80%" in m.subject for m in mail.outbox] == [True, False], "80 % first, then 100 %"
    assert not budget_alert_send(key_id=key.pk, month=month, threshold=80), "and the 80 % is never sent twice"


@pytest.mark.django_db
def test_auto_disable_turns_the_key_off_at_its_limit_and_audits_it():
    owner = user_create(email="own@example.test")
    key, _ = api_key_create(organization=owner.memberships.get().organization, name="ci", created_by=owner,
                            monthly_spend_limit=MICRO)
    key.auto_disable = True
    key.save()
    budget_alert_send(key_id=key.pk, month="2026-11", threshold=100)
    key.refresh_from_db()
    assert not key.is_active and "spending limit" in key.disabled_reason
    event = AuditEvent.objects.get(action="api_key.disable", target_id=str(key.pk))
    assert event.actor is None and event.organization == key.organization


def test_limit_emails_reach_a_real_smtp_server_and_auto_disable_stops_the_key(
        gateway_url, make_account, celery_worker, smtp_inbox):
    acct = make_account(spending_limit=KEY_LIMIT, auto_disable=True)
    owner_email = acct.org.memberships.get().user.email
    client = OpenAI(base_url=f"{gateway_url}/api/v1", api_key=acct.key, max_retries=0)
    status = 200
    for _ in range(40):  # sequential calls until the limit refuses one
        try:
            client.chat.completions.create(model="gpt-5.4-mini", max_tokens=20,
                                           messages=[{"role": "user", "content": "spend"}])
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            break
    assert status in (401, 402)

    def mine():
        return [m for m in smtp_inbox.messages if owner_email in m["To"]]

    deadline = time.monotonic() + 30
    while len(mine()) < 2 or ApiKey.objects.get(pk=acct.key_id).is_active:
        assert time.monotonic() < deadline, f"alerts: {[m['Subject'] for m in mine()]}"
        time.sleep(0.1)
    subjects = sorted(m["Subject"] for m in mine())
    assert "80%" in subjects[0] and "reached its monthly limit" in subjects[1]
    assert BudgetAlert.objects.filter(key_id=acct.key_id).count() == 2

    deadline = time.monotonic() + 6  # documented: a disabled key stops working within 5 s
    while True:
        resp = httpx.get(f"{gateway_url}/api/v1/key", headers={"Authorization": f"Bearer {acct.key}"})
        if resp.status_code == 401:
            break
        assert time.monotonic() < deadline, "the disabled key kept working"
    assert resp.json()["error"]["code"] == "api_key_inactive"


def test_a_revoked_key_stops_working_within_five_seconds(gateway_url, account):
    headers = {"Authorization": f"Bearer {account.key}"}
    assert httpx.get(f"{gateway_url}/api/v1/key", headers=headers).status_code == 200  # now cached
    api_key_revoke(key=ApiKey.objects.get(pk=account.key_id))
    revoked_at = time.monotonic()
    while httpx.get(f"{gateway_url}/api/v1/key", headers=headers).status_code != 401:
        assert time.monotonic() - revoked_at < 6
