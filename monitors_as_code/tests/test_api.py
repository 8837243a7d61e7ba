"""POST /api/monitors/plan and /api/monitors/apply: the file as the body, under the caller's teams and permissions."""

import json

import pytest

from alerts.models import Channel
from monitors.models import MonitoredTable
from monitors_as_code.document import MAX_FILE_BYTES

pytestmark = pytest.mark.django_db

FILE = """\
version: 1
team: acme
connections:
  - name: shop-replica
    tables:
      - table: orders
        timestamp_column: created_at
"""


def post(client, action, body, content_type="application/yaml", query=""):
    return client.post(f"/api/monitors/{action}{query}", data=body, content_type=content_type)


def test_plan_answers_the_diff_and_writes_nothing(owner_client, shop):
    response = post(owner_client, "plan", FILE)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["has_changes"] is True
    change = body["changes"][0]
    assert (change["action"], change["kind"], change["name"], change["line"]) == (
        "create",
        "table",
        "shop-replica: public.orders",
        6,
    )
    assert change["fields"]["timestamp_column"] == {"from": None, "to": "created_at"}
    assert change["fields"]["sensitivity"] == {"from": None, "to": 3.5}
    assert not MonitoredTable.objects.exists()


def test_apply_makes_the_change_and_a_second_plan_has_none(owner_client, shop):
    response = post(owner_client, "apply", FILE, content_type="text/plain")
    assert response.status_code == 200, response.content
    assert MonitoredTable.objects.get().managed_by == "pulse.yml"
    assert post(owner_client, "plan", FILE).json()["has_changes"] is False


def test_problems_answer_400_with_line_and_field(owner_client, shop):
    response = post(owner_client, "apply", FILE.replace("created_at", "nope"))
    assert response.status_code == 400
    assert response.json()["problems"] == [
        {
            "file": "pulse.yml",
            "line": 7,
            "field": "connections[0].tables[0].timestamp_column",
            "message": 'column "nope" not found in table "public.orders"',
        }
    ]
    assert not MonitoredTable.objects.exists()


def test_a_member_without_write_permissions_may_plan_but_not_apply(member_client, shop):
    assert post(member_client, "plan", FILE).status_code == 200
    response = post(member_client, "apply", FILE)
    assert response.status_code == 403
    assert response.json()["problems"][0]["message"] == "permission monitors.add_monitoredtable is needed"
    assert not MonitoredTable.objects.exists()


def test_another_teams_file_reads_as_a_team_that_does_not_exist(outsider_client, shop):
    response = post(outsider_client, "apply", FILE)
    assert response.status_code == 400
    assert response.json()["problems"][0]["message"] == 'team "acme" not found'
    assert not MonitoredTable.objects.exists()


def test_a_file_naming_another_teams_connection_is_refused_as_if_it_did_not_exist(
    outsider_client, shop, make_connection, teams
):
    make_connection(name="globex-replica", team=teams[1])
    text = FILE.replace("team: acme", "team: globex")
    response = post(outsider_client, "apply", text)
    assert response.status_code == 400
    assert response.json()["problems"][0]["message"] == 'connection "shop-replica" not found in team "globex"'
    assert not MonitoredTable.objects.exists()


def test_unauthenticated_callers_are_refused(client, shop):
    assert post(client, "apply", FILE).status_code in (401, 403)
    assert not MonitoredTable.objects.exists()


def test_json_body_gives_the_channel_secrets_never_the_servers_environment(owner_client, shop, monkeypatch):
    monkeypatch.setenv("OPS_SLACK_URL", "https://hooks.slack.com/services/T/B/from-server-env")
    text = FILE + "channels:\n  - name: ops\n    kind: slack\n    target_env: OPS_SLACK_URL\n"
    refused = post(owner_client, "apply", text)
    assert refused.status_code == 400
    assert 'environment variable "OPS_SLACK_URL" is not set' in refused.json()["problems"][0]["message"]
    url = "https://hooks.slack.com/services/T/B/from-the-request"
    body = json.dumps({"file": text, "env": {"OPS_SLACK_URL": url}})
    response = post(owner_client, "apply", body, content_type="application/json")
    assert response.status_code == 200, response.content
    assert Channel.objects.get().get_target() == url
    assert url not in response.content.decode()


def test_prune_is_a_query_parameter_for_a_raw_body(owner_client, shop):
    assert post(owner_client, "apply", FILE).status_code == 200
    empty = "version: 1\nteam: acme\n"
    assert post(owner_client, "apply", empty).json()["counts"]["kept"] == 1
    assert MonitoredTable.objects.exists()
    assert post(owner_client, "apply", empty, query="?prune=maybe").status_code == 400
    assert post(owner_client, "apply", empty, query="?prune=true").json()["counts"]["delete"] == 1
    assert not MonitoredTable.objects.exists()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("a: &a [1]\nb: *a\n", "application/yaml"),
        ("\x00\x01", "application/yaml"),
        (b"\xff\xfe", "application/yaml"),
        ("- 1\n", "text/yaml"),
        (json.dumps({"file": 5}), "application/json"),
        (json.dumps({"file": FILE, "env": {"A": 1}, "extra": True}), "application/json"),
        (json.dumps(["x"]), "application/json"),
        ("", "application/yaml"),
    ],
)
def test_bad_bodies_answer_400_and_never_500(owner_client, shop, body, content_type):
    response = post(owner_client, "apply", body, content_type=content_type)
    assert response.status_code == 400, response.content
    assert not MonitoredTable.objects.exists()


def test_a_body_over_the_size_limit_is_refused(owner_client, shop):
    response = post(owner_client, "plan", "#" * (MAX_FILE_BYTES + 10) + "\n")
    assert response.status_code in (400, 413)


ODD_FILES = [
    FILE.replace("table: orders", "table: " + "x" * 64),
    FILE + "        sensitivity: 1.0e+300\n",
    FILE + "        check_interval_seconds: 10000000000000000000000000000000000000\n",
    FILE + "        checks: [{kind: row_count, min_value: 1.0e+308}]\n",
    FILE + "        checks: [{kind: volume, min_value: 1}]\n",
    FILE + "        checks: [{kind: null_rate, column: 'a\\x01b', max_value: 0.5}]\n",
    FILE + "    maintenance_windows: [{starts_at: '2026-02-30T00:00:00Z', ends_at: '2026-03-01T00:00:00Z'}]\n",
    FILE + "    maintenance_windows: [{starts_at: '99999-01-01T00:00:00Z', ends_at: '2026-03-01T00:00:00Z'}]\n",
    FILE
    + "    maintenance_windows: [{starts_at: 2026-01-01T00:00:00Z, ends_at: 2026-01-02T00:00:00Z, reason: '"
    + "r" * 201
    + "'}]\n",
    FILE + "    table_groups: [{schema: '\\x01', tables: '[!'}]\n",
    FILE.replace("name: shop-replica", "name: '\\x01'"),
    FILE + "channels: [{name: '\\x01', kind: email, target_env: A}]\n",
    FILE + "channels: [{name: x, kind: apprise, target_env: A}]\n",
]


@pytest.mark.parametrize("text", ODD_FILES)
def test_odd_values_in_a_file_never_give_a_500(owner_client, shop, text):
    body = json.dumps({"file": text, "env": {"A": "not an address"}})
    response = post(owner_client, "apply", body, content_type="application/json")
    assert response.status_code in (200, 400), response.content
    if response.status_code == 400:
        assert response.json()["problems"]
        assert not MonitoredTable.objects.exists()
