"""API-key authentication: key hash → KeyContext, with no ORM query on a warm cache."""

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from django.conf import settings

from apikeys.models import KEY_PREFIX
from apikeys.selectors import api_key_for_gateway
from apikeys.services import api_key_hash
from gateway.db import DatabaseUnavailable, run_db
from gateway.errors import GatewayError
from gateway.http import Scope, header
from gateway.playground import TOKEN_PREFIX as PLAYGROUND_TOKEN_PREFIX
from gateway.playground import playground_session_allows, playground_token_read
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
# Playground tokens whose session was checked, for as long: signing out stops them within the same bound.
_playground_sessions: TTLCache[bool] = TTLCache(ttl=settings.HYPEREAL["KEY_CACHE_SECONDS"])


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
    # A playground token resolves to its key's hash; an ordinary key pays one prefix test for it.
    digest = (await _playground_key_hash(scope, raw) if raw.startswith(PLAYGROUND_TOKEN_PREFIX)
              else api_key_hash(raw))
    ctx = _keys.get(digest)
    if ctx is MISSING:
        ctx = await _fresh_or_last_good(_keys, digest, _load, digest)
    if ctx is None:
        raise GatewayError(401, "authentication_error", "Invalid API key.", "invalid_api_key")
    if not ctx.active:
        raise GatewayError(401, "authentication_error", "This API key has been disabled or revoked.",
                           "api_key_inactive")
    return ctx


async def _fresh_or_last_good(cache: TTLCache, key, load: Callable, *args) -> object:
    """``load(*args)``, cached (negative results too, so a bad key cannot hammer the database); while the
    database is down, what was read in the last KEY_STALE_SECONDS."""
    try:
        value = await run_db(load, *args)
    except DatabaseUnavailable:
        if (value := cache.last_good(key, settings.HYPEREAL["KEY_STALE_SECONDS"])) is MISSING:
            raise
        return value
    cache.set(key, value)
    return value


async def _playground_key_hash(scope: Scope, token: str) -> str:
    """The hash of the Playground key a token stands for: then the call goes on exactly as with that key."""
    grant = playground_token_read(token, header(scope, b"cookie"))
    if grant is None:
        raise GatewayError(401, "authentication_error", "This playground token has expired or belongs to another "
                           "session: reload the playground.", "invalid_api_key")
    allowed = _playground_sessions.get(token)
    if allowed is MISSING:
        allowed = await _fresh_or_last_good(_playground_sessions, token, playground_session_allows, grant)
    if not allowed:
        raise GatewayError(401, "authentication_error", "The playground needs a signed-in member whose role may "
                           "spend credits in this organization.", "invalid_api_key")
    return grant.key_hash
