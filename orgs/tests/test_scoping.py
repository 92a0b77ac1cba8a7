"""Organization-scoped endpoints serve their own organization's rows, whatever a view asks for."""

import pytest
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate

from orgs.api.base import OrgScopedApi
from orgs.models import AuditEvent, Membership
from orgs.roles import OWNER
from tests.factories import org_with_member

pytestmark = pytest.mark.django_db


class EveryAuditEventApi(OrgScopedApi):
    """A careless view: it asks for every organization's audit events."""

    scope_map = {"GET": "audit:read"}
    model = AuditEvent

    def safely_get_queryset(self, queryset):
        return AuditEvent.objects.all()

    def get(self, request, org_id):
        return Response(sorted({event.organization_id for event in self.get_queryset()}))


class OneAuditEventApi(EveryAuditEventApi):
    def get(self, request, org_id, event_id):
        return Response(self.get_object(pk=event_id).pk)


def call(view, user, org, **kwargs):
    request = APIRequestFactory().get("/")
    force_authenticate(request, user=user)
    return view.as_view()(request, org_id=org.pk, **kwargs)


def test_a_view_that_asks_for_every_organizations_rows_gets_its_own():
    mine, me = org_with_member(OWNER)
    theirs, _ = org_with_member(OWNER)  # both organizations have audit events (their creation)
    assert AuditEvent.objects.filter(organization=theirs).exists()
    assert call(EveryAuditEventApi, me, mine).data == [mine.pk]


def test_another_organizations_row_is_not_found_even_by_its_id():
    mine, me = org_with_member(OWNER)
    theirs, _ = org_with_member(OWNER)
    their_event = AuditEvent.objects.filter(organization=theirs).first()
    assert call(OneAuditEventApi, me, mine, event_id=their_event.pk).status_code == 404
    my_event = AuditEvent.objects.filter(organization=mine).first()
    assert call(OneAuditEventApi, me, mine, event_id=my_event.pk).data == my_event.pk


def test_a_view_cannot_replace_the_scoped_queryset():
    with pytest.raises(TypeError, match="safely_get_queryset"):
        class UnscopedApi(OrgScopedApi):  # noqa: F841
            model = Membership

            def get_queryset(self):
                return Membership.objects.all()
