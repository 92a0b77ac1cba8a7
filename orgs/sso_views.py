"""The browser side of SSO: start, come back (SAML ACS / OIDC callback), metadata and routing."""

from allauth.account.views import LoginView
from django.conf import settings
from django.contrib.auth import login
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from orgs.api.base import client_ip
from orgs.models import SSOConnection
from orgs.sso import (
    SSOError,
    connection_for_email,
    oidc_callback,
    oidc_login_url,
    saml_acs,
    saml_login_url,
    saml_metadata,
    sso_sign_in,
    sso_urls,
)

BACKEND = "django.contrib.auth.backends.ModelBackend"


def _connection(provider_id: str) -> SSOConnection:
    return get_object_or_404(SSOConnection.objects.select_related("organization"), provider_id=provider_id,
                             enabled=True, organization__deleted_at__isnull=True)


def _safe_next(request, candidate: str | None) -> str:
    if candidate and url_has_allowed_host_and_scheme(candidate, allowed_hosts={request.get_host()},
                                                     require_https=request.is_secure()):
        return candidate
    return settings.LOGIN_REDIRECT_URL


def _refused(request, exc: SSOError) -> HttpResponse:
    return render(request, "account/sso_error.html", {"reason": str(exc)}, status=403)


def _signed_in(request, connection: SSOConnection, email: str, next_url: str) -> HttpResponse:
    try:
        user = sso_sign_in(connection=connection, email=email, ip=client_ip(request))
    except SSOError as exc:
        return _refused(request, exc)
    login(request, user, backend=BACKEND)
    request.session["sso_provider"] = connection.provider_id
    return HttpResponseRedirect(_safe_next(request, next_url))


@require_GET
def sso_login(request, provider_id: str):
    connection = _connection(provider_id)
    next_url = _safe_next(request, request.GET.get("next"))
    try:
        url = (saml_login_url if connection.type == SSOConnection.Type.SAML else oidc_login_url)(
            request, connection, next_url)
    except SSOError as exc:
        return _refused(request, exc)
    return HttpResponseRedirect(url)


@csrf_exempt  # the IdP posts here; the signed assertion is the proof
@require_POST
def saml_acs_view(request, provider_id: str):
    connection = _connection(provider_id)
    if connection.type != SSOConnection.Type.SAML:
        return HttpResponse(status=404)
    try:
        email = saml_acs(request, connection)
    except SSOError as exc:
        return _refused(request, exc)
    return _signed_in(request, connection, email, request.POST.get("RelayState", ""))


@require_GET
def saml_metadata_view(request, provider_id: str):
    connection = _connection(provider_id)
    if connection.type != SSOConnection.Type.SAML:
        return HttpResponse(status=404)
    return HttpResponse(saml_metadata(connection), content_type="application/samlmetadata+xml")


@require_GET
def oidc_callback_view(request, provider_id: str):
    connection = _connection(provider_id)
    if connection.type != SSOConnection.Type.OIDC:
        return HttpResponse(status=404)
    try:
        email, next_url = oidc_callback(request, connection)
    except SSOError as exc:
        return _refused(request, exc)
    return _signed_in(request, connection, email, next_url)


@require_GET
def sso_discover(request):
    """For the login form: does this address sign in through its organization's IdP?"""
    connection = connection_for_email(request.GET.get("email", ""))
    if connection is None:
        return JsonResponse({"sso": False})
    return JsonResponse({"sso": True, "required": connection.sso_required,
                         "loginUrl": sso_urls(connection)["loginUrl"]})


class DomainRoutingLoginView(LoginView):
    """An address whose domain has SSO goes straight to its IdP, without a password prompt."""

    def post(self, request, *args, **kwargs):
        connection = connection_for_email(request.POST.get("login", ""))
        if connection is not None:
            next_url = _safe_next(request, request.POST.get("next") or request.GET.get("next"))
            return redirect(f"{sso_urls(connection)['loginUrl']}?next={next_url}")
        return super().post(request, *args, **kwargs)
