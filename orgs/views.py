"""Organization settings pages (server-rendered)."""

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render

from hypereal.pages import org_page, page_context
from orgs.api.base import client_ip
from orgs.roles import ROLES, role_has_scope
from orgs.services import OrgRuleError
from orgs.sso import sso_configure, sso_urls

SSO_FIELDS = ("type", "domain", "defaultRole", "metadataXml", "issuer", "clientId", "clientSecret")


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
