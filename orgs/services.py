from django.db import transaction
from django.utils.text import slugify

from billing.services import wallet_get_or_create
from orgs.models import Membership, Organization, User
from orgs.roles import OWNER


def _unique_slug(base: str) -> str:
    base = slugify(base)[:60] or "org"
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def organization_create(*, name: str, owner: User, slug: str | None = None,
                        kind: str = Organization.Kind.TEAM) -> Organization:
    org = Organization.objects.create(name=name, slug=slug or _unique_slug(name), kind=kind)
    Membership.objects.create(organization=org, user=owner, role=OWNER)
    wallet_get_or_create(organization=org)
    return org


@transaction.atomic
def user_create(*, email: str, password: str | None = None, **extra) -> User:
    """Every user gets a personal organization, so their keys work without any team."""
    user = User.objects.create_user(email=email, password=password, **extra)
    organization_create(name=f"{email.split('@')[0]} (personal)", owner=user,
                        kind=Organization.Kind.PERSONAL)
    return user


def audit_record(*, organization, action: str, target=None, actor=None, before: dict | None = None,
                 after: dict | None = None, ip: str | None = None):
    from orgs.models import AuditEvent

    return AuditEvent.objects.create(
        organization=organization, actor=actor, action=action, ip=ip, before=before, after=after,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
    )
