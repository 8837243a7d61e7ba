"""Notifications end to end under real runchecks processes: the receiver is down, checks go on, nothing is lost."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from alerts.models import Alert, Notification
from monitors.models import CheckResult, MonitoredTable
from pulse_project.testing.daemons import start_runchecks, stop, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


class Inbox:
    """A webhook receiver on a fixed port, started when the test says so."""

    def __init__(self, port: int):
        self.bodies: list[dict] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                inbox.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_down_receiver_never_stops_checks_and_loses_nothing_across_a_restart(
    make_connection, teams, make_channel, closed_port
):
    port = closed_port
    channel = make_channel(teams[0], "webhook", f"http://127.0.0.1:{port}/hook", secret="s" * 32)
    table = MonitoredTable.objects.create(
        connection=make_connection(),
        table_name="stale_events",
        timestamp_column="happened_at",
        failure_threshold=1,
        check_interval_seconds=10,
    )
    daemon = start_runchecks("--tick", "1", "--workers", "1")
    try:
        assert wait_for(lambda: Notification.objects.filter(channel=channel, tries__gte=1).exists(), timeout=40)
        notification = Notification.objects.filter(channel=channel, event__alert__kind="freshness").get()
        assert notification.status == "pending" and notification.sent_at is None
        runs = CheckResult.objects.filter(table=table, kind="freshness").count()
        MonitoredTable.objects.filter(pk=table.pk).update(next_check_at=timezone.now())
        assert wait_for(lambda: CheckResult.objects.filter(table=table, kind="freshness").count() > runs, timeout=30)
    finally:
        stop(daemon)
    assert Alert.objects.filter(table=table, kind="freshness", status="open").count() == 1

    inbox = Inbox(port)
    try:
        pending = Notification.objects.filter(channel=channel, status="pending")
        pending.update(next_try_at=timezone.now())  # as if the backoff had passed
        daemon = start_runchecks("--tick", "1", "--workers", "1")
        try:
            assert wait_for(
                lambda: not Notification.objects.filter(channel=channel, status="pending").exists(), timeout=40
            )
        finally:
            stop(daemon)
    finally:
        inbox.close()
    sent = Notification.objects.filter(channel=channel)
    assert {n.status for n in sent} == {"sent"}
    assert sorted(body["delivery"] for body in inbox.bodies) == sorted(n.id for n in sent)  # each exactly once
    assert "freshness" in [body["alert"]["kind"] for body in inbox.bodies]
    assert Alert.objects.get(table=table, kind="freshness").events.filter(kind="notified").count() == 1
