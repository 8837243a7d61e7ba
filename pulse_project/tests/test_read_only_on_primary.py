"""Pulse's sessions are read-only because of Pulse's own session settings, proven on a WRITABLE server.

On a hot standby PostgreSQL refuses every write anyway, so these tests run on the primary, through a
connection with `require_replica` off, as a role that MAY write: `pulse_writer` owns a table and a volatile
function that inserts into it, and a view whose every read calls that function. A plain session of that role
writes (the control); every path Pulse opens must refuse: the checks' fixed templates (reading the view), custom
SQL (calling the function), save-time lookups, the probe, and a session whose default a stored function tried
to turn read-write.
"""

from datetime import timedelta

import psycopg
import pytest
from django.utils import timezone
from psycopg import errors, sql

from conftest import SAMPLE_DB
from connections import guardrails, replica
from monitors.batch import batch_run
from monitors.claims import tables_claim_due
from monitors.models import Check, MonitoredTable
from monitors.recording import results_ignore

pytestmark = pytest.mark.django_db

WRITER = "pulse_writer"
WRITER_PASSWORD = "writer-s3cret-pw"
SETUP = f"""
CREATE ROLE {WRITER} LOGIN PASSWORD '{WRITER_PASSWORD}';
CREATE SCHEMA writable AUTHORIZATION {WRITER};
SET ROLE {WRITER};
CREATE TABLE writable.writes (at timestamptz NOT NULL DEFAULT now(), via text);
CREATE FUNCTION writable.write_one(via text) RETURNS int VOLATILE LANGUAGE sql
    AS $$ INSERT INTO writable.writes (via) VALUES (via) RETURNING 1 $$;
CREATE FUNCTION writable.read_write_by_default() RETURNS int VOLATILE LANGUAGE sql
    AS $$ SELECT 1 FROM (SELECT pg_catalog.set_config('default_transaction_read_only', 'off', false)) AS s $$;
CREATE VIEW writable.writing_view AS SELECT writable.write_one('view') AS n, now() AS at;
RESET ROLE;
"""
TEARDOWN = f"DROP SCHEMA writable CASCADE; DROP OWNED BY {WRITER}; DROP ROLE {WRITER};"


@pytest.fixture(scope="module")
def writable_primary(replica_pair):
    with replica_pair.primary.connect(SAMPLE_DB) as conn:
        conn.execute(SETUP)
    try:
        yield replica_pair.primary
    finally:
        with replica_pair.primary.connect(SAMPLE_DB) as conn:
            conn.execute(TEARDOWN)


def writes(primary) -> list[str]:
    with primary.connect(SAMPLE_DB) as conn:
        return [via for (via,) in conn.execute("SELECT via FROM writable.writes ORDER BY at")]


@pytest.fixture
def writer(writable_primary, make_connection):
    """A connection to the writable primary as the role that may write (require_replica off)."""
    with writable_primary.connect(SAMPLE_DB) as conn:
        conn.execute("TRUNCATE writable.writes")
    return make_connection(
        name="writable-primary",
        port=writable_primary.port,
        username=WRITER,
        password=WRITER_PASSWORD,
        require_replica=False,
    )


