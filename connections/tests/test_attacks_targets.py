"""Adversarial suite: a tenant trying to reach what is not its replica through a connection.

Each test is one attack, tried as an ordinary team member against the real replica pair (and tiny fake servers
for what is not PostgreSQL). Every refusal must name the problem, save nothing and connect nowhere.
"""

import socket

import psycopg
import pytest
from django.conf import settings

from connections import replica, targets
from connections.models import Connection
from connections.tests.fake_servers import (
    FAKE_LISTENERS,
    GARBAGE_BANNER,
    HTTP_BANNER,
    SSH_BANNER,
    cleartext_password_listener,
    silent_listener,
)

pytestmark = pytest.mark.django_db

PULSE_DB_SPELLINGS = [
    "127.0.0.1",
    "localhost",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "127.1",
    "127.0.0.2",
    "::ffff:127.0.0.1",
    "::1",
    "0.0.0.0",  # noqa: S104 (a target, not a bind address)
    "0",
    "::",
]
ADMIN_FORM = {
    "name": "shop-replica",
    "sslmode": "disable",
    "require_replica": "on",
    "statement_timeout_ms": 5000,
    "max_queries_per_hour": 1000,
    "max_queries_per_second": 20,
    "max_query_cost": 1000000,
    "replica_time_share_percent": 5,
    "replica_time_burst_seconds": 3,
    "replication_lag_threshold_seconds": 300,
    "connection_error_threshold": 3,
    "max_concurrent_queries": 2,
    "is_active": "on",
    "tables-TOTAL_FORMS": 0,
    "tables-INITIAL_FORMS": 0,
}


def payload(replica_settings, **overrides):
    return {"name": "shop-replica", **replica_settings, **overrides}


def pulse_database_port() -> int:
    return int(settings.DATABASES["default"]["PORT"] or 5432)


@pytest.fixture
def no_local(settings):
    settings.PULSE_CONNECTION_ALLOW_LOCAL = False


def admin_form(connection_fields, team, **overrides):
    fields = {**ADMIN_FORM, "team": team.id, **connection_fields, **overrides}
    return {key: value for key, value in fields.items() if value is not None}


# --- Pulse's own database server ---------------------------------------------------------------------------------


def test_the_reported_reproduction_is_refused(owner_client):
    """POST host 127.0.0.1:5432, database pulse, user postgres, require_replica false (issue 8, finding 1)."""
    body = {
        "name": "mine",
        "host": "127.0.0.1",
        "port": pulse_database_port(),
        "database": "pulse",
        "username": "postgres",
        "password": "",
        "require_replica": False,
    }
    response = owner_client.post("/api/connections", body, format="json")
    assert response.status_code == 400
    assert "Pulse's own database server" in str(response.data["host"])
    assert "superuser" in str(response.data["require_replica"])
    assert not Connection.objects.exists()


@pytest.mark.parametrize("host", PULSE_DB_SPELLINGS)
@pytest.mark.parametrize("database", ["pulse", "postgres", settings.DATABASES["default"]["TEST"]["NAME"]])
def test_pulses_own_database_server_is_refused_whatever_the_spelling_and_database(owner_client, host, database):
    body = {"name": "mine", "host": host, "port": pulse_database_port(), "database": database, "username": "postgres"}
    response = owner_client.post("/api/connections", body, format="json")
    assert response.status_code == 400
    assert "Pulse's own database server" in str(response.data["host"])
    assert not Connection.objects.exists()


def test_even_a_superuser_cannot_target_pulses_own_database(superuser_client, teams):
    body = {
        "name": "mine",
        "team": teams[0].id,
        "host": "localhost",
        "port": pulse_database_port(),
        "database": "pulse",
        "username": "postgres",
        "require_replica": False,
    }
    response = superuser_client.post("/api/connections", body, format="json")
    assert response.status_code == 400
    assert "Pulse's own database server" in str(response.data["host"])
    assert not Connection.objects.exists()


def test_a_bracketed_ipv6_loopback_is_refused(owner_client):
    body = {"name": "mine", "host": "[::1]", "port": pulse_database_port(), "database": "pulse", "username": "postgres"}
    response = owner_client.post("/api/connections", body, format="json")
    assert response.status_code == 400
    assert "host" in response.data
    assert not Connection.objects.exists()


