"""Single sign-on per organization: SAML 2.0 (python3-saml) and OpenID Connect (mozilla-django-oidc).

Both end the same way: a verified email of the connection's domain signs in (the user and the
membership are created just in time, with the connection's default role).
"""

import base64
import hashlib
import secrets
from datetime import UTC, datetime, timedelta

import httpx
import jwt
from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.db import IntegrityError, transaction
from django.utils import timezone
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from orgs.events import AuditAction
from orgs.models import Membership, Organization, SAMLAssertionSeen, SSOConnection, User
from orgs.services import OrgRuleError, audit_record

SAML_EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
DISCOVERY_TIMEOUT = 5


class SSOError(Exception):
    """A sign-in that must be refused; the message is safe to show."""


def sso_urls(connection: SSOConnection) -> dict[str, str]:
    base = f"{settings.PUBLIC_URL}/api/auth/sso/{connection.provider_id}"
    urls = {"loginUrl": f"{base}/login"}
    if connection.type == SSOConnection.Type.SAML:
        urls.update(acsUrl=base, metadataUrl=f"{base}/metadata")
    else:
        urls.update(redirectUri=f"{base}/callback")
    return urls


def connection_for_email(email: str) -> SSOConnection | None:
    domain = email.rpartition("@")[2].strip().lower()
    return SSOConnection.objects.filter(domain=domain, enabled=True,
                                        organization__deleted_at__isnull=True).first() if domain else None


# --- configuration -----------------------------------------------------------------------------

@transaction.atomic
def sso_configure(*, organization: Organization, actor: User, data: dict, ip: str | None = None) -> SSOConnection:
    """Create or replace the organization's connection from ``data`` (the API's input)."""
    domain = data["domain"].strip().lower()
    taken = SSOConnection.objects.filter(domain=domain).exclude(organization=organization).exists()
    if taken:
        raise OrgRuleError(f"The domain {domain} already signs in through another organization.", 409)
    connection = SSOConnection.objects.filter(organization=organization).first() or \
        SSOConnection(organization=organization)
    before = _public_state(connection) if connection.pk else None
    connection.type, connection.domain = data["type"], domain
    connection.default_role = data.get("defaultRole") or connection.default_role
    connection.sso_required = data.get("ssoRequired", connection.sso_required)
    if connection.type == SSOConnection.Type.SAML:
        _configure_saml(connection, data["metadataXml"])
    else:
        connection.issuer, connection.client_id = data["issuer"].rstrip("/"), data["clientId"]
        if data.get("clientSecret"):
            connection.client_secret = data["clientSecret"]
        oidc_discover(connection)
    connection.save()
    audit_record(organization=organization, action=AuditAction.SSO_CONFIGURE, target=connection, actor=actor,
                 ip=ip, before=before, after=_public_state(connection))
    return connection


@transaction.atomic
def sso_delete(*, organization: Organization, actor: User, ip: str | None = None) -> None:
    """Members sign in with passwords again; the audit log keeps what the connection was."""
    connection = SSOConnection.objects.select_for_update().filter(organization=organization).first()
    if connection is not None:
        audit_record(organization=organization, action=AuditAction.SSO_DELETE, target=connection, actor=actor,
                     ip=ip, before=_public_state(connection))
        connection.delete()


def _public_state(connection: SSOConnection) -> dict:
    """What the audit log keeps of a connection: never the secret."""
    return {"type": connection.type, "domain": connection.domain, "defaultRole": connection.default_role,
            "ssoRequired": connection.sso_required, "idpEntityId": connection.idp_entity_id,
            "issuer": connection.issuer, "clientId": connection.client_id}


def _configure_saml(connection: SSOConnection, metadata_xml: str) -> None:
    try:
        idp = OneLogin_Saml2_IdPMetadataParser.parse(metadata_xml)["idp"]
    except Exception as exc:  # the parser raises bare lxml and value errors
        raise OrgRuleError(f"The IdP metadata could not be read: {exc}", 400) from None
    cert = idp.get("x509cert") or next(iter((idp.get("x509certMulti") or {}).get("signing", [])), "")
    sso_url = (idp.get("singleSignOnService") or {}).get("url", "")
    if not (idp.get("entityId") and sso_url and cert):
        raise OrgRuleError("The IdP metadata must name an entity id, a sign-on URL and a signing certificate.", 400)
    connection.metadata_xml, connection.idp_entity_id = metadata_xml, idp["entityId"]
    connection.idp_sso_url, connection.idp_x509_cert = sso_url, cert
    connection.status, connection.status_detail, connection.checked_at = "ok", "", timezone.now()


