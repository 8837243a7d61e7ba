"""Check results after they are recorded: an operator's "this was expected", and retention.

Results live in a table partitioned by week of `started_at` (migration 0005): one partition per UTC week
(Monday to Monday), named `monitors_checkresult_wYYYYMMDD`, plus a DEFAULT partition for rows outside them.
`result_partitions_ensure` creates the coming weeks ahead (runchecks' housekeeping, at start and every six
hours); `results_prune` applies retention by detaching and dropping whole weeks, in constant time whatever
their size, and never keeps less than the baselines' training window.
"""

import logging
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from psycopg import sql

from monitors.anomalies import TRAINING_WINDOW
from monitors.models import CheckResult

logger = logging.getLogger(__name__)

PARENT = CheckResult._meta.db_table
DEFAULT_PARTITION = f"{PARENT}_default"
WEEKS_AHEAD = 4
# Retention is never shorter than the history the volume baselines train on.
MIN_RETENTION_DAYS = math.ceil(TRAINING_WINDOW / timedelta(days=1))
_WEEK_NAME = re.compile(rf"^{PARENT}_w(\d{{8}})$")
# Creating and dropping partitions take short but strong locks: wait this long at most, then try next time.
_LOCK_TIMEOUT = "5s"
_PARTITION_LOCK_KEY = 0x5075_6C73_6550  # pg_advisory_xact_lock key: one partition change at a time


def result_mark_expected(*, result: CheckResult) -> CheckResult:
    """An operator says this anomalous value was legitimate: it trains the baseline from now on."""
    same_value = CheckResult.objects.filter(pk=result.pk)
    if result.bucket_start is not None:
        same_value = CheckResult.objects.filter(table=result.table, kind=result.kind, bucket_start=result.bucket_start)
    same_value.update(marked_expected=True)
    result.marked_expected = True
    return result


def week_start(at: datetime) -> datetime:
    """Monday 00:00 UTC of the week holding `at`: the lower bound of its partition."""
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def partition_name(lower: datetime) -> str:
    return f"{PARENT}_w{lower:%Y%m%d}"


def result_partitions() -> dict[str, datetime]:
    """The weekly partitions that exist: {name: lower bound}, oldest first (the default partition aside)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [PARENT],
        )
        names = [name for (name,) in cursor.fetchall()]
    weeks = {}
    for name in names:
        match = _WEEK_NAME.match(name)
        if match:
            weeks[name] = datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC)
    return dict(sorted(weeks.items(), key=lambda item: item[1]))


def result_partitions_ensure(*, now: datetime, weeks_ahead: int = WEEKS_AHEAD) -> list[str]:
    """Create the partitions of this week and the `weeks_ahead` next ones that are missing; returns their names.

    Rows of those weeks already in the default partition move into the new partition in the same
    transaction, so no result is lost or duplicated, and inserts never wait on more than the short attach."""
    existing = result_partitions()
    first = week_start(now)
    created = []
    for offset in range(weeks_ahead + 1):
        lower = first + timedelta(weeks=offset)
        if partition_name(lower) not in existing and _partition_create(lower=lower):
            created.append(partition_name(lower))
    return created


def _columns(cursor) -> sql.Composable:
    cursor.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum",
        [PARENT],
    )
    return sql.SQL(", ").join(sql.Identifier(name) for (name,) in cursor.fetchall())


def _execute(cursor, statement: sql.Composable, params=None) -> None:
    cursor.execute(statement.as_string(cursor.connection), params)


def _partition_create(*, lower: datetime) -> bool:
    upper = lower + timedelta(weeks=1)
    name = partition_name(lower)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PARTITION_LOCK_KEY])
        if name in result_partitions():  # another runchecks process made it meanwhile
            return False
        cursor.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
        table, parent, default = sql.Identifier(name), sql.Identifier(PARENT), sql.Identifier(DEFAULT_PARTITION)
        columns = _columns(cursor)
        _execute(
            cursor,
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(table, parent),
        )
        _execute(
            cursor,
            sql.SQL(
                "WITH moved AS (DELETE FROM {default} WHERE started_at >= %s AND started_at < %s RETURNING {columns}) "
                "INSERT INTO {table} ({columns}) SELECT {columns} FROM moved"
            ).format(default=default, table=table, columns=columns),
            [lower, upper],
        )
        _execute(
            cursor,
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                parent, table, sql.Literal(lower), sql.Literal(upper)
            ),
        )
    logger.info("created results partition %s", name)
    return True


@dataclass
class Pruned:
    """What a retention pass removed: whole weekly partitions, and old rows of the default partition."""

    retention_days: int
    partitions: list[str] = field(default_factory=list)
    default_rows: int = 0


def retention_in_force(requested: int | None = None) -> int:
    """The retention in force: PULSE_RESULT_RETENTION_DAYS (or `requested`), never below the training window."""
    days = settings.PULSE_RESULT_RETENTION_DAYS if requested is None else requested
    if days < MIN_RETENTION_DAYS:
        logger.warning(
            "result retention of %s days is shorter than the baselines' training window: keeping %s days",
            days,
            MIN_RETENTION_DAYS,
        )
    return max(days, MIN_RETENTION_DAYS)


def results_prune(*, now: datetime, retention_days: int | None = None) -> Pruned:
    """Drop every weekly partition wholly older than the retention period (detach, then drop: constant time).

    A week is dropped only once its last moment is past the cutoff, so results are always kept at least
    the retention period (up to a week longer). Rows in the default partition older than the cutoff are
    deleted (it holds only rows outside the weekly partitions, normally none)."""
    days = retention_in_force(retention_days)
    cutoff = now - timedelta(days=days)
    pruned = Pruned(retention_days=days)
    for name, lower in result_partitions().items():
        if lower + timedelta(weeks=1) > cutoff:
            break
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
            # Deferred foreign-key checks of rows written earlier in the same transaction must run before the
            # partition can be dropped (only inside an outer transaction; runchecks prunes in autocommit).
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            _execute(
                cursor,
                sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(sql.Identifier(PARENT), sql.Identifier(name)),
            )
            _execute(cursor, sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
        pruned.partitions.append(name)
        logger.info("dropped results partition %s (older than %s days)", name, days)
    with connection.cursor() as cursor:
        _execute(
            cursor,
            sql.SQL("DELETE FROM {} WHERE started_at < %s").format(sql.Identifier(DEFAULT_PARTITION)),
            [cutoff],
        )
        pruned.default_rows = cursor.rowcount
    return pruned
