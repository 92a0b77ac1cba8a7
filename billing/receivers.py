"""Billing's part in organizations' lives: a wallet for each new one, and no deleting one that holds credits."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from billing.models import Wallet
from orgs.models import Organization
from orgs.services import OrgRuleError
from orgs.signals import organization_deleting


@receiver(post_save, sender=Organization, dispatch_uid="billing.wallet_for_new_organization")
def wallet_for_new_organization(sender, instance: Organization, created: bool, raw: bool = False, **kwargs) -> None:
    if created and not raw:  # fixtures loaded raw bring their wallets with them
        Wallet.objects.get_or_create(organization=instance)


@receiver(organization_deleting, dispatch_uid="billing.refuse_deleting_a_funded_organization")
def refuse_deleting_a_funded_organization(sender, organization: Organization, **kwargs) -> None:
    if Wallet.objects.select_for_update().filter(organization=organization, balance__gt=0).exists():
        raise OrgRuleError("The organization still holds credits; it cannot be deleted.", 409)