def test_a_stored_connection_to_pulses_own_database_never_connects(make_connection):
    """Stored before the policy existed (or written around the API): the connect itself refuses it."""
    connection = make_connection(port=pulse_database_port(), database="pulse", username="postgres", password="")
    result = replica.probe(conninfo=connection.conninfo(), require_replica=False)
    assert not result.ok
    assert "Pulse's own database server" in result.error
    with pytest.raises(replica.ReplicaError, match="Pulse's own database server"):
        replica.connect(conninfo=connection.conninfo(), statement_timeout_ms=1000)


# --- local addresses, sockets, host lists -------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "2130706433", "127.1", "::ffff:127.0.0.1", "0.0.0.0"])  # noqa: S104
def test_loopback_replicas_need_the_operator_setting(owner_client, replica_settings, no_local, host):
    response = owner_client.post("/api/connections", payload(replica_settings, host=host), format="json")
    assert response.status_code == 400
    assert "PULSE_CONNECTION_ALLOW_LOCAL" in str(response.data["host"])
    assert not Connection.objects.exists()


@pytest.mark.parametrize("host", ["169.254.169.254", "::ffff:169.254.169.254", "fe80::1"])
def test_link_local_addresses_such_as_cloud_metadata_are_refused(owner_client, replica_settings, no_local, host):
    response = owner_client.post("/api/connections", payload(replica_settings, host=host), format="json")
    assert response.status_code == 400
    assert "link-local" in str(response.data["host"])
    assert not Connection.objects.exists()


def test_this_machines_own_addresses_count_as_local(no_local):
    own = sorted(str(address) for address in targets.own_addresses() if not address.is_loopback)
    assert own, "this machine has no non-loopback address to try"
    for address in own:
        assert "PULSE_CONNECTION_ALLOW_LOCAL" in targets.target_problem(host=address, port=6000)
        assert "Pulse's own database server" in targets.target_problem(host=address, port=pulse_database_port())


@pytest.mark.parametrize("host", ["/var/run/postgresql", "/tmp", "@pulse-abstract"])  # noqa: S108
def test_socket_paths_are_refused(owner_client, replica_settings, host):
    response = owner_client.post("/api/connections", payload(replica_settings, host=host), format="json")
    assert response.status_code == 400
    assert "socket" in str(response.data["host"])
    assert not Connection.objects.exists()


@pytest.mark.parametrize("host", ["127.0.0.1,127.0.0.1", "10.0.0.1,localhost", "127.0.0.1,/tmp"])
def test_multi_host_lists_are_refused(owner_client, replica_settings, host):
    response = owner_client.post("/api/connections", payload(replica_settings, host=host), format="json")
    assert response.status_code == 400
    assert "list of hosts" in str(response.data["host"])
    assert not Connection.objects.exists()


def test_allowed_networks_restrict_targets(owner_client, replica_settings, settings):
    settings.PULSE_CONNECTION_ALLOWED_NETWORKS = ["10.0.0.0/8", "fd00::/8"]
    response = owner_client.post("/api/connections", payload(replica_settings), format="json")
    assert response.status_code == 400
    assert "outside the networks" in str(response.data["host"])
    assert not Connection.objects.exists()
    settings.PULSE_CONNECTION_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    assert owner_client.post("/api/connections", payload(replica_settings), format="json").status_code == 201


# --- names that could redirect libpq ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("database", f"host=127.0.0.1 port={5432} dbname=pulse"),
        ("database", "dbname=pulse"),
        ("database", "postgresql://postgres@127.0.0.1:5432/pulse"),
        ("database", "postgres://127.0.0.1/pulse"),
        ("username", "postgres host=127.0.0.1"),
    ],
)
def test_a_conninfo_string_as_a_name_is_refused(owner_client, replica_settings, field, value):
    response = owner_client.post("/api/connections", payload(replica_settings, **{field: value}), format="json")
    assert response.status_code == 400
    assert "not a connection string" in str(response.data[field])
    assert not Connection.objects.exists()


