from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path

from apikeys.api.views import ApiKeyDetailApi, ApiKeyListApi
from billing.api.views import CheckoutApi
from billing.views import stripe_webhook, topup_page
from orgs.api import views as orgs_api


def health(request):
    return JsonResponse({"ok": True})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", health),
    path("api/api-keys", ApiKeyListApi.as_view()),
    path("api/api-keys/<int:key_id>", ApiKeyDetailApi.as_view()),
    path("api/orgs", orgs_api.OrgListApi.as_view()),
    path("api/orgs/<int:org_id>", orgs_api.OrgDetailApi.as_view()),
    path("api/orgs/<int:org_id>/members", orgs_api.MemberListApi.as_view()),
    path("api/orgs/<int:org_id>/members/<int:member_id>", orgs_api.MemberDetailApi.as_view()),
    path("api/orgs/<int:org_id>/transfer-ownership", orgs_api.OwnershipTransferApi.as_view()),
    path("api/orgs/<int:org_id>/invitations", orgs_api.InvitationListApi.as_view()),
    path("api/orgs/<int:org_id>/invitations/<int:invitation_id>", orgs_api.InvitationDetailApi.as_view()),
    path("api/invitations/<str:token>/accept", orgs_api.InvitationAcceptApi.as_view()),
    path("api/orgs/<int:org_id>/audit-log", orgs_api.AuditLogApi.as_view()),
    path("api/billing/checkout", CheckoutApi.as_view()),
    path("api/billing/stripe/webhook", stripe_webhook),
    path("billing/top-up", topup_page, name="topup"),
    path("accounts/", include("allauth.urls")),
]
