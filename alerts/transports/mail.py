"""Email channels: comma-separated addresses, sent through Django's mail backend."""

from __future__ import annotations

import smtplib
from email.message import Message

from django.conf import settings
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from alerts.models import Channel, Notification
from alerts.transports import base
from alerts.transports.base import TransportError

KIND = Channel.Kind.EMAIL
MAX_EMAIL_RECIPIENTS = 50
# RFC 5322's limit for a line; our subjects are far shorter (alerts.outbox.SUBJECT_MAX).
MAX_HEADER_LINE = 998


class OneLineSubjectEmail(mail.EmailMessage):
    """An email whose ASCII subject stays on one line.

    Django folds every subject longer than 76 characters onto continuation lines: legal, but the console
    backend (and many log viewers) then show it over several lines. Our subjects are single lines of at
    most SUBJECT_MAX characters; Django has already refused any newline when this runs. A non-ASCII
    subject is left to Django: RFC 2047 encoded words must be split, and mail clients join them.
    """

    def message(self):
        message = super().message()
        if self.subject.isascii():
            message.policy = message.policy.clone(max_line_length=MAX_HEADER_LINE)
            del message["Subject"]
            Message.__setitem__(message, "Subject", self.subject)  # past Django's folding, not its newline check
        return message


def send(channel: Channel, notification: Notification) -> None:
    addresses = email_addresses(base.target(channel))
    if not addresses:
        raise TransportError("email: no recipient addresses", permanent=True)
    try:
        connection = mail.get_connection(timeout=getattr(settings, "EMAIL_TIMEOUT", None) or base.TIMEOUT_SECONDS)
        OneLineSubjectEmail(
            subject=notification.subject,
            body=notification.body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=addresses,
            connection=connection,
        ).send()
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
        # 5xx refuses for good; 4xx (greylisting, a full mailbox, a busy server) asks to try again later.
        codes = [code for code, _ in exc.recipients.values()] if hasattr(exc, "recipients") else [exc.smtp_code]
        permanent = all(500 <= code < 600 for code in codes)
        answered = ", ".join(str(code) for code in sorted(set(codes)))
        raise TransportError(
            f"email: refused by the mail server ({type(exc).__name__}, {answered})", permanent=permanent
        ) from None
    except smtplib.SMTPResponseException as exc:
        permanent = 500 <= exc.smtp_code < 600
        raise TransportError(f"email: mail server answered {exc.smtp_code}", permanent=permanent) from None
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        raise TransportError(f"email: could not reach the mail server ({type(exc).__name__})") from None


def clean_target(target: str) -> str:
    """The addresses, normalized; a ValueError naming the problem (never repeating the address)."""
    addresses = email_addresses(target)
    if not addresses:
        raise ValueError("Enter one or more email addresses, separated by commas.")
    if len(addresses) > MAX_EMAIL_RECIPIENTS:
        raise ValueError(f"At most {MAX_EMAIL_RECIPIENTS} addresses.")
    for number, address in enumerate(addresses, start=1):
        try:
            validate_email(address)
        except ValidationError:
            raise ValueError(f"Address {number} is not a valid email address.") from None
    return ", ".join(addresses)


def email_addresses(target: str) -> list[str]:
    return [address.strip() for address in target.split(",") if address.strip()]
