"""The balance floor, checked from an in-process view of each wallet (no ORM on a warm cache)."""

from django.conf import settings

from billing.money import MICRO
from billing.selectors import wallet_balance
from gateway.db import run_db
from gateway.errors import GatewayError
from gateway.metering import meter
from gateway.ttlcache import MISSING, TTLCache

_balances: TTLCache[int] = TTLCache(ttl=settings.HYPEREAL["BALANCE_CACHE_SECONDS"])


def _remember(balances: dict[int, int]) -> None:
    for org_id, balance in balances.items():
        _balances.set(org_id, balance)


meter.on_balances.append(_remember)


async def available_balance(org_id: int) -> int:
    """Micro-credits: the wallet minus what this process has served but not yet written."""
    balance = _balances.get(org_id)
    if balance is MISSING:
        balance = await run_db(wallet_balance, organization_id=org_id)
        _balances.set(org_id, balance)
    return balance - meter.pending_cost(org_id)


async def require_llm_balance(org_id: int) -> None:
    floor = settings.HYPEREAL["MIN_BALANCE_CREDITS"]
    if await available_balance(org_id) < floor * MICRO:
        raise GatewayError(402, "insufficient_credits",
                           f"Insufficient credits: LLM calls need a balance of at least {floor} credits. "
                           "Top up to continue.", "insufficient_credits")
