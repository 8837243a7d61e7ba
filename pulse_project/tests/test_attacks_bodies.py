"""Attack: request bodies built to crash the API (a 500) instead of being refused (a 400).

Each body goes to every endpoint that reads one; the answer must be a 400 whose (encodable) detail names
the problem, and nothing may be stored or changed.
"""

import json

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient

from alerts.models import Alert, AlertEvent, Channel, Notification
from common.api import exception_handler
from connections.models import Connection, MaintenanceWindow
from monitors.models import Check, CheckResult, MonitoredTable

pytestmark = pytest.mark.django_db

# name -> (raw JSON body, words the 400's detail must contain)
BAD_JSON_BODIES = {
    "lone low surrogate in a value": ('{"name": "\\udfff", "kind": "\\udfff"}', "lone surrogate"),
    "lone high surrogate before text": ('{"name": "\\ud800x"}', "`name` holds a lone surrogate"),
    "lone surrogate in a key": ('{"\\udfff": 1}', "a key in the body holds a lone surrogate"),
    "lone surrogate nested in a list": ('{"reason": ["ok", "\\udbff"]}', "`reason[1]` holds a lone surrogate"),
    "deep nesting": ("[" * 100000, "nested more than 32 levels"),
    "deep nesting, closed": ('{"name": ' + "[" * 500 + "]" * 500 + "}", "nested more than 32 levels"),
    "float beyond a double": ('{"min_value": 1e400, "port": 1e400}', "number is too large"),
    "negative float beyond a double": ('{"min_value": -1e400}', "number is too large"),
    "5000-digit integer": ('{"port": ' + "9" * 5000 + "}", "more than 100 digits"),
    "5000-digit decimal": ('{"min_value": 0.' + "1" * 5000 + "}", "more than 100 characters"),
    "NaN literal": ('{"min_value": NaN}', "NaN is not a JSON number"),
    "Infinity literal": ('{"min_value": -Infinity}', "-Infinity is not a JSON number"),
    "surrogate encoded as UTF-8 bytes": (b'{"name": "\xed\xbf\xbf"}', "not valid utf-8"),
}

ENDPOINTS = [
    ("post", "/api/connections"),
    ("patch", "/api/connections/{connections}"),
    ("post", "/api/tables"),
    ("patch", "/api/tables/{tables}"),
    ("post", "/api/tables/{tables}/rebaseline"),
    ("post", "/api/checks"),
    ("patch", "/api/checks/{checks}"),
    ("post", "/api/channels"),
    ("patch", "/api/channels/{channels}"),
    ("post", "/api/maintenance-windows"),
    ("patch", "/api/maintenance-windows/{maintenance-windows}"),
    ("post", "/api/alerts/{alerts}/snooze"),
]

STORED_MODELS = [
    Connection,
    MonitoredTable,
    Check,
    CheckResult,
    Alert,
    AlertEvent,
    Channel,
    Notification,
    MaintenanceWindow,
    Token,
]


def stored_state():
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in STORED_MODELS}


def assert_refused(response, expected_words):
    assert response.status_code == 400, (response.status_code, response.content[:300])
    detail = json.loads(response.content.decode("utf-8"))["detail"]
    assert detail.startswith("Malformed request body: ")
    assert expected_words in detail


def _url(path, objects):
    return path.format(**{name: obj.id for name, obj in objects.items()})


@pytest.mark.parametrize("body_name", sorted(BAD_JSON_BODIES))
def test_it_refuses_a_malformed_json_body_on_every_endpoint(owner_client, objects, body_name):
    body, expected_words = BAD_JSON_BODIES[body_name]
    before = stored_state()
    for method, path in ENDPOINTS:
        response = owner_client.generic(method.upper(), _url(path, objects), body, content_type="application/json")
        assert_refused(response, expected_words)
    assert stored_state() == before


@pytest.mark.parametrize("body_name", sorted(BAD_JSON_BODIES))
def test_the_token_endpoint_refuses_a_malformed_json_body(owner, body_name):
    body, expected_words = BAD_JSON_BODIES[body_name]
    response = APIClient().generic("POST", "/api/auth/token", body, content_type="application/json")
    assert_refused(response, expected_words)
    assert not Token.objects.exists()


def test_the_token_endpoint_refuses_a_surrogate_user_name_instead_of_querying_with_it(owner):
    body = '{"username": "owner\\udfff", "password": "pw-owner"}'
    response = APIClient().generic("POST", "/api/auth/token", body, content_type="application/json")
    assert_refused(response, "`username` holds a lone surrogate")
    assert not Token.objects.exists()


@pytest.mark.parametrize("charset", ["utf-7", "unicode_escape"])
def test_it_refuses_a_form_body_whose_charset_decodes_to_a_lone_surrogate(owner_client, objects, charset):
    body = {"utf-7": "name=%2B2%2F8-&kind=email", "unicode_escape": "name=%5Cudfff&kind=email"}[charset]
    before = stored_state()
    for method, path in ENDPOINTS:
        response = owner_client.generic(
            method.upper(),
            _url(path, objects),
            body,
            content_type=f"application/x-www-form-urlencoded; charset={charset}",
        )
        assert_refused(response, "`name` holds a lone surrogate")
    response = APIClient().generic(
        "POST",
        "/api/auth/token",
        "username=%2B2%2F8-&password=x",
        content_type="application/x-www-form-urlencoded; charset=utf-7",
    )
    assert_refused(response, "`username` holds a lone surrogate")
    assert stored_state() == before


def test_it_refuses_a_multipart_field_whose_charset_decodes_to_a_lone_surrogate(owner_client, teams):
    body = b"".join(
        f'--B\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in {"team": teams[0].id, "name": "+2/8-", "kind": "email", "target": "a@example.com"}.items()
    )
    response = owner_client.generic(
        "POST", "/api/channels", body + b"--B--\r\n", content_type="multipart/form-data; boundary=B; charset=utf-7"
    )
    assert_refused(response, "`name` holds a lone surrogate")
    assert not Channel.objects.exists()


def test_it_refuses_a_body_over_the_upload_limit(owner_client, teams, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"team": teams[0].id, "name": "big", "kind": "email", "target": "a@example.com" + " " * 2000})
    response = owner_client.generic("POST", "/api/channels", body, content_type="application/json")
    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is larger than 1000 bytes."}
    assert not Channel.objects.exists()


def test_it_still_accepts_valid_unicode_depth_and_numbers(owner_client, teams):
    """The limits refuse only what is broken: an escaped surrogate *pair* is one valid character."""
    body = (
        f'{{"team": {teams[0].id}, "name": "\\ud83d\\udea8 on call", "kind": "email", "target": "ops@example.com",'
        ' "reminder_interval_minutes": 60.0}'
    )
    response = owner_client.generic("POST", "/api/channels", body, content_type="application/json")
    assert response.status_code == 201, response.content
    assert Channel.objects.get().name == "\U0001f6a8 on call"
    assert Channel.objects.get().reminder_interval_minutes == 60


def test_error_rendering_never_echoes_an_unencodable_string():
    """Backstop: even a validation error that repeats a lone surrogate renders as valid UTF-8."""
    response = exception_handler(ValidationError({"\udfff": ['"\udfff" is not a valid choice.']}), {})
    rendered = JSONRenderer().render(response.data).decode("utf-8")
    assert "\udfff" not in rendered
    assert "is not a valid choice" in rendered
