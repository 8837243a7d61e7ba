from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from psycopg import sql

from connections.guardrails import QueryRunner


@dataclass
class Outcome:
    """What one check found; becomes a CheckResult row."""

    kind: str
    status: str
    observed_value: float | None = None
    expected_lower: float | None = None
    expected_upper: float | None = None
    message: str = ""
    queries_used: int = 0
    duration_ms: int = 0
    bucket_start: datetime | None = None
    details: dict = field(default_factory=dict)
    check_id: int | None = None
    is_anomaly: bool = False
    # Volume only: (bucket_start, value) points read from the table itself to seed the baseline.
    history: list[tuple[datetime, float]] = field(default_factory=list)


@dataclass
class CheckContext:
    """What a check may use: the guarded runner, the table, and the replica's notion of 'now'."""

    runner: QueryRunner
    table: object
    now: datetime
    data_as_of: datetime  # the replica's replay position in time: 'now' for a caught-up replica
    plan_costs: dict = field(default_factory=dict)
    update_times: list = field(default_factory=list)

    @property
    def relation(self) -> sql.Composable:
        return sql.Identifier(self.table.schema_name, self.table.table_name)


def fmt_number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"


def judge_bounds(value: float, *, low: float | None, high: float | None, what: str) -> tuple[str, str]:
    """Pass or fail `value` against optional static bounds, with a message."""
    if low is not None and value < low:
        return "fail", f"{what} {fmt_number(value)} is below the minimum {fmt_number(low)}"
    if high is not None and value > high:
        return "fail", f"{what} {fmt_number(value)} is above the maximum {fmt_number(high)}"
    return "pass", f"{what} {fmt_number(value)} is within bounds"
