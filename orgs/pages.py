"""What every server-rendered page shares — the signed-in member's organization, the nav, refusals in the
house layout — and the two account pages allauth has no view for: an invitation's link, and a new
verification email."""

from functools import wraps

from allauth.account.models import EmailAddress
from allauth.core import ratelimit
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Case, IntegerField, Value, When
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.functional import SimpleLazyObject
from django.views.decorators.http import require_POST
from rest_framework.exceptions import NotFound

from orgs.api.base import client_ip, membership_for
from orgs.models import Invitation, Membership, Organization
from orgs.roles import role_has_scope
from orgs.services import OrgRuleError, _token_hash, invitation_accept

NAV = [("usage", "/usage", "Usage", "usage:read"), ("playground", "/playground", "Playground", "keys:write"),
       ("models", "/models", "Models", "org:read"), ("jobs", "/jobs", "Jobs", "usage:read"),
       ("gpu", "/gpu", "GPU", "gpu:read"), ("deployments", "/infra/deployments", "Deployments", "gpu:read"),
       ("keys", "/keys", "API keys", "keys:read"),
       ("billing", "/billing", "Billing", "billing:read"), ("settings", "/settings", "Organization", "org:read"),
       ("audit", "/audit", "Audit log", "audit:read")]
# The organization last chosen in this browser: it outlives the session, so signing in again opens it.
ORG_COOKIE = "hypereal_org"
ORG_COOKIE_SECONDS = 365 * 24 * 3600
# The address the last sign-up or sign-in waits to verify: the resend form's default.
VERIFICATION_EMAIL = "verification_email"


def page_membership(request) -> Membership | None:
    """The organization named by ``?org=``; else the one last chosen (in this session, else in this browser);
    else the member's first team organization, else their personal one — everyone has a personal one made
    for them, while a team is one they joined or created."""
    if request.GET.get("org"):
        try:
            return membership_for(request, request.user)
        except NotFound:
            return None
    memberships = Membership.objects.select_related("organization", "user").filter(
        user=request.user, organization__deleted_at__isnull=True)
    for slug in (request.session.get("org"), request.COOKIES.get(ORG_COOKIE)):
        if slug and (membership := memberships.filter(organization__slug=slug).first()):
            return membership
    personal_last = Case(When(organization__kind=Organization.Kind.PERSONAL, then=Value(1)), default=Value(0),
                         output_field=IntegerField())
    return memberships.order_by(personal_last, "pk").first()


def org_page(scope: str):
    """A login-required page for members whose role has ``scope``; sets ``request.membership`` (see
    page_membership) and remembers the organization for the session and the browser."""
    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            membership = page_membership(request)
            if membership is None:
                return page_refused(request, 404, "No such organization",
                                    "It does not exist, or you are not one of its members.")
            request.membership = membership
            if not role_has_scope(membership.role, scope):
                return page_refused(request, 403, "Not for your role",
                                    f"Your role in {membership.organization.name} ({membership.role}) cannot "
                                    "open this page. An owner or admin can change it.")
            slug = membership.organization.slug
            request.session["org"] = slug
            response = view(request, *args, **kwargs)
            if request.COOKIES.get(ORG_COOKIE) != slug:
                response.set_cookie(ORG_COOKIE, slug, max_age=ORG_COOKIE_SECONDS, httponly=True, samesite="Lax",
                                    secure=settings.SESSION_COOKIE_SECURE)
            return response
        return wrapped
    return decorator


def nav_for(role: str) -> list[tuple[str, str, str]]:
    return [(key, url, label) for key, url, label, scope in NAV if role_has_scope(role, scope)]


def page_context(request, active: str, **extra) -> dict:
    membership = request.membership
    return {
        "organization": membership.organization, "membership": membership, "active": active,
        "nav": nav_for(membership.role),
        "organizations": [m.organization for m in Membership.objects.filter(
            user=request.user, organization__deleted_at__isnull=True).select_related("organization")
            .order_by("organization__name")],
        **extra,
    }


def page_refused(request, status: int, title: str, detail: str):
    context = page_context(request, "") if hasattr(request, "membership") else {}
    return render(request, "page_error.html", {**context, "title": title, "detail": detail}, status=status)


def site_context(request) -> dict:
    """A template context processor for the pages outside an organization (account pages, the model list):
    the signed-in member's nav, worked out only if the page shows it and none was passed."""
    def member_nav() -> list:
        if not request.user.is_authenticated or (membership := page_membership(request)) is None:
            return []
        return nav_for(membership.role)

    return {"nav": SimpleLazyObject(member_nav),
            "emails_on_console": settings.EMAIL_BACKEND == "django.core.mail.backends.console.EmailBackend"}


def invitation_page(request, token: str):
    """The link an invitation email carries: who invites you where, as what; accepted once signed in as the
    invited address."""
    invitation = (Invitation.objects.select_related("organization", "invited_by")
                  .filter(token_hash=_token_hash(token), organization__deleted_at__isnull=True).first())
    error = ""
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect(f"{settings.LOGIN_URL}?next={request.path}")
        try:
            membership = invitation_accept(token=token, user=request.user, ip=client_ip(request))
        except OrgRuleError as exc:
            error = str(exc)
        else:
            messages.success(request, f"You joined {membership.organization.name} as {membership.role}.")
            return redirect(f"/usage?org={membership.organization.slug}")
    if invitation is None or invitation.revoked_at:
        state = "invalid"
    elif invitation.accepted_at:
        state = "accepted"
    elif invitation.expires_at <= timezone.now():
        state = "expired"
    else:
        state = "open"
    return render(request, "account/invitation.html", {"invitation": invitation, "state": state, "error": error},
                  status=404 if state == "invalid" else 200)


@require_POST
def verification_resend(request):
    """A new verification link for an address that waits for one. The answer is the same whether or not the
    address has an account, and allauth's own limit for these emails (one per address every few minutes)
    holds for resends too."""
    email = request.POST.get("email", "").strip().lower()
    address = EmailAddress.objects.filter(email__iexact=email, verified=False).first() if email else None
    if address is not None and ratelimit.consume(request, action="confirm_email", key=email):
        address.send_confirmation(request)
    if email:
        messages.info(request, f"If {email} is waiting to be verified, a new link is on its way. Each address "
                               "gets at most one every few minutes.")
    return redirect("account_email_verification_sent")
