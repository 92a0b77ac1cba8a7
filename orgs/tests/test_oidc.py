"""OIDC SSO end to end against a real OpenID Provider (node's oidc-provider) on loopback."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import Client

from orgs.models import Membership, SSOConnection
from orgs.roles import ADMIN, VIEWER
from tests.live import free_port, start_process, stop_process
from tests.factories import org_with_member

pytestmark = pytest.mark.django_db
SP_HOST = "hypereal.example.test"
PROVIDER_ID = "sso_oidc_test"  # fixed, so the provider can know our redirect URI before we exist
REDIRECT_URI = f"http://{SP_HOST}/api/auth/sso/{PROVIDER_ID}/callback"
CLIENT_ID, CLIENT_SECRET = "hypereal", "s3cret-client-value"
PROVIDER_DIR = Path(__file__).resolve().parents[2] / "tests" / "oidc_provider"


@pytest.fixture(scope="module")
def issuer():
    port = free_port()
    clients = [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [REDIRECT_URI]}]
    proc = start_process(["node", str(PROVIDER_DIR / "server.mjs")],
                         f"http://127.0.0.1:{port}/.well-known/openid-configuration",
                         env={"PORT": str(port), "OIDC_CLIENTS": json.dumps(clients)})
    yield f"http://127.0.0.1:{port}"
    stop_process(proc)


def sp_client() -> Client:
    return Client(HTTP_HOST=SP_HOST)


@pytest.fixture
def connected(issuer, settings):
    """An organization whose admin configured the provider through the API."""
    settings.PUBLIC_URL = f"http://{SP_HOST}"
    org, admin = org_with_member(ADMIN)
    client = sp_client()
    client.force_login(admin)
    resp = client.post(f"/api/orgs/{org.pk}/sso", {"type": "oidc", "issuer": issuer, "clientId": CLIENT_ID,
                                                   "clientSecret": CLIENT_SECRET, "domain": "acme.test"},
                       content_type="application/json")
    assert resp.status_code == 201, resp.content
    SSOConnection.objects.filter(organization=org).update(provider_id=PROVIDER_ID)
    return org, resp.json()


def sign_in_at_provider(authorize_url: str, login: str) -> str:
    """Play the user at the provider's own pages (login, then consent); returns our callback URL."""
    with httpx.Client() as browser:
        url = authorize_url
        for _ in range(12):
            resp = browser.get(url)
            while resp.status_code in (302, 303):
                location = str(resp.url.join(resp.headers["location"]))
                if location.startswith(REDIRECT_URI):
                    return location
                resp = browser.get(location)
            action = re.search(r'<form[^>]*action="([^"]+)"', resp.text).group(1)
            fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', resp.text))
            if 'name="login"' in resp.text:
                fields.update(login=login, password="any-password")
            resp = browser.post(action, data=fields)
            if resp.status_code in (302, 303):
                url = str(resp.url.join(resp.headers["location"]))
                if url.startswith(REDIRECT_URI):
                    return url
    raise AssertionError("never came back from the provider")


def start(client: Client) -> str:
    resp = client.get(f"/api/auth/sso/{PROVIDER_ID}/login", {"next": "/billing/top-up"})
    assert resp.status_code == 302, resp.content
    return resp["Location"]


def callback(client: Client, url: str):
    parsed = urlparse(url)
    return client.get(parsed.path, parse_qs(parsed.query))


def test_configuration_records_discovery_and_hides_the_secret(connected, issuer):
    org, sso = connected
    assert sso["status"] == "ok" and sso["hasClientSecret"] and "clientSecret" not in sso
    connection = SSOConnection.objects.get(organization=org)
    assert connection.discovery["issuer"] == issuer
    assert CLIENT_SECRET not in connection.client_secret_encrypted and connection.client_secret == CLIENT_SECRET


