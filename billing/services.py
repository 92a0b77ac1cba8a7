from dataclasses import dataclass

from django.db import transaction
from django.db.models import F

from billing.models import LedgerEntry, Wallet
from billing.spendable import spendable_adjust_on_commit


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
    Per wallet: one locked read, one bulk insert, one update. A charge larger than what is left
    takes the wallet to zero and reports the shortfall rather than going negative.
    """
    keys = [c.idempotency_key for c in charges]
    done = set(LedgerEntry.objects.filter(idempotency_key__in=keys).values_list("idempotency_key", flat=True))
    by_org: dict[int, list[UsageCharge]] = {}
    for charge in charges:
        if charge.idempotency_key not in done:
            done.add(charge.idempotency_key)  # a key repeated inside one batch is charged once too
            by_org.setdefault(charge.organization_id, []).append(charge)
    shortfalls: dict[str, int] = {}
    wallets = Wallet.objects.select_for_update().filter(organization_id__in=by_org).order_by("pk")
    for wallet in wallets:  # locked in pk order so concurrent batches cannot deadlock
        balance, entries = wallet.balance, []
        for charge in by_org[wallet.organization_id]:
            taken = min(charge.amount, balance)
            balance -= taken
            if taken < charge.amount:
                shortfalls[charge.idempotency_key] = charge.amount - taken
            entries.append(LedgerEntry(wallet=wallet, amount=-taken, balance_after=balance,
                                       kind=LedgerEntry.Kind.CHARGE, idempotency_key=charge.idempotency_key,
                                       reference=charge.reference))
        LedgerEntry.objects.bulk_create(entries)
        Wallet.objects.filter(pk=wallet.pk).update(balance=balance)
    return shortfalls
