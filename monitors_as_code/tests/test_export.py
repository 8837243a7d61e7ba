"""export: the team's current monitors as a file that plan reports as unchanged."""

import pytest
import yaml

from connections.models import MaintenanceWindow
from monitors.models import Check, MonitoredTable
from monitors_as_code.export import env_name, export_text

pytestmark = pytest.mark.django_db

FILE = """\
version: 1
team: acme
channels:
  - name: ops-slack
    kind: slack
    target_env: OPS_SLACK_URL
    reminder_interval_minutes: 60
    remind_earlier_alerts: true
connections:
  - name: shop-replica
    tables:
      - table: orders
        timestamp_column: created_at
        sensitivity: 4.5
        min_relative_change: 0.1
        seasonality: day_of_week
        checks:
          - kind: null_rate
            column: note
            min_value: 0
            max_value: 0.25
          - kind: custom_sql
            sql: SELECT count(*) FROM public.orders WHERE amount < 0
            max_value: 0
      - table: customers
    maintenance_windows:
      - starts_at: 2026-12-01T02:00:00Z
        ends_at: 2026-12-01T04:00:00Z
        reason: upgrade
"""


def test_an_applied_file_round_trips_through_export(teams, shop, apply, plan):
    assert apply(FILE).problems == []
    exported = export_text(team=teams[0])
    again = plan(exported, env={})  # the exported variable names are not set: stored targets are kept
    assert again.problems == [], again.problem_lines()
    assert not again.has_changes, again.text()
    assert not plan(exported, env={}, prune=True).has_changes  # nothing managed is missing from the export
    data = yaml.safe_load(exported)
    assert data["channels"] == [
        {
            "name": "ops-slack",
            "kind": "slack",
            "target_env": "CHANNEL_OPS_SLACK_TARGET",
            "reminder_interval_minutes": 60,
            "remind_earlier_alerts": True,
        }
    ]
    assert data["connections"][0]["tables"][0] == {"table": "customers"}  # defaults are not written
    assert "hooks.slack.com" not in exported


def test_objects_made_by_hand_export_and_are_adopted_by_the_first_apply(teams, shop, make_channel, apply, plan):
    orders = MonitoredTable.objects.create(connection=shop, table_name="orders", timestamp_column="created_at")
    Check.objects.create(table=orders, kind="row_count", min_value=5)
    MaintenanceWindow.objects.create(connection=shop, starts_at="2026-03-01T00:00Z", ends_at="2026-03-01T02:00Z")
    make_channel(teams[0], "email", "ops@example.com", name="ops mail")
    exported = export_text(team=teams[0])
    first = plan(exported, env={})
    assert first.problems == []
    assert {c.action for c in first.changes} == {"adopt"}
    assert all(set(c.fields) == {"managed_by"} for c in first.changes)
    assert apply(exported, env={}).problems == []
    assert not plan(export_text(team=teams[0]), env={}).has_changes


def test_objects_of_another_file_are_not_exported(teams, shop):
    MonitoredTable.objects.create(connection=shop, table_name="orders", managed_by="other.yml")
    assert "orders" not in export_text(team=teams[0])
    assert "orders" in export_text(team=teams[0], source="other.yml")


def test_channel_variable_names_are_derived_from_the_name():
    assert env_name("ops-slack #1", "TARGET") == "CHANNEL_OPS_SLACK_1_TARGET"
