"""plan_build: the diff against the team's objects after every rule the API runs, each problem with its line."""

import uuid

import pytest
from django.contrib.auth.models import Group

from alerts.models import Channel
from connections.models import MaintenanceWindow, QueryAllowance
from monitors.models import Check, MonitoredTable

pytestmark = pytest.mark.django_db

FILE = """\
version: 1
team: acme
channels:
  - name: ops-slack
    kind: slack
    target_env: OPS_SLACK_URL
    reminder_interval_minutes: 60
connections:
  - name: shop-replica
    tables:
      - table: orders
        timestamp_column: created_at
        sensitivity: 4.5
        direction: drop
        checks:
          - kind: null_rate
            column: note
            max_value: 1
          - kind: row_count
            min_value: 1
          - kind: custom_sql
            sql: SELECT count(*) FROM public.orders WHERE amount < 0
            max_value: 0
      - table: customers
        timestamp_column: signup_date
        freshness_threshold_minutes: 2880
    maintenance_windows:
      - starts_at: 2026-12-01T02:00:00Z
        ends_at: 2026-12-01T04:00:00Z
        reason: upgrade
"""


def fields_of(plan):
    return [(p.line, p.field) for p in plan.problems]


def test_a_first_plan_creates_everything_and_writes_nothing(shop, plan):
    result = plan(FILE)
    assert result.problems == []
    assert result.has_changes
    assert result.counts()["create"] == 7  # 2 tables, 3 checks, 1 channel, 1 window
    assert not MonitoredTable.objects.exists()
    assert not Channel.objects.exists()
    text = result.text()
    assert "+ table shop-replica: public.orders (pulse.yml:11)" in text
    assert "    sensitivity: 4.5" in text
    assert "+ check shop-replica: public.orders null_rate(note) (pulse.yml:16)" in text
    assert "    target: '$OPS_SLACK_URL'" in text  # the variable's name, never its value
    assert "hooks.slack.com" not in text


def test_the_catalog_is_looked_up_once_per_connection_whatever_the_number_of_tables(shop, plan):
    text = "version: 1\nteam: acme\nconnections:\n  - name: shop-replica\n    tables:\n"
    text += "".join(f"      - table: {name}\n" for name in ("orders", "customers", "stale_events", "empty_events"))
    assert plan(text).problems == []
    # the session's recovery check and the one catalog query (describe_table would take 2 per table)
    assert QueryAllowance.objects.get(connection=shop).queries_used == 2


def test_apply_then_plan_reports_nothing_and_a_changed_setting_is_one_change(shop, apply, plan):
    assert apply(FILE).problems == []
    assert not plan(FILE).has_changes
    changed = plan(FILE.replace("sensitivity: 4.5", "sensitivity: 6"))
    assert [(c.action, c.kind, c.fields) for c in changed.changes] == [("change", "table", {"sensitivity": (4.5, 6)})]
    assert "~ table shop-replica: public.orders (pulse.yml:11)\n    sensitivity: 4.5 -> 6" in changed.text()


