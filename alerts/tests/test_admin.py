from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.models import Alert

pytestmark = pytest.mark.django_db


def test_staff_acknowledge_and_resolve_alerts_of_their_team_only(client, owner, make_connection, teams):
    owner.is_staff = True
    owner.save()
    now = timezone.now()
    mine = Alert.objects.create(connection=make_connection(), kind="connection_error", opened_at=now, last_seen_at=now)
    theirs = Alert.objects.create(
        connection=make_connection(name="g", team=teams[1]), kind="connection_error", opened_at=now, last_seen_at=now
    )
    client.force_login(owner)
    client.post("/admin/alerts/alert/", {"action": "acknowledge", "_selected_action": [mine.id, theirs.id]})
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.status == "acknowledged"
    assert theirs.status == "open"
    client.post("/admin/alerts/alert/", {"action": "resolve", "_selected_action": [mine.id]})
    mine.refresh_from_db()
    assert mine.status == "resolved"


def test_the_alert_page_shows_its_events_and_snooze_works(client, owner, make_connection):
    from alerts.lifecycle import event_write

    owner.is_staff = True
    owner.save()
    now = timezone.now()
    alert = Alert.objects.create(connection=make_connection(), kind="connection_error", opened_at=now, last_seen_at=now)
    event_write(alert=alert, kind="opened", at=now, message="3 check(s) could not run")
    client.force_login(owner)
    page = client.get(f"/admin/alerts/alert/{alert.id}/change/").content.decode()
    assert "3 check(s) could not run" in page
    client.post("/admin/alerts/alert/", {"action": "snooze_one_hour", "_selected_action": [alert.id]})
    alert.refresh_from_db()
    assert now + timedelta(minutes=59) < alert.snoozed_until <= timezone.now() + timedelta(hours=1)
    assert list(alert.events.values_list("kind", flat=True)) == ["opened", "snoozed"]
    assert alert.events.get(kind="snoozed").actor == owner


def test_the_admin_says_when_a_resolve_holds_until_the_check_recovers(client, owner, make_alert, teams):
    owner.is_staff = True
    owner.save()
    alert = make_alert(teams[0])  # its latest result fails
    client.force_login(owner)
    response = client.post("/admin/alerts/alert/", {"action": "resolve", "_selected_action": [alert.id]}, follow=True)
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.resolved_while_failing_at is not None
    texts = [str(message) for message in response.context["messages"]]
    assert "1 alert(s) resolved." in texts
    assert any("still fail" in text and "passing once" in text for text in texts)
