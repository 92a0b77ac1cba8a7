from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import JsonResponse
from django.urls import path

from apikeys.api.views import ApiKeyDetailApi, ApiKeyListApi
from billing.api.views import CheckoutApi
from billing.views import stripe_webhook, topup_page


def health(request):
    return JsonResponse({"ok": True})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", health),
    path("api/api-keys", ApiKeyListApi.as_view()),
    path("api/api-keys/<int:key_id>", ApiKeyDetailApi.as_view()),
    path("api/billing/checkout", CheckoutApi.as_view()),
    path("api/billing/stripe/webhook", stripe_webhook),
    path("billing/top-up", topup_page, name="topup"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
]