def test_every_validation_error_is_reported_at_once_with_its_line(shop, plan):
    text = """\
version: 1
team: acme
channels:
  - name: hook
    kind: webhook
    target_env: HOOK_URL
  - name: mail
    kind: email
    target_env: NOT_SET_ANYWHERE
    reminder_interval_minutes: 0
connections:
  - name: shop-replica
    tables:
      - table: ordres
      - table: orders
        timestamp_column: amount
        check_interval_seconds: 5
        failure_threshold: 11
        checks:
          - kind: null_rate
            column: missing_column
            max_value: 0.5
          - kind: row_count
            min_value: 10
            max_value: 1
          - kind: custom_sql
            sql: DELETE FROM orders
            max_value: 1
      - schema: private
        table: salaries
      - table: customers
        checks:
          - kind: custom_sql
            sql: SELECT count(*) FROM public.nope
            max_value: 1
    maintenance_windows:
      - starts_at: 2026-12-01T04:00:00Z
        ends_at: 2026-12-01T02:00:00Z
      - starts_at: 2026-12-01 02:00
        ends_at: tomorrow
  - name: globex-replica
"""
    result = plan(text)
    assert result.changes == []
    found = {(p.line, p.field): p.message for p in result.problems}
    expected = {
        (4, "channels[0].secret_env"): "webhook channels in a file need secret_env",
        (10, "channels[1].reminder_interval_minutes"): "must be between 1 and",
        (14, "connections[0].tables[0].table"): 'table "public.ordres" not found on connection "shop-replica"',
        (16, "connections[0].tables[1].timestamp_column"): "not a date or timestamp type",
        (17, "connections[0].tables[1].check_interval_seconds"): "greater than or equal to 10",
        (18, "connections[0].tables[1].failure_threshold"): "less than or equal to 10",
        (21, "connections[0].tables[1].checks[0].column"): 'column "missing_column" not found',
        (24, "connections[0].tables[1].checks[1].min_value"): "must not exceed max_value",
        (27, "connections[0].tables[1].checks[2].sql"): "DELETE is not allowed",
        (30, "connections[0].tables[2].table"): "is not readable by user",
        (38, "connections[0].maintenance_windows[0].ends_at"): "Must be after starts_at.",
        (39, "connections[0].maintenance_windows[1].starts_at"): "needs a time zone",
        (40, "connections[0].maintenance_windows[1].ends_at"): "not an ISO 8601 date and time",
        (41, "connections[1].name"): 'connection "globex-replica" not found in team "acme"',
    }
    for where, message in expected.items():
        assert message in found.get(where, ""), (where, sorted(found.items()))
    assert set(found) == set(expected), sorted(found)


def test_custom_sql_is_checked_on_the_replica_with_its_line(shop, plan):
    text = FILE.replace("SELECT count(*) FROM public.orders WHERE amount < 0", "SELECT count(*) FROM public.nope")
    result = plan(text)
    assert fields_of(result) == [(22, "connections[0].tables[0].checks[2].sql")]
    assert 'relation "public.nope" does not exist' in result.problems[0].message


def test_a_missing_variable_refuses_a_new_channel_but_keeps_an_existing_ones_target(shop, plan, apply, env):
    result = plan(FILE, env={})
    assert fields_of(result) == [(6, "channels[0].target_env")]
    assert 'environment variable "OPS_SLACK_URL" is not set' in result.problems[0].message
    assert apply(FILE).problems == []
    assert not plan(FILE, env={}).has_changes
    moved = plan(FILE, env={**env, "OPS_SLACK_URL": "https://hooks.slack.com/services/T1/B1/other"})
    assert [(c.kind, c.fields) for c in moved.changes] == [("channel", {"target": ("(stored)", "$OPS_SLACK_URL")})]


def test_pulses_own_settings_cannot_be_read_as_a_channel_target(shop, plan):
    result = plan(FILE.replace("target_env: OPS_SLACK_URL", "target_env: PULSE_ENCRYPTION_KEY"))
    assert fields_of(result) == [(6, "channels[0].target_env")]
    assert "reserved" in result.problems[0].message


def test_another_teams_connection_reads_as_a_name_that_does_not_exist(teams, make_connection, plan):
    make_connection(name="globex-replica", team=teams[1])
    text = "version: 1\nteam: acme\nconnections:\n  - name: globex-replica\n    tables:\n      - table: orders\n"
    found = plan(text).problems
    missing = plan(text.replace("globex-replica", "no-such-replica")).problems
    assert [(p.line, p.field) for p in found] == [(4, "connections[0].name")]
    assert found[0].message == 'connection "globex-replica" not found in team "acme"'
    assert missing[0].message.replace("no-such-replica", "globex-replica") == found[0].message
    assert not MonitoredTable.objects.exists()


