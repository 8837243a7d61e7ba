"""Attacks on the public badges and their API: guessing, other teams' keys, leaks."""

import pytest
from django.contrib.auth.models import Permission

from observability.badges import badge_for
from observability.models import Badge

pytestmark = pytest.mark.django_db


def test_a_sequential_id_is_not_a_badge_url(client, world):
    badge = badge_for(subject=world["orders"])
    for guess in (badge.id, world["orders"].id, f"{badge.id:032d}"):
        assert client.get(f"/badges/{guess}.svg").status_code == 404


def test_a_key_of_the_wrong_shape_or_a_near_miss_is_a_404(client, world):
    key = badge_for(subject=world["orders"]).key
    near = key[:-1] + ("A" if key[-1] != "A" else "B")
    for guess in (near, key.upper() if key.upper() != key else key.lower(), key + "x", "../" + key, "%00" + key):
        assert client.get(f"/badges/{guess}.svg").status_code == 404


def test_a_badge_never_shows_host_user_password_or_error_text(client, world):
    world["shop"].last_error = "password authentication failed for user pulse at shop.invalid"
    world["shop"].save()
    for subject in (world["shop"], world["orders"], world["shop"].team):
        svg = client.get(f"/badges/{badge_for(subject=subject).key}.svg").content.decode()
        for secret in ("shop.invalid", "hunter2", "password", "pulse", world["shop"].password_encrypted[:12]):
            assert secret not in svg


def test_another_teams_badges_are_not_listed(owner_client, world):
    badge_for(subject=world["ledger"])
    badge_for(subject=world["entries"])
    listed = owner_client.get("/api/badges").json()["results"]
    assert all(badge["name"] in ("acme", "shop", "public.orders", "public.customers") for badge in listed)
    assert not Badge.objects.filter(team__name="globex").exists()  # listing made only acme's team badge


def test_another_teams_badge_cannot_be_read_or_rotated(owner_client, owner, world):
    owner.user_permissions.add(Permission.objects.get(codename="change_badge"))
    theirs = badge_for(subject=world["entries"])
    key = theirs.key
    assert owner_client.get(f"/api/badges/{theirs.id}").status_code == 404
    assert owner_client.post(f"/api/badges/{theirs.id}/rotate").status_code == 404
    theirs.refresh_from_db()
    assert theirs.key == key


def test_rotating_needs_the_change_permission(member_client, world):
    mine = badge_for(subject=world["orders"])
    key = mine.key
    assert member_client.post(f"/api/badges/{mine.id}/rotate").status_code == 403
    mine.refresh_from_db()
    assert mine.key == key


def test_another_teams_badge_url_never_appears_in_the_api(owner_client, world):
    theirs = badge_for(subject=world["entries"]).key
    assert owner_client.get(f"/api/tables/{world['entries'].id}").status_code == 404
    for path in ("/api/tables", "/api/connections", "/api/badges"):
        assert theirs not in owner_client.get(path).content.decode()


def test_the_badge_admin_shows_only_the_teams_badges(client, staff, world):
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="observability"))
    theirs = badge_for(subject=world["entries"])
    mine = badge_for(subject=world["orders"])
    client.force_login(staff)
    assert mine.key in client.get("/admin/observability/badge/").content.decode()
    assert client.get(f"/admin/observability/badge/{theirs.id}/change/").status_code == 302  # admin's "not found"
    assert theirs.key not in client.get("/admin/observability/badge/").content.decode()
