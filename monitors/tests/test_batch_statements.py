"""A batch's set-based statements on the real replica pair: one catalog statement and one data statement for
every table of the batch, equal to what each table reads on its own, and a per-table fallback when one table
makes a combined statement fail."""

import psycopg
import pytest
from psycopg import sql

from monitors import batch
from monitors.checks import volume
from monitors.models import MonitoredTable
from monitors.testing import run_batch, statements_sent

pytestmark = pytest.mark.django_db

SAMPLE_DB = "shop"
STEADY_STATEMENTS = 3
"""What a steady batch of built-in checks sends: the replica's state, the catalog statement, the data statement."""


def comparable(results) -> dict:
    """What a table's results say, without what moves with the clock (ages, durations, counts of statements)."""
    seen = {}
    for r in results:
        if r.table_id is None:
            continue
        details = {k: v for k, v in r.details.items() if k not in ("data_as_of", "learned_limit")}
        value = None if r.kind == "freshness" else r.observed_value
        seen[(r.table_id, r.kind)] = (r.status, value, r.bucket_start, details)
    return seen


@pytest.fixture
def four_tables(make_connection):
    shop = make_connection()
    tables = [
        MonitoredTable.objects.create(connection=shop, table_name="orders", timestamp_column="created_at"),
        MonitoredTable.objects.create(connection=shop, table_name="customers"),
        MonitoredTable.objects.create(connection=shop, table_name="stale_events", timestamp_column="happened_at"),
        MonitoredTable.objects.create(connection=shop, table_name="empty_events", timestamp_column="at"),
    ]
    run_batch(*tables)  # the first run backfills each series and caches the cost estimates
    return shop, [MonitoredTable.objects.get(pk=t.pk) for t in tables]


def test_a_steady_batch_sends_three_statements_whatever_its_size(four_tables):
    shop, tables = four_tables
    before = statements_sent(shop)
    results = run_batch(*tables)
    assert statements_sent(shop) - before == STEADY_STATEMENTS
    assert all(r.status in ("pass", "fail") for r in results), [(r.kind, r.message) for r in results]
    assert all(r.queries_used == 0 for r in results)
    by_table = {(r.table_id, r.kind): r for r in results}
    orders, customers, stale, empty = tables
    assert by_table[(orders.id, "volume")].details["total_rows"] == 500
    assert by_table[(customers.id, "volume")].observed_value == 50
    assert by_table[(customers.id, "volume")].details["method"] == "exact"
    assert by_table[(stale.id, "freshness")].status == "fail"
    assert by_table[(empty.id, "freshness")].status == "fail"
    assert by_table[(empty.id, "volume")].observed_value == 0


def test_the_combined_statements_read_what_each_table_reads_on_its_own(four_tables, monkeypatch):
    shop, tables = four_tables
    together = comparable(run_batch(*tables))
    monkeypatch.setattr(batch, "_read_together", lambda contexts: None)  # every table reads its own
    before = statements_sent(shop)
    alone = comparable(run_batch(*MonitoredTable.objects.filter(pk__in=[t.pk for t in tables])))
    assert statements_sent(shop) - before > STEADY_STATEMENTS  # the per-table path did run
    assert together == alone
    assert len(together) == 11  # 4 schema, 4 volume, 3 freshness


def test_parts_whose_costs_add_up_over_the_cost_limit_go_in_separate_statements(four_tables):
    shop, tables = four_tables
    together = comparable(run_batch(*tables))
    shop.max_query_cost = volume.SMALL_COUNT_COST  # the customers' count alone fills a statement
    shop.save(update_fields=["max_query_cost"])
    before = statements_sent(shop)
    split = comparable(run_batch(*MonitoredTable.objects.filter(pk__in=[t.pk for t in tables])))
    assert statements_sent(shop) - before >= STEADY_STATEMENTS + 1
    assert split == together


class TableLock:
    """ACCESS EXCLUSIVE on a table of the primary, in an open transaction, replayed by the standby."""

    def __init__(self, pair, table: str):
        self.pair = pair
        self.conn = psycopg.connect(**pair.primary.dsn(dbname=SAMPLE_DB))
        self.conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(table)))
        with pair.primary.connect() as other:
            other.execute("SELECT pg_current_xact_id()")  # a commit flushes the WAL, the lock's record with it
        pair.wait_for_replay()
        with pair.standby.connect(SAMPLE_DB) as standby:
            held = standby.execute(
                "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = %s::regclass",
                [table],
            ).fetchone()[0]
        assert held, f"the standby did not replay the lock on {table}"

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()
        with self.pair.primary.connect() as other:
            other.execute("SELECT pg_current_xact_id()")
        self.pair.wait_for_replay()


def test_a_locked_table_falls_back_and_the_others_are_recorded(four_tables, replica_pair):
    shop, tables = four_tables
    shop.statement_timeout_ms = 1000
    shop.save(update_fields=["statement_timeout_ms"])
    lock = TableLock(replica_pair, "orders")
    try:
        results = run_batch(*MonitoredTable.objects.filter(pk__in=[t.pk for t in tables]))
    finally:
        lock.release()
    orders = tables[0]
    locked = [r for r in results if r.table_id == orders.id]
    assert locked and all(r.status == "error" and "waiting for a lock" in r.message for r in locked)
    assert sum(r.queries_used for r in locked) == 1  # one lock wait of its own: later checks reuse the error
    others = [r for r in results if r.table_id not in (None, orders.id)]
    assert len(others) == 8
    assert all(r.status in ("pass", "fail") and r.id is not None for r in others), [(r.kind, r.message) for r in others]


