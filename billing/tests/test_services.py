import threading
import time
import uuid

import pytest
from django.db import IntegrityError, connection, connections, transaction

from apikeys.services import api_key_create
from billing.models import LedgerEntry, Wallet
from billing.services import (
    InsufficientCredits,
    UsageCharge,
    usage_charges_apply,
    wallet_charge,
    wallet_credit,
)
from orgs.models import Organization
from orgs.services import OrgRuleError, organization_create, organization_delete, user_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def wallet():
    owner = user_create(email=f"{uuid.uuid4().hex[:8]}@example.test")
    return organization_create(name="Ledger test", owner=owner).wallet


def test_credit_is_idempotent(wallet):
    for _ in range(3):
        wallet_credit(organization_id=wallet.organization_id, amount=500, idempotency_key="stripe:evt_1")
    wallet.refresh_from_db()
    assert wallet.balance == 500
    assert wallet.entries.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_retry_racing_the_original_credits_once_without_an_error(wallet):
    """A webhook delivered twice at once: the second waits for the first's wallet lock, then finds the key."""
    org_id, outcome = wallet.organization_id, {}

    def retry():
        try:
            outcome["entry"] = wallet_credit(organization_id=org_id, amount=500,
                                             idempotency_key="stripe:evt_race")
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc
        finally:
            connections.close_all()

    with transaction.atomic():
        first = wallet_credit(organization_id=org_id, amount=500, idempotency_key="stripe:evt_race")
        racer = threading.Thread(target=retry)
        racer.start()
        deadline = time.monotonic() + 10
        while not lock_waiters() and time.monotonic() < deadline:
            racer.join(0.01)  # until the retry's backend waits for this transaction's wallet lock
        assert lock_waiters() == 1
    racer.join()
    wallet.refresh_from_db()
    assert "error" not in outcome and outcome["entry"].pk == first.pk
    assert wallet.balance == 500 and wallet.entries.count() == 1


def lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # else the view stays as first read in the transaction
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND wait_event_type = 'Lock'")
        return cursor.fetchone()[0]


def test_charge_takes_all_or_nothing(wallet):
    wallet_credit(organization_id=wallet.organization_id, amount=100, idempotency_key="grant")
    with pytest.raises(InsufficientCredits):
        wallet_charge(organization_id=wallet.organization_id, amount=101, idempotency_key="too-much")
    entry = wallet_charge(organization_id=wallet.organization_id, amount=60, idempotency_key="ok")
    again = wallet_charge(organization_id=wallet.organization_id, amount=60, idempotency_key="ok")
    wallet.refresh_from_db()
    assert entry.pk == again.pk and wallet.balance == 40 and entry.balance_after == 40


def test_database_forbids_a_negative_balance(wallet):
    with pytest.raises(IntegrityError), transaction.atomic():
        Wallet.objects.filter(pk=wallet.pk).update(balance=-1)


def test_database_forbids_a_duplicate_idempotency_key(wallet):
    wallet_credit(organization_id=wallet.organization_id, amount=5, idempotency_key="dup")
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(wallet=wallet, amount=5, balance_after=10, kind="topup", idempotency_key="dup")


def test_ledger_entries_are_append_only(wallet):
    entry = wallet_credit(organization_id=wallet.organization_id, amount=5, idempotency_key="once")
    entry.amount = 500
    with pytest.raises(ValueError):
        entry.save()
    with pytest.raises(ValueError):
        entry.delete()


def test_usage_charges_clamp_at_zero_and_report_the_shortfall(wallet):
    wallet_credit(organization_id=wallet.organization_id, amount=100, idempotency_key="grant")
    org_id = wallet.organization_id
    with transaction.atomic():
        shortfalls = usage_charges_apply([
            UsageCharge(organization_id=org_id, amount=70, idempotency_key="c1", reference="r1"),
            UsageCharge(organization_id=org_id, amount=70, idempotency_key="c2", reference="r2"),
            UsageCharge(organization_id=org_id, amount=70, idempotency_key="c1", reference="r1"),
        ])
    wallet.refresh_from_db()
    assert wallet.balance == 0
    assert shortfalls == {"c2": 40}
    assert sorted(wallet.entries.filter(kind="charge").values_list("amount", flat=True)) == [-70, -30]
    assert sum(wallet.entries.values_list("amount", flat=True)) == wallet.balance


def test_every_new_organization_has_an_empty_wallet():
    org = Organization.objects.create(name="Made in admin", slug=f"admin-{uuid.uuid4().hex[:8]}")
    assert Wallet.objects.get(organization=org).balance == 0


def test_an_organization_holding_credits_cannot_be_deleted(wallet):
    org = Organization.objects.get(pk=wallet.organization_id)
    key, _ = api_key_create(organization=org, name="ci")
    wallet_credit(organization_id=org.pk, amount=1, idempotency_key="a-micro-credit")
    with pytest.raises(OrgRuleError) as refused:
        organization_delete(organization=org, actor=org.memberships.get().user)
    assert refused.value.status == 409
    org.refresh_from_db()
    key.refresh_from_db()
    assert org.deleted_at is None and org.memberships.exists() and key.revoked_at is None
