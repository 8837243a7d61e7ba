"""Badge keys: 32 URL-safe characters from the OS's CSPRNG (192 bits), so a badge URL cannot be guessed."""

import re
import secrets

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{32}$")


def badge_key_new() -> str:
    return secrets.token_urlsafe(24)
