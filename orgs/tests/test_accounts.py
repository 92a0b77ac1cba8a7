import re

import pytest
import redis
from django.core import mail
from django.test import Client

from orgs.models import Organization, User

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fresh_throttles(settings):
    """allauth counts attempts in the Redis cache: each test starts from none (and only those go)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter("*allauth*"):
        client.delete(key)
    client.close()


def signup(client: Client, email: str):
    return client.post("/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD})


def test_signup_creates_a_personal_org_and_requires_a_verified_email():
    client = Client()
    assert signup(client, "new@example.test").status_code == 302
    user = User.objects.get(email="new@example.test")
    assert Organization.objects.get(memberships__user=user, memberships__role="owner").kind == "personal"
    assert not client.session.get("_auth_user_id"), "an unverified user is not signed in"

    link = re.search(r"https?://\S+/accounts/confirm-email/\S+", mail.outbox[-1].body).group(0)
    path = link.split("testserver", 1)[-1] if "testserver" in link else "/" + link.split("/", 3)[3]
    Client().post(path)
    fresh = Client()
    resp = fresh.post("/accounts/login/", {"login": "new@example.test", "password": PASSWORD})
    assert resp.status_code == 302 and fresh.session.get("_auth_user_id") == str(user.pk)


def test_failed_logins_are_throttled():
    User.objects.create_user(email="target@example.test", password=PASSWORD)
    client = Client()
    pages = [client.post("/accounts/login/", {"login": "target@example.test", "password": "wrong"}).content
             for _ in range(6)]
    assert b"Too many failed login attempts" not in pages[0]
    assert b"Too many failed login attempts" in pages[-1]
    blocked = client.post("/accounts/login/", {"login": "target@example.test", "password": PASSWORD})
    assert b"Too many failed login attempts" in blocked.content and not client.session.get("_auth_user_id"), \
        "even the right password waits out the throttle"


def test_password_reset_sends_a_link():
    User.objects.create_user(email="forgot@example.test", password=PASSWORD)
    assert Client().post("/accounts/password/reset/", {"email": "forgot@example.test"}).status_code == 302
    assert mail.outbox[-1].to == ["forgot@example.test"] and "/accounts/password/reset/key/" in mail.outbox[-1].body
