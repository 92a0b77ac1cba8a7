import contextlib
from collections.abc import Iterator, Sequence

from django.db import connection, transaction

from billing.models import LedgerEntry, Wallet
from core.bulk_sql import existing_values


def wallet_balance(*, organization_id: int) -> int:
    """Micro-credits; an organization without a wallet has none."""
    return Wallet.objects.filter(organization_id=organization_id).values_list("balance", flat=True).first() or 0


@contextlib.contextmanager
def ledger_snapshot() -> Iterator[None]:
    """Reads inside see the database as of one moment (REPEATABLE READ on PostgreSQL; SQLite's transactions
    already do), so that a batch of charges is seen either whole or not at all."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


def charges_written(idempotency_keys: Sequence[str]) -> set[str]:
    """Which of these ledger keys are posted."""
    return existing_values(LedgerEntry, "idempotency_key", idempotency_keys)


def wallets_snapshot(*, organization_ids: Sequence[int], charge_keys: Sequence[str]) -> tuple[dict[int, int], set[str]]:
    """Each organization's balance, and which of ``charge_keys`` are in the ledger, as of one moment."""
    with ledger_snapshot():
        balances = dict.fromkeys(organization_ids, 0)
        balances.update(Wallet.objects.filter(organization_id__in=organization_ids)
                        .values_list("organization_id", "balance"))
        return balances, charges_written(charge_keys)
