"""Encryption at rest for tenant secrets (WeCom corp secrets, callback keys, tokens).

Fernet (AES-128-CBC + HMAC-SHA256) from ``cryptography`` with a ``MultiFernet`` so that keys
can be rotated: ``SIYU_ENCRYPTION_KEYS`` lists the newest key first.
"""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


@cache
def _cipher() -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in settings.ENCRYPTION_KEYS])
    except ValueError as error:
        raise ImproperlyConfigured(
            "SIYU_ENCRYPTION_KEYS must hold url-safe base64 Fernet keys of 32 bytes"
        ) from error


def encrypt(plaintext: str) -> str:
    return _cipher().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _cipher().decrypt(token.encode()).decode()
    except InvalidToken as error:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted: SIYU_ENCRYPTION_KEYS lacks the key it was "
            "encrypted with"
        ) from error


def mask_secret(value: str | None) -> str:
    """Show enough of a secret to recognise it, never enough to use it."""
    if not value:
        return ""
    if len(value) <= 8:
        return "*" * len(value)
    return f"{value[:3]}{'*' * 6}{value[-3:]}"


class EncryptedTextField(models.TextField):
    """A text column whose value is Fernet-encrypted in the database.

    The Python value is the plaintext; only ciphertext is written. Empty strings are stored
    as empty strings so "not configured" stays queryable.
    """

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value in (None, ""):
            return value
        return encrypt(value)
