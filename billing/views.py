from decimal import Decimal, InvalidOperation

from django.contrib import messages
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing.models import LedgerEntry
from billing.money import micro_to_credits
from billing.payments import (
    MIN_TOPUP_CENTS,
    InvalidWebhook,
    PaymentsNotConfigured,
    stripe_webhook_handle,
    topup_checkout_create,
)
from billing.selectors import wallet_balance
from orgs.api.base import client_ip
from orgs.pages import org_page, page_context
from orgs.roles import role_has_scope


@csrf_exempt  # authenticated by Stripe-Signature instead
@require_POST
def stripe_webhook(request):
    try:
        event = stripe_webhook_handle(payload=request.body, signature=request.headers.get("Stripe-Signature"))
    except InvalidWebhook as exc:
        return HttpResponseBadRequest(f"Invalid webhook: {exc}")
    except PaymentsNotConfigured as exc:
        return HttpResponse(str(exc), status=503)
    return JsonResponse({"received": True, "event": event.event_id})


@org_page("billing:read")
def topup_page(request):
    org = request.membership.organization
    can_pay = role_has_scope(request.membership.role, "billing:write")
    if request.method == "POST":
        if not can_pay:
            return HttpResponse("Your role cannot buy credits.", status=403)
        try:
            cents = int((Decimal(request.POST.get("amount_usd", "")) * 100).to_integral_exact())
            _, url = topup_checkout_create(organization=org, user=request.user, amount_cents=cents,
                                           ip=client_ip(request))
        except (InvalidOperation, ValueError, PaymentsNotConfigured) as exc:
            messages.error(request, str(exc) or "Enter an amount in US dollars.")
        else:
            return redirect(url)
    entries = LedgerEntry.objects.filter(wallet__organization=org).order_by("-created_at")[:50]
    return render(request, "billing/topup.html", page_context(
        request, "billing", can_pay=can_pay, minimum_usd=MIN_TOPUP_CENTS / 100,
        balance=micro_to_credits(wallet_balance(organization_id=org.pk)), entries=entries,
        paid=request.GET.get("paid")))
