from django.urls import path

from orgs import pages, sso_views, views
from orgs.api import views as api

urlpatterns = [
    path("api/orgs", api.OrgListApi.as_view()),
    path("api/orgs/<int:org_id>", api.OrgDetailApi.as_view()),
    path("api/orgs/<int:org_id>/members", api.MemberListApi.as_view()),
    path("api/orgs/<int:org_id>/members/<int:member_id>", api.MemberDetailApi.as_view()),
    path("api/orgs/<int:org_id>/transfer-ownership", api.OwnershipTransferApi.as_view()),
    path("api/orgs/<int:org_id>/invitations", api.InvitationListApi.as_view()),
    path("api/orgs/<int:org_id>/invitations/<int:invitation_id>", api.InvitationDetailApi.as_view()),
    path("api/invitations/<str:token>/accept", api.InvitationAcceptApi.as_view()),
    path("api/orgs/<int:org_id>/audit-log", api.AuditLogApi.as_view()),
    path("api/orgs/<int:org_id>/sso", api.SSOConnectionApi.as_view()),
    path("api/orgs/<int:org_id>/webhooks", api.WebhookListApi.as_view()),
    path("api/orgs/<int:org_id>/webhooks/request-secret", api.WebhookRequestSecretApi.as_view()),
    path("api/orgs/<int:org_id>/webhooks/<int:webhook_id>", api.WebhookDetailApi.as_view()),
    path("api/orgs/<int:org_id>/webhooks/<int:webhook_id>/rotate-secret", api.WebhookSecretRotateApi.as_view()),
    path("api/orgs/<int:org_id>/webhooks/<int:webhook_id>/deliveries", api.WebhookDeliveryListApi.as_view()),
    path("api/orgs/<int:org_id>/webhooks/<int:webhook_id>/test", api.WebhookTestApi.as_view()),
    path("api/auth/sso/discover", sso_views.sso_discover),
    path("api/auth/sso/<str:provider_id>", sso_views.saml_acs_view, name="saml_acs"),
    path("api/auth/sso/<str:provider_id>/login", sso_views.sso_login, name="sso_login"),
    path("api/auth/sso/<str:provider_id>/metadata", sso_views.saml_metadata_view),
    path("api/auth/sso/<str:provider_id>/callback", sso_views.oidc_callback_view),
    path("settings", views.settings_page, name="settings"),
    path("settings/members/<int:member_id>", views.member_update),
    path("settings/invite", views.invite),
    path("settings/sso", views.sso_settings, name="sso_settings"),
    path("audit", views.audit_page, name="audit"),
    path("accounts/login/", sso_views.DomainRoutingLoginView.as_view(), name="account_login"),
    path("accounts/confirm-email/resend/", pages.verification_resend, name="account_verification_resend"),
    path("invitations/<str:token>", pages.invitation_page, name="invitation"),
]
