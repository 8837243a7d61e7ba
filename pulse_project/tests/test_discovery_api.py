"""Discovery through its surfaces, composed in the project layer: `POST /api/connections/{id}/discover`, the
connection's discovery settings, the admin's section and actions, and the one alert per connection that lists
missing tables (through the alert intake). With the attacks: another team, hostile and huge inputs."""

import pytest

from alerts.models import Alert
from conftest import READER
from monitors.models import CheckResult, DiscoveryPolicy, MonitoredTable
from monitors.testing import DISCOVERY_DB, DISCOVERY_EXPECTED, discovery_database_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def disco(replica_pair, make_connection):
    database = discovery_database_create(pair=replica_pair, reader=READER)
    return make_connection(name="disco-replica", database=database)


def on_primary(pair, statement: str) -> None:
    with pair.primary.connect(DISCOVERY_DB) as conn:
        conn.execute(statement)
    pair.wait_for_replay(timeout=30)


def discover(client, connection, body=None):
    return client.post(f"/api/connections/{connection.id}/discover", body or {}, format="json")


def test_dry_run_by_default_lists_columns_and_reasons(owner_client, disco):
    response = discover(owner_client, disco)
    assert response.status_code == 200, response.content
    body = response.json()
    assert not body["applied"] and body["catalog_queries"] == 1
    added = {f"{t['schema']}.{t['table']}": t for t in body["added"]}
    assert {name: t["timestamp_column"] for name, t in added.items()} == DISCOVERY_EXPECTED
    assert "correlation" in added["public.events"]["reason"]
    assert body["skipped"] == [{"table": "public.payroll", "reason": f'no SELECT privilege for user "{READER}"'}]
    assert not MonitoredTable.objects.filter(connection=disco).exists()


def test_apply_adds_the_tables_with_the_connections_defaults(owner_client, disco):
    settings = owner_client.patch(
        f"/api/connections/{disco.id}/discovery",
        {"check_interval_seconds": 120, "freshness_threshold_minutes": 90, "schemas": ["public"]},
        format="json",
    )
    assert settings.status_code == 200, settings.content
    response = discover(owner_client, disco, {"apply": True})
    assert response.status_code == 200 and response.json()["applied"]
    tables = MonitoredTable.objects.filter(connection=disco)
    assert {t.qualified_name for t in tables} == {n for n in DISCOVERY_EXPECTED if n.startswith("public.")}
    assert {(t.check_interval_seconds, t.freshness_threshold_minutes) for t in tables} == {(120, 90)}
    listed = owner_client.get(f"/api/tables?connection={disco.id}").json()["results"]
    events = next(t for t in listed if t["table_name"] == "events")
    assert events["timestamp_column_chosen_by"] == "discovery" and "insert time" in events["timestamp_column_reason"]


def test_an_override_through_the_api_is_marked_as_the_users(owner_client, disco):
    discover(owner_client, disco, {"apply": True})
    events = MonitoredTable.objects.get(connection=disco, table_name="events")
    response = owner_client.patch(f"/api/tables/{events.id}", {"timestamp_column": "updated_at"}, format="json")
    assert response.status_code == 200, response.content
    events.refresh_from_db()
    assert (events.timestamp_column, events.timestamp_column_chosen_by) == ("updated_at", "user")
    discover(owner_client, disco, {"apply": True})
    events.refresh_from_db()
    assert events.timestamp_column == "updated_at"


def test_missing_tables_open_one_alert_per_connection_and_keep_history(owner_client, disco, replica_pair):
    on_primary(replica_pair, "CREATE TABLE public.gone_a (id int); CREATE TABLE public.gone_b (id int)")
    try:
        discover(owner_client, disco, {"apply": True})
        gone = MonitoredTable.objects.filter(connection=disco, table_name__startswith="gone_")
        for table in gone:
            CheckResult.objects.create(
                connection=disco, table=table, kind="volume", status="pass", started_at=table.created_at
            )
        on_primary(replica_pair, "DROP TABLE public.gone_a; DROP TABLE public.gone_b")
        body = discover(owner_client, disco, {"apply": True}).json()
        assert body["missing"] == ["public.gone_a", "public.gone_b"]
        discover(owner_client, disco, {"apply": True})
        [alert] = Alert.objects.filter(connection=disco)
        assert (alert.table_id, alert.kind, alert.status) == (None, "schema_change", "open")
        assert "public.gone_a, public.gone_b" in alert.message
        assert {t.status for t in gone.all()} == {"missing"}
        assert CheckResult.objects.filter(table__in=gone, kind="volume").count() == 2

        on_primary(replica_pair, "CREATE TABLE public.gone_a (id int); CREATE TABLE public.gone_b (id int)")
        body = discover(owner_client, disco, {"apply": True}).json()
        assert body["returned"] == ["public.gone_a", "public.gone_b"]
        alert.refresh_from_db()
        assert alert.status == "resolved"
        assert {t.status for t in gone.all()} == {"unknown"}
    finally:
        on_primary(replica_pair, "DROP TABLE IF EXISTS public.gone_a; DROP TABLE IF EXISTS public.gone_b")


def test_discovery_settings_are_created_disabled_and_can_be_enabled(owner_client, disco):
    body = owner_client.get(f"/api/connections/{disco.id}/discovery").json()
    assert body["is_enabled"] is False and body["max_tables"] == 1000 and body["schemas"] == []
    response = owner_client.patch(f"/api/connections/{disco.id}/discovery", {"is_enabled": True}, format="json")
    assert response.status_code == 200
    assert DiscoveryPolicy.objects.get(connection=disco).is_enabled


