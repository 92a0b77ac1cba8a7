"""Every write to organizations and memberships: locked, checked against ranks, audited."""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from orgs.events import AuditAction
from orgs.models import AuditEvent, Invitation, Membership, Organization, User
from orgs.roles import ADMIN, OWNER, ROLES, role_has_scope, role_outranks
from orgs.signals import organization_deleted, organization_deleting

INVITATION_DAYS = 7


class OrgRuleError(Exception):
    """A request that the role rules forbid; ``status`` is the HTTP answer it deserves."""

    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.status = status


def audit_record(*, organization, action: AuditAction, target=None, actor=None, before: dict | None = None,
                 after: dict | None = None, ip: str | None = None) -> AuditEvent:
    if not isinstance(action, AuditAction):
        raise TypeError(f"Audit actions are orgs.events.AuditAction members, not {action!r}.")
    return AuditEvent.objects.create(
        organization=organization, actor=actor, action=action, ip=ip, before=before, after=after,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
    )


def _unique_slug(base: str) -> str:
    base = slugify(base)[:60] or "org"
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def organization_create(*, name: str, owner: User, slug: str | None = None,
                        kind: str = Organization.Kind.TEAM, ip: str | None = None) -> Organization:
    org = Organization.objects.create(name=name, slug=slug or _unique_slug(name), kind=kind)
    Membership.objects.create(organization=org, user=owner, role=OWNER)
    audit_record(organization=org, action=AuditAction.ORG_CREATE, target=org, actor=owner, ip=ip, after={"name": name})
    return org


def personal_organization_create(*, user: User) -> Organization:
    """Every user gets a personal organization, so their keys work without any team."""
    return organization_create(name=f"{user.email.split('@')[0]} (personal)", owner=user,
                               kind=Organization.Kind.PERSONAL)


@transaction.atomic
def user_create(*, email: str, password: str | None = None, **extra) -> User:
    user = User.objects.create_user(email=email, password=password, **extra)
    personal_organization_create(user=user)
    return user


@transaction.atomic
def organization_rename(*, organization: Organization, name: str, actor: User, ip: str | None = None):
    before = {"name": organization.name}
    organization.name = name
    organization.save(update_fields=["name"])
    audit_record(organization=organization, action=AuditAction.ORG_RENAME, target=organization, actor=actor, ip=ip,
                 before=before, after={"name": name})
    return organization


@transaction.atomic
def organization_delete(*, organization: Organization, actor: User, ip: str | None = None) -> None:
    """Members lose access and keys stop working; the ledger, logs and audit trail are kept."""
    if organization.kind == Organization.Kind.PERSONAL:
        raise OrgRuleError("A personal organization cannot be deleted.", 400)
    organization = Organization.objects.select_for_update().get(pk=organization.pk)
    organization_deleting.send(sender=Organization, organization=organization, actor=actor, ip=ip)
    now = timezone.now()
    organization.memberships.all().delete()
    organization.invitations.filter(accepted_at__isnull=True, revoked_at__isnull=True).update(revoked_at=now)
    organization.deleted_at = now
    organization.save(update_fields=["deleted_at"])
    organization_deleted.send(sender=Organization, organization=organization, actor=actor, ip=ip)
    audit_record(organization=organization, action=AuditAction.ORG_DELETE, target=organization, actor=actor, ip=ip,
                 before={"slug": organization.slug, "name": organization.name})


def _owners_left(organization: Organization, *, without: Membership) -> int:
    return organization.memberships.filter(role=OWNER).exclude(pk=without.pk).count()


def _manages(actor: Membership, role: str) -> bool:
    """Owners manage everyone; everyone else only lower ranks."""
    return actor.role == OWNER or role_outranks(actor.role, role)


@transaction.atomic
def membership_change_role(*, actor: Membership, member: Membership, role: str, ip: str | None = None):
    if role not in ROLES:
        raise OrgRuleError(f"Unknown role {role!r}.", 400)
    member = Membership.objects.select_for_update().get(pk=member.pk)
    if not _manages(actor, member.role) or not _manages(actor, role):
        raise OrgRuleError("You can only manage members, and grant roles, below your own rank.")
    if member.role == OWNER and role != OWNER and not _owners_left(member.organization, without=member):
        raise OrgRuleError("The last owner cannot be demoted; transfer ownership first.", 409)
    before = {"role": member.role}
    member.role = role
    member.save(update_fields=["role"])
    audit_record(organization=member.organization, action=AuditAction.MEMBER_ROLE_CHANGE, target=member, actor=actor.user,
                 ip=ip, before={**before, "user": member.user.email}, after={"role": role, "user": member.user.email})
    return member


