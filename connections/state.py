"""State changes of connections."""

from django.utils import timezone

from connections import replica, targets
from connections.models import Connection

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


def connection_change_problems(*, connection: Connection | None, changes: dict, password_given: bool, user) -> dict:
    """What forbids creating (`connection` None) or changing a connection with `changes`, by field name.

    One rule set for the API and the admin: the target policy, plain database and user names,
    require_replica=false only by a superuser, and a stored password never sent to a new target.
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
