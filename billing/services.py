"""Every movement of credits goes through ``ledger_post``; the services below say what each one means."""

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import F, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.models import Hold, LedgerEntry, Wallet
from billing.spendable import spendable_adjust_on_commit
from core.bulk_sql import existing_values, insert_rows, update_by_pk


class InsufficientCredits(Exception):
    def __init__(self, *, organization_id: int, needed: int):
        super().__init__(f"the wallet of organization {organization_id} cannot cover {needed} µcr")
        self.organization_id, self.needed = organization_id, needed


@dataclass(frozen=True, slots=True)
class Movement:
    """One signed move of micro-credits in an organization's wallet, recorded once under its key."""

    organization_id: int
    amount: int  # positive credits the wallet, negative debits it
    kind: str  # LedgerEntry.Kind
    idempotency_key: str
    reference: str = ""
    partial: bool = False  # a debit larger than the balance takes what is there instead of failing
    counted: bool = False  # already in the gateway's spendable counter (a served call, settled there)


@dataclass(frozen=True, slots=True)
class Posting:
    """What a movement did: ``amount`` moved (a partial debit may move less), or nothing if already posted."""

    idempotency_key: str
    amount: int
    balance_after: int
    fresh: bool


def ledger_post(movements: Sequence[Movement], *, new_keys: bool = False) -> list[Posting]:
    """Move credits: the one place that changes a balance.

    In one transaction for the whole batch: lock the wallets in primary-key order (concurrent batches
    cannot deadlock), skip the movements whose idempotency key is already in the ledger (a retry moves
    nothing, even one racing its original), apply the movements in order with a running balance, write
    one append-only ledger row each (``balance_after`` included), update each balance once, and after
    commit move the Redis spendable counters by what the gateway has not already counted. An exact debit
    the balance cannot cover raises InsufficientCredits and moves nothing. A handful of SQL statements
    whatever the batch size (COPY on PostgreSQL): the metering writer posts hundreds of calls at a time.
    ``new_keys``: the caller expects none of the keys to be posted yet, so they are not looked up; one that
    is fails the whole post on the ledger's unique key (IntegrityError) instead of being skipped.
    """
    with transaction.atomic():
        # The keys are read once the locks are granted: a concurrent post of one of them (a retry racing
        # its original) has committed by then, so it is seen and skipped instead of failing on the key.
        balances = _wallets_locked({m.organization_id for m in movements})
        done = set() if new_keys else existing_values(LedgerEntry, "idempotency_key",
                                                      [m.idempotency_key for m in movements])
        fresh = []
        for movement in movements:
            if movement.idempotency_key not in done:
                done.add(movement.idempotency_key)  # a key repeated inside one batch moves once too
                fresh.append(movement)
        rows, postings, unspent = [], [], {}
        now = connection.ops.adapt_datetimefield_value(timezone.now())  # as auto_now_add would set it
        for movement in fresh:
            wallet_id, balance = balances[movement.organization_id]
            amount = movement.amount
            if amount + balance < 0:
                if not movement.partial:
                    raise InsufficientCredits(organization_id=movement.organization_id, needed=-amount)
                amount = -balance
            balance += amount
            balances[movement.organization_id] = (wallet_id, balance)
            rows.append((wallet_id, amount, balance, movement.kind, movement.idempotency_key, movement.reference,
                         now))
            postings.append(Posting(movement.idempotency_key, amount, balance, True))
            if not movement.counted:
                unspent[movement.organization_id] = unspent.get(movement.organization_id, 0) + amount
        insert_rows(LedgerEntry, ("wallet", "amount", "balance_after", "kind", "idempotency_key", "reference",
                                  "created_at"), rows)
        # Only the wallets that moved: a replay's are locked too, but rewriting them would change nothing.
        moved = {m.organization_id for m in fresh}
        update_by_pk(Wallet, "balance", sorted(balances[org_id] for org_id in moved))
        spendable_adjust_on_commit(unspent)
    return postings


def _wallets_locked(organization_ids: set[int]) -> dict[int, tuple[int, int]]:
    """organization → (wallet id, balance), locked for the transaction; a missing wallet is created empty."""
    if not organization_ids:
        return {}
    meta = Wallet._meta
    pk, org, balance = meta.pk.column, meta.get_field("organization").column, meta.get_field("balance").column
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""  # SQLite locks the whole file
    sql = (f"SELECT {pk}, {org}, {balance} FROM {meta.db_table} "
           f"WHERE {org} IN ({', '.join(['%s'] * len(organization_ids))}) ORDER BY {pk}{lock}")
    with connection.cursor() as cursor:
        cursor.execute(sql, list(organization_ids))
        found = {org_id: (wallet_id, amount) for wallet_id, org_id, amount in cursor.fetchall()}
        if missing := organization_ids - found.keys():
            Wallet.objects.bulk_create([Wallet(organization_id=org_id) for org_id in missing],
                                       ignore_conflicts=True)
            cursor.execute(sql, list(organization_ids))
            found = {org_id: (wallet_id, amount) for wallet_id, org_id, amount in cursor.fetchall()}
    return found


def _posted(movement: Movement) -> LedgerEntry:
    ledger_post([movement])
    return LedgerEntry.objects.get(idempotency_key=movement.idempotency_key)


