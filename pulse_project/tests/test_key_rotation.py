"""Key rotation: `PULSE_ENCRYPTION_KEY=new,old` encrypts with the new key and still reads the old one; the
cached Fernet follows the configured keys (no stale key after a change)."""

from datetime import timedelta

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.utils import timezone

from common import secrets
from connections.models import Connection
from monitors.batch import batch_run
from monitors.claims import tables_claim_due
from monitors.models import MonitoredTable
from monitors.recording import results_ignore
from pulse_project.testing.daemons import manage

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


def test_the_environment_variable_takes_new_and_old_keys_newest_first():
    old_token = Fernet(OLD_KEY.encode()).encrypt(b"replica-pw").decode()
    script = (
        "from common import secrets; "
        f"print(secrets.decrypt_secret({old_token!r})); "
        "print(secrets.encrypt_secret('fresh-pw'))"
    )
    result = manage("shell", "-c", script, PULSE_ENCRYPTION_KEY=f" {NEW_KEY} , {OLD_KEY} ")
    assert result.returncode == 0, result.stderr
    read, written = result.stdout.splitlines()[-2:]
    assert read == "replica-pw"  # the old key still decrypts
    assert Fernet(NEW_KEY.encode()).decrypt(written.encode()) == b"fresh-pw"  # the new key encrypts
    with pytest.raises(InvalidToken):
        Fernet(OLD_KEY.encode()).decrypt(written.encode())


def test_the_cached_fernet_follows_the_configured_keys(settings):
    settings.PULSE_ENCRYPTION_KEYS = [OLD_KEY]
    old_token = secrets.encrypt_secret("replica-pw")
    settings.PULSE_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    assert secrets.decrypt_secret(old_token) == "replica-pw"
    new_token = secrets.encrypt_secret("replica-pw")
    assert Fernet(NEW_KEY.encode()).decrypt(new_token.encode()) == b"replica-pw"
    settings.PULSE_ENCRYPTION_KEYS = [NEW_KEY]  # the old key dropped: its tokens are refused, not served from cache
    with pytest.raises(ValueError, match="cannot be decrypted with the configured PULSE_ENCRYPTION_KEY"):
        secrets.decrypt_secret(old_token)
    assert secrets.decrypt_secret(new_token) == "replica-pw"
    settings.PULSE_ENCRYPTION_KEYS = [OLD_KEY]  # and back: the new key is forgotten as well
    with pytest.raises(ValueError):
        secrets.decrypt_secret(new_token)


@pytest.mark.django_db
def test_a_connection_saved_under_the_old_key_is_checked_after_rotation_and_resaved_under_the_new(
    settings, make_connection, replica_settings
):
    settings.PULSE_ENCRYPTION_KEYS = [OLD_KEY]
    shop = make_connection()
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    settings.PULSE_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    claim = tables_claim_due(now=timezone.now(), lease=timedelta(minutes=1), limit=10, force=True, table_ids=[table.id])
    results = batch_run(connection=shop, claim=claim, tables=claim.tables, on_recorded=results_ignore)
    assert results and {r.status for r in results} == {"pass"}  # the engine connected with the old key's password

    stored = Connection.objects.get(pk=shop.pk)
    stored.set_password(stored.get_password())
    stored.save()
    settings.PULSE_ENCRYPTION_KEYS = [NEW_KEY]
    assert Connection.objects.get(pk=shop.pk).get_password() == replica_settings["password"]
