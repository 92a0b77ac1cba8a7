"""The keys of a deleted organization stop working: each one revoked, and audited, by api_key_revoke."""

from django.dispatch import receiver

from apikeys.models import ApiKey
from apikeys.services import api_key_revoke
from orgs.signals import organization_deleted


@receiver(organization_deleted, dispatch_uid="apikeys.revoke_keys_of_deleted_organization")
def revoke_keys_of_deleted_organization(sender, organization, actor=None, ip=None, **kwargs) -> None:
    for key in ApiKey.objects.filter(organization=organization, revoked_at__isnull=True).select_related("organization"):
        api_key_revoke(key=key, actor=actor, ip=ip)