def test_a_team_the_caller_is_not_in_is_not_found(teams, shop, plan):
    result = plan(FILE, teams=Group.objects.filter(name="globex"))
    assert [(p.line, p.field, p.message) for p in result.problems] == [(2, "team", 'team "acme" not found')]


def test_a_group_is_expanded_against_the_catalog_and_picks_up_a_table_that_appears(shop, plan, apply, replica_tables):
    schema = f"sales_{uuid.uuid4().hex[:8]}"
    replica_tables(schema, ["orders_2024", "orders_2025", "refunds"])
    text = f"""\
version: 1
team: acme
connections:
  - name: shop-replica
    table_groups:
      - schema: {schema}
        tables: "orders_*"
        timestamp_column: created_at
        check_interval_seconds: 600
        checks:
          - kind: row_count
            min_value: 1
        overrides:
          orders_2025:
            sensitivity: 8
            checks: []
"""
    assert apply(text).problems == []
    stored = {t.table_name: t for t in MonitoredTable.objects.filter(schema_name=schema)}
    assert set(stored) == {"orders_2024", "orders_2025"}
    assert stored["orders_2024"].check_interval_seconds == 600 and stored["orders_2024"].sensitivity == 3.5
    assert stored["orders_2025"].sensitivity == 8 and stored["orders_2025"].check_interval_seconds == 600
    assert list(Check.objects.values_list("table__table_name", "kind")) == [("orders_2024", "row_count")]
    assert not plan(text).has_changes

    replica_tables(schema, ["orders_2026"])
    appeared = plan(text)
    assert [(c.action, c.kind, c.name) for c in appeared.changes] == [
        ("create", "table", f"shop-replica: {schema}.orders_2026"),
        ("create", "check", f"shop-replica: {schema}.orders_2026 row_count"),
    ]
    assert appeared.changes[0].line == 6


def test_a_table_listed_by_name_wins_over_its_group(shop, plan, replica_tables):
    schema = f"sales_{uuid.uuid4().hex[:8]}"
    replica_tables(schema, ["orders_1", "orders_2"])
    text = f"""\
version: 1
team: acme
connections:
  - name: shop-replica
    tables:
      - schema: {schema}
        table: orders_1
        sensitivity: 9
    table_groups:
      - schema: {schema}
        tables: "orders_*"
"""
    created = {c.name: c.fields for c in plan(text).changes}
    assert created[f"shop-replica: {schema}.orders_1"]["sensitivity"] == (None, 9)
    assert created[f"shop-replica: {schema}.orders_2"]["sensitivity"] == (None, 3.5)


def test_group_problems_name_the_table_and_the_override_line(shop, plan, replica_tables):
    schema = f"sales_{uuid.uuid4().hex[:8]}"
    replica_tables(schema, ["orders_1"])
    text = f"""\
version: 1
team: acme
connections:
  - name: shop-replica
    table_groups:
      - schema: {schema}
        tables: "orders_*"
        overrides:
          orders_1:
            timestamp_column: note
          orders_9:
            sensitivity: 2
"""
    result = plan(text)
    assert [(p.line, p.field) for p in result.problems] == [
        (10, "connections[0].table_groups[0].overrides.orders_1.timestamp_column")
    ]
    assert result.problems[0].message.startswith(f'{schema}.orders_1: column "note"')
    assert [(w.line, w.field) for w in plan(text.replace("note", "created_at")).warnings] == [
        (11, "connections[0].table_groups[0].overrides.orders_9")
    ]


def test_without_prune_managed_objects_that_left_the_file_are_kept_and_shown(shop, apply, plan):
    assert apply(FILE).problems == []
    smaller = FILE.replace("      - table: customers\n        timestamp_column: signup_date\n", "").replace(
        "        freshness_threshold_minutes: 2880\n", ""
    )
    kept = plan(smaller)
    assert [(c.action, c.name) for c in kept.changes] == [("kept", "shop-replica: public.customers")]
    assert not kept.has_changes
    pruned = plan(smaller, prune=True)
    assert [(c.action, c.name) for c in pruned.changes] == [("delete", "shop-replica: public.customers")]


