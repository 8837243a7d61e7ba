"""Helpers for tests that feed synthetic volume series through the real judging and recording path.

Not a test module (tests may import it; nothing else does): monitors' tests and the project-level alert tests share
these instead of importing each other."""

import math
import random
import uuid
from datetime import UTC, datetime, timedelta

from connections.models import QueryAllowance
from monitors.anomalies import volume_judge
from monitors.batch import batch_run
from monitors.checks import Outcome, Status
from monitors.claims import tables_claim_due
from monitors.models import CheckResult, MonitoredTable
from monitors.recording import ResultsHandler, TableRun, results_ignore, results_record

START = datetime(2026, 10, 1, tzinfo=UTC)
SERIES = "rows:created_at:1h"
"""The series of `volume_table`: rows per hour by created_at."""


def day_night(at: datetime, rng: random.Random, level: float = 1000.0) -> float:
    """Strong day/night seasonality: busy afternoons, quiet nights, 3% noise."""
    seasonal = level * (1 + 0.8 * math.sin((at.hour - 8) / 24 * 2 * math.pi))
    return max(0.0, round(seasonal * (1 + rng.gauss(0, 0.03))))


def volume_table(connection) -> MonitoredTable:
    """An hourly-bucketed table whose history counts as backfilled at START, alerting on the first anomaly."""
    return MonitoredTable.objects.create(
        connection=connection,
        table_name="orders",
        timestamp_column="created_at",
        failure_threshold=1,
        backfilled_at=START,
        volume_series=SERIES,
    )


def seed_history(table, *, hours: int, until: datetime, value_at, series: str = SERIES) -> None:
    CheckResult.objects.bulk_create(
        CheckResult(
            connection=table.connection,
            table=table,
            kind="volume",
            status=Status.PASS,
            observed_value=value_at(at),
            bucket_start=at,
            series=series,
            started_at=at + timedelta(hours=1),
            details={"backfill": True},
        )
        for at in (until - timedelta(hours=h) for h in range(hours, 0, -1))
    )


def observe(
    table, at: datetime, value: float, *, on_recorded: ResultsHandler, series: str = SERIES, bucket_seconds: int = 3600
) -> CheckResult:
    """One run's volume outcome of the bucket starting `at`, judged and recorded the way a batch does."""
    table.refresh_from_db()
    outcome = Outcome(
        kind="volume",
        status=Status.PASS,
        observed_value=value,
        bucket_start=at,
        message=f"{value} rows",
        details={"series": series, "bucket_seconds": bucket_seconds},
    )
    run = TableRun(table=table, outcomes=[outcome])
    volume_judge(runs=[run])
    token = uuid.uuid4()
    MonitoredTable.objects.filter(pk=table.pk).update(lease_token=token)
    results = results_record(
        connection=table.connection,
        token=token,
        runs=[run],
        connection_outcomes=[],
        started_at=at + timedelta(seconds=bucket_seconds, minutes=1),
        on_recorded=on_recorded,
    )
    return results[0]


# --- a replica database for discovery tests ---------------------------------------------------------------

