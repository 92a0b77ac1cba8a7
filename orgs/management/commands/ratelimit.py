from django.core.management.base import BaseCommand, CommandError

from orgs.models import Organization


class Command(BaseCommand):
    help = "Show or set an organization's rate limits (shared by all of its keys)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        set_ = sub.add_parser("set", help="Override the defaults; 0 means unlimited, 'default' clears.")
        set_.add_argument("--org", required=True, help="Organization slug.")
        set_.add_argument("--rpm", help="Requests per minute.")
        set_.add_argument("--tpm", help="Tokens per minute.")
        show = sub.add_parser("show")
        show.add_argument("--org", required=True)

    def handle(self, *args, action, org, **opts):
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"No organization with slug {org!r}.")
        if action == "set":
            if opts["rpm"] is None and opts["tpm"] is None:
                raise CommandError("Give --rpm and/or --tpm.")
            for field, value in (("rate_limit_rpm", opts["rpm"]), ("rate_limit_tpm", opts["tpm"])):
                if value is not None:
                    setattr(organization, field, self._limit(value))
            organization.save(update_fields=["rate_limit_rpm", "rate_limit_tpm"])
        self.stdout.write(f"{org}: rpm={self._show(organization.rate_limit_rpm)} "
                          f"tpm={self._show(organization.rate_limit_tpm)}")

    @staticmethod
    def _limit(value: str) -> int | None:
        if value == "default":
            return None
        if not value.isdigit():
            raise CommandError(f"Invalid limit {value!r}: a whole number, or 'default'.")
        return int(value)

    @staticmethod
    def _show(value: int | None) -> str:
        return "default" if value is None else ("unlimited" if value == 0 else str(value))
