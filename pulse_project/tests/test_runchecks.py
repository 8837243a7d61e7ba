"""The runchecks command in-process: options, summary lines, statuses."""

import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from monitors.models import CheckResult, MonitoredTable
from pulse_project.management.commands.runchecks import Command
from pulse_project.testing.daemons import ROOT, finish, pulse_test_database_url, start_runchecks

pytestmark = pytest.mark.django_db


@pytest.fixture
def tables(make_connection):
    shop = make_connection()
    return [
        MonitoredTable.objects.create(connection=shop, table_name="orders", timestamp_column="created_at"),
        MonitoredTable.objects.create(connection=shop, table_name="stale_events", timestamp_column="happened_at"),
    ]


def runchecks(*args):
    out = StringIO()
    call_command("runchecks", *args, "--workers", "1", stdout=out)
    return out.getvalue()


def exit_code(*args):
    command = Command()
    call_command(command, *args, "--workers", "1", stdout=StringIO())
    return command.exit_code


def test_once_runs_due_tables_and_prints_one_summary_line(tables):
    out = runchecks("--once")
    assert "cycle: checked 2 tables, 7 results: 6 passed, 1 failed, 0 errors, 0 skipped" in out
    assert "; replication lag: shop-replica 0 s" in out
    assert CheckResult.objects.filter(kind="replication_lag").count() == 1
    recorded = CheckResult.objects.count()
    idle = runchecks("--once")  # nothing due any more
    assert idle.startswith("nothing due: the next table is due in ") and "--all checks every active table now" in idle
    assert CheckResult.objects.count() == recorded


def test_all_runs_every_active_table_due_or_not(tables):
    runchecks("--once")
    out = runchecks("--once", "--all")
    assert "checked 2 tables" in out
    assert CheckResult.objects.filter(kind="volume", details__backfill__isnull=True).count() == 4


def test_table_runs_only_the_named_tables(tables):
    out = runchecks("--table", str(tables[1].id))
    assert "checked 1 tables" in out
    assert "checked 1 tables" in runchecks("--table", str(tables[1].id))  # again at once: due or not
    assert set(CheckResult.objects.exclude(table=None).values_list("table_id", flat=True)) == {tables[1].id}


def test_verbosity_2_prints_one_line_per_check(tables):
    out = StringIO()
    call_command("runchecks", "--once", "--workers", "1", verbosity=2, stdout=out)
    lines = out.getvalue().splitlines()
    assert any("public.stale_events freshness: fail" in line for line in lines)
    assert sum(" volume: " in line for line in lines) == 2
    assert "  shop-replica replication_lag: pass — replica is caught up" in lines


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--all"], "--all only goes with --once"),
        (["--table", "999999"], "No monitored table with id 999999"),
        (["--once", "--workers", "0"], "--workers must be between 1 and 64"),
    ],
)
def test_bad_options_are_refused_clearly(args, message):
    with pytest.raises(CommandError, match=message) as refused:
        call_command("runchecks", *args)
    assert refused.value.returncode == 2  # as argparse's own refusals: nothing could run
    assert not CheckResult.objects.exists()


def test_the_exit_code_of_a_pass_says_passed_failed_or_could_not_run(make_connection, tables):
    assert exit_code("--table", str(tables[0].id)) == 0
    assert exit_code("--table", str(tables[1].id)) == 1  # stale_events: freshness failed
    assert exit_code("--once") == 0  # nothing due: nothing failed
    down = make_connection(name="down", port=1)
    MonitoredTable.objects.create(connection=down, table_name="orders")
    assert exit_code("--once", "--all") == 2  # failed on shop, could not run on down: could-not-run wins


@pytest.mark.django_db(transaction=True)
def test_the_exit_code_reaches_the_shell(tables):
    finish(start_runchecks("--once", "--workers", "1"), returncode=1)
    finish(start_runchecks("--table", str(tables[0].id), "--workers", "1"), returncode=0)
    assert "No monitored table with id 999999" in finish(start_runchecks("--table", "999999"), returncode=2)


