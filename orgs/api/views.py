from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from orgs.api.base import OrgScopedApi, client_ip
from orgs.models import AuditEvent, Invitation, Membership, Organization, Webhook
from orgs.roles import ROLES
from orgs.services import (
    OrgRuleError,
    invitation_accept,
    invitation_create,
    invitation_revoke,
    membership_change_role,
    membership_remove,
    organization_create,
    organization_delete,
    organization_rename,
    ownership_transfer,
)
from orgs.sso import sso_configure, sso_delete, sso_urls
from orgs.webhooks import (
    webhook_create,
    webhook_delete,
    webhook_request_secret_issue,
    webhook_secret_rotate,
    webhook_test_send,
    webhook_update,
)


def org_output(org: Organization, role: str) -> dict:
    return {"id": org.pk, "slug": org.slug, "name": org.name, "kind": org.kind, "role": role,
            "createdAt": org.created_at}


def member_output(m: Membership) -> dict:
    return {"id": m.pk, "userId": m.user_id, "email": m.user.email, "role": m.role, "joinedAt": m.created_at}


def invitation_output(inv: Invitation) -> dict:
    state = ("accepted" if inv.accepted_at else "revoked" if inv.revoked_at else
             "expired" if inv.expires_at <= timezone.now() else "pending")
    return {"id": inv.pk, "email": inv.email, "role": inv.role, "status": state, "createdAt": inv.created_at,
            "expiresAt": inv.expires_at, "invitedBy": inv.invited_by.email if inv.invited_by else None}


class NameInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)


class RoleInput(serializers.Serializer):
    role = serializers.ChoiceField(choices=list(ROLES))


class InvitationInput(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=list(ROLES))


class TransferInput(serializers.Serializer):
    memberId = serializers.IntegerField()


def valid(serializer_class, request) -> dict:
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    return data.validated_data


class OrgListApi(APIView):
    """Any signed-in user lists the organizations they belong to and creates team ones."""

    authentication_classes = [SessionAuthentication]  # people only: a key is bound to one organization

    def get(self, request):
        memberships = (Membership.objects.filter(user=request.user, organization__deleted_at__isnull=True)
                       .select_related("organization").order_by("organization__name"))
        return Response({"data": [org_output(m.organization, m.role) for m in memberships]})

    def post(self, request):
        org = organization_create(name=valid(NameInput, request)["name"], owner=request.user, ip=client_ip(request))
        return Response(org_output(org, "owner"), status=status.HTTP_201_CREATED)


