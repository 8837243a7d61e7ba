"""The quick-start demo: a throwaway primary + hot standby with a small `shop` database, registered in Pulse.

Four tables: `orders` and `page_views` get 14 days of day/night-seasonal history and live traffic,
`customers` grows now and then, and `inventory_snapshots` stopped being written two hours ago: it is the
table going stale. The standby is registered as connection "demo-replica" of team "demo", and its tables are
discovered (one catalog query; timestamp columns chosen by discovery), not registered one by one.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from django.contrib.auth.models import Group
from django.db import connection as pulse_db
from django.db import transaction
from psycopg import sql

from alerts.intake import results_intake
from connections.models import Connection
from monitors.discovery import discovery_run
from monitors.models import Check, DiscoveryPolicy, MonitoredTable
from pulse_project.pgcluster import ReplicaPair, Server

DATABASE = "shop"
ROLE = "pulse_demo"
CONNECTION_NAME = "demo-replica"
TEAM = "demo"
HISTORY = timedelta(days=14)
STALE_FOR = timedelta(hours=2)
SKUS = 60
CUSTOMERS = 2000
# Peak rows per hour (mid-afternoon UTC on a weekday); the night is about 8 times quieter.
PEAK_PER_HOUR = {"orders": 600, "page_views": 1800, "customers": 12}
# Page views arrive in visits of a few pages each.
PAGES_PER_VISIT = (1, 6)
PATHS = ["/", "/", "/products", "/products", "/products/42", "/products/7", "/cart", "/checkout", "/search", "/help"]
STATUSES = ["paid", "paid", "paid", "paid", "shipped", "shipped", "delivered", "refunded"]
FIRST_NAMES = ["Ada", "Ben", "Chloé", "Dmitri", "Ema", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Lars"]
LAST_NAMES = ["Ng", "Okafor", "Berg", "Silva", "Kowalski", "Haddad", "Murphy", "Sato", "Rossi", "Meyer", "Diaz"]
# The demo's tables are discovered (monitors/discovery.py): timestamp columns chosen by discovery, with the
# policy's defaults; then each table newly added gets the demo's tuning below (later edits in Pulse are kept).
DISCOVERY_DEFAULTS = {
    "is_enabled": True,
    "schemas": ["public"],
    "check_interval_seconds": 30,
    "freshness_threshold_minutes": 60,
    "failure_threshold": 2,
    "first_checks_per_minute": 60,
}
TABLES = {
    "orders": {"freshness_threshold_minutes": 15},
    "page_views": {"freshness_threshold_minutes": 15},
    "customers": {"check_interval_seconds": 60},
    "inventory_snapshots": {"failure_threshold": 1},
}

SCHEMA = """
CREATE TABLE customers (id bigserial, name text NOT NULL, email text NOT NULL, signup_date date NOT NULL);
CREATE TABLE orders (
    id bigserial, customer_id bigint NOT NULL, amount numeric(10, 2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), status text NOT NULL DEFAULT 'paid'
);
CREATE TABLE page_views (id bigserial, path text NOT NULL, viewed_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE inventory_snapshots (id bigserial, sku text NOT NULL, counted_at timestamptz NOT NULL);
"""
# Keys and indexes are built after the bulk load: faster than maintaining them row by row.
INDEXES = """
ALTER TABLE customers ADD PRIMARY KEY (id);
ALTER TABLE orders ADD PRIMARY KEY (id);
ALTER TABLE page_views ADD PRIMARY KEY (id);
ALTER TABLE inventory_snapshots ADD PRIMARY KEY (id);
CREATE INDEX orders_created_at ON orders (created_at);
CREATE INDEX page_views_viewed_at ON page_views (viewed_at);
CREATE INDEX inventory_snapshots_counted_at ON inventory_snapshots (counted_at);
"""
_CUSTOMERS = """
INSERT INTO customers (name, email, signup_date)
SELECT * FROM unnest(%s::text[], %s::text[], %s::date[]) ORDER BY 3
"""
_ORDERS = """
INSERT INTO orders (customer_id, amount, created_at, status)
SELECT 1 + floor(random() * %(customers)s), round((8 + random() * random() * 240)::numeric, 2),
       h.start + random() * make_interval(secs => h.span),
       (%(statuses)s::text[])[1 + floor(random() * cardinality(%(statuses)s::text[]))::int]
FROM unnest(%(starts)s::timestamptz[], %(spans)s::float8[], %(counts)s::int[]) AS h(start, span, n),
     generate_series(1, h.n)
ORDER BY 3
"""
_PAGE_VIEWS = """
INSERT INTO page_views (path, viewed_at)
SELECT (%(paths)s::text[])[1 + floor(random() * cardinality(%(paths)s::text[]))::int],
       h.start + random() * make_interval(secs => h.span)
FROM unnest(%(starts)s::timestamptz[], %(spans)s::float8[], %(counts)s::int[]) AS h(start, span, n),
     generate_series(1, h.n)
ORDER BY 2
"""
# Every SKU counted hourly for 14 days, until the counting job stopped two hours ago.
_INVENTORY = """
INSERT INTO inventory_snapshots (sku, counted_at)
SELECT 'SKU-' || lpad(s::text, 4, '0'), now() - %(stale)s - make_interval(hours => k, secs => s)
FROM generate_series(0, %(hours)s - 1) k, generate_series(1, %(skus)s) s
ORDER BY 2
"""


@dataclass
class Registration:
    """The Pulse objects of the demo: its connection, monitored tables by name and the customers check."""

    connection: Connection
    tables: dict[str, MonitoredTable]
    check: Check


@dataclass
class Demo:
    """A running demo pair, whether its folder is a temporary one, and what was registered for it."""

    pair: ReplicaPair
    temporary: bool
    registration: Registration | None = None


def traffic_profile(*, at: datetime) -> float:
    """Share of the peak rate at `at`: lowest around 04:00 UTC, highest around 16:00, a bit lower at weekends."""
    hour = at.hour + at.minute / 60
    daily = 0.12 + 0.88 * ((1 - math.cos(2 * math.pi * (hour - 4) / 24)) / 2) ** 2
    return daily * (0.8 if at.weekday() >= 5 else 1.0)


def _poisson(*, rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method; means here are small)."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _history_hours(*, now: datetime, peak: float, rng: random.Random) -> dict[str, list]:
    """Per hour of the last 14 days: its start, covered seconds (the current hour is partial) and a row count."""
    first = now.replace(minute=0, second=0, microsecond=0) - HISTORY
    starts, spans, counts = [], [], []
    start = first
    while start < now:
        span = min(3600.0, (now - start).total_seconds())
        starts.append(start)
        spans.append(span)
        counts.append(max(0, round(rng.gauss(1, 0.08) * peak * traffic_profile(at=start) * span / 3600)))
        start += timedelta(hours=1)
    return {"starts": starts, "spans": spans, "counts": counts}


def _customers_history(*, now: datetime, rng: random.Random) -> list[list]:
    """Names, e-mail addresses and signup dates of the customers of the last two years."""
    names, emails, signups = [], [], []
    for number in range(1, CUSTOMERS + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        names.append(f"{first} {last}")
        emails.append(f"{first.lower()}.{last.lower()}{number}@example.com")
        signups.append((now - timedelta(days=rng.randint(0, 730))).date())
    return [names, emails, signups]


def demo_database_create(*, pair: ReplicaPair, rng: random.Random | None = None) -> str:
    """Create and fill the `shop` database and the read-only login role; return the role's password."""
    rng = rng or random.Random()
    password = secrets.token_urlsafe(18)
    now = datetime.now(UTC)
    with pair.primary.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(ROLE), sql.Literal(password)))
    with pair.primary.connect(DATABASE) as conn:
        conn.execute(SCHEMA)
        conn.execute(_CUSTOMERS, _customers_history(now=now, rng=rng))
        orders = _history_hours(now=now, peak=PEAK_PER_HOUR["orders"], rng=rng)
        conn.execute(_ORDERS, {**orders, "customers": CUSTOMERS, "statuses": STATUSES})
        page_views = _history_hours(now=now, peak=PEAK_PER_HOUR["page_views"], rng=rng)
        conn.execute(_PAGE_VIEWS, {**page_views, "paths": PATHS})
        hours = int((HISTORY - STALE_FOR).total_seconds() // 3600)
        conn.execute(_INVENTORY, {"stale": STALE_FOR, "hours": hours, "skus": SKUS})
        conn.execute(INDEXES)
        conn.execute(
            sql.SQL("GRANT SELECT ON {} TO {}").format(
                sql.SQL(", ").join(sql.Identifier(name) for name in TABLES), sql.Identifier(ROLE)
            )
        )
        conn.execute("ANALYZE")
    pair.wait_for_replay(timeout=60)
    return password


def demo_dir_reachable(*, path: Path) -> bool:
    """Whether the servers can use `path`: as root they run as the postgres OS user, who must reach its parent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return True
    probe = ["runuser", "-u", "postgres", "--", "test", "-x", str(path.parent)]
    return subprocess.run(probe, check=False, capture_output=True).returncode == 0


def demo_servers_kill(*, base_dir: Path) -> None:
    """Stop (immediate mode) servers still running in `base_dir`: left by a crashed demo or a failed start."""
    for name in ("standby", "primary"):
        data_dir = base_dir / name
        if (data_dir / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                Server(data_dir=data_dir, port=0, log_file=base_dir / f"{name}.log").stop(mode="immediate")


def demo_dir_clear(*, base_dir: Path) -> None:
    """Stop servers a previous demo left running in `base_dir` and remove the folder."""
    demo_servers_kill(base_dir=base_dir)
    shutil.rmtree(base_dir, ignore_errors=True)


def demo_register(*, port: int, password: str, host: str = "127.0.0.1", team_name: str = TEAM) -> Registration:
    """Create or update connection "demo-replica" (the standby), discover its tables and add the customers check."""
    with transaction.atomic():
        team, _ = Group.objects.get_or_create(name=team_name)
        connection = Connection.objects.select_for_update().filter(team=team, name=CONNECTION_NAME).first()
        connection = connection or Connection(team=team, name=CONNECTION_NAME)
        connection.host, connection.port, connection.database, connection.username = host, port, DATABASE, ROLE
        connection.sslmode = Connection.SSLMode.DISABLE
        connection.require_replica = connection.is_active = True
        # A new pair: forget the circuit breaker's view of the old one.
        connection.status, connection.last_error = Connection.Status.UNKNOWN, ""
        connection.consecutive_failures, connection.backoff_until = 0, None
        connection.set_password(password)
        connection.save()
        DiscoveryPolicy.objects.get_or_create(connection=connection, defaults=DISCOVERY_DEFAULTS)
    summary = discovery_run(connection=connection, apply=True, on_recorded=results_intake)
    with transaction.atomic():
        for added in summary["added"]:
            MonitoredTable.objects.filter(
                connection=connection, schema_name="public", table_name=added["table"]
            ).update(**TABLES.get(added["table"], {}))
        MonitoredTable.objects.filter(connection=connection).update(next_check_at=None)
        tables = {t.table_name: t for t in MonitoredTable.objects.filter(connection=connection, schema_name="public")}
        check, _ = Check.objects.get_or_create(
            table=tables["customers"], kind=Check.Kind.ROW_COUNT, defaults={"min_value": 1}
        )
    return Registration(connection=connection, tables=tables, check=check)


def demo_setup(*, base_dir: Path, report: Callable[[str], None] = print, rng: random.Random | None = None) -> Demo:
    """Start a fresh pair under `base_dir` (a temp dir if the postgres user cannot reach it), fill it, register it."""
    temporary = not demo_dir_reachable(path=base_dir)
    if temporary:
        unreachable = base_dir
        base_dir = Path(tempfile.mkdtemp(prefix="pulse-demo-pg-"))
        report(f"{unreachable} is not reachable by the postgres OS user: using {base_dir} instead")
    else:
        demo_dir_clear(base_dir=base_dir)
    started = time.monotonic()
    try:
        pair = ReplicaPair.create(base_dir=base_dir)
    except BaseException:
        demo_servers_kill(base_dir=base_dir)  # the primary may be up when the standby failed; logs stay
        raise
    demo = Demo(pair=pair, temporary=temporary)
    try:
        password = demo_database_create(pair=pair, rng=rng)
        demo.registration = registered = demo_register(port=pair.standby.port, password=password)
        tables = ", ".join(f"{name} {table.id}" for name, table in registered.tables.items())
        report(f"demo pair in {base_dir} ready in {time.monotonic() - started:.1f} s")
        report(f'registered connection "{CONNECTION_NAME}" (id {registered.connection.id}) in team "{TEAM}"')
        report(f"discovered tables (id): {tables}; row_count check on customers (id {registered.check.id})")
    except BaseException:
        demo_stop(demo=demo, report=report)
        raise
    return demo


def demo_traffic_tick(*, conn: psycopg.Connection, rng: random.Random, now: datetime | None = None) -> Counter:
    """Write one second of shop traffic to the primary: orders, visits of a few page views, now and then a customer."""
    share = traffic_profile(at=now or datetime.now(UTC))
    orders = _poisson(rng=rng, mean=PEAK_PER_HOUR["orders"] * share / 3600)
    visits = _poisson(rng=rng, mean=PEAK_PER_HOUR["page_views"] / (sum(PAGES_PER_VISIT) / 2) * share / 3600)
    views = sum(rng.randint(*PAGES_PER_VISIT) for _ in range(visits))
    customers = _poisson(rng=rng, mean=PEAK_PER_HOUR["customers"] * share / 3600)
    with conn.transaction():
        for _ in range(customers):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            conn.execute(
                "INSERT INTO customers (name, email, signup_date) VALUES (%s, %s, current_date)",
                (f"{first} {last}", f"{first.lower()}.{last.lower()}{rng.randint(1, 99999)}@example.com"),
            )
        if orders:
            conn.execute(
                "INSERT INTO orders (customer_id, amount, status)"
                " SELECT 1 + floor(random() * (SELECT max(id) FROM customers)),"
                " round((8 + random() * random() * 240)::numeric, 2), 'paid' FROM generate_series(1, %s)",
                (orders,),
            )
        if views:
            conn.execute(
                "INSERT INTO page_views (path) SELECT (%s::text[])[1 + floor(random() * %s)::int]"
                " FROM generate_series(1, %s)",
                (PATHS, len(PATHS), views),
            )
    return Counter(orders=orders, page_views=views, customers=customers)


def demo_traffic_run(
    *, demo: Demo, stop: threading.Event, report: Callable[[str], None] = print, rng: random.Random | None = None
) -> None:
    """Write traffic to the primary once a second until `stop` is set; report what was written every minute."""
    rng = rng or random.Random()
    minute = Counter()
    with demo.pair.primary.connect(DATABASE) as conn:
        next_tick = next_report = time.monotonic()
        while not stop.is_set():
            minute += demo_traffic_tick(conn=conn, rng=rng)
            next_tick += 1
            if next_tick >= next_report + 60:
                report(
                    f"traffic in the last minute: orders {minute['orders']}, page views {minute['page_views']}, "
                    f"new customers {minute['customers']}"
                )
                minute, next_report = Counter(), next_tick
            stop.wait(max(0.0, next_tick - time.monotonic()))


def demo_stop(*, demo: Demo, report: Callable[[str], None] = print) -> None:
    """Stop the pair cleanly (pg_ctl stop, fast mode); a temporary folder is removed, var/demo-pg is kept."""
    for server in (demo.pair.standby, demo.pair.primary):
        try:
            server.stop(mode="fast")
        except subprocess.CalledProcessError:
            with contextlib.suppress(subprocess.CalledProcessError):
                server.stop(mode="immediate")
    if demo.temporary:
        shutil.rmtree(demo.pair.base_dir, ignore_errors=True)
    report(f"stopped the demo pair (primary {demo.pair.primary.port}, standby {demo.pair.standby.port})")


def demo_ready_line(*, demo: Demo) -> str:
    """What the newcomer is told to expect: the two alerts of the table that stopped receiving rows."""
    stale = demo.registration.tables["inventory_snapshots"]
    return (
        f"demo replica on 127.0.0.1:{demo.pair.standby.port} (primary {demo.pair.primary.port}) — "
        "inventory_snapshots stopped receiving rows two hours ago: expect two alerts on it within a minute, "
        "freshness (its newest row is 2 h old) and volume (no rows in the last hour, a drop to zero; its message "
        f"says the table is also stale). Results: /api/tables/{stale.id}/results, alerts: /api/alerts"
    )


def demo_run(
    *,
    base_dir: Path,
    ready_file: Path,
    stop: threading.Event,
    traffic: bool = True,
    setup_only: bool = False,
    report: Callable[[str], None] = print,
) -> None:
    """The `demo` command: set up, announce readiness in `ready_file`, write traffic until `stop`, stop the pair."""
    ready_file.unlink(missing_ok=True)
    try:
        demo = demo_setup(base_dir=base_dir, report=report)
    finally:
        pulse_db.close()  # the traffic loop runs for hours: hold no idle connection to Pulse's database
    try:
        if setup_only:
            return
        line = demo_ready_line(demo=demo)
        report(line)
        ready_file.parent.mkdir(parents=True, exist_ok=True)
        ready_file.write_text(line + "\n")
        if traffic:
            demo_traffic_run(demo=demo, stop=stop, report=report)
        else:
            report("no traffic: every table goes stale")
            while not stop.wait(1):
                pass
    finally:
        ready_file.unlink(missing_ok=True)
        demo_stop(demo=demo, report=report)
