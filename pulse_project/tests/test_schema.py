import pytest
from drf_spectacular.generators import SchemaGenerator

pytestmark = pytest.mark.django_db


def test_the_openapi_schema_builds_and_lists_the_endpoints(owner_client):
    schema = SchemaGenerator().get_schema(request=None, public=True)
    paths = set(schema["paths"])
    for expected in [
        "/api/connections",
        "/api/connections/{id}/test",
        "/api/tables/{id}/results",
        "/api/alerts/{id}/acknowledge",
        "/api/health",
    ]:
        assert any(p.rstrip("/") == expected for p in paths), expected
    response = owner_client.get("/api/schema")
    assert response.status_code == 200
    assert b"openapi" in response.content


def test_the_browsable_api_renders(owner_client):
    response = owner_client.get("/api/connections", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"Connection" in response.content


def test_the_root_is_the_dashboard_which_sends_anonymous_visitors_to_log_in(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/?next=/"
