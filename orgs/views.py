"""Organization pages (server-rendered): members and roles, invitations, single sign-on, audit log."""

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from orgs.api.base import client_ip
from orgs.models import AuditEvent
from orgs.pages import org_page, page_context
from orgs.roles import ROLES, role_has_scope
from orgs.services import OrgRuleError, invitation_create, membership_change_role, membership_remove
from orgs.sso import sso_configure, sso_urls

SSO_FIELDS = ("type", "domain", "defaultRole", "metadataXml", "issuer", "clientId", "clientSecret")


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


@org_page("org:read")
def sso_settings(request):
    membership = request.membership
    org = membership.organization
    can_edit = role_has_scope(membership.role, "sso:write")
    if request.method == "POST":
        if not can_edit:
            return HttpResponse("Only owners and admins configure single sign-on.", status=403)
        data = {k: request.POST[k].strip() for k in SSO_FIELDS if request.POST.get(k, "").strip()}
        data["ssoRequired"] = request.POST.get("ssoRequired") == "on"
        needed = ("metadataXml",) if data.get("type") == "saml" else ("issuer", "clientId")
        if missing := [f for f in ("type", "domain", *needed) if not data.get(f)]:
            messages.error(request, f"Missing: {', '.join(missing)}.")
        else:
            try:
                sso_configure(organization=org, actor=request.user, data=data, ip=client_ip(request))
                messages.success(request, "Single sign-on saved.")
            except OrgRuleError as exc:
                messages.error(request, str(exc))
        return redirect(request.path)
    connection = getattr(org, "sso", None)
    return render(request, "orgs/sso.html", page_context(
        request, "settings", connection=connection, can_edit=can_edit, roles=list(ROLES),
        urls=sso_urls(connection) if connection else None))
