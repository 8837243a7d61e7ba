"""Start-up of `manage.py runchecks --once`.

With nothing due it is answered before Django starts (pulse_project/idle_start.py), with the line the command
itself prints; whenever something is or could be due, the command runs as usual, with an app registry
without the apps that only serve pages and the API (settings.SERVING_ONLY_APPS), and still records results,
opens alerts and queues their notifications."""

import gc
import json
import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from alerts.models import Alert, Notification
from monitors.models import CheckResult, MonitoredTable
from monitors.runner import COLLECTOR_YOUNG_THRESHOLD
from pulse_project.testing.daemons import ROOT, manage, pulse_test_database_url

pytestmark = pytest.mark.django_db(transaction=True)

# What answering without Django must not load: Django's app registry and ORM, and everything behind them.
NOT_LOADED = (
    "django.apps", "django.db", "django.core.management", "rest_framework", "apprise", "django.contrib.admin",
    "monitors.models", "monitors.runner", "alerts",
)  # fmt: skip
PROBE = f"""
import sys, manage
sys.argv = ["manage.py", "runchecks", "--once"]
try:
    manage.main()
finally:
    print(sorted(m for m in {NOT_LOADED!r} if m in sys.modules))
"""


def once(**env):
    return manage("runchecks", "--once", PULSE_DATABASE_URL=pulse_test_database_url(), **env)


def in_process():
    out = StringIO()
    call_command("runchecks", "--once", "--workers", "1", stdout=out)
    return out.getvalue().strip()


def probe(**env):
    """The same pass from manage.main(), in a process that then prints which modules of NOT_LOADED it loaded."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("PULSE_")}
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**base, "PULSE_DATABASE_URL": pulse_test_database_url(), "PULSE_CONNECTION_ALLOW_LOCAL": "on", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_no_table_at_all_is_answered_without_loading_django():
    done = once()
    assert done.returncode == 0, done.stderr
    assert done.stdout == "nothing to check: no active table on an active connection\n"
    assert done.stdout.strip() == in_process()
    looked = probe()
    assert looked.returncode == 0, looked.stderr
    assert looked.stdout.strip().splitlines() == ["nothing to check: no active table on an active connection", "[]"]


def test_a_table_due_later_is_told_as_the_command_tells_it(make_connection):
    shop = make_connection()
    MonitoredTable.objects.create(
        connection=shop,
        table_name="orders",
        timestamp_column="created_at",
        next_check_at=timezone.now() + timedelta(minutes=10, seconds=30),
    )
    done = once()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("nothing due: the next table is due in 10 min (at ")
    assert done.stdout.strip() == in_process()
    looked = probe()
    assert looked.stdout.strip().splitlines()[-1] == "[]", looked.stderr


def test_the_command_tunes_the_garbage_collector_before_its_passes(make_connection):
    MonitoredTable.objects.create(connection=make_connection(), table_name="orders", timestamp_column="created_at")
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        assert "cycle: checked 1 tables" in in_process()
        assert gc.get_threshold() == (COLLECTOR_YOUNG_THRESHOLD, 10, 10)
    finally:
        gc.set_threshold(*saved)


def test_a_due_table_is_left_to_the_command_which_checks_it(make_connection):
    table = MonitoredTable.objects.create(
        connection=make_connection(), table_name="orders", timestamp_column="created_at"
    )
    looked = probe()
    assert looked.returncode == 0, looked.stderr
    assert "'monitors.runner'" in looked.stdout.strip().splitlines()[-1]  # the command ran
    assert "cycle: checked 1 tables" in looked.stdout and " 0 errors" in looked.stdout
    table.refresh_from_db()
    assert table.last_checked_at is not None


def test_a_pass_with_a_failing_check_opens_its_alert_without_the_serving_apps(
    make_connection, teams, make_channel, receiver
):
    channel = make_channel(teams[0], "webhook", receiver.url + "/hook")
    table = MonitoredTable.objects.create(
        connection=make_connection(), table_name="stale_events", timestamp_column="happened_at", failure_threshold=1
    )
    looked = probe()
    assert looked.returncode == 1, looked.stderr  # some check failed
    loaded = looked.stdout.strip().splitlines()[-1]
    assert "'monitors.runner'" in loaded
    assert not {"'rest_framework'", "'django.contrib.admin'", "'apprise'"} & set(loaded.strip("[]").split(", "))
    assert CheckResult.objects.get(table=table, kind="freshness").status == "fail"
    alert = Alert.objects.get(table=table, kind="freshness", status="open")
    assert Notification.objects.get(channel=channel, event__alert=alert).status == "pending"
    assert receiver.requests == []


def test_a_table_of_an_inactive_connection_or_a_missing_table_counts_as_none(make_connection):
    MonitoredTable.objects.create(connection=make_connection(is_active=False), table_name="orders")
    MonitoredTable.objects.create(
        connection=make_connection(name="other"), table_name="gone", status=MonitoredTable.Status.MISSING
    )
    done = once()
    assert done.stdout == "nothing to check: no active table on an active connection\n", done.stderr
    assert done.stdout.strip() == in_process()


def test_a_spooled_batch_is_left_to_the_command_which_records_it(tmp_path):
    (tmp_path / "batch-1.json").write_text(json.dumps({"not": "a batch"}))
    looked = probe(PULSE_SPOOL_DIR=str(tmp_path))
    assert "'monitors.runner'" in looked.stdout.strip().splitlines()[-1], looked.stderr


def test_other_command_lines_and_an_unreachable_database_are_left_to_the_command():
    from pulse_project.idle_start import runchecks_once_idle

    assert not runchecks_once_idle(["manage.py", "runchecks", "--once", "--all"])
    assert not runchecks_once_idle(["manage.py", "runchecks"])
    down = manage("runchecks", "--once", PULSE_DATABASE_URL="postgres://postgres@127.0.0.1:1/pulse")
    assert "unreachable" in down.stderr
