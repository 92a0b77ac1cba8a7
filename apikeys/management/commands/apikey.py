from django.core.management.base import BaseCommand, CommandError

from apikeys.models import ApiKey
from apikeys.services import api_key_create, api_key_revoke
from billing.money import credits_to_micro
from orgs.models import Organization


class Command(BaseCommand):
    help = "Create, list or revoke model-API keys."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a key; its plaintext is printed once, as the last line.")
        create.add_argument("--org", required=True, help="Organization slug.")
        create.add_argument("--name", required=True)
        create.add_argument("--spending-limit", help="Monthly cap in credits (e.g. 50 or 12.5).")
        listing = sub.add_parser("list", help="List an organization's keys.")
        listing.add_argument("--org", required=True)
        revoke = sub.add_parser("revoke", help="Revoke a key by id.")
        revoke.add_argument("key_id", type=int)

    def handle(self, *args, action, **opts):
        if action == "create":
            org = self._org(opts["org"])
            limit = credits_to_micro(opts["spending_limit"]) if opts["spending_limit"] else None
            key, plaintext = api_key_create(organization=org, name=opts["name"], monthly_spend_limit=limit)
            self.stderr.write(f"Created key {key.pk} ({key.name}) for {org.slug}. Store it now: it is not shown again.")
            self.stdout.write(plaintext)
        elif action == "list":
            for key in ApiKey.objects.filter(organization=self._org(opts["org"])).order_by("pk"):
                state = "active" if key.is_active else "inactive"
                self.stdout.write(f"{key.pk}\t{key.redacted}\t{key.name}\t{state}")
        else:
            key = ApiKey.objects.filter(pk=opts["key_id"]).first()
            if key is None:
                raise CommandError(f"No key {opts['key_id']}.")
            api_key_revoke(key=key)
            self.stdout.write(f"Revoked {key}.")

    @staticmethod
    def _org(slug: str) -> Organization:
        try:
            return Organization.objects.get(slug=slug)
        except Organization.DoesNotExist:
            raise CommandError(f"No organization with slug {slug!r}.") from None
