import hashlib
import secrets

from django.utils import timezone

from apikeys.models import KEY_PREFIX, ApiKey


def api_key_hash(plaintext: str) -> str:
    """Unsalted SHA-256: the key carries 256 random bits, so a slow hash would add nothing."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def api_key_create(*, organization, name: str, created_by=None,
                   monthly_spend_limit: int | None = None) -> tuple[ApiKey, str]:
    """Returns the key and its plaintext, which is never stored and cannot be shown again."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(organization=organization, name=name, created_by=created_by,
                                key_hash=api_key_hash(plaintext), last4=plaintext[-4:],
                                monthly_spend_limit=monthly_spend_limit)
    return key, plaintext


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    key.revoked_at = key.revoked_at or timezone.now()
    key.save(update_fields=["revoked_at"])
    return key


def api_keys_touch(*, last_used: dict[int, object]) -> None:
    """Record last use (called by the metering flush, which already throttles it per key)."""
    for key_id, when in last_used.items():
        ApiKey.objects.filter(pk=key_id).update(last_used_at=when)
