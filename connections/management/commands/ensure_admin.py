"""Create (or keep) the local admin account of the quick start and print its login."""

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Ensure a local superuser (and a 'demo' team) exists and print how to log in."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--team", default="demo")

    def handle(self, *args, username, team, **options):
        secret_file = Path(settings.BASE_DIR) / "var" / f"{username}-password.txt"
        user = User.objects.filter(username=username).first()
        if user is None or not secret_file.exists():
            password = secrets.token_urlsafe(12)
            secret_file.parent.mkdir(exist_ok=True)
            secret_file.write_text(password + "\n")
            secret_file.chmod(0o600)
            user = user or User(username=username)
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
        password = secret_file.read_text().strip()
        user.groups.add(Group.objects.get_or_create(name=team)[0])
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(f"Admin login: {username} / {password}   (API token: {token.key})")
