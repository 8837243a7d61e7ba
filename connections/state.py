"""State changes of connections: every write to a connection's status, breaker, error streak, lag bookkeeping
and pause goes through a function here, so the API, the admin, the checks and the alerts cannot drift.

- Circuit breaker: after `BREAKER_THRESHOLD` consecutive failed contacts a connection is not tried again
  for 30 s, doubling on each further failure up to 30 minutes.
- Error streak: how many batches in a row had checks that could not run (the alerts' connection_error rule).
- Lag bookkeeping: one process per interval wins the replication-lag check of a connection.
- Pause and resume: `connection_activation_apply`, the one rule for the API and the admin.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import DatabaseError
from django.db import connection as pulse_db
from django.db.models import F, Q
from django.utils import timezone

from connections import replica, targets
from connections.models import Connection

logger = logging.getLogger(__name__)

BREAKER_THRESHOLD = 3
BREAKER_BASE_BACKOFF = timedelta(seconds=30)
BREAKER_MAX_BACKOFF = timedelta(minutes=30)

# The fields that say which server, as whom and how securely: the stored password only ever goes to the
# server it was given for, so changing any of them needs the password again.
TARGET_FIELDS = ("host", "port", "database", "username", "sslmode")
PASSWORD_FOLLOWS_TARGET = (
    "give the password again when host, port, database, username or sslmode change: "
    "the stored password is only ever sent to the server it was given for"
)
REQUIRE_REPLICA_NEEDS_SUPERUSER = (
    "only a superuser may turn require_replica off (or change the server of a connection that has it off)"
)
TEAM_MOVE_REFUSED = "A connection cannot move to another team."


def connection_change_problems(*, connection: Connection | None, changes: dict, password_given: bool, user) -> dict:
    """What forbids creating (`connection` None) or changing a connection with `changes`, by field name.

    One rule set for the API and the admin: no move to another team, the target policy, plain database and
    user names, require_replica=false only by a superuser, and a stored password never sent to a new target.
    """

    def value(field):
        if field in changes:
            return changes[field]
        if connection is not None:
            return getattr(connection, field)
        return Connection._meta.get_field(field).get_default()

    def changed(field) -> bool:
        return connection is None or (field in changes and changes[field] != getattr(connection, field))

    problems = {}
    if connection is not None and changes.get("team") is not None and changes["team"].pk != connection.team_id:
        problems["team"] = TEAM_MOVE_REFUSED
    for field in ("database", "username"):
        if changed(field) and value(field) is not None:
            problem = replica.validate_identifier(value(field), what=field) or targets.name_problem(
                value(field), what=field
            )
            if problem:
                problems[field] = problem
    # A stored target is vetted again at every connect; here only a new one (pausing never needs DNS).
    if (changed("host") or changed("port")) and value("host") is not None and value("port") is not None:
        problem = targets.target_problem(host=value("host"), port=value("port"))
        if problem:
            problems["host"] = problem
    moves = any(changed(field) for field in TARGET_FIELDS)
    if value("require_replica") is False and not user.is_superuser and (changed("require_replica") or moves):
        problems["require_replica"] = REQUIRE_REPLICA_NEEDS_SUPERUSER
    if connection is not None and connection.has_password and not password_given and moves:
        problems["password"] = PASSWORD_FOLLOWS_TARGET
    return problems


def connection_record_status(*, connection: Connection, status: str, error: str = "") -> None:
    """Store the outcome of the latest contact with a replica."""
    connection.status = status
    connection.last_error = error
    connection.last_checked_at = timezone.now()
    Connection.objects.filter(pk=connection.pk).update(
        status=status, last_error=error, last_checked_at=connection.last_checked_at
    )


def connection_test(*, connection: Connection) -> replica.ProbeResult:
    """Probe a stored connection now and record what was found."""
    try:
        conninfo = connection.conninfo()
    except ValueError as exc:
        result = replica.ProbeResult(ok=False, error=str(exc))
    else:
        result = replica.probe(
            conninfo=conninfo,
            statement_timeout_ms=connection.statement_timeout_ms,
            require_replica=connection.require_replica,
        )
    if result.ok:
        status = Connection.Status.OK
    elif result.in_recovery is False:
        status = Connection.Status.NOT_REPLICA
    else:
        status = Connection.Status.ERROR
    connection_record_status(connection=connection, status=status, error=result.error or "")
    return result


def connection_activation_apply(*, connection: Connection, probed: bool) -> None:
    """Set the status that goes with `is_active` on an unsaved connection; the caller saves it.

    The one pause/resume rule of the API and the admin: a deactivated connection is paused; an active one
    that was just probed (ok) or was paused (unknown until its next contact) starts afresh, with no error
    and the breaker closed.
    """
    if not connection.is_active:
        connection.status = Connection.Status.PAUSED
    elif probed or connection.status == Connection.Status.PAUSED:
        connection.status = Connection.Status.OK if probed else Connection.Status.UNKNOWN
        connection.last_error = ""
        connection.consecutive_failures = 0
        connection.backoff_until = None


# --- circuit breaker --------------------------------------------------------------------------------------


def backoff_for(failures: int) -> timedelta | None:
    """How long to leave a connection alone after `failures` consecutive failed contacts."""
    if failures < BREAKER_THRESHOLD:
        return None
    # 2**32 times the base is far past any maximum; a larger power would overflow timedelta after a long outage.
    doublings = min(failures - BREAKER_THRESHOLD, 32)
    return min(BREAKER_MAX_BACKOFF, BREAKER_BASE_BACKOFF * 2**doublings)


def contact_failed(*, connection: Connection, status: str, error: str, now: datetime) -> None:
    """Record a failed contact; after enough of them, open the breaker."""
    Connection.objects.filter(pk=connection.pk).update(consecutive_failures=F("consecutive_failures") + 1)
    failures = Connection.objects.values_list("consecutive_failures", flat=True).get(pk=connection.pk)
    backoff = backoff_for(failures)
    Connection.objects.filter(pk=connection.pk).update(
        status=status, last_error=error, last_checked_at=now, backoff_until=now + backoff if backoff else None
    )


CONTACT_REFRESH = timedelta(seconds=10)

# Written only where the row does not already say "fine, and checked within CONTACT_REFRESH of `now`": when
# another batch wrote it meanwhile, nothing matches and nothing is locked, so batches of one connection do not
# queue on its row (each batch's object was read at its claim, often before the other batch's write).
_CONTACT_SUCCEEDED = """
UPDATE connections_connection
SET status = %(ok)s, last_error = '', last_checked_at = %(now)s, consecutive_failures = 0, backoff_until = NULL
WHERE id = %(id)s AND NOT (
    status = %(ok)s AND consecutive_failures = 0 AND backoff_until IS NULL AND last_checked_at IS NOT NULL
    AND last_checked_at > %(now)s - %(refresh)s
)
"""


def contact_succeeded(*, connection: Connection, now: datetime) -> None:
    """Record a good contact; a connection already known to be fine is written at most every 10 s."""
    healthy = (
        connection.status == Connection.Status.OK
        and not connection.consecutive_failures
        and connection.backoff_until is None
        and connection.last_checked_at is not None
        and now - connection.last_checked_at < CONTACT_REFRESH
    )
    if healthy:
        return
    with pulse_db.cursor() as cursor:
        cursor.execute(
            _CONTACT_SUCCEEDED,
            {"ok": Connection.Status.OK.value, "now": now, "id": connection.pk, "refresh": CONTACT_REFRESH},
        )
    connection.status, connection.last_error, connection.last_checked_at = Connection.Status.OK, "", now
    connection.consecutive_failures, connection.backoff_until = 0, None


# --- error streak (batches in a row with checks that could not run) ---------------------------------------

_RESET_ERROR_STREAK = "UPDATE connections_connection SET error_streak = 0 WHERE id = %s AND error_streak > 0"


def connection_error_streak_reset(*, connection: Connection) -> None:
    """End the streak: a batch whose checks ran. Called for every batch, so one plain UPDATE that writes only
    when there is a streak to end."""
    with pulse_db.cursor() as cursor:
        cursor.execute(_RESET_ERROR_STREAK, [connection.pk])
    connection.error_streak = 0


def connection_error_streak_bump(*, connection: Connection) -> int:
    """One more batch whose checks could not run; returns the streak now stored."""
    Connection.objects.filter(pk=connection.pk).update(error_streak=F("error_streak") + 1)
    connection.error_streak = Connection.objects.values_list("error_streak", flat=True).get(pk=connection.pk)
    return connection.error_streak


# --- replication-lag bookkeeping --------------------------------------------------------------------------


def connection_lag_check_claim(*, connection: Connection, now: datetime, interval: timedelta) -> bool:
    """Claim this interval's replication-lag check of a connection: one process wins (conditional UPDATE).

    With Pulse's database unreachable nobody can win it: the lag check waits for a later batch."""
    if connection.lag_checked_at is not None and now - connection.lag_checked_at < interval:
        return False  # known to be taken already, without asking the database
    try:
        return bool(
            Connection.objects.filter(pk=connection.pk)
            .filter(Q(lag_checked_at__isnull=True) | Q(lag_checked_at__lte=now - interval))
            .update(lag_checked_at=now)
        )
    except DatabaseError:
        logger.warning("Pulse's database unreachable: the replication-lag check of connection %s waits", connection.pk)
        return False
