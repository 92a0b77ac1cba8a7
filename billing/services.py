from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import F, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.models import Hold, LedgerEntry, Wallet
from billing.spendable import spendable_adjust_on_commit
from core.bulk_sql import existing_values, insert_rows, update_by_pk


class InsufficientCredits(Exception):
    def __init__(self, *, wallet_id: int, needed: int):
        super().__init__(f"wallet {wallet_id} cannot cover {needed} µcr")
        self.wallet_id, self.needed = wallet_id, needed


def wallet_get_or_create(*, organization) -> Wallet:
    return Wallet.objects.get_or_create(organization=organization)[0]


@transaction.atomic
def wallet_credit(*, wallet_id: int, amount: int, idempotency_key: str, reference: str = "",
                  kind: str = LedgerEntry.Kind.TOPUP) -> LedgerEntry:
    """Add credits; a retried call with the same idempotency key credits once."""
    if amount <= 0:
        raise ValueError("A credit must be positive.")
    if existing := LedgerEntry.objects.filter(idempotency_key=idempotency_key).first():
        return existing
    Wallet.objects.filter(pk=wallet_id).update(balance=F("balance") + amount)
    balance, org_id = Wallet.objects.values_list("balance", "organization_id").get(pk=wallet_id)
    spendable_adjust_on_commit(organization_id=org_id, delta=amount)
    return LedgerEntry.objects.create(wallet_id=wallet_id, amount=amount, balance_after=balance, kind=kind,
                                      idempotency_key=idempotency_key, reference=reference)


@transaction.atomic
def wallet_charge(*, wallet_id: int, amount: int, idempotency_key: str, reference: str = "") -> LedgerEntry:
    """Take exactly ``amount`` or nothing (for up-front prices)."""
    if existing := LedgerEntry.objects.filter(idempotency_key=idempotency_key).first():
        return existing
    updated = Wallet.objects.filter(pk=wallet_id, balance__gte=amount).update(balance=F("balance") - amount)
    if not updated:
        raise InsufficientCredits(wallet_id=wallet_id, needed=amount)
    balance, org_id = Wallet.objects.values_list("balance", "organization_id").get(pk=wallet_id)
    spendable_adjust_on_commit(organization_id=org_id, delta=-amount)
    return LedgerEntry.objects.create(wallet_id=wallet_id, amount=-amount, balance_after=balance,
                                      kind=LedgerEntry.Kind.CHARGE, idempotency_key=idempotency_key,
                                      reference=reference)


@dataclass(frozen=True, slots=True)
class UsageCharge:
    """A finished call's cost, charged after the fact (the tokens were already served)."""

    organization_id: int
    amount: int
    idempotency_key: str
    reference: str


def usage_charges_apply(charges: list[UsageCharge]) -> dict[str, int]:
    """Charge a batch of finished calls; returns the amount each idempotency key could NOT collect.

    Must run inside the caller's transaction (the request logs are written in the same one).
    For the whole batch: one lookup of the keys already charged, one locked read of the wallets, one
    ledger insert, one balance update. A charge larger than what is left takes the wallet to zero and
    reports the shortfall rather than going negative. Plain SQL rather than the ORM: the gateway's
    metering flush calls this in the process that serves requests, so its CPU is taken from them.
    """
    keys = [c.idempotency_key for c in charges]
    done = existing_values(LedgerEntry, "idempotency_key", keys)
    by_org: dict[int, list[UsageCharge]] = {}
    for charge in charges:
        if charge.idempotency_key not in done:
            done.add(charge.idempotency_key)  # a key repeated inside one batch is charged once too
            by_org.setdefault(charge.organization_id, []).append(charge)
    if not by_org:
        return {}
    meta = Wallet._meta
    wallet_id, wallet_org, wallet_balance = (meta.pk.column, meta.get_field("organization").column,
                                             meta.get_field("balance").column)
    # Locked in pk order so concurrent batches cannot deadlock (SQLite: the transaction holds a lock).
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {wallet_id}, {wallet_org}, {wallet_balance} FROM {meta.db_table} "
                       f"WHERE {wallet_org} IN ({', '.join(['%s'] * len(by_org))}) ORDER BY {wallet_id}{lock}",
                       list(by_org))
        locked = cursor.fetchall()
    shortfalls: dict[str, int] = {}
    entries, balances = [], []
    kind, adapt_datetime = LedgerEntry.Kind.CHARGE.value, connection.ops.adapt_datetimefield_value
    for pk, org_id, balance in locked:
        for charge in by_org[org_id]:
            taken = min(charge.amount, balance)
            balance -= taken
            if taken < charge.amount:
                shortfalls[charge.idempotency_key] = charge.amount - taken
            entries.append((pk, -taken, balance, kind, charge.idempotency_key, charge.reference,
                            adapt_datetime(timezone.now())))  # created_at, as auto_now_add sets it
        balances.append((pk, balance))
    insert_rows(LedgerEntry, ("wallet", "amount", "balance_after", "kind", "idempotency_key", "reference",
                              "created_at"), entries)
    update_by_pk(Wallet, "balance", balances)
    return shortfalls