DISCOVERY_DB = "discovery_shop"
# Tables built to mislead the timestamp choice, a table the reader may not read, and a second schema.
DISCOVERY_SCHEMA = """
CREATE TABLE public.events (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL, updated_at timestamptz);
CREATE INDEX ON public.events (created_at);
CREATE INDEX ON public.events (updated_at);
INSERT INTO public.events (created_at, updated_at)
    SELECT now() - make_interval(mins => 2000 - g), now() - make_interval(mins => (g * 7919) % 2000)
    FROM generate_series(1, 2000) g;
-- An updated_at that is not indexed, and a created_at of type text.
CREATE TABLE public.profiles (id int PRIMARY KEY, created_at text, updated_at timestamptz);
INSERT INTO public.profiles SELECT g, 'yesterday', now() - make_interval(mins => g) FROM generate_series(1, 200) g;
-- A created_at of type text that is indexed, beside a real load time.
CREATE TABLE public.imports (id int, created_at text, loaded_at timestamptz NOT NULL);
CREATE INDEX ON public.imports (created_at);
CREATE INDEX ON public.imports (loaded_at);
INSERT INTO public.imports SELECT g, 'x', now() - make_interval(mins => 500 - g) FROM generate_series(1, 500) g;
-- A date-only column.
CREATE TABLE public.daily_totals (day date NOT NULL, total numeric);
CREATE INDEX ON public.daily_totals (day);
INSERT INTO public.daily_totals SELECT current_date - g, g FROM generate_series(0, 99) g ORDER BY 1;
-- No time column at all.
CREATE TABLE public.lookup_codes (code text PRIMARY KEY, label text);
INSERT INTO public.lookup_codes SELECT 'c' || g, 'label' FROM generate_series(1, 20) g;
-- Only an indexed update time: the fallback.
CREATE TABLE public.accounts (id int PRIMARY KEY, modified_at timestamptz NOT NULL, expires_at timestamptz);
CREATE INDEX ON public.accounts (modified_at);
CREATE INDEX ON public.accounts (expires_at);
INSERT INTO public.accounts SELECT g, now() - make_interval(mins => (g * 31) % 300), now() + interval '30 days'
    FROM generate_series(1, 300) g;
-- Not readable by the reader.
CREATE TABLE public.payroll (id int, paid_at timestamptz);
CREATE INDEX ON public.payroll (paid_at);
-- A view and a partition: never discovered, but they exist (a table registered by hand may be either).
CREATE VIEW public.recent_events AS SELECT * FROM public.events;
CREATE TABLE public.clicks (at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE public.clicks_2026 PARTITION OF public.clicks FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE SCHEMA staging;
CREATE TABLE staging.raw_events (id int, received_at timestamptz NOT NULL);
CREATE INDEX ON staging.raw_events (received_at);
INSERT INTO staging.raw_events SELECT g, now() - make_interval(secs => 1000 - g) FROM generate_series(1, 1000) g;
"""
DISCOVERY_GRANTS = """
GRANT USAGE ON SCHEMA staging TO {reader};
GRANT SELECT ON public.events, public.profiles, public.imports, public.daily_totals, public.lookup_codes,
    public.accounts, staging.raw_events, public.recent_events, public.clicks, public.clicks_2026 TO {reader};
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {reader};
"""
DISCOVERY_EXPECTED = {
    # table: the timestamp column discovery should choose
    "public.events": "created_at",
    "public.profiles": "",
    "public.imports": "loaded_at",
    "public.daily_totals": "day",
    "public.lookup_codes": "",
    "public.accounts": "modified_at",
    "staging.raw_events": "received_at",
    "public.clicks": "",
}


def discovery_database_create(*, pair, reader: str) -> str:
    """Create (once per replica pair) the discovery test database on the primary, analyzed and replayed."""
    from psycopg import sql

    with pair.primary.connect() as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DISCOVERY_DB,)).fetchone()
        if exists:
            return DISCOVERY_DB
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DISCOVERY_DB)))
    with pair.primary.connect(DISCOVERY_DB) as conn:
        conn.execute(DISCOVERY_SCHEMA)
        conn.execute(sql.SQL(DISCOVERY_GRANTS).format(reader=sql.Identifier(reader)))
        conn.execute("ANALYZE")
    pair.wait_for_replay(timeout=30)
    return DISCOVERY_DB


def run_batch(*tables, on_recorded: ResultsHandler = results_ignore, sessions=None) -> list[CheckResult]:
    """Claim `tables` (due or not) and check them in one batch of their connection, as a runchecks worker does;
    `sessions`: a daemon's SessionKeeper (None: the batch's session is closed at its end, as with --once)."""
    claim = tables_claim_due(
        now=datetime.now(UTC), lease=timedelta(minutes=1), limit=100, force=True, table_ids=[t.id for t in tables]
    )
    assert {t.id for t in claim.tables} == {t.id for t in tables}
    return batch_run(
        connection=claim.tables[0].connection,
        claim=claim,
        tables=claim.tables,
        on_recorded=on_recorded,
        sessions=sessions,
    )


def statements_sent(connection) -> int:
    """Statements the connection's replica was sent, as its query allowance counted them."""
    return sum(QueryAllowance.objects.filter(connection=connection).values_list("queries_used", flat=True))
