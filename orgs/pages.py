"""What every server-rendered page shares: the signed-in member's current organization and the nav."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from rest_framework.exceptions import NotFound

from orgs.api.base import membership_for
from orgs.models import Membership
from orgs.roles import role_has_scope

NAV = [("usage", "/usage", "Usage", "usage:read"), ("jobs", "/jobs", "Jobs", "usage:read"),
       ("keys", "/keys", "API keys", "keys:read"),
       ("billing", "/billing", "Billing", "billing:read"), ("settings", "/settings", "Organization", "org:read"),
       ("audit", "/audit", "Audit log", "audit:read")]


def org_page(scope: str):
    """A login-required page for members whose role has ``scope``; sets ``request.membership``.

    The organization comes from ``?org=`` (remembered in the session), else the last one used.
    """
    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            try:
                membership = membership_for(request, request.user)
            except NotFound:
                request.session.pop("org", None)
                return HttpResponse("No such organization.", status=404)
            if not role_has_scope(membership.role, scope):
                return HttpResponse(f"Your role ({membership.role}) cannot open this page.", status=403)
            request.session["org"] = membership.organization.slug
            request.membership = membership
            return view(request, *args, **kwargs)
        return wrapped
    return decorator


def page_context(request, active: str, **extra) -> dict:
    membership = request.membership
    return {
        "organization": membership.organization, "membership": membership, "active": active,
        "nav": [(key, url, label) for key, url, label, scope in NAV if role_has_scope(membership.role, scope)],
        "organizations": [m.organization for m in Membership.objects.filter(
            user=request.user, organization__deleted_at__isnull=True).select_related("organization")
            .order_by("organization__name")],
        **extra,
    }