def test_authorization_code_flow_with_pkce_signs_in_and_joins(connected):
    org, _ = connected
    browser = sp_client()
    authorize = start(browser)
    query = parse_qs(urlparse(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["state"] and query["nonce"]
    resp = callback(browser, sign_in_at_provider(authorize, "lin@acme.test"))
    assert resp.status_code == 302 and resp["Location"] == "/billing/top-up", resp.content
    member = Membership.objects.get(organization=org, user__email="lin@acme.test")
    assert member.role == VIEWER and browser.session["_auth_user_id"] == str(member.user_id)


def test_a_tampered_state_is_refused(connected):
    browser = sp_client()
    url = sign_in_at_provider(start(browser), "lin@acme.test")
    resp = callback(browser, re.sub(r"state=[^&]+", "state=forged", url))
    assert resp.status_code == 403 and b"state" in resp.content
    assert "_auth_user_id" not in browser.session


def test_a_mismatched_nonce_is_refused(connected):
    browser = sp_client()
    url = sign_in_at_provider(start(browser), "lin@acme.test")
    session = browser.session
    for pending in session["oidc"].values():
        pending["nonce"] = "not-the-nonce-the-provider-signed"
    session.save()
    resp = callback(browser, url)
    assert resp.status_code == 403 and b"Nonce" in resp.content


@pytest.fixture
def impostor_jwks(issuer):
    """A JWKS with the provider's key id but another key: what a forged token would verify against."""
    real = httpx.get(httpx.get(f"{issuer}/.well-known/openid-configuration").json()["jwks_uri"]).json()["keys"]
    kid = next(k for k in real if k.get("use", "sig") == "sig" and k["kty"] == "RSA")["kid"]
    fake = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa.generate_private_key(65537, 2048).public_key()))
    body = json.dumps({"keys": [{**fake, "kid": kid, "use": "sig", "alg": "RS256"}]}).encode()

    class Serve(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Serve)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/jwks"
    server.shutdown()


def test_a_token_whose_signature_does_not_verify_is_refused(connected, impostor_jwks):
    org, _ = connected
    connection = SSOConnection.objects.get(organization=org)
    connection.discovery = {**connection.discovery, "jwks_uri": impostor_jwks}
    connection.save()
    browser = sp_client()
    resp = callback(browser, sign_in_at_provider(start(browser), "lin@acme.test"))
    assert resp.status_code == 403 and b"verification failed" in resp.content
    assert not Membership.objects.filter(organization=org, user__email="lin@acme.test").exists()


def test_a_token_from_another_issuer_is_refused(connected, issuer):
    org, _ = connected
    SSOConnection.objects.filter(organization=org).update(issuer=f"{issuer}/someone-else")
    browser = sp_client()
    resp = callback(browser, sign_in_at_provider(start(browser), "lin@acme.test"))
    assert resp.status_code == 403 and b"issuer" in resp.content


def test_an_address_outside_the_domain_is_refused(connected):
    org, _ = connected
    browser = sp_client()
    resp = callback(browser, sign_in_at_provider(start(browser), "intruder@evil.test"))
    assert resp.status_code == 403 and not Membership.objects.filter(user__email="intruder@evil.test").exists()


def test_an_unreachable_issuer_is_recorded_as_an_error(settings):
    settings.PUBLIC_URL = f"http://{SP_HOST}"
    org, admin = org_with_member(ADMIN)
    client = sp_client()
    client.force_login(admin)
    resp = client.post(f"/api/orgs/{org.pk}/sso", {"type": "oidc", "issuer": f"http://127.0.0.1:{free_port()}",
                                                   "clientId": "x", "clientSecret": "y", "domain": "down.test"},
                       content_type="application/json")
    assert resp.status_code == 201
    assert resp.json()["status"] == "error" and resp.json()["statusDetail"]
    assert client.get(f"/api/auth/sso/{resp.json()['providerId']}/login").status_code == 403


def test_the_settings_page_saves_a_provider_and_shows_its_check(issuer, settings):
    settings.PUBLIC_URL = f"http://{SP_HOST}"
    org, admin = org_with_member(ADMIN)
    client = sp_client()
    client.force_login(admin)
    client.post(f"/settings/sso?org={org.slug}", {"type": "oidc", "domain": "page.test", "issuer": issuer,
                                                 "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET})
    page = client.get(f"/settings/sso?org={org.slug}").content.decode()
    assert "✔ Connected" in page and "@page.test" in page and CLIENT_SECRET not in page
    client.post(f"/settings/sso?org={org.slug}", {"type": "oidc", "domain": "page.test",
                                                 "issuer": f"http://127.0.0.1:{free_port()}", "clientId": "x"})
    assert "✖" in client.get(f"/settings/sso?org={org.slug}").content.decode()


def test_members_below_admin_see_but_cannot_change_sso(issuer):
    org, viewer = org_with_member("viewer")
    client = sp_client()
    client.force_login(viewer)
    assert client.get(f"/settings/sso?org={org.slug}").status_code == 200
    assert client.post(f"/settings/sso?org={org.slug}", {"type": "saml", "domain": "x.test"}).status_code == 403
