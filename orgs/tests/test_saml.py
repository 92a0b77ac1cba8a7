"""SAML SSO end to end against a real IdP implementation (pysaml2), signing with a test key pair."""

import base64
import datetime as dt
import time
from urllib.parse import parse_qs, urlparse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.test import Client
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from saml2 import BINDING_HTTP_REDIRECT
from saml2.authn_context import PASSWORD
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID
from saml2.server import Server

from orgs.models import AuditEvent, Membership
from orgs.roles import ADMIN, DEVELOPER, OWNER
from tests.factories import org_with_member

pytestmark = pytest.mark.django_db
IDP_ENTITY = "https://idp.example.test/metadata"
DOMAIN = "acme.test"
SIGNATURE_ALGORITHMS = {"sha256": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                        "sha1": "http://www.w3.org/2000/09/xmldsig#rsa-sha1"}
DIGEST_ALGORITHMS = {"sha256": "http://www.w3.org/2001/04/xmlenc#sha256",
                     "sha1": "http://www.w3.org/2000/09/xmldsig#sha1"}
SP_HOST = "hypereal.example.test"  # python3-saml wants a dotted host; the Host header must match it


def sp_client() -> Client:
    return Client(HTTP_HOST=SP_HOST)


def local(url: str) -> str:
    return url.removeprefix(f"http://{SP_HOST}")


def key_pair(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test IdP")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    key_file, cert_file = tmp_path / "idp.key", tmp_path / "idp.crt"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(key_file), str(cert_file)


def idp_config(key_file, cert_file, sp_metadata_files=()) -> IdPConfig:
    config = IdPConfig()
    config.load({
        "entityid": IDP_ENTITY,
        "service": {"idp": {
            "endpoints": {"single_sign_on_service": [("https://idp.example.test/sso", BINDING_HTTP_REDIRECT)]},
            "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
            "policy": {"default": {"lifetime": {"minutes": 5}}},
        }},
        "key_file": key_file, "cert_file": cert_file, "xmlsec_binary": "/usr/bin/xmlsec1",
        "metadata": {"local": list(sp_metadata_files)},
    })
    return config


class IdP:
    """A pysaml2 identity provider that our organization trusts."""

    def __init__(self, tmp_path, admin: Client, org):
        settings_key, settings_cert = key_pair(tmp_path)
        metadata = create_metadata_string(None, config=idp_config(settings_key, settings_cert), valid=24).decode()
        resp = admin.post(f"/api/orgs/{org.pk}/sso", {"type": "saml", "metadataXml": metadata, "domain": DOMAIN,
                                                      "defaultRole": DEVELOPER}, content_type="application/json")
        assert resp.status_code == 201, resp.content
        self.sso = resp.json()
        sp_metadata = sp_client().get(local(self.sso["metadataUrl"])).content
        sp_file = tmp_path / "sp.xml"
        sp_file.write_bytes(sp_metadata)
        # A second service provider under another entity id, for the wrong-audience case.
        other_sp = tmp_path / "other-sp.xml"
        other_sp.write_bytes(sp_metadata.replace(self.sso["metadataUrl"].encode(), b"https://other.example/sp"))
        self.server = Server(config=idp_config(settings_key, settings_cert, [str(sp_file), str(other_sp)]))

    def start(self, client: Client, next_url: str = "/billing/top-up") -> str:
        """Our login redirect, read by the IdP: returns the AuthnRequest id."""
        resp = client.get(local(self.sso["loginUrl"]), {"next": next_url})
        assert resp.status_code == 302 and resp["Location"].startswith("https://idp.example.test/sso")
        query = parse_qs(urlparse(resp["Location"]).query)
        request = self.server.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
        return request.message.id

    def response(self, *, email: str, in_response_to: str | None, sign_assertion=True, sign_response=True,
                 audience: str | None = None, algorithm: str = "sha256") -> str:
        xml = self.server.create_authn_response(
            identity={}, in_response_to=in_response_to, destination=self.sso["acsUrl"],
            sp_entity_id=audience or self.sso["metadataUrl"], name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS,
                                                                             text=email),
            authn={"class_ref": PASSWORD, "authn_auth": IDP_ENTITY},
            sign_assertion=sign_assertion, sign_response=sign_response,
            sign_alg=SIGNATURE_ALGORITHMS[algorithm], digest_alg=DIGEST_ALGORITHMS[algorithm])
        return base64.b64encode(str(xml).encode()).decode()

    def post(self, client: Client, saml_response: str, relay_state: str = "/billing/top-up"):
        return client.post(local(self.sso["acsUrl"]),
                           {"SAMLResponse": saml_response, "RelayState": relay_state})


@pytest.fixture
def idp(tmp_path, settings):
    settings.PUBLIC_URL = f"http://{SP_HOST}"
    org, owner = org_with_member(ADMIN)
    admin = sp_client()
    admin.force_login(owner)
    return IdP(tmp_path, admin, org), org


