"""call_records_save writes charges, logs, rollups and key touches in plain SQL; these pin its semantics."""

import random
import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from apikeys.models import ApiKey
from apikeys.services import api_key_create
from billing.models import LedgerEntry
from billing.services import wallet_credit
from billing.tokens import TokenUsage
from orgs.roles import OWNER
from tests.factories import org_with_member
from usage.models import DailyUsage, RequestLog
from usage.services import CallRecord, call_records_save

pytestmark = pytest.mark.django_db


def funded_org(amount: int):
    org, _ = org_with_member(OWNER)
    wallet_credit(organization_id=org.pk, amount=amount, idempotency_key=f"grant:{uuid.uuid4().hex}")
    return org


def record(org, *, cost=1_000, status=200, model="gpt-5.5", key=None, when=None, attempts=None,
           **usage) -> CallRecord:
    if attempts is None:
        attempts = [{"provider": "sim", "status": status, "latency_ms": 120}]
    return CallRecord(
        request_id=f"req_{uuid.uuid4().hex[:24]}", organization_id=org.pk, api_key_id=key.pk if key else None,
        endpoint="chat.completions", model=model, provider="sim", upstream_model=f"sim/{model}",
        status=status, latency_ms=120, ttft_ms=40, stream=True, cost=cost, attempts=attempts,
        usage=TokenUsage(**{"input": 100, "output": 20, **usage}), created_at=when or timezone.now(),
        error_type="" if status < 400 else "upstream_error")


def balance(org) -> int:
    org.wallet.refresh_from_db()
    return org.wallet.balance


def ledger_sum(org) -> int:
    return sum(LedgerEntry.objects.filter(wallet=org.wallet).values_list("amount", flat=True))


def charges(org) -> list[tuple[int, int]]:
    entries = LedgerEntry.objects.filter(wallet=org.wallet, kind=LedgerEntry.Kind.CHARGE).order_by("pk")
    return list(entries.values_list("amount", "balance_after"))


def test_a_replayed_batch_neither_logs_nor_charges_twice():
    org = funded_org(10_000)
    batch = [record(org, cost=1_000), record(org, cost=2_000), record(org, cost=0, status=502)]
    call_records_save(records=batch)
    call_records_save(records=batch)  # the flush retries a batch whose commit it did not see
    call_records_save(records=[*batch, record(org, cost=500)])  # and may retry it with newer calls added
    assert RequestLog.objects.filter(organization=org).count() == 4
    assert balance(org) == 10_000 - 3_500
    assert charges(org) == [(-1_000, 9_000), (-2_000, 7_000), (-500, 6_500)]
    assert DailyUsage.objects.get(organization=org).requests == 4


def test_a_request_id_repeated_inside_a_batch_is_logged_and_charged_once():
    org = funded_org(10_000)
    call = record(org, cost=1_000)
    call_records_save(records=[call, record(org, cost=300), call])
    assert RequestLog.objects.filter(request_id=call.request_id).count() == 1
    assert balance(org) == 10_000 - 1_300
    assert LedgerEntry.objects.filter(idempotency_key=f"call:{call.request_id}").count() == 1
    rolled = DailyUsage.objects.get(organization=org)
    assert (rolled.requests, rolled.cost) == (2, 1_300)


def test_ledger_charges_name_the_request_and_keep_a_running_balance():
    org = funded_org(5_000)
    calls = [record(org, cost=1_000), record(org, cost=1_500)]
    call_records_save(records=calls)
    entries = LedgerEntry.objects.filter(wallet=org.wallet, kind=LedgerEntry.Kind.CHARGE).order_by("pk")
    assert [(e.idempotency_key, e.reference, e.amount, e.balance_after) for e in entries] == [
        (f"call:{calls[0].request_id}", calls[0].request_id, -1_000, 4_000),
        (f"call:{calls[1].request_id}", calls[1].request_id, -1_500, 2_500),
    ]
    assert all(timezone.is_aware(e.created_at) for e in entries)
    assert ledger_sum(org) == balance(org)


def test_a_charge_beyond_the_balance_takes_the_wallet_to_zero_and_records_the_shortfall():
    org = funded_org(1_000)
    calls = [record(org, cost=700), record(org, cost=700), record(org, cost=400)]
    call_records_save(records=calls)
    assert balance(org) == 0
    logs = {log.request_id: log for log in RequestLog.objects.filter(organization=org)}
    assert [(logs[r.request_id].cost, logs[r.request_id].uncollected) for r in calls] == [
        (700, 0), (700, 400), (400, 400)]
    assert charges(org) == [(-700, 300), (-300, 0), (0, 0)]
    assert ledger_sum(org) == 0
    assert DailyUsage.objects.get(organization=org).cost == 1_800  # rollups count what was priced


def test_one_batch_charges_each_organization_from_its_own_wallet():
    rich, poor = funded_org(10_000), funded_org(100)
    call_records_save(records=[record(poor, cost=300), record(rich, cost=300), record(rich, cost=200)])
    assert (balance(rich), balance(poor)) == (9_500, 0)
    assert RequestLog.objects.get(organization=poor).uncollected == 200


