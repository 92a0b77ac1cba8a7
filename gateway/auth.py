"""API-key authentication: key hash → KeyContext, with no ORM query on a warm cache."""

from dataclasses import dataclass
from urllib.parse import parse_qs

from django.conf import settings

from apikeys.models import KEY_PREFIX
from apikeys.selectors import api_key_for_gateway
from apikeys.services import api_key_hash
from gateway.db import run_db
from gateway.errors import GatewayError
from gateway.http import Scope, header
from gateway.ttlcache import MISSING, TTLCache


@dataclass(frozen=True, slots=True)
class KeyContext:
    key_id: int
    org_id: int
    name: str
    monthly_spend_limit: int | None  # micro-credits
    active: bool
    rpm: int  # the organization's limits (0 = unlimited)
    tpm: int


# Revoked or disabled keys stop working everywhere within this TTL (documented in the README).
_keys: TTLCache[KeyContext | None] = TTLCache(ttl=settings.HYPEREAL["KEY_CACHE_SECONDS"])


def presented_key(scope: Scope) -> str | None:
    """The key from any header an official SDK uses, or ``?key=``."""
    if auth := header(scope, b"authorization"):
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    for name in (b"x-api-key", b"x-goog-api-key"):
        if value := header(scope, name):
            return value.strip()
    if query := scope.get("query_string"):
        if values := parse_qs(query.decode("latin-1")).get("key"):
            return values[0]
    return None


def _load(digest: str) -> KeyContext | None:
    key = api_key_for_gateway(key_hash=digest)
    if key is None:
        return None
    rpm, tpm, conf = key["organization__rate_limit_rpm"], key["organization__rate_limit_tpm"], settings.HYPEREAL
    return KeyContext(key_id=key["pk"], org_id=key["organization_id"], name=key["name"],
                      monthly_spend_limit=key["monthly_spend_limit"],
                      active=key["disabled_at"] is None and key["revoked_at"] is None,
                      rpm=conf["DEFAULT_RPM"] if rpm is None else rpm, tpm=conf["DEFAULT_TPM"] if tpm is None else tpm)


async def authenticate(scope: Scope) -> KeyContext:
    raw = presented_key(scope)
    if not raw:
        raise GatewayError(401, "authentication_error", "Missing API key: send `Authorization: Bearer ck_…`.",
                           "missing_api_key")
    if not raw.startswith(KEY_PREFIX):
        raise GatewayError(401, "authentication_error", "Invalid API key: Hypereal keys start with `ck_`.",
                           "invalid_api_key")
    digest = api_key_hash(raw)
    ctx = _keys.get(digest)
    if ctx is MISSING:
        ctx = await run_db(_load, digest)
        _keys.set(digest, ctx)  # negative results too, so a bad key cannot hammer the database
    if ctx is None:
        raise GatewayError(401, "authentication_error", "Invalid API key.", "invalid_api_key")
    if not ctx.active:
        raise GatewayError(401, "authentication_error", "This API key has been disabled or revoked.",
                           "api_key_inactive")
    return ctx