def test_an_unreachable_replica_is_a_400_naming_the_cause(owner_client, make_connection, closed_port):
    connection = make_connection(port=closed_port)
    response = discover(owner_client, connection, {"apply": True})
    assert response.status_code == 400
    assert "connection refused" in response.json()["connection"][0]


# --- attacks ----------------------------------------------------------------------------------------------


def test_another_teams_connection_is_not_found(outsider_client, disco):
    assert discover(outsider_client, disco, {"apply": True}).status_code == 404
    assert outsider_client.get(f"/api/connections/{disco.id}/discovery").status_code == 404
    patch = outsider_client.patch(f"/api/connections/{disco.id}/discovery", {"is_enabled": True}, format="json")
    assert patch.status_code == 404
    assert not MonitoredTable.objects.filter(connection=disco).exists()
    assert not DiscoveryPolicy.objects.filter(connection=disco, is_enabled=True).exists()


def test_a_member_without_change_permission_cannot_discover(member_client, disco):
    assert discover(member_client, disco, {"apply": True}).status_code == 403
    assert not MonitoredTable.objects.filter(connection=disco).exists()


@pytest.mark.parametrize(
    "body", [{"apply": "maybe"}, {"apply": True, "schemas": ["public"]}, {"apply": [True]}, ["apply"]]
)
def test_bad_discover_bodies_are_refused(owner_client, disco, body):
    response = discover(owner_client, disco, body)
    assert response.status_code == 400
    assert not MonitoredTable.objects.filter(connection=disco).exists()


def test_pattern_strings_as_sql_injection_are_only_patterns(owner_client, disco, replica_pair):
    hostile = ["'; DROP TABLE public.events; --", "events' OR '1'='1", "%", "_vents"]
    response = owner_client.patch(
        f"/api/connections/{disco.id}/discovery", {"include_patterns": hostile}, format="json"
    )
    assert response.status_code == 200
    body = discover(owner_client, disco, {"apply": True}).json()
    assert body["added_count"] == 0
    with replica_pair.standby.connect(DISCOVERY_DB) as conn:
        assert conn.execute("SELECT count(*) FROM public.events").fetchone()[0] == 2000


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"include_patterns": ["a*"] * 101}, "include_patterns"),
        ({"exclude_patterns": ["x" * 201]}, "exclude_patterns"),
        ({"schemas": ["s"] * 101}, "schemas"),
        ({"schemas": ["bad\u0001name"]}, "schemas"),
        ({"max_tables": 0}, "max_tables"),
        ({"last_summary": {}}, "last_summary"),
        ({"nonsense": 1}, "nonsense"),
    ],
)
def test_bad_discovery_settings_are_refused_naming_the_field(owner_client, disco, changes, field):
    response = owner_client.patch(f"/api/connections/{disco.id}/discovery", changes, format="json")
    assert response.status_code == 400 and field in response.json()
    policy = DiscoveryPolicy.objects.get(connection=disco)
    assert (policy.include_patterns, policy.exclude_patterns, policy.schemas, policy.max_tables) == ([], [], [], 1000)


# --- admin ------------------------------------------------------------------------------------------------


def test_the_connection_page_has_a_discovery_section(client, staff, disco):
    DiscoveryPolicy.objects.create(connection=disco, schemas=["public"])
    client.force_login(staff)
    page = client.get(f"/admin/connections/connection/{disco.id}/change/").content.decode()
    assert "Discovery" in page and "first_checks_per_minute" in page and "include_patterns" in page


def test_the_admin_actions_dry_run_then_apply(client, staff, disco):
    client.force_login(staff)
    url = "/admin/connections/connection/"
    response = client.post(url, {"action": "discover_dry_run", "_selected_action": [disco.id]}, follow=True)
    text = response.content.decode()
    assert f"would add {len(DISCOVERY_EXPECTED)} table(s)" in text and "public.events (created_at:" in text
    assert not MonitoredTable.objects.filter(connection=disco).exists()
    client.post(url, {"action": "discover_apply", "_selected_action": [disco.id]}, follow=True)
    assert MonitoredTable.objects.filter(connection=disco).count() == len(DISCOVERY_EXPECTED)


def test_a_discovery_leaves_the_connection_error_alert_alone(owner_client, disco, replica_pair):
    from django.utils import timezone

    now = timezone.now()
    error_alert = Alert.objects.create(
        connection=disco, kind="connection_error", opened_at=now, last_seen_at=now, message="checks could not run"
    )
    MonitoredTable.objects.create(connection=disco, table_name="never_there")
    discover(owner_client, disco, {"apply": True})
    error_alert.refresh_from_db()
    assert error_alert.status == "open"
    assert Alert.objects.get(connection=disco, kind="schema_change", table=None).message.endswith("public.never_there")


@pytest.mark.django_db(transaction=True)  # the job closes old connections, as runchecks' scheduler does
def test_the_scheduled_job_discovers_enabled_connections(disco):
    from pulse_project import jobs

    DiscoveryPolicy.objects.create(connection=disco, is_enabled=True)
    jobs.discover()
    assert MonitoredTable.objects.filter(connection=disco).count() == len(DISCOVERY_EXPECTED)
    assert DiscoveryPolicy.objects.get(connection=disco).last_summary["added_count"] == len(DISCOVERY_EXPECTED)


def test_another_teams_staff_cannot_discover_from_the_admin(client, outsider, disco):
    outsider.is_staff = True
    outsider.save()
    client.force_login(outsider)
    url = "/admin/connections/connection/"
    client.post(url, {"action": "discover_apply", "_selected_action": [disco.id]}, follow=True)
    assert not MonitoredTable.objects.filter(connection=disco).exists()
    assert client.get(f"/admin/connections/connection/{disco.id}/change/").status_code in (302, 404)
