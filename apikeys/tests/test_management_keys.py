"""API keys on the management API: scoped, bound to their organization, never beyond their creator."""

import pytest
from django.test import Client

from apikeys.models import ApiKey
from apikeys.services import api_key_create, api_key_revoke
from orgs.models import Membership
from orgs.roles import ADMIN, DEVELOPER, OWNER, VIEWER
from tests.factories import org_with_member

pytestmark = pytest.mark.django_db


def key_for(role: str, scopes: set[str]):
    org, member = org_with_member(role)
    key, plaintext = api_key_create(organization=org, name="ci", created_by=member, scopes=frozenset(scopes))
    return org, member, key, Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")


def test_a_key_with_usage_read_reads_usage_without_a_session_or_csrf():
    org, _, _, client = key_for(DEVELOPER, {"usage:read"})
    resp = client.get("/api/api-usage?days=7")
    assert resp.status_code == 200 and "costByModel" in resp.json()


def test_a_key_is_refused_what_its_scopes_do_not_name():
    _, _, _, client = key_for(OWNER, {"usage:read"})
    resp = client.post("/api/api-keys", {"name": "more"}, content_type="application/json")
    assert resp.status_code == 403 and "keys:write" in resp.json()["detail"]
    assert client.get("/api/api-keys").status_code == 403


def test_a_key_without_scopes_is_a_model_api_key_only():
    _, _, _, client = key_for(OWNER, set())
    assert client.get("/api/api-usage").status_code == 403


def test_a_key_with_keys_write_creates_keys_but_grants_no_more_than_it_has():
    org, _, _, client = key_for(ADMIN, {"keys:read", "keys:write"})
    resp = client.post("/api/api-keys", {"name": "from-ci", "scopes": ["keys:read"]}, content_type="application/json")
    assert resp.status_code == 201 and resp.json()["scopes"] == ["keys:read"]
    assert ApiKey.objects.get(pk=resp.json()["id"]).organization == org
    resp = client.post("/api/api-keys", {"name": "wider", "scopes": ["usage:read"]}, content_type="application/json")
    assert resp.status_code == 400 and "usage:read" in str(resp.json())


def test_a_key_acts_only_in_its_own_organization():
    _, _, _, client = key_for(OWNER, {"org:read", "usage:read"})
    other, _ = org_with_member(OWNER)
    assert client.get(f"/api/orgs/{other.pk}/members").status_code == 404
    # Naming another organization in the header does not move the key out of its own.
    resp = client.get("/api/api-usage", HTTP_X_ORGANIZATION=other.slug)
    assert resp.status_code == 200


def test_a_key_never_does_more_than_its_creator_may_now():
    org, member, _, client = key_for(DEVELOPER, {"keys:read", "keys:write"})
    Membership.objects.filter(organization=org, user=member).update(role=VIEWER)
    assert client.get("/api/api-keys").status_code == 200  # viewers read keys
    resp = client.post("/api/api-keys", {"name": "x"}, content_type="application/json")
    assert resp.status_code == 403 and "viewer" in resp.json()["detail"]
    Membership.objects.filter(organization=org, user=member).delete()
    assert client.get("/api/api-keys").status_code == 404


def test_revoked_and_unknown_keys_are_refused():
    _, _, key, client = key_for(OWNER, {"usage:read"})
    api_key_revoke(key=key)
    resp = client.get("/api/api-usage")
    assert resp.status_code == 401 and "revoked" in resp.json()["detail"]
    assert Client(HTTP_AUTHORIZATION="Bearer ck_not-a-key").get("/api/api-usage").status_code == 401


def test_account_endpoints_stay_with_signed_in_people():
    _, _, _, client = key_for(OWNER, {"org:read", "keys:write"})
    assert client.post("/api/orgs", {"name": "Made by a key"}, content_type="application/json").status_code == 403


def test_members_grant_only_scopes_their_role_holds():
    org, member = org_with_member(DEVELOPER)
    client = Client(HTTP_X_ORGANIZATION=org.slug)
    client.force_login(member)
    ok = client.get("/api/api-keys")  # a CSRF cookie for the session
    assert ok.status_code == 200
    resp = client.post("/api/api-keys", {"name": "ci", "scopes": ["audit:read"]}, content_type="application/json")
    assert resp.status_code == 400 and "audit:read" in str(resp.json())
    resp = client.post("/api/api-keys", {"name": "ci", "scopes": ["usage:read", "keys:read"]},
                       content_type="application/json")
    assert resp.status_code == 201 and resp.json()["scopes"] == ["keys:read", "usage:read"]
