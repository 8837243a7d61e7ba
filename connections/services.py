"""State changes of connections."""

from django.utils import timezone

from connections import replica
from connections.models import Connection


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