def test_a_replica_that_is_down_gives_error_results_and_the_daemon_goes_on(make_connection, tables):
    down = make_connection(name="down", port=1)
    MonitoredTable.objects.create(connection=down, table_name="orders")
    out = runchecks("--once")
    assert "checked 3 tables" in out
    assert "  down (2 checks): error — cannot connect: connection refused" in out.splitlines()
    errors = CheckResult.objects.filter(connection=down)
    assert errors.count() == 2 and all(r.status == "error" for r in errors)
    assert "cannot connect" in errors.first().message
    down.refresh_from_db()
    assert down.status == "error" and down.consecutive_failures == 1


def test_the_circuit_breaker_stops_claiming_a_failing_connection(make_connection):
    down = make_connection(name="down", port=1)
    table = MonitoredTable.objects.create(connection=down, table_name="orders", check_interval_seconds=10)
    for _ in range(3):
        runchecks("--once", "--all")
    down.refresh_from_db()
    assert down.consecutive_failures == 3 and down.backoff_until > timezone.now()
    idle = runchecks("--once", "--all")  # backed off: not even tried
    local = timezone.localtime(down.backoff_until)
    assert idle.startswith("nothing to check now: the tables are leased or their connection is backing off")
    assert f"(at {local:%H:%M:%S %Z})" in idle
    assert CheckResult.objects.filter(table=table, kind="volume").count() == 3


def test_the_primary_gets_no_checks(make_connection, primary_settings):
    primary = make_connection(name="primary", port=primary_settings["port"])
    table = MonitoredTable.objects.create(connection=primary, table_name="orders", timestamp_column="created_at")
    runchecks("--once")
    results = CheckResult.objects.filter(table=table)
    assert {r.status for r in results} == {"error"}
    assert all(r.queries_used == 0 for r in results)
    assert "not a read replica" in results.first().message
    primary.refresh_from_db()
    assert primary.status == "not_replica"


def test_a_spent_budget_skips_the_remaining_checks_without_querying(make_connection):
    shop = make_connection(max_queries_per_hour=2)
    table = MonitoredTable.objects.create(connection=shop, table_name="orders", timestamp_column="created_at")
    runchecks("--once")
    results = {r.kind: r for r in CheckResult.objects.filter(table=table)}
    skipped = [r for r in results.values() if r.status == "skipped"]
    assert skipped and all("query budget of 2/h" in r.message for r in skipped)
    assert sum(r.queries_used for r in CheckResult.objects.all()) <= 2


def test_a_pass_loads_only_what_checking_needs():
    """Start-up: no system checks (they import every URLconf, serializer and the schema generator) and none of
    the modules that only serving pages, sending notifications, the daemon's scheduler, metrics, monitors as
    code or decrypting credentials need."""
    assert Command.requires_system_checks == []
    heavy = (
        "apprise", "requests", "drf_spectacular.generators", "rest_framework.serializers", "rest_framework.views",
        "pglast", "apscheduler", "django_apscheduler", "cryptography", "prometheus_client", "jsonschema", "yaml",
        "monitors.admin", "pulse_project.urls",
    )  # fmt: skip
    probe = (
        "import sys, django; django.setup();"
        "from django.core.management import call_command; call_command('runchecks', '--once');"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={
            **os.environ,
            "PULSE_DATABASE_URL": pulse_test_database_url(),
            "DJANGO_SETTINGS_MODULE": "pulse_project.settings",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_only_the_daemon_keeps_replica_sessions_warm(settings):
    from connections.guardrails import SessionKeeper

    assert Command._session_keeper(once=True) is None
    keeper = Command._session_keeper(once=False)
    assert isinstance(keeper, SessionKeeper) and keeper.idle_seconds == settings.PULSE_KEPT_SESSION_IDLE_SECONDS
    settings.PULSE_KEPT_SESSION_IDLE_SECONDS = 0
    assert Command._session_keeper(once=False) is None
