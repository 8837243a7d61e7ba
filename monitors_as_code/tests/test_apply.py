"""plan_apply: exactly the plan's changes, in one transaction, or nothing."""

import threading
import uuid

import psycopg
import pytest
from django.db import connection

from alerts.models import Channel
from connections.models import MaintenanceWindow, QueryAllowance
from monitors.models import Check, MonitoredTable
from monitors_as_code import apply as apply_module

pytestmark = pytest.mark.django_db

FILE = """\
version: 1
team: acme
channels:
  - name: hook
    kind: webhook
    target_env: HOOK_URL
    secret_env: HOOK_KEY
connections:
  - name: shop-replica
    tables:
      - table: orders
        timestamp_column: created_at
        checks:
          - kind: row_count
            min_value: 1
    maintenance_windows:
      - starts_at: 2026-12-01T02:00:00+01:00
        ends_at: 2026-12-01T04:00:00+01:00
"""


def test_a_file_of_500_tables_is_applied_in_one_run_with_one_catalog_query(shop, apply, plan, replica_tables):
    schema = f"bulk_{uuid.uuid4().hex[:8]}"
    names = [f"t{index:03}" for index in range(500)]
    replica_tables(schema, names)
    text = "version: 1\nteam: acme\nconnections:\n  - name: shop-replica\n    tables:\n"
    for name in names:
        text += f"      - schema: {schema}\n        table: {name}\n        timestamp_column: created_at\n"
        text += "        checks:\n          - kind: null_rate\n            column: note\n            max_value: 1\n"
    result = apply(text)
    assert result.problems == []
    assert MonitoredTable.objects.filter(schema_name=schema, managed_by="pulse.yml").count() == 500
    assert Check.objects.filter(table__schema_name=schema, kind="null_rate", column="note").count() == 500
    assert QueryAllowance.objects.get(connection=shop).queries_used == 2
    assert not plan(text).has_changes


def test_apply_stores_what_the_file_says_and_is_idempotent(shop, apply, env):
    first = apply(FILE)
    assert first.problems == [] and first.counts()["create"] == 4
    channel = Channel.objects.get()
    assert (channel.get_target(), channel.get_secret(), channel.managed_by) == (
        env["HOOK_URL"],
        env["HOOK_KEY"],
        "pulse.yml",
    )
    window = MaintenanceWindow.objects.get()
    assert window.starts_at.isoformat() == "2026-12-01T01:00:00+00:00"
    table = MonitoredTable.objects.get()
    assert (table.status, table.next_check_at) == ("unknown", None)  # due now, like a table created by the API
    second = apply(FILE)
    assert second.problems == [] and not second.has_changes
    assert MonitoredTable.objects.get().pk == table.pk and Channel.objects.get().pk == channel.pk


def test_a_file_with_a_problem_writes_nothing(shop, apply):
    result = apply(FILE.replace("table: orders", "table: ordres"))
    assert [(p.line, p.field) for p in result.problems] == [(11, "connections[0].tables[0].table")]
    assert not MonitoredTable.objects.exists()
    assert not Channel.objects.exists()
    assert not MaintenanceWindow.objects.exists()


def test_a_failure_while_writing_rolls_everything_back(shop, apply, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("the channel could not be written")

    monkeypatch.setattr(apply_module, "channel_create", broken)
    with pytest.raises(RuntimeError):
        apply(FILE)
    assert not MonitoredTable.objects.exists()  # written before the channel, rolled back with it
    assert not Check.objects.exists()
    assert not MaintenanceWindow.objects.exists()


def test_a_change_made_by_hand_between_plan_and_apply_is_seen(shop, apply, plan):
    assert apply(FILE).problems == []
    MonitoredTable.objects.update(check_interval_seconds=900)  # edited behind the file's back (e.g. SQL)
    result = apply(FILE)
    assert [(c.action, c.fields) for c in result.changes] == [("change", {"check_interval_seconds": (900, 300)})]
    assert MonitoredTable.objects.get().check_interval_seconds == 300


@pytest.mark.django_db(transaction=True)
def test_applies_for_one_team_run_one_after_the_other_and_see_what_the_first_wrote(shop, apply, teams):
    """The apply recomputes its changes under the team's row lock: a table written while it waited is changed,
    not created a second time."""
    result = {}

    def run_apply():
        try:
            result["plan"] = apply(FILE)
        finally:
            connection.close()

    with psycopg.connect(**connection.get_connection_params()) as holder:
        holder.execute("SELECT id FROM auth_group WHERE id = %s FOR UPDATE", [teams[0].pk])
        waiting = threading.Thread(target=run_apply)
        waiting.start()
        with psycopg.connect(**connection.get_connection_params(), autocommit=True) as observer:
            for _ in range(6000):  # until the apply blocks on the lock (an event, checked every 10 ms)
                row = observer.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                ).fetchone()
                if row[0]:
                    break
                waiting.join(0.01)
            else:
                pytest.fail("the apply never waited for the team's lock")
        MonitoredTable.objects.create(
            connection=shop, table_name="orders", timestamp_column="created_at", sensitivity=9, managed_by="pulse.yml"
        )
        holder.rollback()  # releases the lock
    waiting.join()
    plan = result["plan"]
    assert plan.problems == []
    table_changes = [(c.action, c.fields) for c in plan.changes if c.kind == "table"]
    assert table_changes == [("change", {"sensitivity": (9.0, 3.5)})]
    assert MonitoredTable.objects.get().sensitivity == 3.5


def test_a_sensitivity_preset_in_the_file_is_stored_round_trips_and_a_bad_one_is_refused(shop, apply, plan):
    column = "timestamp_column: created_at"
    preset = FILE.replace(column, f"{column}\n        sensitivity_preset: high")
    assert apply(preset).problems == []
    assert MonitoredTable.objects.get().sensitivity_preset == "high"
    assert not plan(preset).has_changes
    back = plan(FILE)  # the line removed: back to the model's default (the numeric sensitivity)
    assert [(c.action, c.fields) for c in back.changes if c.kind == "table"] == [
        ("change", {"sensitivity_preset": ("high", "")})
    ]
    refused = apply(preset.replace("sensitivity_preset: high", "sensitivity_preset: extreme"))
    assert [(p.line, p.field) for p in refused.problems] == [(13, "connections[0].tables[0].sensitivity_preset")]
    assert MonitoredTable.objects.get().sensitivity_preset == "high"  # nothing written


def test_quiet_on_holidays_in_the_file_is_stored_round_trips_and_a_non_boolean_is_refused(shop, apply, plan):
    column = "timestamp_column: created_at"
    quiet = FILE.replace(column, f"{column}\n        quiet_on_holidays: true")
    assert apply(quiet).problems == []
    assert MonitoredTable.objects.get().quiet_on_holidays is True
    assert not plan(quiet).has_changes
    back = plan(FILE)  # the line removed: back to the model's default (not marked)
    assert [(c.action, c.fields) for c in back.changes if c.kind == "table"] == [
        ("change", {"quiet_on_holidays": (True, False)})
    ]
    refused = apply(quiet.replace("quiet_on_holidays: true", "quiet_on_holidays: sometimes"))
    assert [(p.line, p.field) for p in refused.problems] == [(13, "connections[0].tables[0].quiet_on_holidays")]
    assert MonitoredTable.objects.get().quiet_on_holidays is True  # nothing written