class OrgDetailApi(OrgScopedApi):
    scope_map = {"GET": "org:read", "PATCH": "org:write", "DELETE": "org:delete"}

    def get(self, request, org_id):
        return Response(org_output(self.organization, self.membership.role))

    def patch(self, request, org_id):
        org = organization_rename(organization=self.organization, name=valid(NameInput, request)["name"],
                                  actor=request.user, ip=client_ip(request))
        return Response(org_output(org, self.membership.role))

    def delete(self, request, org_id):
        organization_delete(organization=self.organization, actor=request.user, ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MembershipApi(OrgScopedApi):
    model = Membership

    def safely_get_queryset(self, queryset):
        return queryset.select_related("user").order_by("created_at")


class MemberListApi(MembershipApi):
    scope_map = {"GET": "org:read"}

    def get(self, request, org_id):
        return Response({"data": [member_output(m) for m in self.get_queryset()]})


class MemberDetailApi(MembershipApi):
    # Leaving needs no more than membership; removing others is checked by the service.
    scope_map = {"PATCH": "members:write", "DELETE": "org:read"}

    def _member(self, member_id) -> Membership:
        return self.get_object(pk=member_id)

    def patch(self, request, org_id, member_id):
        member = membership_change_role(actor=self.membership, member=self._member(member_id),
                                        role=valid(RoleInput, request)["role"], ip=client_ip(request))
        return Response(member_output(member))

    def delete(self, request, org_id, member_id):
        membership_remove(actor=self.membership, member=self._member(member_id), ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class OwnershipTransferApi(MembershipApi):
    scope_map = {"POST": "org:transfer"}

    def post(self, request, org_id):
        member = self.get_object(pk=valid(TransferInput, request)["memberId"])
        return Response(member_output(ownership_transfer(actor=self.membership, member=member,
                                                         ip=client_ip(request))))


class InvitationApi(OrgScopedApi):
    model = Invitation

    def safely_get_queryset(self, queryset):
        return queryset.select_related("invited_by").order_by("-created_at")


class InvitationListApi(InvitationApi):
    scope_map = {"GET": "members:write", "POST": "members:write"}

    def get(self, request, org_id):
        return Response({"data": [invitation_output(i) for i in self.get_queryset()]})

    def post(self, request, org_id):
        data = valid(InvitationInput, request)
        invitation, _ = invitation_create(actor=self.membership, email=data["email"], role=data["role"],
                                          ip=client_ip(request))
        return Response(invitation_output(invitation), status=status.HTTP_201_CREATED)


class InvitationDetailApi(InvitationApi):
    scope_map = {"DELETE": "members:write"}

    def delete(self, request, org_id, invitation_id):
        invitation = self.get_object(pk=invitation_id)
        invitation_revoke(actor=self.membership, invitation=invitation, ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationAcceptApi(APIView):
    authentication_classes = [SessionAuthentication]  # the invited person, signed in

    def post(self, request, token):
        try:
            membership = invitation_accept(token=token, user=request.user, ip=client_ip(request))
        except OrgRuleError as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        return Response(org_output(membership.organization, membership.role))


class AuditPagination(CursorPagination):
    ordering = "-created_at"
    page_size = 50
    max_page_size = 500
    page_size_query_param = "limit"


class AuditLogApi(OrgScopedApi):
    """Filters: action, actor (email), targetType, since, until (ISO 8601); cursor-paginated."""

    scope_map = {"GET": "audit:read"}
    model = AuditEvent

    def safely_get_queryset(self, queryset):
        return queryset.select_related("actor")

    def get(self, request, org_id):
        events = self.get_queryset()
        params = request.query_params
        if action := params.get("action"):
            events = events.filter(action=action)
        if actor := params.get("actor"):
            events = events.filter(actor__email__iexact=actor)
        if target_type := params.get("targetType"):
            events = events.filter(target_type=target_type)
        for bound, lookup in (("since", "created_at__gte"), ("until", "created_at__lt")):
            if value := params.get(bound):
                if (when := parse_datetime(value)) is None:
                    raise ValidationError({bound: "Use an ISO 8601 date-time."})
                events = events.filter(**{lookup: when})
        paginator = AuditPagination()
        page = paginator.paginate_queryset(events, request, view=self)
        return paginator.get_paginated_response([{
            "id": e.pk, "action": e.action, "actor": e.actor.email if e.actor else None,
            "targetType": e.target_type, "targetId": e.target_id, "before": e.before, "after": e.after,
            "ip": e.ip, "createdAt": e.created_at,
        } for e in page])


class SSOInput(serializers.Serializer):
    type = serializers.ChoiceField(choices=["saml", "oidc"])
    domain = serializers.RegexField(r"^[A-Za-z0-9.-]+\.[A-Za-z]{2,}$", max_length=253)
    defaultRole = serializers.ChoiceField(choices=list(ROLES), required=False)
    ssoRequired = serializers.BooleanField(required=False)
    metadataXml = serializers.CharField(required=False)
    issuer = serializers.URLField(required=False)
    clientId = serializers.CharField(required=False, max_length=300)
    clientSecret = serializers.CharField(required=False, max_length=1000, write_only=True)

    def validate(self, data):
        needed = ["metadataXml"] if data["type"] == "saml" else ["issuer", "clientId"]
        if missing := [f for f in needed if not data.get(f)]:
            raise ValidationError({f: "Required for this type." for f in missing})
        return data


def sso_output(connection) -> dict:
    return {"providerId": connection.provider_id, "type": connection.type, "domain": connection.domain,
            "defaultRole": connection.default_role, "ssoRequired": connection.sso_required,
            "status": connection.status, "statusDetail": connection.status_detail or None,
            "checkedAt": connection.checked_at, "idpEntityId": connection.idp_entity_id or None,
            "issuer": connection.issuer or None, "clientId": connection.client_id or None,
            "hasClientSecret": bool(connection.client_secret_encrypted), **sso_urls(connection)}


class SSOConnectionApi(OrgScopedApi):
    """One identity provider per organization (SAML metadata or OIDC issuer); secrets never leave."""

    scope_map = {"GET": "org:read", "POST": "sso:write", "DELETE": "sso:write"}

    def get(self, request, org_id):
        connection = getattr(self.organization, "sso", None)
        return Response(sso_output(connection) if connection else None)

    def post(self, request, org_id):
        connection = sso_configure(organization=self.organization, actor=request.user,
                                   data=valid(SSOInput, request), ip=client_ip(request))
        return Response(sso_output(connection), status=status.HTTP_201_CREATED)

    def delete(self, request, org_id):
        sso_delete(organization=self.organization, actor=request.user, ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookInput(serializers.Serializer):
    url = serializers.URLField(max_length=500)
    events = serializers.ListField(child=serializers.CharField(max_length=64), allow_empty=False)
    enabled = serializers.BooleanField(required=False)


def webhook_output(webhook) -> dict:
    """Never the secret: it is shown once, when created or rotated."""
    return {"id": webhook.pk, "url": webhook.url, "events": webhook.events, "enabled": webhook.enabled,
            "createdBy": webhook.created_by.email if webhook.created_by else None,
            "createdAt": webhook.created_at}


def delivery_output(delivery) -> dict:
    return {"id": delivery.pk, "eventId": delivery.event_id, "type": delivery.event_type,
            "status": delivery.status, "attempts": delivery.attempts,
            "lastStatusCode": delivery.last_status_code,
            "lastError": delivery.last_error or None, "nextAttemptAt": delivery.next_attempt_at,
            "createdAt": delivery.created_at, "deliveredAt": delivery.delivered_at}


class WebhookApi(OrgScopedApi):
    model = Webhook

    def safely_get_queryset(self, queryset):
        return (queryset.filter(for_requests=False).select_related("created_by", "organization")
                .order_by("-created_at"))

    def _webhook(self, webhook_id) -> Webhook:
        return self.get_object(pk=webhook_id)


class WebhookListApi(WebhookApi):
    scope_map = {"GET": "webhooks:read", "POST": "webhooks:write"}

    def get(self, request, org_id):
        return Response({"data": [webhook_output(w) for w in self.get_queryset()]})

    def post(self, request, org_id):
        data = valid(WebhookInput, request)
        webhook, secret = webhook_create(organization=self.organization, url=data["url"],
                                         events=data["events"], actor=request.user, ip=client_ip(request))
        # The signing secret is in this response only: it is stored encrypted and never shown again.
        return Response({**webhook_output(webhook), "secret": secret}, status=status.HTTP_201_CREATED)


class WebhookDetailApi(WebhookApi):
    scope_map = {"GET": "webhooks:read", "PATCH": "webhooks:write", "DELETE": "webhooks:write"}

    def get(self, request, org_id, webhook_id):
        return Response(webhook_output(self._webhook(webhook_id)))

    def patch(self, request, org_id, webhook_id):
        data = WebhookInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        webhook = webhook_update(webhook=self._webhook(webhook_id), changes=data.validated_data,
                                 actor=request.user, ip=client_ip(request))
        return Response(webhook_output(webhook))

    def delete(self, request, org_id, webhook_id):
        webhook_delete(webhook=self._webhook(webhook_id), actor=request.user, ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookSecretRotateApi(WebhookApi):
    scope_map = {"POST": "webhooks:write"}

    def post(self, request, org_id, webhook_id):
        webhook, secret = webhook_secret_rotate(webhook=self._webhook(webhook_id), actor=request.user,
                                                ip=client_ip(request))
        return Response({**webhook_output(webhook), "secret": secret})


class WebhookDeliveryListApi(WebhookApi):
    """The 100 most recent deliveries, newest first."""

    scope_map = {"GET": "webhooks:read"}

    def get(self, request, org_id, webhook_id):
        deliveries = self._webhook(webhook_id).deliveries.order_by("-created_at")[:100]
        return Response({"data": [delivery_output(d) for d in deliveries]})


class WebhookTestApi(WebhookApi):
    scope_map = {"POST": "webhooks:write"}

    def post(self, request, org_id, webhook_id):
        delivery = webhook_test_send(webhook=self._webhook(webhook_id))
        return Response(delivery_output(delivery), status=status.HTTP_202_ACCEPTED)


class WebhookRequestSecretApi(OrgScopedApi):
    """POST → a new signing secret for the events Hypereal sends to a request's own webhookUrl (jobs),
    shown this once; deliveries from now on are signed with it."""

    scope_map = {"POST": "webhooks:write"}

    def post(self, request, org_id):
        secret = webhook_request_secret_issue(organization=self.organization, actor=request.user,
                                              ip=client_ip(request))
        return Response({"secret": secret}, status=status.HTTP_201_CREATED)
