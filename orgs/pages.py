"""Organization pages: members and roles, invitations, audit log."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from hypereal.pages import org_page, page_context
from orgs.api.base import client_ip
from orgs.models import AuditEvent
from orgs.roles import ROLES, role_has_scope
from orgs.services import OrgRuleError, invitation_create, membership_change_role, membership_remove


@org_page("org:read")
def settings_page(request):
    org = request.membership.organization
    return render(request, "orgs/settings.html", page_context(
        request, "settings", members=org.memberships.select_related("user").order_by("created_at"),
        invitations=org.invitations.filter(accepted_at__isnull=True, revoked_at__isnull=True).order_by("-created_at"),
        roles=list(ROLES), can_manage=role_has_scope(request.membership.role, "members:write"),
        sso=getattr(org, "sso", None)))


@require_POST
@org_page("org:read")
def member_update(request, member_id: int):
    member = get_object_or_404(request.membership.organization.memberships, pk=member_id)
    try:
        if request.POST.get("action") == "remove":
            membership_remove(actor=request.membership, member=member, ip=client_ip(request))
            messages.success(request, f"{member.user.email} no longer belongs to the organization.")
        else:
            membership_change_role(actor=request.membership, member=member, role=request.POST.get("role", ""),
                                   ip=client_ip(request))
            messages.success(request, f"{member.user.email} is now {request.POST.get('role')}.")
    except OrgRuleError as exc:
        messages.error(request, str(exc))
    return redirect("/settings")


@require_POST
@org_page("members:write")
def invite(request):
    try:
        invitation_create(actor=request.membership, email=request.POST.get("email", ""),
                          role=request.POST.get("role", ""), ip=client_ip(request))
        messages.success(request, f"Invitation sent to {request.POST.get('email')}.")
    except OrgRuleError as exc:
        messages.error(request, str(exc))
    return redirect("/settings")


@org_page("audit:read")
def audit_page(request):
    events = AuditEvent.objects.filter(organization=request.membership.organization).select_related("actor")
    if action := request.GET.get("action"):
        events = events.filter(action=action)
    actions = (AuditEvent.objects.filter(organization=request.membership.organization)
               .values_list("action", flat=True).distinct().order_by("action"))
    return render(request, "orgs/audit.html", page_context(
        request, "audit", events=events.order_by("-created_at")[:200], actions=actions, action=action))