def test_signed_response_signs_in_and_joins_just_in_time(idp):
    provider, org = idp
    browser = sp_client()
    request_id = provider.start(browser)
    resp = provider.post(browser, provider.response(email="ada@acme.test", in_response_to=request_id))
    assert resp.status_code == 302 and resp["Location"] == "/billing/top-up"
    membership = Membership.objects.get(organization=org, user__email="ada@acme.test")
    assert membership.role == DEVELOPER and browser.session["_auth_user_id"] == str(membership.user_id)
    assert AuditEvent.objects.filter(organization=org, action="member.sso_join").exists()


def test_idp_initiated_sign_in_works_too(idp):
    provider, org = idp
    resp = provider.post(sp_client(), provider.response(email="grace@acme.test", in_response_to=None))
    assert resp.status_code == 302


@pytest.mark.parametrize("signing", [dict(sign_assertion=False, sign_response=False),
                                     dict(sign_assertion=False, sign_response=True),
                                     dict(algorithm="sha1")])
def test_an_unsigned_or_weakly_signed_assertion_is_refused(idp, signing):
    provider, org = idp
    browser = sp_client()
    resp = provider.post(browser, provider.response(email="eve@acme.test", in_response_to=provider.start(browser),
                                                    **signing))
    assert resp.status_code == 403 and not Membership.objects.filter(user__email="eve@acme.test").exists()


def test_an_expired_response_is_refused(idp, monkeypatch):
    provider, _ = idp
    browser = sp_client()
    saml_response = provider.response(email="late@acme.test", in_response_to=provider.start(browser))
    later = time.time() + 3600  # the assertion's window (5 minutes) is long past
    monkeypatch.setattr(OneLogin_Saml2_Utils, "now", staticmethod(lambda: int(later)))
    resp = provider.post(browser, saml_response)
    assert resp.status_code == 403 and b"expired" in resp.content.lower()


def test_a_response_for_another_audience_is_refused(idp):
    provider, _ = idp
    browser = sp_client()
    resp = provider.post(browser, provider.response(email="mallory@acme.test", in_response_to=provider.start(browser),
                                                    audience="https://other.example/sp"))
    assert resp.status_code == 403 and b"audience" in resp.content.lower()


def test_a_replayed_response_is_refused(idp):
    provider, _ = idp
    saml_response = provider.response(email="ada@acme.test", in_response_to=None)
    assert provider.post(sp_client(), saml_response).status_code == 302
    replay = provider.post(sp_client(), saml_response)
    assert replay.status_code == 403 and b"already used" in replay.content


def test_an_address_outside_the_domain_is_refused(idp):
    provider, org = idp
    resp = provider.post(sp_client(), provider.response(email="bob@other.test", in_response_to=None))
    assert resp.status_code == 403 and not Membership.objects.filter(user__email="bob@other.test").exists()


def test_the_login_form_routes_the_domain_to_its_idp_and_sso_required_blocks_passwords(idp):
    provider, org = idp
    resp = sp_client().post("/accounts/login/", {"login": "ada@acme.test", "password": "whatever"})
    assert resp.status_code == 302 and resp["Location"].startswith(provider.sso["loginUrl"])
    discover = sp_client().get("/api/auth/sso/discover", {"email": "someone@ACME.test"}).json()
    assert discover["sso"] and discover["loginUrl"] == provider.sso["loginUrl"]
    assert sp_client().get("/api/auth/sso/discover", {"email": "x@gmail.test"}).json() == {"sso": False}

    from allauth.account.adapter import get_adapter
    from django import forms

    from orgs.models import SSOConnection

    SSOConnection.objects.filter(organization=org).update(sso_required=True)
    with pytest.raises(forms.ValidationError):
        get_adapter().pre_authenticate(None, email="ada@acme.test", password="whatever")


@pytest.mark.parametrize("role,status", [(OWNER, 201), (ADMIN, 201), (DEVELOPER, 403), ("billing", 403),
                                         ("viewer", 403), (None, 404)])
def test_only_owners_and_admins_configure_sso(tmp_path, role, status):
    from orgs.services import user_create

    org, member = org_with_member(role or "viewer")
    client = sp_client()
    client.force_login(member if role else user_create(email="stranger@example.test"))
    key_file, cert_file = key_pair(tmp_path)
    metadata = create_metadata_string(None, config=idp_config(key_file, cert_file), valid=24).decode()
    resp = client.post(f"/api/orgs/{org.pk}/sso", {"type": "saml", "metadataXml": metadata, "domain": "corp.test"},
                       content_type="application/json")
    assert resp.status_code == status


def test_broken_metadata_is_a_clear_error(idp):
    provider, org = idp
    admin = sp_client()
    admin.force_login(org.memberships.get(role=ADMIN).user)
    resp = admin.post(f"/api/orgs/{org.pk}/sso", {"type": "saml", "metadataXml": "<not-metadata/>",
                                                  "domain": DOMAIN}, content_type="application/json")
    assert resp.status_code == 400 and "metadata" in resp.json()["detail"]
