"""The Acknowledge / Snooze / Resolve buttons of the alert's admin page, and the attacks on them."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

pytestmark = pytest.mark.django_db


@pytest.fixture
def alert(make_alert, teams):
    return make_alert(teams[0])


@pytest.fixture
def theirs(make_alert, teams):
    return make_alert(teams[1], connection_name="ledger")


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def press(client, alert, button, **data):
    return client.post(f"/admin/alerts/alert/{alert.id}/{button}/", data)


def test_the_page_shows_the_buttons_to_whoever_may_change_the_alert(staff_client, alert):
    page = staff_client.get(f"/admin/alerts/alert/{alert.id}/change/").content.decode()
    for button in ("acknowledge", "snooze", "resolve"):
        assert f'action="/admin/alerts/alert/{alert.id}/{button}/"' in page
    assert "Snooze 1 day" in page and "csrfmiddlewaretoken" in page


def test_acknowledge_records_who_and_says_so(staff_client, staff, alert):
    response = staff_client.post(f"/admin/alerts/alert/{alert.id}/acknowledge/", follow=True)
    alert.refresh_from_db()
    assert alert.status == "acknowledged"
    assert alert.events.get(kind="acknowledged").actor == staff
    assert "1 alert(s) acknowledged." in [str(message) for message in response.context["messages"]]
    assert response.redirect_chain[-1][0] == f"/admin/alerts/alert/{alert.id}/change/"
    assert f'action="/admin/alerts/alert/{alert.id}/acknowledge/"' not in response.content.decode()


def test_snooze_for_a_day(staff_client, alert):
    press(staff_client, alert, "snooze", hours="24")
    alert.refresh_from_db()
    expected = timezone.now() + timedelta(hours=24)
    assert abs((alert.snoozed_until - expected).total_seconds()) < 120
    assert alert.events.get(kind="snoozed").message.startswith("snoozed until")


def test_snooze_refuses_a_length_it_does_not_offer(staff_client, alert):
    for hours in ("", "5", "-1", "1e9", "24.0"):
        response = press(staff_client, alert, "snooze", hours=hours)
        assert response.status_code == 400 and b"hours" in response.content
    alert.refresh_from_db()
    assert alert.snoozed_until is None and not alert.events.exists()


def test_resolve_says_when_the_check_still_fails(staff_client, alert):
    response = staff_client.post(f"/admin/alerts/alert/{alert.id}/resolve/", follow=True)
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.resolved_while_failing_at is not None
    texts = [str(message) for message in response.context["messages"]]
    assert "1 alert(s) resolved." in texts and any("still fail" in text for text in texts)
    assert "Resolve</button>" not in response.content.decode()  # a resolved alert offers no buttons


def test_a_refused_transition_is_a_warning_not_an_error(staff_client, alert):
    press(staff_client, alert, "resolve")
    response = staff_client.post(f"/admin/alerts/alert/{alert.id}/acknowledge/", follow=True)
    assert response.status_code == 200
    assert any("cannot be acknowledged" in str(message) for message in response.context["messages"])
    alert.refresh_from_db()
    assert alert.status == "resolved"


# --- attacks -----------------------------------------------------------------------------------------------------


def test_another_teams_alert_is_a_404_and_unchanged(staff_client, theirs):
    for button, data in (("acknowledge", {}), ("snooze", {"hours": "1"}), ("resolve", {})):
        assert press(staff_client, theirs, button, **data).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "open" and theirs.snoozed_until is None and not theirs.events.exists()


def test_staff_without_the_change_permission_get_403(client, member, alert):
    member.is_staff = True
    member.save()
    member.user_permissions.add(Permission.objects.get(codename="view_alert"))
    client.force_login(member)
    page = client.get(f"/admin/alerts/alert/{alert.id}/change/").content.decode()
    assert "/resolve/" not in page  # no buttons shown
    assert press(client, alert, "resolve").status_code == 403
    alert.refresh_from_db()
    assert alert.status == "open"


def test_get_changes_nothing(staff_client, alert):
    for button in ("acknowledge", "snooze", "resolve"):
        assert staff_client.get(f"/admin/alerts/alert/{alert.id}/{button}/?hours=1").status_code == 405
    alert.refresh_from_db()
    assert alert.status == "open" and alert.snoozed_until is None and not alert.events.exists()


def test_a_post_without_the_csrf_token_is_refused(staff, alert):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    assert press(client, alert, "resolve").status_code == 403
    alert.refresh_from_db()
    assert alert.status == "open"


def test_anonymous_visitors_are_sent_to_the_login_page(client, alert):
    response = press(client, alert, "resolve")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    alert.refresh_from_db()
    assert alert.status == "open"
