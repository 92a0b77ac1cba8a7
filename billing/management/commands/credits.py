import uuid

from django.core.management.base import BaseCommand, CommandError

from billing.models import LedgerEntry
from billing.money import credits_to_micro, micro_to_credits
from billing.services import wallet_credit
from orgs.models import Organization


class Command(BaseCommand):
    help = "Grant credits to an organization's wallet (a ledger top-up)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        grant = sub.add_parser("grant")
        grant.add_argument("--org", required=True, help="Organization slug.")
        grant.add_argument("--credits", required=True, help="Amount in credits (100 credits = 1 USD).")
        grant.add_argument("--idempotency-key", help="Repeat-safe: a second grant with the same key does nothing.")
        grant.add_argument("--reference", default="operator grant")

    def handle(self, *args, action, org, credits, idempotency_key, reference, **opts):
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"No organization with slug {org!r}.")
        try:
            amount = credits_to_micro(credits)
        except (ValueError, ArithmeticError) as exc:
            raise CommandError(f"Invalid credit amount {credits!r}: {exc}") from None
        if amount <= 0:
            raise CommandError("The amount must be positive.")
        entry = wallet_credit(organization_id=organization.pk, amount=amount, reference=reference,
                              idempotency_key=idempotency_key or f"grant:{uuid.uuid4()}",
                              kind=LedgerEntry.Kind.TOPUP)
        self.stdout.write(f"{org}: balance {micro_to_credits(entry.balance_after)} credits")
