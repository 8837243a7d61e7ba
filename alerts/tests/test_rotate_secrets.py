"""`manage.py rotate_secrets`: stored secrets move to the newest key, so the old key can be dropped."""

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from alerts.models import Channel
from connections.models import Connection

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


@pytest.fixture
def stored_with_old_key(settings, teams, make_connection):
    settings.PULSE_ENCRYPTION_KEYS = [OLD_KEY]
    connection = make_connection(password="replica-pw")
    channel = Channel(team=teams[0], name="hooks", kind=Channel.Kind.WEBHOOK)
    channel.set_target("https://hooks.example.com/T0K3N")
    channel.set_secret("signing-secret-0123456789")
    channel.save()
    return connection, channel


def test_it_reencrypts_every_secret_so_the_old_key_can_be_removed(settings, stored_with_old_key):
    connection, channel = stored_with_old_key
    before = Connection.objects.get(pk=connection.pk).password_encrypted
    settings.PULSE_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    out = io.StringIO()
    call_command("rotate_secrets", stdout=out)
    assert "2 rows" in out.getvalue()

    settings.PULSE_ENCRYPTION_KEYS = [NEW_KEY]
    connection = Connection.objects.get(pk=connection.pk)
    channel = Channel.objects.get(pk=channel.pk)
    assert connection.password_encrypted != before
    assert connection.get_password() == "replica-pw"
    assert channel.get_target() == "https://hooks.example.com/T0K3N"
    assert channel.get_secret() == "signing-secret-0123456789"


def test_without_the_old_key_it_changes_nothing_and_says_why(settings, stored_with_old_key):
    connection, channel = stored_with_old_key
    stored = (
        Connection.objects.get(pk=connection.pk).password_encrypted,
        Channel.objects.get(pk=channel.pk).target_encrypted,
    )
    settings.PULSE_ENCRYPTION_KEYS = [NEW_KEY]
    with pytest.raises(CommandError, match=r"cannot be decrypted.*nothing was changed"):
        call_command("rotate_secrets", stdout=io.StringIO())
    assert (
        Connection.objects.get(pk=connection.pk).password_encrypted,
        Channel.objects.get(pk=channel.pk).target_encrypted,
    ) == stored
