from decimal import Decimal, InvalidOperation

from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from billing.payments import PaymentsNotConfigured, topup_checkout_create
from orgs.api.base import OrgScopedApi, client_ip


class CheckoutInput(serializers.Serializer):
    amountUsd = serializers.DecimalField(max_digits=9, decimal_places=2)


def usd_to_cents(amount: Decimal) -> int:
    try:
        return int((amount * 100).to_integral_exact())
    except InvalidOperation:
        raise ValidationError({"amountUsd": "At most two decimals."}) from None


class CheckoutApi(OrgScopedApi):
    """POST {amountUsd} → a Stripe Checkout URL that credits this organization once paid."""

    scope_map = {"POST": "billing:write"}

    def post(self, request):
        data = CheckoutInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            topup, url = topup_checkout_create(organization=self.organization, user=request.user,
                                               amount_cents=usd_to_cents(data.validated_data["amountUsd"]),
                                               ip=client_ip(request))
        except ValueError as exc:
            raise ValidationError({"amountUsd": str(exc)}) from None
        except PaymentsNotConfigured as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response({"topUpId": topup.pk, "url": url, "credits": topup.amount_cents}, status=201)