def test_a_stored_conninfo_database_neither_connects_nor_redirects(make_connection):
    connection = make_connection(database=f"host=127.0.0.1 port={pulse_database_port()} dbname=pulse")
    with pytest.raises(replica.ReplicaError, match="not a connection string"):
        replica.connect(conninfo=connection.conninfo(), statement_timeout_ms=1000)


# --- require_replica ----------------------------------------------------------------------------------------------


def test_a_member_cannot_create_a_connection_with_require_replica_off(owner_client, primary_settings):
    response = owner_client.post("/api/connections", payload(primary_settings, require_replica=False), format="json")
    assert response.status_code == 400
    assert "superuser" in str(response.data["require_replica"])
    assert not Connection.objects.exists()


def test_a_member_cannot_turn_require_replica_off(owner_client, make_connection):
    connection = make_connection()
    response = owner_client.patch(f"/api/connections/{connection.id}", {"require_replica": False}, format="json")
    assert response.status_code == 400
    assert "superuser" in str(response.data["require_replica"])
    connection.refresh_from_db()
    assert connection.require_replica is True


def test_a_member_cannot_move_a_connection_that_has_require_replica_off(
    owner_client, make_connection, primary_settings, replica_settings
):
    connection = make_connection(require_replica=False)
    body = {"port": primary_settings["port"], "password": replica_settings["password"]}
    response = owner_client.patch(f"/api/connections/{connection.id}", body, format="json")
    assert response.status_code == 400
    assert "superuser" in str(response.data["require_replica"])
    connection.refresh_from_db()
    assert connection.port == replica_settings["port"]


def test_a_member_may_turn_require_replica_back_on(owner_client, make_connection):
    connection = make_connection(require_replica=False)
    response = owner_client.patch(f"/api/connections/{connection.id}", {"require_replica": True}, format="json")
    assert response.status_code == 200, response.data
    connection.refresh_from_db()
    assert connection.require_replica is True


def test_a_superuser_may_turn_require_replica_off(superuser_client, make_connection):
    connection = make_connection()
    response = superuser_client.patch(f"/api/connections/{connection.id}", {"require_replica": False}, format="json")
    assert response.status_code == 200, response.data
    connection.refresh_from_db()
    assert connection.require_replica is False


def test_a_staff_member_cannot_turn_require_replica_off_in_the_admin(client, staff, make_connection, teams):
    connection = make_connection()
    client.force_login(staff)
    fields = {"host": connection.host, "port": connection.port, "database": connection.database}
    form = admin_form({**fields, "username": connection.username}, teams[0], require_replica=None)
    response = client.post(f"/admin/connections/connection/{connection.id}/change/", form)
    assert response.status_code == 200  # the form again, with the error
    assert "only a superuser may turn require_replica off" in response.content.decode()
    connection.refresh_from_db()
    assert connection.require_replica is True


# --- port scanning ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sslmode", ["disable", "prefer"])
def test_services_that_are_not_postgresql_look_the_same(owner_client, replica_settings, fake_server, sslmode):
    """An HTTP server, an SSH banner and garbage are one category; nothing they sent is shown."""
    messages = {}
    for kind, handler in FAKE_LISTENERS.items():
        server = fake_server(handler)
        body = payload(replica_settings, port=server.port, sslmode=sslmode)
        response = owner_client.post("/api/connections", body, format="json")
        assert response.status_code == 400
        assert server.connections >= 1  # it was really reached
        messages[kind] = str(response.data)
    assert len(set(messages.values())) == 1, messages
    text = next(iter(messages.values()))
    assert replica.NOT_POSTGRESQL in text
    for leaked in (HTTP_BANNER, SSH_BANNER, GARBAGE_BANNER, "HTTP", "SSH", "secret", "received"):
        assert leaked not in text
    assert not Connection.objects.exists()


def test_a_closed_port_says_only_connection_refused(owner_client, replica_settings, closed_port):
    response = owner_client.post("/api/connections", payload(replica_settings, port=closed_port), format="json")
    assert response.status_code == 400
    assert response.data["non_field_errors"] == ["Connection check failed: cannot connect: connection refused"]
    assert not Connection.objects.exists()


