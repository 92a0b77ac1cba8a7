"""API keys on the management API: `Authorization: Bearer ck_…` for scripts and CI, within the key's scopes."""

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed

from apikeys.models import KEY_PREFIX
from apikeys.selectors import api_key_grant


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticates as the key's creator; request.auth is its KeyGrant, which OrgScopedApi checks."""

    def authenticate(self, request):
        scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not raw.startswith(KEY_PREFIX):
            return None
        found = api_key_grant(plaintext=raw)
        if found is None:
            raise AuthenticationFailed("Invalid API key.")
        user, grant = found
        if not grant.active:
            raise AuthenticationFailed("This API key has been disabled or revoked.")
        if user is None or not user.is_active:
            raise AuthenticationFailed("This API key's creator is no longer active.")
        return user, grant

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="hypereal"'
