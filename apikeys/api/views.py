from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from apikeys.api.serializers import ApiKeyCreateInput, ApiKeyUpdateInput, api_key_output
from apikeys.models import ApiKey
from apikeys.selectors import KeyGrant, api_keys_month_spend, api_keys_with_month_spend
from apikeys.services import api_key_create, api_key_revoke, api_key_update
from orgs.api.base import OrgScopedApi, client_ip
from orgs.roles import role_has_scope


def _grantable(request, membership, scopes: frozenset[str]) -> frozenset[str]:
    """A key gets no scope its grantor lacks: the member's role, and the key making the call if any."""
    if denied := sorted(scope for scope in scopes if not role_has_scope(membership.role, scope)
                        or (isinstance(request.auth, KeyGrant) and scope not in request.auth.scopes)):
        raise ValidationError({"scopes": [f"You cannot grant {', '.join(denied)}."]})
    return scopes


class ApiKeyListApi(OrgScopedApi):
    scope_map = {"GET": "keys:read", "POST": "keys:write"}

    def get(self, request):
        return Response({"data": [api_key_output(key, spend)
                                  for key, spend in api_keys_with_month_spend(organization=self.organization)]})

    def post(self, request):
        data = ApiKeyCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        key, plaintext = api_key_create(
            organization=self.organization, name=data.validated_data["name"], created_by=request.user,
            monthly_spend_limit=data.validated_data.get("spendingLimit"),
            auto_disable=data.validated_data["autoDisable"],
            scopes=_grantable(request, self.membership, data.validated_data["scopes"]), ip=client_ip(request))
        # The plaintext is in this response only: it is never stored.
        return Response({**api_key_output(key, 0), "key": plaintext}, status=status.HTTP_201_CREATED)


def _with_month_spend(key: ApiKey) -> dict:
    return api_key_output(key, api_keys_month_spend(key_ids=[key.pk])[key.pk])


class ApiKeyDetailApi(OrgScopedApi):
    scope_map = {"GET": "keys:read", "PATCH": "keys:write", "DELETE": "keys:write"}
    model = ApiKey

    def safely_get_queryset(self, queryset):
        return queryset.select_related("created_by", "organization")

    def get(self, request, key_id: int):
        return Response(_with_month_spend(self.get_object(pk=key_id)))

    def patch(self, request, key_id: int):
        key = self.get_object(pk=key_id)
        data = ApiKeyUpdateInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        if "scopes" in data.validated_data:
            _grantable(request, self.membership, data.validated_data["scopes"])
        key = api_key_update(key=key, changes=data.validated_data, actor=request.user, ip=client_ip(request))
        return Response(_with_month_spend(key))

    def delete(self, request, key_id: int):
        api_key_revoke(key=self.get_object(pk=key_id), actor=request.user, ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
