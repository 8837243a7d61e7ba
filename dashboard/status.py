"""What the pages show: the state of connections and tables as people read it, scoped to the user's teams.

Read-only: every change goes through the apps' service functions (see dashboard/views.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection as pulse_db
from django.db.models import OuterRef, Q, Subquery
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from alerts.models import Alert
from common.tenancy import scope_to_user
from connections.guardrails.share import share_use
from connections.guardrails.slots import SLOT_LOCK_NAMESPACE
from connections.models import Connection, QueryAllowance
from monitors.checks import format_duration, format_value
from monitors.models import CheckKind, CheckResult, MonitoredTable

UNRESOLVED = (Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED)
SPARKLINE_HOURS = 24

# Table states, worst first: the overview sorts by this order.
TABLE_STATES = ["failing", "error", "snoozed", "learning", "unknown", "healthy", "paused"]
TABLE_STATE_LABELS = {
    "failing": "Failing",
    "error": "Error",
    "snoozed": "Snoozed",
    "learning": "Learning",
    "unknown": "Not checked yet",
    "healthy": "Healthy",
    "paused": "Paused",
}
CONNECTION_STATE_LABELS = {
    "unreachable": "Unreachable",
    "backing_off": "Backing off",
    "lagging": "Lagging",
    "unknown": "Not checked yet",
    "healthy": "Healthy",
    "paused": "Paused",
}


def teams_tables(user):
    return scope_to_user(MonitoredTable.objects.select_related("connection"), user=user, team_path="connection__team")


def teams_connections(user):
    return scope_to_user(Connection.objects.all(), user=user, team_path="team")


def teams_alerts(user):
    return scope_to_user(Alert.objects.select_related("connection", "table"), user=user, team_path="connection__team")


def table_state(*, status: str, snoozed: bool) -> str:
    """A table's state for people: its status, or `snoozed` while it fails with its alerts snoozed."""
    if status == MonitoredTable.Status.FAILING and snoozed:
        return "snoozed"
    return status


def connection_state(*, connection: Connection, lagging: bool, now: datetime) -> str:
    """paused, unreachable (error or not a replica), backing off (breaker open), lagging, healthy or unknown."""
    if not connection.is_active:
        return "paused"
    if connection.backoff_until and connection.backoff_until > now:
        return "backing_off"
    if connection.status in (Connection.Status.ERROR, Connection.Status.NOT_REPLICA):
        return "unreachable"
    if lagging:
        return "lagging"
    if connection.status == Connection.Status.UNKNOWN:
        return "unknown"
    return "healthy"


@dataclass
class AlertCounts:
    open: int = 0
    acknowledged: int = 0
    snoozed: int = 0

    @property
    def text(self) -> str:
        parts = [
            f"{n} {word}"
            for n, word in ((self.open, "open"), (self.acknowledged, "acknowledged"), (self.snoozed, "snoozed"))
            if n
        ]
        return ", ".join(parts) if parts else "—"


@dataclass
class TableRow:
    pk: int
    schema_name: str
    table_name: str
    connection_name: str
    state: str
    alerts: AlertCounts
    newest_age: float | None

    @property
    def qualified_name(self) -> str:
        return f"{self.schema_name}.{self.table_name}"

    @property
    def state_label(self) -> str:
        return TABLE_STATE_LABELS.get(self.state, self.state)

    @property
    def age_text(self) -> str:
        return "—" if self.newest_age is None else format_duration(self.newest_age)


def table_rows_html(rows: list[TableRow], *, tables_url: str) -> SafeString:
    """The overview's table rows. Built here rather than in the template: a thousand rows render in a few
    milliseconds instead of a hundred (docs/benchmarks.md)."""
    html = []
    for row in rows:
        pk = row.pk
        html.append(
            f'<tr class="row state-{row.state}" data-table="{pk}">'
            f'<td><a href="{tables_url}{pk}/"><strong>{escape(row.table_name)}</strong></a> '
            f'<span class="muted small">{escape(row.schema_name)}</span></td>'
            f'<td><span class="pill"><span class="label">{row.state_label}</span></span></td>'
            f'<td class="muted">{escape(row.connection_name)}</td>'
            f'<td class="num">{row.age_text}</td>'
            f'<td class="alerts-count">{row.alerts.text}</td>'
            f'<td><img class="spark" src="{tables_url}{pk}/sparkline.svg" width="120" height="26" loading="lazy" '
            f'alt=""></td></tr>'
        )
    return mark_safe("".join(html))  # noqa: S308 - names are escaped; the rest are Pulse's own words and numbers


@dataclass
class ConnectionRow:
    connection: Connection
    state: str
    lag: float | None

    @property
    def state_label(self) -> str:
        return CONNECTION_STATE_LABELS.get(self.state, self.state)

    @property
    def lag_text(self) -> str:
        return "—" if self.lag is None else format_duration(self.lag)


