"""Every page answers members by role, and never another organization's data."""

import pytest
from django.test import Client

from orgs.roles import ADMIN, BILLING, DEVELOPER, OWNER, VIEWER
from orgs.services import user_create
from tests.factories import org_with_member

pytestmark = pytest.mark.django_db
PAGES = {"/usage": {OWNER, ADMIN, DEVELOPER, BILLING, VIEWER}, "/keys": {OWNER, ADMIN, DEVELOPER, VIEWER},
         "/billing": {OWNER, ADMIN, BILLING, VIEWER}, "/settings": {OWNER, ADMIN, DEVELOPER, BILLING, VIEWER},
         "/audit": {OWNER, ADMIN, BILLING, VIEWER}, "/settings/sso": {OWNER, ADMIN, DEVELOPER, BILLING, VIEWER}}


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("role", [OWNER, ADMIN, DEVELOPER, BILLING, VIEWER, None])
def test_pages_by_role(path, role):
    org, member = org_with_member(role or VIEWER)
    client = Client()
    client.force_login(member if role else user_create(email=f"stranger-{org.slug}@example.test"))
    resp = client.get(path, {"org": org.slug})
    assert resp.status_code == (200 if role in PAGES[path] else 404 if role is None else 403)
    if resp.status_code == 200:
        assert org.name.encode() in resp.content


def test_pages_need_a_login():
    for path in PAGES:
        resp = Client().get(path)
        assert resp.status_code == 302 and resp["Location"].startswith("/accounts/login/")


def test_creating_a_key_on_the_page_shows_the_plaintext_once():
    org, owner = org_with_member(OWNER)
    client = Client()
    client.force_login(owner)
    resp = client.post(f"/keys?org={org.slug}", {"name": "web", "spending_limit": "25", "auto_disable": "on"})
    assert resp.status_code == 200 and b'data-testid="new-key">ck_' in resp.content
    again = client.get("/keys").content
    assert b"ck_" in again and b'data-testid="new-key"' not in again  # only the redacted form afterwards
    assert b"web" in again and b"25" in again
