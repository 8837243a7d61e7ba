"""Authentication through the real stack: no force_authenticate, CSRF enforced as in production.

`POST /api/auth/token` hands out a token; `Authorization: Token <key>` authenticates (no CSRF needed);
a session from `/api-auth/login/` authenticates too, and then every unsafe request needs the CSRF token.
"""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from alerts.models import Channel

pytestmark = pytest.mark.django_db

CHANNEL = {"name": "ops-mail", "kind": "email", "target": "ops@example.com"}


def csrf_client() -> APIClient:
    return APIClient(enforce_csrf_checks=True)


def test_the_token_endpoint_hands_out_the_users_stored_token(owner):
    response = csrf_client().post("/api/auth/token", {"username": "owner", "password": "pw-owner"}, format="json")
    assert response.status_code == 200
    assert response.json() == {"token": Token.objects.get(user=owner).key}
    again = csrf_client().post("/api/auth/token", {"username": "owner", "password": "pw-owner"}, format="json")
    assert again.json()["token"] == response.json()["token"] and Token.objects.count() == 1


@pytest.mark.parametrize(
    "body", [{"username": "owner", "password": "wrong"}, {"username": "nobody", "password": "pw-owner"}, {}]
)
def test_the_token_endpoint_refuses_bad_credentials_and_saves_nothing(owner, body):
    response = csrf_client().post("/api/auth/token", body, format="json")
    assert response.status_code == 400
    assert not Token.objects.exists()


def test_a_token_authenticates_reads_and_writes_without_csrf(owner, teams, make_connection, outsider):
    mine = make_connection(name="mine")
    make_connection(name="theirs", team=teams[1])
    key = csrf_client().post("/api/auth/token", {"username": "owner", "password": "pw-owner"}).json()["token"]
    client = csrf_client()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    listing = client.get("/api/connections").json()
    assert [c["id"] for c in listing["results"]] == [mine.id]  # the token's user's team only
    created = client.post("/api/channels", {"team": teams[0].id, **CHANNEL}, format="json")
    assert created.status_code == 201, created.data
    channel = Channel.objects.get(id=created.json()["id"])
    assert (channel.team, channel.name, channel.get_target()) == (teams[0], "ops-mail", "ops@example.com")


@pytest.mark.parametrize("header", ["Token not-a-key", "Token ", "Bearer abc", "Token a b"])
def test_a_wrong_token_is_refused_and_saves_nothing(owner, teams, header):
    Token.objects.create(user=owner)
    client = csrf_client()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/connections").status_code == 401
    assert client.post("/api/channels", {"team": teams[0].id, **CHANNEL}, format="json").status_code == 401
    assert not Channel.objects.exists()


def test_a_deleted_token_stops_working(owner):
    token = Token.objects.create(user=owner)
    client = csrf_client()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/connections").status_code == 200
    token.delete()
    assert client.get("/api/connections").status_code == 401


def test_no_credentials_are_refused(teams):
    client = csrf_client()
    assert client.get("/api/connections").status_code == 401
    assert client.post("/api/channels", {"team": teams[0].id, **CHANNEL}, format="json").status_code == 401
    assert not Channel.objects.exists()


def session_login(client: APIClient, *, username: str, password: str) -> str:
    """Log in through the browsable API's login form (CSRF enforced), return the CSRF token of the session."""
    form = client.get("/api-auth/login/")
    assert form.status_code == 200
    csrf = form.cookies["csrftoken"].value
    response = client.post(
        "/api-auth/login/", {"username": username, "password": password, "csrfmiddlewaretoken": csrf}
    )
    assert response.status_code == 302, response.content  # redirected after login
    return client.cookies["csrftoken"].value  # login rotates the token


def test_a_session_logs_in_through_the_form_and_reads(owner, make_connection):
    mine = make_connection(name="mine")
    client = csrf_client()
    session_login(client, username="owner", password="pw-owner")
    listing = client.get("/api/connections")
    assert listing.status_code == 200 and [c["id"] for c in listing.json()["results"]] == [mine.id]


def test_a_session_with_a_wrong_password_is_not_logged_in(owner):
    client = csrf_client()
    csrf = client.get("/api-auth/login/").cookies["csrftoken"].value
    response = client.post("/api-auth/login/", {"username": "owner", "password": "wrong", "csrfmiddlewaretoken": csrf})
    assert response.status_code == 200  # the form again, with its error
    assert client.get("/api/connections").status_code == 401


def test_a_session_write_needs_the_csrf_token(owner, teams):
    client = csrf_client()
    csrf = session_login(client, username="owner", password="pw-owner")
    refused = client.post("/api/channels", {"team": teams[0].id, **CHANNEL}, format="json")
    assert refused.status_code == 403 and "CSRF" in str(refused.data)
    assert not Channel.objects.exists()
    wrong = client.post("/api/channels", {"team": teams[0].id, **CHANNEL}, format="json", HTTP_X_CSRFTOKEN="x" * 64)
    assert wrong.status_code == 403
    assert not Channel.objects.exists()
    created = client.post("/api/channels", {"team": teams[0].id, **CHANNEL}, format="json", HTTP_X_CSRFTOKEN=csrf)
    assert created.status_code == 201, created.data
    assert Channel.objects.get().name == "ops-mail"


def test_a_session_delete_needs_the_csrf_token_too(owner, teams, make_channel):
    channel = make_channel(teams[0], "email", "ops@example.com")
    client = csrf_client()
    csrf = session_login(client, username="owner", password="pw-owner")
    assert client.delete(f"/api/channels/{channel.id}").status_code == 403
    assert Channel.objects.filter(id=channel.id).exists()
    assert client.delete(f"/api/channels/{channel.id}", HTTP_X_CSRFTOKEN=csrf).status_code == 204
    assert not Channel.objects.filter(id=channel.id).exists()


def test_logging_out_ends_the_session(owner):
    client = csrf_client()
    csrf = session_login(client, username="owner", password="pw-owner")
    assert client.get("/api/connections").status_code == 200
    assert client.post("/api-auth/logout/", HTTP_X_CSRFTOKEN=csrf).status_code in (200, 302)
    assert client.get("/api/connections").status_code == 401
