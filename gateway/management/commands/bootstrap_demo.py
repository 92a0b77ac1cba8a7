import os

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from apikeys.models import ApiKey
from apikeys.services import api_key_create, api_key_revoke
from billing.money import credits_to_micro
from billing.services import wallet_credit
from gateway.demo import demo_catalog_install, demo_installed
from orgs.models import Membership, Organization, User
from orgs.roles import OWNER
from orgs.services import organization_create, user_create

DEMO_EMAIL = "demo@hypereal.local"
DEMO_KEY_NAME = "demo key (make run)"


class Command(BaseCommand):
    help = "Idempotently set up the demo: a login, org `demo` with 10,000 credits and the simulator catalog."

    def add_arguments(self, parser):
        parser.add_argument("--print-key", action="store_true",
                            help="Rotate the demo API key and print it (plaintext keys are never stored).")

    @transaction.atomic
    def handle(self, *args, print_key: bool, **opts):
        password = os.environ.get("HYPEREAL_DEMO_PASSWORD", "hypereal-demo")
        user = User.objects.filter(email=DEMO_EMAIL).first()
        if user is None:
            user = user_create(email=DEMO_EMAIL, password=password, is_staff=True, is_superuser=True)
        # Verified, so the login form lets the demo in (new sign-ups still verify by email).
        EmailAddress.objects.update_or_create(user=user, email=DEMO_EMAIL,
                                              defaults={"verified": True, "primary": True})
        org = Organization.objects.filter(slug="demo").first() or organization_create(
            name="Demo", slug="demo", owner=user)
        Membership.objects.get_or_create(organization=org, user=user, defaults={"role": OWNER})
        wallet_credit(organization_id=org.pk, amount=credits_to_micro(10_000), idempotency_key="demo:initial-grant",
                      reference="demo bootstrap")
        models = demo_catalog_install()
        demo_installed.send(sender=self.__class__, organization=org,
                            simulator_url=settings.HYPEREAL["SIMULATOR_URL"])
        self.stderr.write(f"Demo ready: login {DEMO_EMAIL} / {password}, org `demo`, "
                          f"{len(models)} models on the simulator.")
        if print_key:
            for old in ApiKey.objects.filter(organization=org, name=DEMO_KEY_NAME, revoked_at__isnull=True):
                api_key_revoke(key=old)
            self.stdout.write(api_key_create(organization=org, name=DEMO_KEY_NAME, created_by=user)[1])
