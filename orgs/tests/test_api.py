import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from apikeys.models import ApiKey
from apikeys.services import api_key_create
from orgs.models import AuditEvent, Invitation, Membership, Organization
from orgs.roles import ADMIN, BILLING, DEVELOPER, OWNER, VIEWER
from orgs.services import user_create
from tests.factories import org_with_member

pytestmark = pytest.mark.django_db
ROLES_AND_OUTSIDER = [OWNER, ADMIN, DEVELOPER, BILLING, VIEWER, None]


def as_role(role: str | None):
    """(client, org, actor membership or None) for a member holding ``role``, or an outsider."""
    org, member = org_with_member(role or VIEWER)
    client = Client(REMOTE_ADDR="203.0.113.7")
    if role is None:
        client.force_login(user_create(email=f"outsider-{org.slug}@example.test"))
        return client, org, None
    client.force_login(member)
    return client, org, Membership.objects.get(organization=org, user=member)


def add_member(org, role: str) -> Membership:
    user = user_create(email=f"{role}-extra-{org.slug}-{Membership.objects.count()}@example.test")
    return Membership.objects.create(organization=org, user=user, role=role)


def expect(role, allowed: set, ok: int) -> int:
    return ok if role in allowed else (404 if role is None else 403)


def test_any_user_creates_a_team_and_owns_it():
    client = Client()
    client.force_login(user_create(email="founder@example.test"))
    resp = client.post("/api/orgs", {"name": "Acme Labs"}, content_type="application/json")
    assert resp.status_code == 201
    body = resp.json()
    assert body["slug"] == "acme-labs" and body["role"] == "owner" and body["id"]
    listed = {o["slug"]: o["role"] for o in client.get("/api/orgs").json()["data"]}
    assert listed["acme-labs"] == "owner" and any(o.endswith("-personal") for o in listed)
    assert AuditEvent.objects.filter(action="org.create", target_id=str(body["id"])).exists()


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_read_org(role):
    client, org, _ = as_role(role)
    resp = client.get(f"/api/orgs/{org.pk}")
    assert resp.status_code == expect(role, {OWNER, ADMIN, DEVELOPER, BILLING, VIEWER}, 200)
    if role:
        assert resp.json()["role"] == role


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_rename_org(role):
    client, org, _ = as_role(role)
    resp = client.patch(f"/api/orgs/{org.pk}", {"name": "Renamed"}, content_type="application/json")
    assert resp.status_code == expect(role, {OWNER, ADMIN}, 200)
    org.refresh_from_db()
    assert (org.name == "Renamed") == (resp.status_code == 200)


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_delete_org_is_owner_only_and_keeps_history(role):
    client, org, _ = as_role(role)
    key, _ = api_key_create(organization=org, name="ci")
    resp = client.delete(f"/api/orgs/{org.pk}")
    assert resp.status_code == expect(role, {OWNER}, 204)
    org.refresh_from_db()
    assert (org.deleted_at is not None) == (resp.status_code == 204)
    if resp.status_code == 204:
        assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
        revoked = AuditEvent.objects.get(organization=org, action="api_key.revoke", target_id=str(key.pk))
        assert revoked.actor.memberships.filter(organization=org).exists() is False  # members are gone…
        assert revoked.actor.email.startswith("owner-")  # …but the owner who deleted it is named
        assert not org.memberships.exists() and client.get(f"/api/orgs/{org.pk}").status_code == 404
        assert AuditEvent.objects.filter(organization=org, action="org.delete").exists()


def test_a_personal_org_cannot_be_deleted():
    user = user_create(email="solo@example.test")
    client = Client()
    client.force_login(user)
    personal = Organization.objects.get(memberships__user=user)
    assert client.delete(f"/api/orgs/{personal.pk}").status_code == 400


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_list_members(role):
    client, org, _ = as_role(role)
    resp = client.get(f"/api/orgs/{org.pk}/members")
    assert resp.status_code == expect(role, {OWNER, ADMIN, DEVELOPER, BILLING, VIEWER}, 200)
    if resp.status_code == 200:
        assert {m["role"] for m in resp.json()["data"]} >= {OWNER}


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_change_a_developers_role(role):
    client, org, _ = as_role(role)
    developer = add_member(org, DEVELOPER)
    resp = client.patch(f"/api/orgs/{org.pk}/members/{developer.pk}", {"role": VIEWER},
                        content_type="application/json")
    assert resp.status_code == expect(role, {OWNER, ADMIN}, 200)
    developer.refresh_from_db()
    assert (developer.role == VIEWER) == (resp.status_code == 200)
    if resp.status_code == 200:
        event = AuditEvent.objects.get(action="member.role_change", target_id=str(developer.pk))
        assert event.before["role"] == DEVELOPER and event.after["role"] == VIEWER and event.ip == "203.0.113.7"


def test_members_manage_only_lower_ranks():
    client, org, admin = as_role(ADMIN)
    other_admin = add_member(org, ADMIN)
    owner = org.memberships.get(role=OWNER)
    developer = add_member(org, DEVELOPER)
    url = f"/api/orgs/{org.pk}/members"
    assert client.patch(f"{url}/{other_admin.pk}", {"role": VIEWER}, content_type="application/json").status_code == 403
    assert client.patch(f"{url}/{owner.pk}", {"role": VIEWER}, content_type="application/json").status_code == 403
    assert client.patch(f"{url}/{developer.pk}", {"role": ADMIN}, content_type="application/json").status_code == 403
    assert client.delete(f"{url}/{other_admin.pk}").status_code == 403
    assert client.delete(f"{url}/{developer.pk}").status_code == 204


