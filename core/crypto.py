"""Symmetric encryption for secrets at rest (upstream keys, SSO secrets)."""

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet
from django.conf import settings


@cache
def _fernet() -> Fernet:
    digest = hashlib.sha256(settings.HYPEREAL_ENCRYPTION_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode() if plaintext else ""


def decrypt(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode() if token else ""


class Encrypted:
    """A model attribute kept encrypted in another field: ``api_key = Encrypted("api_key_encrypted")``."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __get__(self, obj, owner=None):
        return self if obj is None else decrypt(getattr(obj, self.field))

    def __set__(self, obj, value: str) -> None:
        setattr(obj, self.field, encrypt(value))
