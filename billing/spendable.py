"""The gateway's shared view of each wallet's spendable balance (see gateway/quota.py).

Billing services call ``spendable_adjust`` after commit whenever credits move outside the gateway
(top-ups, refunds, disputes, holds), so the gateway's counter stays equal to the wallet.
"""

from django.conf import settings
from django.db import transaction

_ADJUST = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end
return false
"""


def spendable_key(org_id: int) -> str:
    return f"hypereal:wallet:{org_id}"


def _adjust(org_id: int, delta: int) -> None:
    import redis

    with redis.Redis.from_url(settings.REDIS_URL) as client:
        client.eval(_ADJUST, 1, spendable_key(org_id), delta)


def spendable_adjust_on_commit(*, organization_id: int, delta: int) -> None:
    if settings.REDIS_URL:  # the embedded gateway reloads balances on its own
        transaction.on_commit(lambda: _adjust(organization_id, delta))