def test_prune_deletes_only_managed_objects(shop, apply, make_channel, teams):
    hand_made = MonitoredTable.objects.create(connection=shop, table_name="stale_events")
    hand_channel = make_channel(teams[0], "email", "ops@example.com", name="by-hand")
    MaintenanceWindow.objects.create(
        connection=shop, starts_at="2026-01-01T00:00Z", ends_at="2026-01-01T01:00Z", reason="by hand"
    )
    assert apply(FILE).problems == []
    result = apply("version: 1\nteam: acme\n", prune=True)
    assert result.problems == []
    assert {c.action for c in result.changes} == {"delete"}
    assert list(MonitoredTable.objects.all()) == [hand_made]
    assert list(Channel.objects.all()) == [hand_channel]
    assert list(MaintenanceWindow.objects.values_list("reason", flat=True)) == ["by hand"]
    assert not Check.objects.exists()


def test_objects_made_by_hand_are_adopted_not_duplicated(shop, plan, apply):
    orders = MonitoredTable.objects.create(
        connection=shop, table_name="orders", timestamp_column="created_at", sensitivity=4.5, direction="drop"
    )
    row_count = Check.objects.create(table=orders, kind="row_count", min_value=1)
    result = plan(FILE)
    adopted = [(c.kind, c.name, c.fields) for c in result.changes if c.action == "adopt"]
    assert adopted == [
        ("table", "shop-replica: public.orders", {"managed_by": ("", "pulse.yml")}),
        ("check", "shop-replica: public.orders row_count", {"managed_by": ("", "pulse.yml")}),
    ]
    assert apply(FILE).problems == []
    orders.refresh_from_db()
    row_count.refresh_from_db()
    assert (orders.managed_by, row_count.managed_by) == ("pulse.yml", "pulse.yml")
    assert Check.objects.filter(table=orders, kind="row_count").count() == 1


def test_an_object_another_file_manages_is_refused(shop, plan):
    MonitoredTable.objects.create(connection=shop, table_name="orders", managed_by="other.yml")
    result = plan(FILE)
    assert [(p.line, p.field) for p in result.problems] == [(11, "connections[0].tables[0]")]
    assert 'managed by another file ("other.yml")' in result.problems[0].message


def test_a_table_declared_twice_is_refused_at_the_second(shop, plan):
    text = "version: 1\nteam: acme\nconnections:\n  - name: shop-replica\n    tables:\n"
    text += "      - table: orders\n      - table: orders\n        schema: public\n"
    result = plan(text)
    assert [(p.line, p.field) for p in result.problems] == [(7, "connections[0].tables[1].table")]
    assert "declared twice (also at line 6)" in result.problems[0].message


def test_a_spent_budget_is_reported_on_the_connection_and_nothing_is_planned(make_connection, plan):
    make_connection(max_queries_per_hour=1)
    result = plan(FILE)
    assert [(p.line, p.field) for p in result.problems] == [(9, "connections[0].name")]
    assert "query budget of 1/h" in result.problems[0].message


def test_names_reach_the_catalog_as_data_not_sql(shop, plan):
    text = """\
version: 1
team: acme
connections:
  - name: shop-replica
    tables:
      - schema: "public'; DROP TABLE public.orders; --"
        table: orders
      - table: 'orders" OR "1"="1'
"""
    result = plan(text)
    assert [(p.line, p.field) for p in result.problems] == [
        (7, "connections[0].tables[0].table"),
        (8, "connections[0].tables[1].table"),
    ]
    assert all("not found on connection" in p.message for p in result.problems)
    assert plan(FILE).problems == []  # public.orders is still there