def _alert_counts(table_ids, *, now) -> dict[int, AlertCounts]:
    counts: dict[int, AlertCounts] = defaultdict(AlertCounts)
    rows = Alert.objects.filter(table_id__in=table_ids, status__in=UNRESOLVED).values_list(
        "table_id", "status", "snoozed_until"
    )
    for table_id, status, snoozed_until in rows:
        entry = counts[table_id]
        if snoozed_until and snoozed_until > now:
            entry.snoozed += 1
        elif status == Alert.Status.ACKNOWLEDGED:
            entry.acknowledged += 1
        else:
            entry.open += 1
    return counts


def connection_rows(connections, *, now: datetime) -> list[ConnectionRow]:
    """Each connection with its state and latest replication lag."""
    latest_lag = CheckResult.objects.filter(
        connection=OuterRef("pk"), table__isnull=True, kind=CheckKind.REPLICATION_LAG
    ).order_by("-started_at")
    annotated = connections.annotate(
        lag_value=Subquery(latest_lag.values("observed_value")[:1]),
        lag_status=Subquery(latest_lag.values("status")[:1]),
    )
    return [
        ConnectionRow(
            connection=c,
            state=connection_state(connection=c, lagging=c.lag_status == CheckResult.Status.FAIL, now=now),
            lag=c.lag_value,
        )
        for c in annotated
    ]


def sparklines(table_ids, *, now: datetime) -> dict[int, list]:
    """The last SPARKLINE_HOURS hourly volume values of each table (latest run per bucket; None where none)."""
    since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=SPARKLINE_HOURS)
    if not table_ids:
        return {}
    with pulse_db.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT ON (table_id, bucket_start) table_id, bucket_start, observed_value"
            " FROM monitors_checkresult"
            " WHERE kind = 'volume' AND bucket_start IS NOT NULL AND bucket_start >= %s AND table_id = ANY(%s)"
            " ORDER BY table_id, bucket_start, started_at DESC, id DESC",
            [since, list(table_ids)],
        )
        rows = cursor.fetchall()
    series: dict[int, list] = defaultdict(lambda: [None] * SPARKLINE_HOURS)
    for table_id, bucket_start, value in rows:
        index = int((bucket_start - since).total_seconds() // 3600)
        if 0 <= index < SPARKLINE_HOURS:
            series[table_id][index] = value
    return series


@dataclass
class Overview:
    connections: list[ConnectionRow]
    tables: list[TableRow]

    @property
    def failing(self) -> int:
        return sum(1 for row in self.tables if row.state == "failing")

    @property
    def by_state(self) -> list[tuple[str, str, int]]:
        """(state, label, number of tables) of each state that has tables, worst first."""
        counts: dict[str, int] = defaultdict(int)
        for row in self.tables:
            counts[row.state] += 1
        return [(state, TABLE_STATE_LABELS[state], counts[state]) for state in TABLE_STATES if counts.get(state)]


def overview(*, user, now: datetime, connection_id: int | None = None, state: str = "", name: str = "") -> Overview:
    """Connections and tables of the user's teams, worst first, filtered by connection, state and name."""
    connections = connection_rows(teams_connections(user), now=now)
    tables = teams_tables(user)
    if connection_id is not None:
        tables = tables.filter(connection_id=connection_id)
    if name:
        tables = tables.filter(Q(table_name__icontains=name) | Q(schema_name__icontains=name))
    # Ordered by the index alone (result_table_kind_latest): one index entry and one row per table, no sort.
    newest = CheckResult.objects.filter(table=OuterRef("pk"), kind=CheckKind.FRESHNESS).order_by("-started_at")
    tables = list(
        tables.annotate(newest_row=Subquery(newest.values("details__latest")[:1])).values_list(
            "id", "schema_name", "table_name", "connection__name", "status", "newest_row"
        )
    )
    counts = _alert_counts([t[0] for t in tables], now=now)
    rows = []
    for pk, schema_name, table_name, connection_name, table_status, newest_row in tables:
        alert_counts = counts.get(pk, AlertCounts())
        row_state = table_state(status=table_status, snoozed=alert_counts.snoozed > 0 and not alert_counts.open)
        if state and row_state != state:
            continue
        newest_age = None
        if newest_row:
            newest_age = max(0.0, (now - datetime.fromisoformat(newest_row)).total_seconds())
        rows.append(TableRow(pk, schema_name, table_name, connection_name, row_state, alert_counts, newest_age))
    rank = {name: index for index, name in enumerate(TABLE_STATES)}
    rows.sort(key=lambda r: (rank.get(r.state, len(rank)), r.connection_name, r.schema_name, r.table_name))
    return Overview(connections=connections, tables=rows)


def live(*, user, now: datetime) -> dict:
    """The small state the pages poll: each table's and connection's state and the unresolved alerts."""
    tables = list(teams_tables(user).values_list("id", "status"))
    counts = _alert_counts([pk for pk, _ in tables], now=now)
    table_states = {}
    for pk, status in tables:
        alert_counts = counts.get(pk, AlertCounts())
        row_state = table_state(status=status, snoozed=alert_counts.snoozed > 0 and not alert_counts.open)
        table_states[str(pk)] = {
            "state": row_state,
            "label": TABLE_STATE_LABELS.get(row_state, row_state),
            "alerts": alert_counts.text,
        }
    connection_states = {
        str(row.connection.pk): {"state": row.state, "label": row.state_label, "lag": row.lag_text}
        for row in connection_rows(teams_connections(user), now=now)
    }
    alerts = {
        str(pk): {"state": alert_state(status=status, snoozed_until=snoozed_until, now=now)}
        for pk, status, snoozed_until in teams_alerts(user)
        .filter(status__in=UNRESOLVED)
        .values_list("id", "status", "snoozed_until")
    }
    failing = sum(1 for entry in table_states.values() if entry["state"] == "failing")
    return {"failing": failing, "tables": table_states, "connections": connection_states, "alerts": alerts}


def alert_state(*, status: str, snoozed_until: datetime | None, now: datetime) -> str:
    if status == Alert.Status.RESOLVED:
        return "resolved"
    if snoozed_until and snoozed_until > now:
        return "snoozed"
    return status


# --- guardrails ---------------------------------------------------------------------------------------------


@dataclass
class Gauge:
    """One guardrail as people read it: a name, a value, how full it is (0..1 or None) and a note."""

    name: str
    value: str
    fraction: float | None = None
    note: str = ""

    @property
    def percent(self) -> int:
        return round(min(max(self.fraction or 0.0, 0.0), 1.0) * 100)

    @property
    def level(self) -> str:
        if self.fraction is None:
            return "none"
        return "bad" if self.fraction >= 0.9 else "warn" if self.fraction >= 0.7 else "good"


def sessions_in_use(*, connection: Connection) -> int:
    """Session slots of the connection held right now by any runchecks process (advisory locks, slots.py)."""
    first = connection.pk * 64
    with pulse_db.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = %s"
            " AND objid >= %s AND objid < %s AND objsubid = 1",
            [SLOT_LOCK_NAMESPACE, first, first + connection.max_concurrent_queries],
        )
        return cursor.fetchone()[0]


