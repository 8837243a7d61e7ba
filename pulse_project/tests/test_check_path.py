"""One check's whole path, as docs/architecture.md tells it: runchecks -> result -> alert -> outbox -> webhook.

`runchecks --once` records a failing freshness result and hands it to `alerts.intake.results_intake` (bound
in the command); the alert and its notification commit with the result; the scheduler's `notify` job then
sends it to a real local receiver."""

from io import StringIO

import pytest
from django.core.management import call_command

from alerts.models import Alert, LifecycleBacklog, Notification
from monitors.models import CheckResult, MonitoredTable
from pulse_project import jobs

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec-check-path-0123456789"


def test_a_failing_freshness_check_reaches_a_webhook(make_connection, teams, receiver, make_channel):
    channel = make_channel(teams[0], "webhook", receiver.url + "/hook", secret=SECRET)
    table = MonitoredTable.objects.create(
        connection=make_connection(),
        table_name="stale_events",
        timestamp_column="happened_at",
        failure_threshold=1,
    )

    call_command("runchecks", "--once", "--workers", "1", stdout=StringIO())

    result = CheckResult.objects.get(table=table, kind="freshness")
    assert result.status == "fail"
    alert = Alert.objects.get(table=table, kind="freshness")
    assert alert.status == "open"
    assert not LifecycleBacklog.objects.exists()  # the hand-off ran when the result was recorded, not later
    notification = Notification.objects.get(channel=channel, event__alert=alert)
    assert notification.status == "pending" and receiver.requests == []  # checking never sends

    jobs.notify()

    notification.refresh_from_db()
    assert notification.status == "sent"
    bodies = [request.json() for request in receiver.requests]
    assert [(body["alert"]["kind"], body["delivery"]) for body in bodies] == [("freshness", notification.id)]
    assert alert.events.filter(kind="notified").count() == 1
