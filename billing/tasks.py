import logging

from celery import shared_task
from django.core.mail import mail_admins

from billing.services import holds_release_expired, ledger_discrepancies

log = logging.getLogger(__name__)


@shared_task
def ledger_reconcile() -> int:
    """Prove sum(ledger) == balance for every wallet; alert operators on any difference."""
    wrong = ledger_discrepancies()
    if wrong:
        lines = "\n".join(f"wallet {pk}: balance {balance} µcr, ledger {ledger} µcr" for pk, balance, ledger in wrong)
        log.error("ledger reconciliation found %d wallet(s) out of balance:\n%s", len(wrong), lines)
        mail_admins("Ledger out of balance", lines)
    return len(wrong)


@shared_task
def holds_expire() -> int:
    return holds_release_expired()