def guardrail_gauges(*, connection: Connection, now: datetime) -> list[Gauge]:
    """The connection's guardrails: replica time share, query budget, sessions, rate, cost limit and the breaker.

    A new guardrail shows up on the connection page by adding its Gauge here.
    """
    allowance = QueryAllowance.objects.filter(connection=connection).first()
    used = 0
    if allowance and allowance.window_start > now - timedelta(hours=1):
        used = allowance.queries_used
    budget = connection.max_queries_per_hour
    sessions = sessions_in_use(connection=connection)
    share = share_use(connection=connection, allowance=allowance, now=now)
    gauges = [
        Gauge(
            "Replica time share (last minute)",
            f"{share.now_percent:.1f}% of {share.limit_percent:g}%",
            share.now_percent / share.limit_percent,
            note=f"{share.this_hour_seconds:g} s of replica time this hour ({share.this_hour_percent:.1f}%); "
            f"{max(share.available_seconds, 0):g} s of burst available",
        ),
        Gauge("Query budget (this hour)", f"{used:,} of {budget:,}", used / budget),
        Gauge(
            "Sessions in use",
            f"{sessions} of {connection.max_concurrent_queries}",
            sessions / connection.max_concurrent_queries,
        ),
        Gauge("Rate limit", f"{connection.max_queries_per_second:,g} queries/s"),
        Gauge("Query cost limit", f"{connection.max_query_cost:,.0f}", note="planner estimate (EXPLAIN)"),
        Gauge(
            "Statement timeout",
            format_duration(connection.statement_timeout_ms / 1000)
            if connection.statement_timeout_ms >= 1000
            else f"{connection.statement_timeout_ms} ms",
        ),
    ]
    if connection.backoff_until and connection.backoff_until > now:
        breaker = Gauge(
            "Circuit breaker",
            "open: backing off",
            1.0,
            note=f"{connection.consecutive_failures} failed contacts in a row; next try in "
            f"{format_duration((connection.backoff_until - now).total_seconds())}",
        )
    elif connection.consecutive_failures:
        breaker = Gauge(
            "Circuit breaker", "closed", None, note=f"{connection.consecutive_failures} failed contacts in a row"
        )
    else:
        breaker = Gauge("Circuit breaker", "closed", None, note="no failed contacts")
    gauges.append(breaker)
    return gauges


def describe(kind: str, value: float | None) -> str:
    return "—" if value is None else format_value(kind, value)
