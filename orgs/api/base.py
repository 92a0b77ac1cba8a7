"""The base of every management endpoint: resolve the organization once, check the role's scope, and
serve only that organization's rows."""

from django.db.models import Case, IntegerField, Model, QuerySet, Value, When
from django.shortcuts import get_object_or_404
from rest_framework.exceptions import MethodNotAllowed, NotFound, PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from orgs.models import Membership, Organization
from orgs.roles import ScopeGrant, role_has_scope
from orgs.services import OrgRuleError


def client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR")


def membership_for(request, user, org_id: int | None = None) -> Membership:
    """The organization in the URL, else named by `X-Organization` (slug or id) or `?org=`, else the
    user's personal one."""
    wanted = (str(org_id) if org_id is not None else request.headers.get("X-Organization")
              or request.GET.get("org") or request.session.get("org"))
    memberships = Membership.objects.select_related("organization", "user").filter(
        user=user, organization__deleted_at__isnull=True)
    if wanted:
        lookup = {"organization__pk": wanted} if wanted.isdigit() else {"organization__slug": wanted}
        membership = memberships.filter(**lookup).first()
    else:
        personal_first = Case(When(organization__kind=Organization.Kind.PERSONAL, then=Value(0)),
                              default=Value(1), output_field=IntegerField())
        membership = memberships.order_by(personal_first, "pk").first()
    if membership is None:  # the same answer whether the organization exists or not
        raise NotFound("No such organization.")
    return membership


class OrgScopedApi(APIView):
    """Subclasses declare ``scope_map`` (HTTP method → scope) and use ``self.organization``.

    Signed-in members (session + CSRF) act with their role; an API key with management scopes acts for
    its creator, in its own organization only, and only where both its scopes and its creator's current
    role allow.

    Rows come from ``get_queryset`` / ``get_object``, which always filter ``model`` to the organization
    (through ``organization_field``). A subclass shapes its rows in ``safely_get_queryset``; it cannot
    override ``get_queryset``, so no view can forget the filter or return another organization's rows.
    """

    scope_map: dict[str, str] = {}
    model: type[Model] | None = None
    organization_field = "organization"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise TypeError(f"{cls.__name__} overrides get_queryset; shape its rows in safely_get_queryset, "
                            "which OrgScopedApi scopes to the organization.")

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        """Narrow, join or order the rows; whatever this returns is filtered to the organization."""
        return queryset

    def get_queryset(self) -> QuerySet:
        queryset = self.safely_get_queryset(self.model._default_manager.all())
        return queryset.filter(**{self.organization_field: self.organization})

    def get_object(self, **lookup) -> Model:
        return get_object_or_404(self.get_queryset(), **lookup)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication first
        scope = self.scope_map.get(request.method)
        if scope is None:
            raise MethodNotAllowed(request.method)
        grant = request.auth if isinstance(request.auth, ScopeGrant) else None
        org_id = kwargs.get("org_id")
        if grant is not None:
            if org_id is not None and org_id != grant.organization_id:
                raise NotFound("No such organization.")
            org_id = grant.organization_id
        self.membership = membership_for(request, request.user, org_id)
        self.organization = self.membership.organization
        if grant is not None and scope not in grant.scopes:
            raise PermissionDenied(f"This API key does not have the {scope} scope.")
        if not role_has_scope(self.membership.role, scope):
            raise PermissionDenied(f"Your role ({self.membership.role}) does not allow {scope}.")

    def handle_exception(self, exc):
        if isinstance(exc, OrgRuleError):  # a role rule of the services: answered in DRF's shape
            return Response({"detail": str(exc)}, status=exc.status)
        return super().handle_exception(exc)
