import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_it_creates_a_superuser_in_the_demo_team_and_prints_a_working_login(capsys, settings, tmp_path):
    settings.BASE_DIR = tmp_path
    call_command("ensure_admin", username="quickstart")
    out = capsys.readouterr().out
    password = out.split("quickstart / ")[1].split()[0]
    user = User.objects.get(username="quickstart")
    assert user.is_superuser and user.check_password(password)
    assert user.groups.filter(name="demo").exists()
    call_command("ensure_admin", username="quickstart")
    assert password in capsys.readouterr().out