def test_the_role_may_write_outside_pulse(writer, writable_primary):
    """The control: the same role, in a session without Pulse's settings, writes through the function and view."""
    with psycopg.connect(**writer.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT writable.write_one('plain')").fetchone() == (1,)
        assert conn.execute("SELECT n FROM writable.writing_view").fetchone() == (1,)
    assert writes(writable_primary) == ["plain", "view"]
    with writable_primary.connect(SAMPLE_DB) as conn:
        conn.execute("TRUNCATE writable.writes")


def run_now(*tables):
    claim = tables_claim_due(
        now=timezone.now(), lease=timedelta(minutes=1), limit=100, force=True, table_ids=[t.id for t in tables]
    )
    return batch_run(connection=tables[0].connection, claim=claim, tables=claim.tables, on_recorded=results_ignore)


def test_the_checks_fixed_templates_cannot_write_through_a_view(writer, writable_primary):
    table = MonitoredTable.objects.create(
        connection=writer, schema_name="writable", table_name="writing_view", timestamp_column="at"
    )
    Check.objects.create(table=table, kind="row_count", min_value=1)
    results = {r.kind: r for r in run_now(table)}
    for kind in ("freshness", "row_count"):
        assert results[kind].status == "error", (kind, results[kind].message)
        assert "read-only transaction" in results[kind].message
    assert writes(writable_primary) == []


def test_custom_sql_cannot_write_through_a_volatile_function(writer, writable_primary):
    table = MonitoredTable.objects.create(connection=writer, schema_name="writable", table_name="writes")
    # Stored behind the API's back (the save-time lookup refuses volatile functions): the session must hold.
    check = Check.objects.create(table=table, kind="custom_sql", sql="SELECT writable.write_one('custom')", min_value=0)
    [result] = [r for r in run_now(table) if r.check_definition_id == check.id]
    assert result.status == "error" and "read-only transaction" in result.message
    assert writes(writable_primary) == []


def test_a_function_that_turns_the_default_read_write_does_not_open_later_statements_to_writes(
    writer, writable_primary
):
    table = MonitoredTable.objects.create(
        connection=writer, schema_name="writable", table_name="writing_view", timestamp_column="at"
    )
    Check.objects.create(table=table, kind="custom_sql", sql="SELECT writable.read_write_by_default()", min_value=0)
    Check.objects.create(table=table, kind="row_count", min_value=1)  # runs after the custom SQL, in its session
    results = {r.kind: r for r in run_now(table)}
    assert results["custom_sql"].status == "pass"  # the function ran: it did set the default
    assert results["row_count"].status == "error" and "read-only transaction" in results["row_count"].message
    assert writes(writable_primary) == []


def test_a_save_time_lookup_session_refuses_writes(writer, writable_primary):
    with guardrails.lookup_session(connection=writer, queries=4) as session:
        assert session.execute("SHOW transaction_read_only").fetchone() == ("on",)
        with pytest.raises(errors.ReadOnlySqlTransaction):
            session.execute("SELECT writable.write_one('lookup')")
        with pytest.raises(errors.ReadOnlySqlTransaction):
            session.execute("CREATE TEMP TABLE pulse_was_here (id int)")
        with pytest.raises(errors.ReadOnlySqlTransaction), session.transaction():
            session.execute("INSERT INTO writable.writes (via) VALUES ('insert')")
        # Save-time lookups run in explicit transactions: those begin READ ONLY as well.
        with pytest.raises(errors.ReadOnlySqlTransaction), session.transaction():
            session.execute(sql.SQL("SELECT n FROM writable.writing_view"))
    assert writes(writable_primary) == []


def test_the_guarded_runner_refuses_writes_in_fixed_queries_and_user_sql(writer, writable_primary):
    allowance = guardrails.Allowance(connection=writer, now=timezone.now())
    with replica.session_for(writer) as session:
        runner = guardrails.QueryRunner(session=session, connection=writer, allowance=allowance)
        with pytest.raises(guardrails.CheckError, match="read-only transaction"):
            runner.fetch(sql.SQL("SELECT writable.write_one('fetch')"))
        with pytest.raises(guardrails.CheckError, match="read-only transaction"):
            runner.fetch_user(sql.SQL("SELECT writable.write_one('user')"))
    assert writes(writable_primary) == []


def test_the_probes_session_is_read_only(writer, writable_primary):
    """`probe` (before a connection is saved) and `session_for` open their sessions with `open_session`."""
    assert replica.probe(conninfo=writer.conninfo(), require_replica=False).ok
    with replica.open_session(conninfo=writer.conninfo(), statement_timeout_ms=5000) as session:
        assert session.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        with pytest.raises(errors.ReadOnlySqlTransaction):
            session.execute("SELECT writable.write_one('probe')")
    assert writes(writable_primary) == []