def test_a_server_that_never_answers_says_only_timed_out(owner_client, replica_settings, fake_server, monkeypatch):
    monkeypatch.setattr(replica, "CONNECT_TIMEOUT_SECONDS", 2)  # libpq's minimum: the 5 s default is not the point
    server = fake_server(silent_listener)
    response = owner_client.post("/api/connections", payload(replica_settings, port=server.port), format="json")
    assert response.status_code == 400
    assert response.data["non_field_errors"] == ["Connection check failed: cannot connect: timed out"]
    assert not Connection.objects.exists()
    assert server.connections == 1


def test_the_test_endpoint_gives_categories_only_for_a_stored_connection(owner_client, make_connection, fake_server):
    server = fake_server(FAKE_LISTENERS["fake-error"])
    connection = make_connection(port=server.port)
    response = owner_client.post(f"/api/connections/{connection.id}/test")
    assert response.status_code == 200
    assert response.data["error"] == f"cannot connect: {replica.NOT_POSTGRESQL}"
    connection.refresh_from_db()
    assert GARBAGE_BANNER not in connection.last_error and connection.status == "error"


# --- passwords follow their target --------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["host", "port", "database", "username", "sslmode"])
def test_the_stored_password_never_goes_to_a_new_target(owner_client, make_connection, fake_server, field):
    server = fake_server(cleartext_password_listener)
    connection = make_connection()
    stored_password = connection.get_password()
    change = {
        "host": {"host": "localhost", "port": server.port},
        "port": {"port": server.port},
        "database": {"port": server.port, "database": "other"},
        "username": {"port": server.port, "username": "other"},
        "sslmode": {"port": server.port, "sslmode": "prefer"},
    }[field]
    if field != "port":  # the same change without the port would go to the real replica: send it to the fake one
        connection.port = server.port
        Connection.objects.filter(pk=connection.pk).update(port=server.port)
        change = {key: value for key, value in change.items() if key != "port"}
    response = owner_client.patch(f"/api/connections/{connection.id}", change, format="json")
    assert response.status_code == 400
    assert "password" in response.data
    assert server.connections == 0 and server.passwords == []
    connection.refresh_from_db()
    assert (connection.host, connection.get_password()) == ("127.0.0.1", stored_password)
    # With the password given again, it (and only it) goes to the new target.
    response = owner_client.patch(
        f"/api/connections/{connection.id}", {**change, "password": "given-for-this-target"}, format="json"
    )
    assert response.status_code == 400  # the fake server refuses it
    assert server.passwords == ["given-for-this-target"]
    assert stored_password not in server.passwords


def test_the_same_values_again_need_no_password(owner_client, make_connection, replica_settings):
    connection = make_connection()
    body = {"host": connection.host, "port": connection.port, "database": connection.database, "name": "renamed"}
    response = owner_client.patch(f"/api/connections/{connection.id}", body, format="json")
    assert response.status_code == 200, response.data
    connection.refresh_from_db()
    assert connection.name == "renamed" and connection.get_password() == replica_settings["password"]


def test_the_admin_does_not_send_the_stored_password_to_a_new_target(
    client, staff, make_connection, fake_server, teams
):
    server = fake_server(cleartext_password_listener)
    connection = make_connection()
    client.force_login(staff)
    fields = {"host": connection.host, "database": connection.database, "username": connection.username}
    response = client.post(
        f"/admin/connections/connection/{connection.id}/change/",
        admin_form({**fields, "port": server.port, "password": ""}, teams[0]),
    )
    assert response.status_code == 200
    assert "give the password again" in response.content.decode()
    connection.refresh_from_db()
    assert connection.port != server.port
    assert server.connections == 0 and server.passwords == []


# --- refusal at every connect -------------------------------------------------------------------------------------


