import pytest

from alerts.models import Channel
from connections.models import MaintenanceWindow
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


def test_a_first_plan_creates_everything_and_writes_nothing(shop, plan):
    result = plan(FILE)
    assert result.problems == []
    assert result.has_changes
    counts = result.counts()
    assert counts["create"] == 7  # 2 tables, 3 checks, 1 channel, 1 window
    assert not MonitoredTable.objects.exists()
    text = result.text()
    assert "+ table shop-replica: public.orders (pulse.yml:11)" in text
    assert "sensitivity: 4.5" in text


def test_apply_creates_exactly_the_plan_then_plans_nothing(shop, apply, plan):
    applied = apply(FILE)
    assert applied.problems == [], applied.problem_lines()
    orders = MonitoredTable.objects.get(table_name="orders")
    assert (orders.managed_by, orders.sensitivity, orders.direction, orders.timestamp_column) == (
        "pulse.yml",
        4.5,
        "drop",
        "created_at",
    )
    assert sorted(Check.objects.values_list("kind", flat=True)) == ["custom_sql", "null_rate", "row_count"]
    assert set(Check.objects.values_list("managed_by", flat=True)) == {"pulse.yml"}
    channel = Channel.objects.get()
    assert channel.get_target().startswith("https://hooks.slack.com/") and channel.managed_by == "pulse.yml"
    assert MaintenanceWindow.objects.get().reason == "upgrade"
    again = plan(FILE)
    assert again.problems == [] and not again.has_changes, again.text()
