"""What every transport shares: the one error type, the timeout, and reading a channel's stored credentials.

Every transport raises a single error type, `TransportError(message, permanent)`:

- permanent (`permanent=True`): retrying cannot help — HTTP 4xx other than 429, a redirect, a refused
  recipient, an invalid or undecryptable target, a receiver on a private or internal address. Delivery
  fails the notification at once and shows the error on the channel.
- transient (`permanent=False`): HTTP 429 and 5xx, timeouts (TIMEOUT_SECONDS), connection errors, an
  Apprise service that reported failure. Delivery retries with backoff.

Slack and webhook URLs and Apprise URLs carry credentials, so error messages name the channel kind and
the HTTP status but never the URL, the secret or the underlying exception text (which often contains the
URL); exceptions are raised `from None` so no traceback carries them either.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from alerts.models import Channel

TIMEOUT_SECONDS = 10.0
USER_AGENT = "Pulse-Notifier/1"

# Their output can name full URLs, tokens included (urllib3's DEBUG request lines; Apprise logs an
# unparseable URL as is, at ERROR). Unless configured otherwise, quiet them: Pulse logs the outcome itself.
for _name, _level in (("urllib3", logging.WARNING), ("apprise", logging.CRITICAL)):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(_level)


class TransportError(Exception):
    """Sending failed. `permanent`: retrying the same message cannot succeed."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.message = message
        self.permanent = permanent


def target(channel: Channel) -> str:
    """The channel's decrypted target; a TransportError when it is missing or cannot be decrypted."""
    try:
        value = channel.get_target()
    except ValueError:
        raise TransportError(f"{channel.kind}: the stored target cannot be decrypted", permanent=True) from None
    if not value:
        raise TransportError(f"{channel.kind}: the channel has no target", permanent=True)
    return value


def secret(channel: Channel) -> str:
    """The channel's decrypted signing secret ("" when none is stored)."""
    try:
        return channel.get_secret()
    except ValueError:
        raise TransportError(f"{channel.kind}: the stored secret cannot be decrypted", permanent=True) from None


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """One line of a receiver's answer, with anything that could be (part of) a secret removed."""
    text = " ".join(text.split())
    for value in secrets:
        if not value:
            continue
        parts = urlsplit(value) if "://" in value else None
        for fragment in (value, parts.path if parts else "", parts.query if parts else ""):
            if len(fragment) >= 8:
                text = text.replace(fragment, "[redacted]")
    return text


def url_problem(target: str) -> str | None:
    """Why `target` is not a usable URL (spaces, control characters, a malformed port), or None."""
    if any(c.isspace() or ord(c) < 32 for c in target):
        return "A URL may not contain spaces or control characters."
    try:
        urlsplit(target).port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return "Enter a valid URL."
    return None