def oidc_discover(connection: SSOConnection) -> None:
    """Fetch and record the issuer's discovery document; a failure is recorded, not raised."""
    connection.checked_at = timezone.now()
    try:
        resp = httpx.get(f"{connection.issuer}/.well-known/openid-configuration", timeout=DISCOVERY_TIMEOUT)
        resp.raise_for_status()
        doc = resp.json()
        missing = [k for k in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri") if k not in doc]
        if missing:
            raise ValueError(f"discovery lacks {', '.join(missing)}")
        if doc["issuer"].rstrip("/") != connection.issuer:
            raise ValueError(f"discovery names issuer {doc['issuer']}, not {connection.issuer}")
    except (httpx.HTTPError, ValueError) as exc:
        connection.discovery, connection.status, connection.status_detail = None, "error", str(exc)[:500]
        return
    connection.discovery, connection.status, connection.status_detail = doc, "ok", ""


# --- sign-in, shared ---------------------------------------------------------------------------

@transaction.atomic
def sso_sign_in(*, connection: SSOConnection, email: str, ip: str | None) -> User:
    """The IdP vouched for ``email``: find or create the user and the membership (just in time)."""
    from allauth.account.models import EmailAddress

    from orgs.services import personal_organization_create

    email = email.strip().lower()
    if email.rpartition("@")[2] != connection.domain:
        raise SSOError(f"{email} is not an address of {connection.domain}.")
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        user = User.objects.create_user(email=email, password=None)
        personal_organization_create(user=user)
    if not user.is_active:
        raise SSOError("This account is disabled.")
    EmailAddress.objects.update_or_create(user=user, email=email, defaults={"verified": True, "primary": True})
    _, joined = Membership.objects.get_or_create(organization=connection.organization, user=user,
                                                 defaults={"role": connection.default_role})
    if joined:
        audit_record(organization=connection.organization, action=AuditAction.MEMBER_SSO_JOIN, target=user, actor=user,
                     ip=ip, after={"email": email, "role": connection.default_role})
    return user


# --- SAML --------------------------------------------------------------------------------------

def saml_settings(connection: SSOConnection) -> dict:
    urls = sso_urls(connection)
    return {
        "strict": True,
        "sp": {"entityId": urls["metadataUrl"], "NameIDFormat": SAML_EMAIL_FORMAT,
               "assertionConsumerService": {"url": urls["acsUrl"],
                                            "binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"}},
        "idp": {"entityId": connection.idp_entity_id, "x509cert": connection.idp_x509_cert,
                "singleSignOnService": {"url": connection.idp_sso_url,
                                        "binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"}},
        # Signatures are required: an assertion must be signed (a signed response alone is not enough).
        "security": {"wantAssertionsSigned": True, "wantMessagesSigned": False, "rejectDeprecatedAlgorithm": True,
                     "requestedAuthnContext": False, "wantNameId": True,
                     "wantAttributeStatement": False},  # the email is the NameID
    }


def _saml_request_data(request) -> dict:
    return {"https": "on" if request.is_secure() else "off", "http_host": request.get_host(),
            "script_name": request.path, "get_data": request.GET.copy(), "post_data": request.POST.copy()}


def saml_metadata(connection: SSOConnection) -> str:
    return OneLogin_Saml2_Settings(saml_settings(connection), sp_validation_only=True).get_sp_metadata()


def saml_login_url(request, connection: SSOConnection, next_url: str) -> str:
    auth = OneLogin_Saml2_Auth(_saml_request_data(request), saml_settings(connection))
    url = auth.login(return_to=next_url)
    request.session["saml_request_id"] = auth.get_last_request_id()
    return url


def saml_acs(request, connection: SSOConnection) -> str:
    """Validate the posted response; returns the verified email or raises SSOError."""
    auth = OneLogin_Saml2_Auth(_saml_request_data(request), saml_settings(connection))
    auth.process_response(request_id=request.session.pop("saml_request_id", None))
    if errors := auth.get_errors():
        raise SSOError(f"SAML response refused: {', '.join(errors)} ({auth.get_last_error_reason()})")
    if not auth.is_authenticated():
        raise SSOError("SAML response refused: not authenticated.")
    not_after = auth.get_last_assertion_not_on_or_after()
    try:
        with transaction.atomic():
            SAMLAssertionSeen.objects.create(
                connection=connection, assertion_id=auth.get_last_assertion_id(),
                expires_at=datetime.fromtimestamp(not_after, tz=UTC) if not_after else None)
    except IntegrityError:
        raise SSOError("SAML response refused: this assertion was already used.") from None
    attributes = auth.get_attributes()
    email = (attributes.get("email") or attributes.get("mail") or [None])[0] or auth.get_nameid()
    if not email or "@" not in email:
        raise SSOError("SAML response refused: no email address in the assertion.")
    return email


# --- OpenID Connect ----------------------------------------------------------------------------

class ConnectionOIDCBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's token exchange and JWKS signature check, configured per connection,
    plus the claim checks it leaves out (issuer, audience, expiry)."""

    def __init__(self, connection: SSOConnection):
        doc = connection.discovery or {}
        algs = doc.get("id_token_signing_alg_values_supported") or ["RS256"]
        self._conf = {
            "OIDC_OP_TOKEN_ENDPOINT": doc.get("token_endpoint"), "OIDC_OP_USER_ENDPOINT": doc.get("userinfo_endpoint"),
            "OIDC_OP_JWKS_ENDPOINT": doc.get("jwks_uri"), "OIDC_RP_CLIENT_ID": connection.client_id,
            "OIDC_RP_CLIENT_SECRET": connection.client_secret, "OIDC_RP_SIGN_ALGO": "RS256" if "RS256" in algs
            else algs[0], "OIDC_TOKEN_USE_BASIC_AUTH": True, "OIDC_TIMEOUT": DISCOVERY_TIMEOUT,
            "OIDC_USE_NONCE": True,
        }
        self.connection = connection
        super().__init__()

    def get_settings(self, attr, *args):
        if attr in self._conf:
            return self._conf[attr]
        return args[0] if args else getattr(settings, attr)

    def verify_token(self, token, **kwargs):
        claims = super().verify_token(token, **kwargs)  # signature (JWKS) and nonce
        now = timezone.now().timestamp()
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if claims.get("iss", "").rstrip("/") != self.connection.issuer:
            raise SuspiciousOperation("ID token issuer does not match.")
        if self.connection.client_id not in audiences:
            raise SuspiciousOperation("ID token audience does not match.")
        if len(audiences) > 1 and claims.get("azp") != self.connection.client_id:
            raise SuspiciousOperation("ID token authorized party does not match.")
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] <= now:
            raise SuspiciousOperation("ID token has expired.")
        return claims


def _pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def oidc_login_url(request, connection: SSOConnection, next_url: str) -> str:
    if connection.status != "ok" or not connection.discovery:
        raise SSOError(f"The identity provider is not reachable: {connection.status_detail or 'not checked'}.")
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    verifier, challenge = _pkce_pair()
    pending = request.session.get("oidc", {})
    pending[state] = {"provider": connection.provider_id, "nonce": nonce, "verifier": verifier, "next": next_url,
                      "expires": (timezone.now() + timedelta(minutes=10)).timestamp()}
    request.session["oidc"] = pending
    query = httpx.QueryParams({
        "response_type": "code", "client_id": connection.client_id, "scope": "openid email",
        "redirect_uri": sso_urls(connection)["redirectUri"], "state": state, "nonce": nonce,
        "code_challenge": challenge, "code_challenge_method": "S256",
    })
    return f"{connection.discovery['authorization_endpoint']}?{query}"


def oidc_callback(request, connection: SSOConnection) -> tuple[str, str]:
    """Exchange the code and verify the ID token; returns (verified email, where to go next)."""
    if error := request.GET.get("error"):
        raise SSOError(f"The identity provider refused: {error}.")
    pending = request.session.get("oidc", {}).pop(request.GET.get("state", ""), None)
    request.session.modified = True
    if not pending or pending["provider"] != connection.provider_id or pending["expires"] < timezone.now().timestamp():
        raise SSOError("Sign-in refused: unknown or expired state.")
    backend = ConnectionOIDCBackend(connection)
    try:
        tokens = backend.get_token({
            "client_id": connection.client_id, "client_secret": connection.client_secret,
            "grant_type": "authorization_code", "code": request.GET.get("code", ""),
            "redirect_uri": sso_urls(connection)["redirectUri"], "code_verifier": pending["verifier"],
        })
        claims = backend.verify_token(tokens["id_token"], nonce=pending["nonce"])
        if "email" not in claims and backend.OIDC_OP_USER_ENDPOINT:
            # Code flow: scope claims usually come from userinfo, for the same subject only.
            userinfo = backend.get_userinfo(tokens["access_token"], tokens["id_token"], claims)
            if userinfo.get("sub") != claims.get("sub"):
                raise SuspiciousOperation("userinfo describes another subject.")
            claims = {**userinfo, **claims}
    except (SuspiciousOperation, jwt.PyJWTError, KeyError) as exc:
        raise SSOError(f"Sign-in refused: {exc}") from None
    except Exception as exc:  # the token endpoint answered with an error
        raise SSOError(f"Sign-in refused: the code exchange failed ({type(exc).__name__}).") from None
    if not claims.get("email") or claims.get("email_verified") is False:
        raise SSOError("Sign-in refused: the identity provider did not vouch for an email address.")
    return claims["email"], pending["next"]