def test_error_calls_without_a_key_or_a_cost_are_logged_without_a_charge():
    org = funded_org(1_000)
    failed = record(org, cost=0, status=502, input=0, output=0)
    call_records_save(records=[failed])
    log = RequestLog.objects.get(request_id=failed.request_id)
    assert (log.api_key_id, log.cost, log.uncollected, log.status) == (None, 0, 0, 502)
    assert log.error_type == "upstream_error"
    assert charges(org) == [] and balance(org) == 1_000
    rolled = DailyUsage.objects.get(organization=org)
    assert (rolled.requests, rolled.errors, rolled.cost) == (1, 1, 0)


def test_rollups_add_up_across_batches():
    org = funded_org(1_000_000)
    today, yesterday = timezone.now(), timezone.now() - timedelta(days=1)
    call_records_save(records=[
        record(org, cost=100, input=1_000, cached_read=200, cache_write=50, output=300, reasoning=30),
        record(org, cost=0, status=500, input=10, output=0),
        record(org, cost=7, model="other"),
    ])
    call_records_save(records=[
        record(org, cost=900, input=2_000, cached_read=100, output=700, reasoning=70, when=today),
        record(org, cost=5, when=yesterday),
    ])
    rolled = DailyUsage.objects.get(organization=org, model="gpt-5.5", day=today.date())
    assert (rolled.requests, rolled.errors, rolled.cost) == (3, 1, 1_000)
    assert (rolled.input_tokens, rolled.cached_tokens, rolled.cache_write_tokens, rolled.output_tokens,
            rolled.reasoning_tokens) == (3_010, 300, 50, 1_000, 100)
    assert DailyUsage.objects.get(organization=org, model="gpt-5.5", day=yesterday.date()).cost == 5
    assert DailyUsage.objects.get(organization=org, model="other").requests == 1


def test_every_column_round_trips_as_django_would_store_it():
    org = funded_org(1_000_000)
    key, _ = api_key_create(organization=org, name="ci")
    attempts = [{"provider": "a", "status": 429, "latency_ms": 3, "error": 'rate "limited" ünïcode'},
                {"provider": "b", "status": 200, "latency_ms": 7, "nested": {"ok": True, "n": None}}]
    when = timezone.now() - timedelta(minutes=5)
    call = record(org, key=key, cost=1_234, when=when, attempts=attempts, input=11, cached_read=2,
                  cache_write=1, output=5, reasoning=3)
    call_records_save(records=[call])
    log = RequestLog.objects.get(request_id=call.request_id)
    assert (log.organization_id, log.api_key_id, log.endpoint, log.model, log.provider, log.upstream_model,
            log.status, log.latency_ms, log.ttft_ms, log.error_type, log.stream) == (
        org.pk, key.pk, "chat.completions", "gpt-5.5", "sim", "sim/gpt-5.5", 200, 120, 40, "", True)
    assert (log.input_tokens, log.cached_tokens, log.cache_write_tokens, log.output_tokens,
            log.reasoning_tokens, log.cost, log.uncollected) == (11, 2, 1, 5, 3, 1_234, 0)
    assert log.attempts == attempts and log.created_at == when
    assert RequestLog.objects.get(organization=org, attempts__1__nested__ok=True) == log  # JSON, not text
    # Byte for byte what the ORM stores for the same values.
    twin = RequestLog.objects.create(organization=org, request_id=f"twin-{call.request_id}", endpoint="x",
                                     status=200, attempts=attempts, created_at=when)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT attempts, created_at FROM {RequestLog._meta.db_table} "
                       "WHERE id IN (%s, %s) ORDER BY id", [log.pk, twin.pk])
        ours, django = cursor.fetchall()
    assert ours == django


def test_touched_keys_get_their_last_use():
    org = funded_org(1_000)
    first, _ = api_key_create(organization=org, name="first")
    second, _ = api_key_create(organization=org, name="second")
    untouched, _ = api_key_create(organization=org, name="untouched")
    one, two = timezone.now() - timedelta(minutes=2), timezone.now() - timedelta(minutes=1)
    call_records_save(records=[record(org, key=first)], touched_keys={second.pk: two, first.pk: one})
    assert dict(ApiKey.objects.filter(organization=org).values_list("pk", "last_used_at")) == {
        first.pk: one, second.pk: two, untouched.pk: None}


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_over_the_same_wallets_neither_deadlock_nor_lose_charges():
    orgs = [funded_org(1_000_000) for _ in range(3)]
    batches = [[record(random.choice(orgs), cost=random.randrange(1, 1_000)) for _ in range(20)]
               for _ in range(16)]
    errors = []

    def flush(mine):
        try:
            for batch in mine:
                call_records_save(records=batch)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=flush, args=(batches[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for org in orgs:
        spent = sum(r.cost for batch in batches for r in batch if r.organization_id == org.pk)
        assert balance(org) == 1_000_000 - spent == ledger_sum(org)
