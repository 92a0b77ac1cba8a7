import pytest
from django.test import Client

from apikeys.models import ApiKey
from apikeys.services import api_key_create
from billing.money import MICRO
from orgs.models import AuditEvent
from orgs.roles import ADMIN, BILLING, DEVELOPER, OWNER, VIEWER
from orgs.services import user_create
from tests.factories import org_with_member

pytestmark = pytest.mark.django_db
READERS = {OWNER, ADMIN, DEVELOPER, VIEWER}
WRITERS = {OWNER, ADMIN, DEVELOPER}
ROLES_AND_OUTSIDER = [OWNER, ADMIN, DEVELOPER, BILLING, VIEWER, None]


def client_in(role: str | None):
    """A logged-in client for a member with ``role`` (None: a user of another organization)."""
    org, member = org_with_member(role or VIEWER)
    client = Client(HTTP_X_ORGANIZATION=org.slug)
    client.force_login(member if role else user_create(email=f"outsider-{org.slug}@example.test"))
    return client, org


def expected(role: str | None, allowed: set[str], ok: int) -> int:
    return ok if role in allowed else (404 if role is None else 403)


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_list_keys(role):
    client, org = client_in(role)
    api_key_create(organization=org, name="existing", monthly_spend_limit=10 * MICRO)
    resp = client.get("/api/api-keys")
    assert resp.status_code == expected(role, READERS, 200)
    if resp.status_code == 200:
        [key] = resp.json()["data"]
        assert key["name"] == "existing" and key["spendingLimit"] == "10" and key["percentOfLimit"] == 0.0
        assert "key" not in key and "hash" not in str(key).lower()


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_create_key_returns_the_plaintext_once(role):
    client, org = client_in(role)
    resp = client.post("/api/api-keys", {"name": "ci", "spendingLimit": "12.5", "autoDisable": True},
                       content_type="application/json")
    assert resp.status_code == expected(role, WRITERS, 201)
    if resp.status_code != 201:
        assert not ApiKey.objects.filter(organization=org).exists()
        return
    body = resp.json()
    key = ApiKey.objects.get(pk=body["id"])
    assert body["key"].startswith("ck_") and body["key"].endswith(key.last4) and len(body["key"]) >= 43
    assert key.monthly_spend_limit == 12_500_000 and key.auto_disable and key.organization == org
    assert body["key"] not in str(client.get(f"/api/api-keys/{key.pk}").json())
    assert AuditEvent.objects.filter(action="api_key.create", target_id=str(key.pk), organization=org).exists()


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_update_limit(role):
    client, org = client_in(role)
    key, _ = api_key_create(organization=org, name="ci", monthly_spend_limit=10 * MICRO)
    resp = client.patch(f"/api/api-keys/{key.pk}", {"spendingLimit": "25", "autoDisable": True},
                        content_type="application/json")
    assert resp.status_code == expected(role, WRITERS, 200)
    key.refresh_from_db()
    assert (key.monthly_spend_limit == 25 * MICRO) == (resp.status_code == 200)
    if resp.status_code == 200:
        event = AuditEvent.objects.get(action="api_key.update", target_id=str(key.pk))
        assert event.before["monthly_spend_limit"] == 10 * MICRO and event.after["monthly_spend_limit"] == 25 * MICRO


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_revoke(role):
    client, org = client_in(role)
    key, _ = api_key_create(organization=org, name="ci")
    resp = client.delete(f"/api/api-keys/{key.pk}")
    assert resp.status_code == expected(role, WRITERS, 204)
    key.refresh_from_db()
    assert (key.revoked_at is not None) == (resp.status_code == 204)


def test_a_key_of_another_organization_is_not_found():
    client, _ = client_in(OWNER)
    other_org, _ = org_with_member(OWNER)
    key, _ = api_key_create(organization=other_org, name="theirs")
    assert client.delete(f"/api/api-keys/{key.pk}").status_code == 404
    assert client.patch(f"/api/api-keys/{key.pk}", {"name": "mine"}, content_type="application/json").status_code == 404


def test_writes_need_a_csrf_token_and_a_session():
    _, org = client_in(OWNER)
    owner = org.memberships.get(role=OWNER).user
    strict = Client(enforce_csrf_checks=True, HTTP_X_ORGANIZATION=org.slug)
    strict.force_login(owner)
    assert strict.post("/api/api-keys", {"name": "x"}, content_type="application/json").status_code == 403
    anonymous = Client().get("/api/api-keys")  # no session and no key: 401, naming the Bearer scheme
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")


def test_invalid_limits_are_rejected():
    client, _ = client_in(OWNER)
    for bad in ("-1", "abc", "0.0000001"):
        resp = client.post("/api/api-keys", {"name": "x", "spendingLimit": bad}, content_type="application/json")
        assert resp.status_code == 400, bad