def test_the_last_owner_can_neither_leave_nor_be_demoted():
    client, org, owner = as_role(OWNER)
    url = f"/api/orgs/{org.pk}/members/{owner.pk}"
    assert client.patch(url, {"role": ADMIN}, content_type="application/json").status_code == 409
    assert client.delete(url).status_code == 409
    second = add_member(org, OWNER)
    assert client.delete(url).status_code == 204, "with another owner, an owner may leave"
    assert Membership.objects.filter(pk=second.pk, role=OWNER).exists()


@pytest.mark.parametrize("role", [VIEWER, BILLING, DEVELOPER])
def test_any_member_may_leave(role):
    client, org, me = as_role(role)
    assert client.delete(f"/api/orgs/{org.pk}/members/{me.pk}").status_code == 204
    assert AuditEvent.objects.filter(action="member.leave", organization=org).exists()


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_transfer_ownership(role):
    client, org, me = as_role(role)
    heir = add_member(org, DEVELOPER)
    resp = client.post(f"/api/orgs/{org.pk}/transfer-ownership", {"memberId": heir.pk},
                       content_type="application/json")
    assert resp.status_code == expect(role, {OWNER}, 200)
    heir.refresh_from_db()
    if resp.status_code == 200:
        me.refresh_from_db()
        assert (heir.role, me.role) == (OWNER, ADMIN)
    else:
        assert heir.role == DEVELOPER


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_invite_a_developer(role):
    client, org, _ = as_role(role)
    resp = client.post(f"/api/orgs/{org.pk}/invitations", {"email": "New@Example.test", "role": DEVELOPER},
                       content_type="application/json")
    assert resp.status_code == expect(role, {OWNER, ADMIN}, 201)
    assert Invitation.objects.filter(organization=org).exists() == (resp.status_code == 201)
    listing = client.get(f"/api/orgs/{org.pk}/invitations")
    assert listing.status_code == expect(role, {OWNER, ADMIN}, 200)


@pytest.fixture
def invite(django_capture_on_commit_callbacks):
    def send(role=DEVELOPER, email="joiner@example.test"):
        client, org, _ = as_role(OWNER)
        with django_capture_on_commit_callbacks(execute=True):  # the email goes out once the invitation commits
            client.post(f"/api/orgs/{org.pk}/invitations", {"email": email, "role": role},
                        content_type="application/json")
        token = re.search(r"/invitations/([\w-]+)", mail.outbox[-1].body).group(1)
        return client, org, token
    return send


def accept(token: str, email: str):
    user = Membership.objects.filter(user__email=email).first()
    client = Client()
    client.force_login(user.user if user else user_create(email=email))
    return client.post(f"/api/invitations/{token}/accept")


def test_an_invitation_is_emailed_and_accepted_once(invite):
    _, org, token = invite()
    assert mail.outbox[-1].to == ["joiner@example.test"]
    assert token not in str(Invitation.objects.values_list("token_hash", flat=True))  # only its hash is stored
    resp = accept(token, "joiner@example.test")
    assert resp.status_code == 200 and resp.json()["role"] == DEVELOPER
    assert Membership.objects.get(organization=org, user__email="joiner@example.test").role == DEVELOPER
    assert accept(token, "joiner@example.test").status_code == 404


def test_an_invitation_belongs_to_its_email_and_expires(invite):
    _, _, token = invite(email="right@example.test")
    assert accept(token, "wrong@example.test").status_code == 403
    _, _, token = invite(email="late@example.test")
    Invitation.objects.filter(email="late@example.test").update(expires_at=timezone.now() - timedelta(minutes=1))
    assert accept(token, "late@example.test").status_code == 410


def test_a_revoked_invitation_cannot_be_accepted(invite):
    client, org, token = invite(email="revoked@example.test")
    invitation = Invitation.objects.get(email="revoked@example.test")
    assert client.delete(f"/api/orgs/{org.pk}/invitations/{invitation.pk}").status_code == 204
    assert accept(token, "revoked@example.test").status_code == 404


def test_an_admin_cannot_invite_an_admin():
    client, org, _ = as_role(ADMIN)
    resp = client.post(f"/api/orgs/{org.pk}/invitations", {"email": "peer@example.test", "role": ADMIN},
                       content_type="application/json")
    assert resp.status_code == 403


@pytest.mark.parametrize("role", ROLES_AND_OUTSIDER)
def test_audit_log_visibility(role):
    client, org, _ = as_role(role)
    resp = client.get(f"/api/orgs/{org.pk}/audit-log")
    assert resp.status_code == expect(role, {OWNER, ADMIN, BILLING, VIEWER}, 200)
    if resp.status_code == 200:
        assert [e["action"] for e in resp.json()["results"]] == ["org.create"]


def test_audit_log_filters_and_pages():
    client, org, owner = as_role(OWNER)
    for i in range(3):
        client.patch(f"/api/orgs/{org.pk}", {"name": f"Name {i}"}, content_type="application/json")
    renames = client.get(f"/api/orgs/{org.pk}/audit-log", {"action": "org.rename", "limit": 2}).json()
    assert len(renames["results"]) == 2 and renames["next"]
    newest = renames["results"][0]
    assert newest["before"] == {"name": "Name 1"} and newest["after"] == {"name": "Name 2"}
    assert newest["actor"] == owner.user.email and newest["ip"] == "203.0.113.7"
    assert len(client.get(renames["next"]).json()["results"]) == 1
    assert client.get(f"/api/orgs/{org.pk}/audit-log", {"since": "not a date"}).status_code == 400
    assert client.get(f"/api/orgs/{org.pk}/audit-log", {"actor": "nobody@example.test"}).json()["results"] == []
