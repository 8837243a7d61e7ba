"""No request body, query string or id may produce a 500 on any endpoint."""

import pytest

pytestmark = pytest.mark.django_db

ODD_VALUES = [
    None,
    "",
    "x" * 5000,
    -1,
    2**70,
    1.5,
    float("1e308"),
    True,
    [],
    [1, "a"],
    {"a": {"b": 1}},
    "\x00",
    "2030-13-45T99:99:99Z",
    "NaN",
]


WRITABLE = {
    "connections": [
        "name",
        "team",
        "host",
        "port",
        "database",
        "username",
        "password",
        "sslmode",
        "require_replica",
        "statement_timeout_ms",
        "max_queries_per_hour",
        "max_concurrent_queries",
        "max_queries_per_second",
        "max_query_cost",
        "replica_time_share_percent",
        "replica_time_burst_seconds",
        "is_active",
    ],
    "tables": [
        "connection",
        "schema_name",
        "table_name",
        "timestamp_column",
        "freshness_threshold_minutes",
        "check_interval_seconds",
        "failure_threshold",
        "sensitivity",
        "direction",
        "seasonality",
        "min_relative_change",
        "is_active",
        "managed_by",
    ],
    "checks": ["table", "kind", "column", "sql", "min_value", "max_value", "is_active", "managed_by"],
    "channels": [
        "team",
        "name",
        "kind",
        "target",
        "secret",
        "reminder_interval_minutes",
        "remind_earlier_alerts",
        "is_active",
        "managed_by",
    ],
    "maintenance-windows": ["connection", "starts_at", "ends_at", "reason", "managed_by"],
}


@pytest.mark.parametrize("resource", sorted(WRITABLE))
def test_odd_field_values_never_give_a_500(owner_client, objects, resource):
    for field in WRITABLE[resource]:
        for value in ODD_VALUES:
            response = owner_client.post(f"/api/{resource}", {field: value}, format="json")
            assert response.status_code < 500, (resource, field, value, response.status_code)
            if resource in objects:
                detail = f"/api/{resource}/{objects[resource].id}"
                response = owner_client.patch(detail, {field: value}, format="json")
                assert response.status_code < 500, (resource, field, value, response.status_code)


@pytest.mark.parametrize(
    "path",
    [
        "/api/alerts/{alerts}/snooze",
        "/api/tables/{tables}/rebaseline",
        "/api/alerts/{alerts}/acknowledge",
        "/api/connections/{connections}/test",
        "/api/channels/{channels}/test",
        "/api/tables/{tables}/results/{result}/mark-expected",
    ],
)
def test_odd_action_bodies_never_give_a_500(owner_client, objects, path):
    url = path.format(**{k: v.id for k, v in objects.items()})
    for body in [None, [], "text", {"minutes": "x"}, {"until": 5}, {"since": [1]}, {"\x00": 1}]:
        response = owner_client.post(url, body, format="json")
        assert response.status_code < 500, (url, body, response.status_code)


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=-1",
        "page=x",
        "page_size=1000000",
        "connection=%00",
        "table=1e9",
        "kind=%ff",
        "status[]=x",
        "ordering=password",
        "format=xml",
        "format=api",
    ],
)
def test_odd_query_strings_never_give_a_500(owner_client, objects, query):
    for resource in ["connections", "tables", "checks", "alerts", "channels", "maintenance-windows"]:
        response = owner_client.get(f"/api/{resource}?{query}")
        assert response.status_code < 500, (resource, query, response.status_code)
    response = owner_client.get(f"/api/tables/{objects['tables'].id}/results?{query}")
    assert response.status_code < 500