@transaction.atomic
def hold_create(*, wallet_id: int, amount: int, idempotency_key: str, expires_at, reference: str = "") -> Hold:
    """Set ``amount`` aside for a long job (all or nothing); a retry with the same key returns the same hold."""
    if amount <= 0:
        raise ValueError("A hold must be positive.")
    if existing := Hold.objects.filter(idempotency_key=idempotency_key).first():
        return existing
    updated = Wallet.objects.filter(pk=wallet_id, balance__gte=amount).update(balance=F("balance") - amount)
    if not updated:
        raise InsufficientCredits(wallet_id=wallet_id, needed=amount)
    balance, org_id = Wallet.objects.values_list("balance", "organization_id").get(pk=wallet_id)
    spendable_adjust_on_commit(organization_id=org_id, delta=-amount)
    hold = Hold.objects.create(wallet_id=wallet_id, amount=amount, idempotency_key=idempotency_key,
                               reference=reference, expires_at=expires_at)
    LedgerEntry.objects.create(wallet_id=wallet_id, amount=-amount, balance_after=balance,
                               kind=LedgerEntry.Kind.HOLD, idempotency_key=f"hold:{hold.pk}", reference=reference)
    return hold


def _hold_close(hold, *, charge: int, status: str):
    """Give the whole hold back, then charge what the job cost: two ledger rows, one balance move."""
    wallet = Wallet.objects.select_for_update().get(pk=hold.wallet_id)
    balance = wallet.balance + hold.amount
    LedgerEntry.objects.create(wallet=wallet, amount=hold.amount, balance_after=balance,
                               kind=LedgerEntry.Kind.RELEASE, idempotency_key=f"hold:{hold.pk}:release",
                               reference=hold.reference)
    if charge:
        balance -= charge
        LedgerEntry.objects.create(wallet=wallet, amount=-charge, balance_after=balance,
                                   kind=LedgerEntry.Kind.CHARGE, idempotency_key=f"hold:{hold.pk}:charge",
                                   reference=hold.reference)
    Wallet.objects.filter(pk=wallet.pk).update(balance=balance)
    spendable_adjust_on_commit(organization_id=wallet.organization_id, delta=hold.amount - charge)
    hold.status, hold.settled_amount, hold.closed_at = status, charge, timezone.now()
    hold.save(update_fields=["status", "settled_amount", "closed_at"])
    return hold


@transaction.atomic
def hold_settle(*, hold_id: int, actual: int, cap: int | None = None):
    """Charge the job's actual cost, never more than the hold or the model's cap; release the rest."""
    hold = Hold.objects.select_for_update().get(pk=hold_id)
    if hold.status != Hold.Status.OPEN:
        return hold  # settled or released already: a retry changes nothing
    charge = max(0, min(actual, hold.amount, cap if cap is not None else hold.amount))
    return _hold_close(hold, charge=charge, status=Hold.Status.SETTLED)


@transaction.atomic
def hold_release(*, hold_id: int):
    """The job failed or never ran: everything goes back."""
    hold = Hold.objects.select_for_update().get(pk=hold_id)
    if hold.status != Hold.Status.OPEN:
        return hold
    return _hold_close(hold, charge=0, status=Hold.Status.RELEASED)


def holds_release_expired(*, now=None) -> int:
    expired = Hold.objects.filter(status=Hold.Status.OPEN, expires_at__lte=now or timezone.now())
    count = 0
    for hold_id in expired.values_list("pk", flat=True):
        count += hold_release(hold_id=hold_id).status == Hold.Status.RELEASED
    return count


@transaction.atomic
def wallet_debit_available(*, wallet_id: int, amount: int, idempotency_key: str, reference: str,
                           kind: str) -> LedgerEntry | None:
    """Take back up to ``amount`` (refunds, disputes): what was already spent cannot be taken back."""
    if existing := LedgerEntry.objects.filter(idempotency_key=idempotency_key).first():
        return existing
    wallet = Wallet.objects.select_for_update().get(pk=wallet_id)
    taken = min(amount, wallet.balance)
    if taken <= 0:
        return None
    Wallet.objects.filter(pk=wallet_id).update(balance=F("balance") - taken)
    spendable_adjust_on_commit(organization_id=wallet.organization_id, delta=-taken)
    return LedgerEntry.objects.create(wallet=wallet, amount=-taken, balance_after=wallet.balance - taken,
                                      kind=kind, idempotency_key=idempotency_key, reference=reference)


def ledger_discrepancies() -> list[tuple[int, int, int]]:
    """(wallet id, balance, sum of its ledger) for every wallet whose cached balance disagrees."""
    ledger_sum = (LedgerEntry.objects.filter(wallet=OuterRef("pk")).order_by().values("wallet")
                  .annotate(total=Sum("amount")).values("total"))
    wallets = Wallet.objects.annotate(ledger=Coalesce(Subquery(ledger_sum), 0)).exclude(balance=F("ledger"))
    return list(wallets.values_list("pk", "balance", "ledger"))
