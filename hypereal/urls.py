from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django.views.generic import RedirectView

from apikeys.api.views import ApiKeyDetailApi, ApiKeyListApi
from apikeys.views import key_revoke, keys_page
from billing.api.views import CheckoutApi
from billing.views import stripe_webhook, topup_page
from orgs import sso_views
from orgs.pages import audit_page, invite, member_update, settings_page
from orgs.views import sso_settings
from usage.api.views import UsageApi, UsageDetailApi, UsageExportApi
from usage.views import usage_logs, usage_page, usage_request
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
    path("api/orgs/<int:org_id>/sso", orgs_api.SSOConnectionApi.as_view()),
    path("api/orgs/<int:org_id>/webhooks", orgs_api.WebhookListApi.as_view()),
    path("api/orgs/<int:org_id>/webhooks/<int:webhook_id>", orgs_api.WebhookDetailApi.as_view()),
    path("api/orgs/<int:org_id>/webhooks/<int:webhook_id>/rotate-secret",
         orgs_api.WebhookSecretRotateApi.as_view()),
    path("api/orgs/<int:org_id>/webhooks/<int:webhook_id>/deliveries",
         orgs_api.WebhookDeliveryListApi.as_view()),
    path("api/orgs/<int:org_id>/webhooks/<int:webhook_id>/test", orgs_api.WebhookTestApi.as_view()),
    path("api/auth/sso/discover", sso_views.sso_discover),
    path("api/auth/sso/<str:provider_id>", sso_views.saml_acs_view, name="saml_acs"),
    path("api/auth/sso/<str:provider_id>/login", sso_views.sso_login, name="sso_login"),
    path("api/auth/sso/<str:provider_id>/metadata", sso_views.saml_metadata_view),
    path("api/auth/sso/<str:provider_id>/callback", sso_views.oidc_callback_view),
    path("api/api-usage", UsageApi.as_view()),
    path("api/api-usage/export", UsageExportApi.as_view()),
    path("api/api-usage/<str:request_id>", UsageDetailApi.as_view()),
    path("api/billing/checkout", CheckoutApi.as_view()),
    path("api/billing/stripe/webhook", stripe_webhook),
    path("", RedirectView.as_view(url="/usage")),
    path("usage", usage_page, name="usage"),
    path("usage/logs", usage_logs),
    path("usage/requests/<str:request_id>", usage_request),
    path("keys", keys_page, name="keys"),
    path("keys/<int:key_id>/revoke", key_revoke),
    path("billing", topup_page, name="billing"),
    path("billing/top-up", topup_page, name="topup"),
    path("settings", settings_page, name="settings"),
    path("settings/members/<int:member_id>", member_update),
    path("settings/invite", invite),
    path("settings/sso", sso_settings, name="sso_settings"),
    path("audit", audit_page, name="audit"),
    path("accounts/login/", sso_views.DomainRoutingLoginView.as_view(), name="account_login"),
    path("accounts/", include("allauth.urls")),
]