def test_a_stored_connection_is_refused_at_connect_time_when_the_policy_changes(
    owner_client, make_connection, fake_server, settings
):
    """Saved while local targets were allowed; then the operator turns them off: /test and the checks' session
    (`replica.connect`, what a batch of checks opens) refuse, and the server never hears from Pulse."""
    server = fake_server(cleartext_password_listener)
    connection = make_connection(port=server.port)
    settings.PULSE_CONNECTION_ALLOW_LOCAL = False

    response = owner_client.post(f"/api/connections/{connection.id}/test")
    assert response.data["ok"] is False
    assert "PULSE_CONNECTION_ALLOW_LOCAL" in response.data["error"]

    with pytest.raises(replica.ReplicaError, match="PULSE_CONNECTION_ALLOW_LOCAL"):
        replica.connect(conninfo=connection.conninfo(), statement_timeout_ms=connection.statement_timeout_ms)
    assert server.connections == 0 and server.passwords == []


def test_a_stored_connection_outside_the_allowed_networks_is_refused_at_connect_time(
    owner_client, make_connection, settings
):
    connection = make_connection()
    settings.PULSE_CONNECTION_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    response = owner_client.post(f"/api/connections/{connection.id}/test")
    assert response.data["ok"] is False
    assert "outside the networks" in response.data["error"]
    connection.refresh_from_db()
    assert connection.status == "error"


def test_a_refused_stored_connection_can_still_be_paused_and_renamed(owner_client, make_connection, settings):
    """Only a new target is checked at save; the stored one is refused where it matters, at connect."""
    connection = make_connection()
    settings.PULSE_CONNECTION_ALLOW_LOCAL = False
    body = {"is_active": False, "name": "parked"}
    response = owner_client.patch(f"/api/connections/{connection.id}", body, format="json")
    assert response.status_code == 200, response.data
    connection.refresh_from_db()
    assert (connection.name, connection.status) == ("parked", "paused")


def test_the_session_connects_to_the_vetted_address_without_a_second_lookup(make_connection, monkeypatch):
    """A name whose DNS answer changes after the check (rebinding) is resolved once, and that address is used."""
    real_getaddrinfo = socket.getaddrinfo
    lookups = []

    def rebinding_getaddrinfo(host, *args, **kwargs):
        if host != "replica.pulse-test.invalid":
            return real_getaddrinfo(host, *args, **kwargs)
        lookups.append(host)
        return real_getaddrinfo("127.0.0.1" if len(lookups) == 1 else "169.254.169.254", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_getaddrinfo)
    connection = make_connection(host="replica.pulse-test.invalid")
    with replica.session_for(connection) as session:
        assert session.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        assert session.info.hostaddr == "127.0.0.1"
    assert len(lookups) == 1


# --- ambient credentials of Pulse's own process -------------------------------------------------------------------


def test_a_password_file_of_pulses_process_is_never_used(make_connection, replica_settings, tmp_path, monkeypatch):
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:{replica_settings['username']}:{replica_settings['password']}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    connection = make_connection(password="")
    with psycopg.connect(**connection.conninfo(), connect_timeout=5):  # plain libpq would use it
        pass
    with pytest.raises(replica.ReplicaError, match="asks for a password"):
        replica.connect(conninfo=connection.conninfo(), statement_timeout_ms=1000)


def test_a_service_file_of_pulses_process_gives_no_password(make_connection, replica_settings, tmp_path, monkeypatch):
    service_file = tmp_path / "pg_service.conf"
    service_file.write_text(f"[ambient]\npassword={replica_settings['password']}\n")
    monkeypatch.setenv("PGSERVICEFILE", str(service_file))
    monkeypatch.setenv("PGSERVICE", "ambient")
    connection = make_connection(password="")
    conninfo = {key: value for key, value in connection.conninfo().items() if key != "password"}
    with psycopg.connect(**conninfo, connect_timeout=5):  # plain libpq would use it
        pass
    with pytest.raises(replica.ReplicaError, match="asks for a password"):
        replica.connect(conninfo=connection.conninfo(), statement_timeout_ms=1000)


# --- the admin's filters -------------------------------------------------------------------------------------------


def test_the_admin_team_filter_lists_only_the_users_teams(client, staff, make_connection, teams):
    make_connection(name="mine")
    make_connection(name="theirs", team=teams[1])
    client.force_login(staff)
    page = client.get("/admin/connections/connection/").content.decode()
    assert "acme" in page
    assert "globex" not in page
