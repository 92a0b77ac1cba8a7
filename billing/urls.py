from django.urls import path

from billing import views
from billing.api.views import CheckoutApi

urlpatterns = [
    path("api/billing/checkout", CheckoutApi.as_view()),
    path("api/billing/stripe/webhook", views.stripe_webhook),
    path("billing", views.topup_page, name="billing"),
    path("billing/top-up", views.topup_page, name="topup"),
]
