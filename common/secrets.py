"""Encryption at rest for customer credentials (Fernet, with key rotation via MultiFernet)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

# cryptography is imported on first use, not when the models load: `runchecks` with nothing due never needs it.


@cache
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    from cryptography.fernet import Fernet, MultiFernet

    return MultiFernet([Fernet(key.encode()) for key in keys])


def _fernet() -> MultiFernet:
    """The configured keys, newest first: the first encrypts, all of them decrypt."""
    return _fernet_for(tuple(settings.PULSE_ENCRYPTION_KEYS))


def encrypt_secret(plaintext: str) -> str:
    """Return the Fernet token for `plaintext`; the empty string stays empty."""
    if not plaintext:
        return ""
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt_secret(token: str) -> str:
    """Return the plaintext of a token made by `encrypt_secret`."""
    if not token:
        return ""
    from cryptography.fernet import InvalidToken

    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("stored secret cannot be decrypted with the configured PULSE_ENCRYPTION_KEY") from exc


def rotate_secret(token: str) -> str:
    """Re-encrypt a stored token with the newest key (readable with any configured key); empty stays empty."""
    if not token:
        return ""
    from cryptography.fernet import InvalidToken

    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("stored secret cannot be decrypted with the configured PULSE_ENCRYPTION_KEY") from exc
