"""A batch's first pass on the real replica pair: no cost EXPLAIN for tables whose size bounds the fixed templates'
cost, the 14-day backfill of every new series in set-based statements, equal to what each table reads on its own,
and a per-table fallback when the combined statement fails."""

import pytest

from monitors.checks import volume
from monitors.models import MonitoredTable
from monitors.testing import run_batch, statements_sent

pytestmark = pytest.mark.django_db

TABLES = (
    ("orders", "created_at"),
    ("stale_events", "happened_at"),
    ("customers", "signup_date"),
    ("empty_events", "at"),
)
FIRST_BATCH_STATEMENTS = 4
"""A first batch of the four tables: the replica's state, the catalog statement, one backfill statement for the
four and one data statement for the four (their new series' width chosen from the backfill); no EXPLAIN."""
PER_TABLE_FIRST_STATEMENTS = 2
"""What a table's first check sends on its own (no cost EXPLAIN for these small tables): its backfill, its scan."""


def new_tables(connection, tables=TABLES) -> list[MonitoredTable]:
    return [
        MonitoredTable.objects.create(connection=connection, table_name=name, timestamp_column=column)
        for name, column in tables
    ]


def first_pass(results, tables) -> dict:
    """What the first check said and learned of each table, by table name (comparable across connections)."""
    names = {t.id: t.table_name for t in tables}
    seen = {}
    for r in results:
        if r.table_id is None:
            continue
        details = {k: v for k, v in r.details.items() if k not in ("data_as_of", "learned_limit")}
        value = None if r.kind == "freshness" else r.observed_value
        seen[(names[r.table_id], r.kind)] = (r.status, value, r.bucket_start, details)
    for table in MonitoredTable.objects.filter(pk__in=names):
        seen[(table.table_name, "state")] = (
            table.volume_series,
            table.volume_bucket_seconds,
            table.update_times,
            table.backfilled_at is not None,
        )
    return seen


def test_a_first_batch_backfills_together_and_explains_nothing(make_connection):
    shop = make_connection()
    tables = new_tables(shop)
    results = run_batch(*tables)
    assert statements_sent(shop) == FIRST_BATCH_STATEMENTS
    assert all(r.status in ("pass", "fail") for r in results), [(r.kind, r.message) for r in results]
    backfilled = {r.table_id: r.details.get("backfilled") for r in results if r.kind == "volume"}
    orders = tables[0]
    assert backfilled[orders.id] > 0  # the orders' 14 days of history seed its baseline
    for table in MonitoredTable.objects.filter(pk__in=[t.pk for t in tables]):
        assert table.backfilled_at is not None
        assert table.plan_costs == {}  # no EXPLAIN was sent: each table's size bounds the templates' cost


def test_the_set_based_first_pass_learns_what_each_table_learns_on_its_own(make_connection, monkeypatch):
    together_shop = make_connection(name="together")
    alone_shop = make_connection(name="alone")
    together_tables = new_tables(together_shop)
    alone_tables = new_tables(alone_shop)
    together = first_pass(run_batch(*together_tables), together_tables)
    monkeypatch.setattr(volume, "batch_backfill", lambda contexts: None)  # each table backfills on its own
    alone = first_pass(run_batch(*alone_tables), alone_tables)
    assert statements_sent(together_shop) == FIRST_BATCH_STATEMENTS
    assert statements_sent(alone_shop) == 2 + PER_TABLE_FIRST_STATEMENTS * len(TABLES)  # state, catalog, each own
    assert together == alone
    assert together[("customers", "state")][0] == "rows:signup_date:1d"  # a date column's series, by day


def test_a_table_that_needs_its_cost_explained_is_backfilled_on_its_own(make_connection):
    """With a cost limit under the size bounds, every table's statements are EXPLAINed (and refused)."""
    shop = make_connection(max_query_cost=0.5)
    tables = new_tables(shop, TABLES[:1])
    results = run_batch(*tables)
    volume_result = next(r for r in results if r.kind == "volume")
    assert "backfill_refused" in volume_result.details
    assert "volume_backfill" in MonitoredTable.objects.get(pk=tables[0].pk).plan_costs