@transaction.atomic
def membership_remove(*, actor: Membership, member: Membership, ip: str | None = None) -> None:
    member = Membership.objects.select_for_update().select_related("user").get(pk=member.pk)
    leaving = member.pk == actor.pk
    if not leaving and (not role_has_scope(actor.role, "members:write") or not _manages(actor, member.role)):
        raise OrgRuleError("You can only remove members below your own rank.")
    if member.role == OWNER and not _owners_left(member.organization, without=member):
        raise OrgRuleError("The last owner cannot leave; transfer ownership first.", 409)
    if member.organization.kind == Organization.Kind.PERSONAL and leaving:
        raise OrgRuleError("You cannot leave your personal organization.", 400)
    audit_record(organization=member.organization, action=AuditAction.MEMBER_LEAVE if leaving else AuditAction.MEMBER_REMOVE,
                 target=member, actor=actor.user, ip=ip, before={"user": member.user.email, "role": member.role})
    member.delete()


@transaction.atomic
def ownership_transfer(*, actor: Membership, member: Membership, ip: str | None = None) -> Membership:
    """The member becomes an owner; the current owner steps down to admin."""
    if actor.role != OWNER:
        raise OrgRuleError("Only an owner can transfer ownership.")
    if member.pk == actor.pk:
        raise OrgRuleError("You already own this organization.", 400)
    member = Membership.objects.select_for_update().get(pk=member.pk)
    before = {"from": actor.user.email, "to": member.user.email, "previous_role": member.role}
    member.role = OWNER
    member.save(update_fields=["role"])
    Membership.objects.filter(pk=actor.pk).update(role=ADMIN)
    audit_record(organization=member.organization, action=AuditAction.ORG_OWNERSHIP_TRANSFER, target=member,
                 actor=actor.user, ip=ip, before=before, after={"owner": member.user.email})
    return member


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def invitation_create(*, actor: Membership, email: str, role: str, ip: str | None = None) -> tuple[Invitation, str]:
    if role not in ROLES:
        raise OrgRuleError(f"Unknown role {role!r}.", 400)
    if not _manages(actor, role):
        raise OrgRuleError("You can only invite members below your own rank.")
    org = actor.organization
    email = email.strip().lower()
    if org.memberships.filter(user__email__iexact=email).exists():
        raise OrgRuleError(f"{email} is already a member.", 409)
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(organization=org, email=email, role=role, token_hash=_token_hash(token),
                                           invited_by=actor.user,
                                           expires_at=timezone.now() + timedelta(days=INVITATION_DAYS))
    audit_record(organization=org, action=AuditAction.INVITATION_CREATE, target=invitation, actor=actor.user, ip=ip,
                 after={"email": email, "role": role})
    link = f"{settings.PUBLIC_URL}/invitations/{token}"
    transaction.on_commit(lambda: send_mail(
        f"[Hypereal] {actor.user.email} invited you to {org.name}",
        f"You are invited to join {org.name} on Hypereal as {role}.\n\nAccept within {INVITATION_DAYS} days: "
        f"{link}\n\nOr with the API: POST /api/invitations/{token}/accept\n",
        settings.DEFAULT_FROM_EMAIL, [email]))
    return invitation, token


@transaction.atomic
def invitation_revoke(*, actor: Membership, invitation: Invitation, ip: str | None = None) -> Invitation:
    if not _manages(actor, invitation.role):
        raise OrgRuleError("You can only revoke invitations below your own rank.")
    if invitation.revoked_at is None and invitation.accepted_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        audit_record(organization=invitation.organization, action=AuditAction.INVITATION_REVOKE, target=invitation,
                     actor=actor.user, ip=ip, before={"email": invitation.email, "role": invitation.role})
    return invitation


@transaction.atomic
def invitation_accept(*, token: str, user: User, ip: str | None = None) -> Membership:
    invitation = (Invitation.objects.select_for_update().select_related("organization")
                  .filter(token_hash=_token_hash(token)).first())
    if invitation is None or invitation.revoked_at or invitation.accepted_at:
        raise OrgRuleError("This invitation is not valid.", 404)
    if invitation.expires_at <= timezone.now():
        raise OrgRuleError("This invitation has expired; ask for a new one.", 410)
    if invitation.email != user.email.lower():
        raise OrgRuleError("This invitation was sent to another email address.", 403)
    membership, _ = Membership.objects.get_or_create(organization=invitation.organization, user=user,
                                                     defaults={"role": invitation.role})
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    audit_record(organization=invitation.organization, action=AuditAction.INVITATION_ACCEPT, target=invitation, actor=user,
                 ip=ip, after={"email": user.email, "role": membership.role})
    return membership
