"""Attacks on GET /metrics: every one is refused before any metric is read."""

import pytest

pytestmark = pytest.mark.django_db
TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.PULSE_METRICS_TOKEN = TOKEN


def refused(response) -> bool:
    body = response.content.decode()
    return response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer") and "pulse_" not in body


def test_without_a_token_it_is_refused(client, world):
    assert refused(client.get("/metrics"))


def test_a_wrong_token_is_refused(client, world):
    assert refused(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN[:-1]}x"))


def test_a_prefix_of_the_token_is_refused(client, world):
    assert refused(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN[:8]}"))


def test_the_token_in_the_query_string_is_not_accepted(client, world):
    assert refused(client.get(f"/metrics?token={TOKEN}&access_token={TOKEN}&bearer={TOKEN}"))


def test_the_token_as_basic_credentials_is_not_accepted(client, world):
    assert refused(client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}"))


def test_a_logged_in_superuser_without_the_token_is_refused(client, superuser, world):
    client.force_login(superuser)
    assert refused(client.get("/metrics"))


def test_without_a_configured_token_the_endpoint_does_not_exist(client, settings, world):
    settings.PULSE_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


def test_writes_are_not_allowed_even_with_the_token(client, world):
    response = client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 405