def test_a_failed_backfill_statement_falls_back_to_each_tables_own(make_connection, monkeypatch):
    """The combined statement fails on the server (a part that divides by zero): each table then reads its own,
    and learns what it learns when the combined statement works."""
    failing_shop = make_connection(name="failing")
    clean_shop = make_connection(name="clean")
    failing_tables = new_tables(failing_shop)
    clean_tables = new_tables(clean_shop)
    clean = first_pass(run_batch(*clean_tables), clean_tables)
    monkeypatch.setattr(volume, "_PART_BACKFILL", volume._PART_BACKFILL.replace(" GROUP BY", " AND 1 / 0 = 1 GROUP BY"))
    failing = first_pass(run_batch(*failing_tables), failing_tables)
    assert failing == clean
    # The replica's state, the catalog statement, the failed statement, then each table's own statements.
    assert statements_sent(failing_shop) == 3 + PER_TABLE_FIRST_STATEMENTS * (len(TABLES) - 1)  # empty: none


def test_a_column_that_is_no_timestamp_is_left_out_of_the_backfill_statement(make_connection, monkeypatch):
    shop = make_connection()
    [good] = new_tables(shop, TABLES[:1])
    [bad] = new_tables(shop, [("customers", "name")])  # a text column
    batch = volume.batch_backfill
    read = []

    def recorded(contexts):
        batch(contexts)
        read.extend(ctx.table.id for ctx in contexts if "backfill_read" in ctx.facts)

    monkeypatch.setattr(volume, "batch_backfill", recorded)
    results = run_batch(good, bad)
    assert read == [good.id]
    bad_results = {r.kind: r for r in results if r.table_id == bad.id}
    assert bad_results["volume"].status == "error"
    assert bad_results["freshness"].status in ("error", "fail")  # its own statements ran, and the batch went on


def test_backfill_statements_read_no_more_rows_than_the_statement_timeout_allows(make_connection, monkeypatch):
    """The planner's cost says nothing of time: parts are also grouped by the rows they may read."""
    together_shop = make_connection(name="together")
    split_shop = make_connection(name="split")
    together_tables = new_tables(together_shop)
    split_tables = new_tables(split_shop)
    together = first_pass(run_batch(*together_tables), together_tables)
    monkeypatch.setattr(volume, "BACKFILL_ROWS_PER_MS", 0.001)  # 5 rows at the default timeout: one table each
    split = first_pass(run_batch(*split_tables), split_tables)
    # One backfill statement per table with rows (the empty table needs none).
    assert statements_sent(split_shop) == FIRST_BATCH_STATEMENTS + len(TABLES) - 2
    assert split == together


def test_an_empty_table_is_answered_from_the_catalog_statement(make_connection, monkeypatch):
    """A permanent table whose main fork has no page has no rows: neither batch statement reads it, and its results
    are those of the per-table path."""
    together_shop = make_connection(name="together")
    alone_shop = make_connection(name="alone")
    [together_table] = new_tables(together_shop, [("empty_events", "at")])
    [alone_table] = new_tables(alone_shop, [("empty_events", "at")])
    together = first_pass(run_batch(together_table), [together_table])
    assert statements_sent(together_shop) == 2  # the replica's state and the catalog statement
    again = run_batch(MonitoredTable.objects.get(pk=together_table.pk))
    assert statements_sent(together_shop) == 4  # the same two in the steady state
    assert {r.kind: r.observed_value for r in again if r.kind == "volume"} == {"volume": 0}
    monkeypatch.setattr(volume, "batch_backfill", lambda contexts: None)
    monkeypatch.setattr(volume, "batch_read", lambda contexts: None)
    alone = first_pass(run_batch(alone_table), [alone_table])
    assert statements_sent(alone_shop) == 2 + PER_TABLE_FIRST_STATEMENTS
    assert together == alone
