"""The playground's credential: a short-lived token the server signs for one member's Playground API key in
one organization, accepted only with the session cookie of the browser it was issued to.

The page never holds a real key: the Playground key's plaintext is dropped when the key is created. The token
names the key by its hash, so the gateway admits a playground call as that key — the same KeyContext, limits,
metering and request log rows as any API call. What a token adds, once per key-cache period, is the check
that its session is still signed in as the key's creator and that their role may still spend.
"""

import hashlib
import hmac
from dataclasses import dataclass
from importlib import import_module

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.core import signing
from django.db import transaction
from django.http.cookie import parse_cookie

from apikeys.models import ApiKey
from apikeys.services import api_key_create
from orgs.models import Membership, User
from orgs.roles import ROLES, role_has_scope

TOKEN_PREFIX = "ck_pg."  # "." never occurs in a ck_ key (URL-safe base64), so no key is taken for a token
TOKEN_SECONDS = 15 * 60
SPEND_SCOPE = "keys:write"  # whoever may create a key may spend through one: not billing, not viewer
SPENDING_ROLES = tuple(role for role in ROLES if role_has_scope(role, SPEND_SCOPE))
_signer = signing.TimestampSigner(salt="hypereal.playground")


@dataclass(frozen=True, slots=True)
class PlaygroundGrant:
    key_hash: str
    user_id: int
    session_key: str


def playground_key_name(user: User) -> str:
    return f"Playground ({user.email})"[:100]


def playground_key(*, membership: Membership, ip: str | None = None) -> ApiKey:
    """The member's Playground key in the organization, created (and audited) on first use."""
    with transaction.atomic():
        Membership.objects.select_for_update().get(pk=membership.pk)  # two tabs create one key, not two
        name = playground_key_name(membership.user)
        key = (ApiKey.objects.filter(organization_id=membership.organization_id, created_by=membership.user,
                                     name=name, revoked_at__isnull=True).order_by("-created_at").first())
        if key is None:
            key, _plaintext = api_key_create(organization=membership.organization, name=name,
                                             created_by=membership.user, ip=ip)
    return key


def _session_digest(session_key: str) -> str:
    return hashlib.sha256(session_key.encode()).hexdigest()[:32]


def playground_token_issue(*, key: ApiKey, user_id: int, session_key: str) -> str:
    return TOKEN_PREFIX + _signer.sign(f"{key.key_hash}.{user_id}.{_session_digest(session_key)}")


def playground_token_read(token: str, cookie_header: str | None) -> PlaygroundGrant | None:
    """What a token grants, if its signature holds, it has not expired and it came with its session's cookie."""
    try:
        key_hash, user_id, digest = _signer.unsign(token.removeprefix(TOKEN_PREFIX),
                                                   max_age=TOKEN_SECONDS).split(".")
    except (signing.BadSignature, ValueError):  # SignatureExpired is a BadSignature
        return None
    session_key = parse_cookie(cookie_header or "").get(settings.SESSION_COOKIE_NAME, "")
    if not session_key or not hmac.compare_digest(_session_digest(session_key), digest):
        return None
    return PlaygroundGrant(key_hash=key_hash, user_id=int(user_id), session_key=session_key)


def playground_session_allows(grant: PlaygroundGrant) -> bool:
    """The session is still signed in as the token's member (Django's own check, read-only), who still holds a
    spending role in the organization of the key, which they created."""
    data = import_module(settings.SESSION_ENGINE).SessionStore(session_key=grant.session_key).load()
    if data.get(SESSION_KEY) != str(grant.user_id):  # signed out, expired, or another user since
        return False
    user = User.objects.filter(pk=grant.user_id, is_active=True).first()
    if user is None or not hmac.compare_digest(data.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()):
        return False  # the password changed: Django ends such sessions too
    return Membership.objects.filter(
        user=user, role__in=SPENDING_ROLES, organization__deleted_at__isnull=True,
        organization__api_keys__key_hash=grant.key_hash, organization__api_keys__created_by=user).exists()
