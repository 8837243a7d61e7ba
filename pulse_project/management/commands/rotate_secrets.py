"""`manage.py rotate_secrets`: re-encrypt every stored secret with the newest PULSE_ENCRYPTION_KEY.

Lives in alerts, the app that sees both owners of secrets (connections' passwords, channels' targets and secrets).
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from alerts.models import Channel
from common.secrets import rotate_secret
from connections.models import Connection

SECRET_FIELDS = ((Connection, ("password_encrypted",)), (Channel, ("target_encrypted", "secret_encrypted")))


def secrets_rotate() -> int:
    """Re-encrypt every stored secret with the newest key, in one transaction; the number of rows rewritten."""
    rewritten = 0
    with transaction.atomic():
        for model, fields in SECRET_FIELDS:
            for row in model.objects.select_for_update().only("pk", *fields).iterator():
                for field in fields:
                    setattr(row, field, rotate_secret(getattr(row, field)))
                row.save(update_fields=list(fields))
                rewritten += 1
    return rewritten


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (replica passwords, channel targets and secrets) with the newest key of "
        "PULSE_ENCRYPTION_KEY, so that older keys can then be removed."
    )

    def handle(self, *args, **options):
        try:
            rewritten = secrets_rotate()
        except ValueError as exc:
            raise CommandError(f"{exc}; nothing was changed") from None
        self.stdout.write(f"re-encrypted the secrets of {rewritten} rows with the newest key")
