"""Replication lag: how far the replica's data is behind, read once per batch with the replica's state.

A connection-level check (its results have no table): every batch reads the replica's state first, and at
most one batch per connection and LAG_CHECK_INTERVAL records the lag against the connection's
`replication_lag_threshold_seconds` (the claim is `connections.state.connection_lag_check_claim`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg import sql

from connections.models import Connection
from monitors.checks.base import Outcome, Status, format_duration

KIND = "replication_lag"
LABEL = "Replication lag"
SCOPE = "connection"
CONFIGURABLE = False
QUERIES = 1
LAG_CHECK_INTERVAL = timedelta(seconds=30)
STATE_QUERY = sql.SQL(
    "SELECT pg_is_in_recovery(), clock_timestamp(), pg_last_xact_replay_timestamp(),"
    " pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn(),"
    " pg_catalog.pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())"
)


def format_value(value: float) -> str:
    """The lag in seconds."""
    return format_duration(value)


@dataclass(frozen=True)
class ReplicaState:
    in_recovery: bool
    now: datetime
    replay_timestamp: datetime | None
    caught_up: bool
    lag_bytes: float

    @classmethod
    def from_row(cls, row) -> ReplicaState:
        """The state from one row of STATE_QUERY."""
        in_recovery, now, replayed_at, caught_up, lag_bytes = row
        return cls(
            in_recovery=in_recovery,
            now=now,
            replay_timestamp=replayed_at,
            caught_up=caught_up is not False,
            lag_bytes=float(lag_bytes or 0),
        )

    @property
    def data_as_of(self) -> datetime:
        """The point in time the replica's data reflects: now when caught up, else the last replayed commit."""
        if not self.in_recovery or self.caught_up or self.replay_timestamp is None:
            return self.now
        return min(self.now, self.replay_timestamp)

    @property
    def lag_seconds(self) -> float:
        return max(0.0, (self.now - self.data_as_of).total_seconds())


def outcome(*, connection: Connection, state: ReplicaState) -> Outcome:
    """The lag of `state` judged against the connection's threshold."""
    threshold = connection.replication_lag_threshold_seconds
    lag = round(state.lag_seconds, 3)
    details = {"lag_bytes": state.lag_bytes, "caught_up": state.caught_up}
    if lag > threshold:
        return Outcome(
            kind=KIND,
            status=Status.FAIL,
            observed_value=lag,
            expected_upper=threshold,
            details=details,
            message=f"replica is {lag:,.0f} s behind (limit {threshold} s); {state.lag_bytes:,.0f} bytes to replay",
        )
    return Outcome(
        kind=KIND,
        status=Status.PASS,
        observed_value=lag,
        expected_upper=threshold,
        details=details,
        message="replica is caught up" if state.caught_up else f"replica is {lag:,.1f} s behind",
    )