def wallet_credit(*, organization_id: int, amount: int, idempotency_key: str, reference: str = "",
                  kind: str = LedgerEntry.Kind.TOPUP) -> LedgerEntry:
    """Add credits; a retried call with the same idempotency key credits once."""
    if amount <= 0:
        raise ValueError("A credit must be positive.")
    return _posted(Movement(organization_id, amount, kind, idempotency_key, reference))


def wallet_charge(*, organization_id: int, amount: int, idempotency_key: str, reference: str = "") -> LedgerEntry:
    """Take exactly ``amount`` or nothing (for up-front prices)."""
    return _posted(Movement(organization_id, -amount, LedgerEntry.Kind.CHARGE, idempotency_key, reference))


def wallet_debit_available(*, organization_id: int, amount: int, idempotency_key: str, reference: str,
                           kind: str) -> LedgerEntry:
    """Take back up to ``amount`` (refunds, disputes): what was already spent cannot be taken back."""
    return _posted(Movement(organization_id, -amount, kind, idempotency_key, reference, partial=True))


@dataclass(frozen=True, slots=True)
class UsageCharge:
    """A finished call's cost, charged after the fact (the tokens were already served)."""

    organization_id: int
    amount: int
    idempotency_key: str
    reference: str


def usage_charges_apply(charges: list[UsageCharge], *, new_keys: bool = False) -> dict[str, int]:
    """Charge a batch of served calls; returns the amount each idempotency key could NOT collect.

    A charge larger than what is left takes the wallet to zero and reports the shortfall rather than
    going negative. The gateway counted each charge when it settled the call's reservation. ``new_keys``:
    as for ledger_post.
    """
    postings = ledger_post([Movement(c.organization_id, -c.amount, LedgerEntry.Kind.CHARGE, c.idempotency_key,
                                     c.reference, partial=True, counted=True) for c in charges],
                           new_keys=new_keys)
    asked = {c.idempotency_key: c.amount for c in charges}
    return {p.idempotency_key: asked[p.idempotency_key] + p.amount for p in postings
            if asked[p.idempotency_key] + p.amount}


@transaction.atomic
def hold_create(*, organization_id: int, amount: int, idempotency_key: str, expires_at, reference: str = "",
                counted: bool = False) -> Hold:
    """Set ``amount`` aside for a long job (all or nothing); a retry with the same key returns the same hold.
    ``counted``: the gateway's spendable counter already took it (the submit's reservation became the hold)."""
    if amount <= 0:
        raise ValueError("A hold must be positive.")
    if existing := Hold.objects.filter(idempotency_key=idempotency_key).first():
        return existing
    wallet_id = Wallet.objects.values_list("pk", flat=True).get(organization_id=organization_id)
    hold = Hold.objects.create(wallet_id=wallet_id, amount=amount, idempotency_key=idempotency_key,
                               reference=reference, expires_at=expires_at)
    ledger_post([Movement(organization_id, -amount, LedgerEntry.Kind.HOLD, f"hold:{hold.pk}", reference,
                          counted=counted)])
    return hold


def _hold_close(hold_id: int, *, actual: int, cap: int | None, status: str) -> Hold:
    """Give the whole hold back, then charge what the job cost (never above the hold or the cap)."""
    hold = Hold.objects.select_for_update(of=("self",)).select_related("wallet").get(pk=hold_id)
    if hold.status != Hold.Status.OPEN:
        return hold  # settled or released already: a retry changes nothing
    charge = max(0, min(actual, hold.amount, hold.amount if cap is None else cap))
    org_id = hold.wallet.organization_id
    movements = [Movement(org_id, hold.amount, LedgerEntry.Kind.RELEASE, f"hold:{hold.pk}:release", hold.reference)]
    if charge:
        movements.append(Movement(org_id, -charge, LedgerEntry.Kind.CHARGE, f"hold:{hold.pk}:charge",
                                  hold.reference))
    ledger_post(movements)
    hold.status, hold.settled_amount, hold.closed_at = status, charge, timezone.now()
    hold.save(update_fields=["status", "settled_amount", "closed_at"])
    return hold


@transaction.atomic
def hold_settle(*, hold_id: int, actual: int, cap: int | None = None) -> Hold:
    """Charge the job's actual cost, never more than the hold or the model's cap; release the rest."""
    return _hold_close(hold_id, actual=actual, cap=cap, status=Hold.Status.SETTLED)


@transaction.atomic
def hold_release(*, hold_id: int) -> Hold:
    """The job failed or never ran: everything goes back."""
    return _hold_close(hold_id, actual=0, cap=None, status=Hold.Status.RELEASED)


def holds_release_expired(*, now=None) -> int:
    expired = Hold.objects.filter(status=Hold.Status.OPEN, expires_at__lte=now or timezone.now())
    count = 0
    for hold_id in expired.values_list("pk", flat=True):
        count += hold_release(hold_id=hold_id).status == Hold.Status.RELEASED
    return count


def ledger_discrepancies() -> list[tuple[int, int, int]]:
    """(wallet id, balance, sum of its ledger) for every wallet whose cached balance disagrees."""
    ledger_sum = (LedgerEntry.objects.filter(wallet=OuterRef("pk")).order_by().values("wallet")
                  .annotate(total=Sum("amount")).values("total"))
    wallets = Wallet.objects.annotate(ledger=Coalesce(Subquery(ledger_sum), 0)).exclude(balance=F("ledger"))
    return list(wallets.values_list("pk", "balance", "ledger"))
