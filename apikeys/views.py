from decimal import Decimal, InvalidOperation

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apikeys.models import ApiKey
from apikeys.selectors import api_keys_with_month_spend
from apikeys.services import api_key_create, api_key_revoke
from billing.money import credits_to_micro
from orgs.api.base import client_ip
from orgs.pages import org_page, page_context
from orgs.roles import role_has_scope


def _render(request, **extra):
    org = request.membership.organization
    return render(request, "apikeys/keys.html", page_context(
        request, "keys", keys=api_keys_with_month_spend(organization=org),
        can_write=role_has_scope(request.membership.role, "keys:write"), **extra))


@org_page("keys:read")
def keys_page(request):
    if request.method != "POST":
        return _render(request)
    if not role_has_scope(request.membership.role, "keys:write"):
        return _render(request, error="Your role cannot create keys.")
    name = request.POST.get("name", "").strip()
    try:
        raw_limit = request.POST.get("spending_limit", "").strip()
        limit = credits_to_micro(Decimal(raw_limit)) if raw_limit else None
    except (InvalidOperation, ValueError):
        return _render(request, error="The monthly limit must be an amount in credits.")
    if not name or (limit is not None and limit < 0):
        return _render(request, error="A key needs a name (and a limit of zero or more).")
    key, plaintext = api_key_create(organization=request.membership.organization, name=name,
                                    created_by=request.user, monthly_spend_limit=limit,
                                    auto_disable=request.POST.get("auto_disable") == "on", ip=client_ip(request))
    # Rendered, not redirected: the plaintext must never be stored, not even in a flash message.
    return _render(request, created=key, plaintext=plaintext)


@require_POST
@org_page("keys:write")
def key_revoke(request, key_id: int):
    key = get_object_or_404(ApiKey, pk=key_id, organization=request.membership.organization)
    api_key_revoke(key=key, actor=request.user, ip=client_ip(request))
    messages.success(request, f"Revoked {key.name}.")
    return redirect("/keys")