def test_an_unreadable_table_among_others_falls_back_and_the_others_are_recorded(four_tables):
    shop, tables = four_tables
    salaries = MonitoredTable.objects.create(connection=shop, schema_name="private", table_name="salaries")
    before = statements_sent(shop)
    results = run_batch(salaries, *MonitoredTable.objects.filter(pk__in=[t.pk for t in tables]))
    # The batch's statements skip the schema without USAGE; the table's own catalog lookup gets the server's
    # error (volume reuses it); the other four tables are read together.
    assert statements_sent(shop) - before == STEADY_STATEMENTS + 1
    unreadable = [r for r in results if r.table_id == salaries.id]
    assert unreadable and all(r.status == "error" and "permission denied" in r.message for r in unreadable)
    others = [r for r in results if r.table_id not in (None, salaries.id)]
    assert len(others) == 11
    assert all(r.status in ("pass", "fail") for r in others), [(r.kind, r.message) for r in others]


def test_a_dropped_table_is_reported_missing_and_the_others_read_together(four_tables, replica_pair):
    shop, tables = four_tables
    with replica_pair.primary.connect(SAMPLE_DB) as conn:
        conn.execute("CREATE TABLE public.short_lived (id int, at timestamptz)")
        conn.execute("GRANT SELECT ON public.short_lived TO pulse_reader")
    replica_pair.wait_for_replay()
    doomed = MonitoredTable.objects.create(connection=shop, table_name="short_lived", timestamp_column="at")
    run_batch(doomed)
    with replica_pair.primary.connect(SAMPLE_DB) as conn:
        conn.execute("DROP TABLE public.short_lived")
    replica_pair.wait_for_replay()
    before = statements_sent(shop)
    results = run_batch(*MonitoredTable.objects.filter(pk__in=[doomed.pk, *[t.pk for t in tables]]))
    assert statements_sent(shop) - before == STEADY_STATEMENTS
    gone = {r.kind: r for r in results if r.table_id == doomed.id}
    assert gone["schema_change"].status == "fail" and "no longer exists" in gone["schema_change"].message
    assert gone["volume"].status == "skipped" and gone["freshness"].status == "skipped"
    others = [r for r in results if r.table_id not in (None, doomed.id)]
    assert len(others) == 11 and all(r.status in ("pass", "fail") for r in others)


def test_hostile_table_and_column_names_are_read_together_as_names_never_as_sql(four_tables, replica_pair):
    """A tenant names the table and column; in the batch's combined statements they stay quoted identifiers."""
    shop, tables = four_tables
    name, column = 'x"; DROP TABLE public.orders; --', "at' OR '1'='1"
    relation, at = sql.Identifier("public", name), sql.Identifier(column)
    with replica_pair.primary.connect(SAMPLE_DB) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id int, {} timestamptz)").format(relation, at))
        conn.execute(sql.SQL("CREATE INDEX ON {} ({})").format(relation, at))
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT g, now() - interval '2 hours' FROM generate_series(1, 7) g").format(relation)
        )
        conn.execute(sql.SQL("GRANT SELECT ON {} TO pulse_reader").format(relation))
    with replica_pair.primary.connect() as other:
        other.execute("SELECT pg_current_xact_id()")  # a commit flushes the WAL written before it, as TableLock does
    replica_pair.wait_for_replay()
    try:
        hostile = MonitoredTable.objects.create(connection=shop, table_name=name, timestamp_column=column)
        run_batch(hostile, *tables)  # first run: the hostile table's series starts
        before = statements_sent(shop)
        results = run_batch(*MonitoredTable.objects.filter(pk__in=[hostile.pk, *[t.pk for t in tables]]))
        assert statements_sent(shop) - before == STEADY_STATEMENTS  # read together, in the combined statements
        read = {r.kind: r for r in results if r.table_id == hostile.id}
        assert read["volume"].details["total_rows"] == 7
        assert 7200 <= read["freshness"].observed_value < 7200 + 600  # the newest row's age: 2 hours
        standby = {"host": "127.0.0.1", "port": replica_pair.standby.port, "dbname": SAMPLE_DB, "user": "postgres"}
        with psycopg.connect(**standby) as conn:
            assert conn.execute("SELECT count(*) FROM public.orders").fetchone()[0] == 500
    finally:
        with replica_pair.primary.connect(SAMPLE_DB) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(relation))
        replica_pair.wait_for_replay()


@pytest.mark.parametrize("template", [volume._PART_BUCKET, volume._PART_SMALL, volume._PART_COUNT])
def test_a_part_filled_from_its_cut_template_is_what_formatting_the_template_gives(template):
    values = {
        "number": sql.Literal(7),
        "relation": sql.Identifier("public", 'odd "name'),
        "column": sql.Identifier("created at"),
    }
    used = {name: value for name, value in values.items() if "{" + name + "}" in template}
    filled = volume._template_fill(volume._template_cut(template), **used)
    assert filled == sql.SQL(template).format(**used)
