"""alerts.channels: the API and the admin refuse and accept the same channels, with the same limits."""

import pytest

from alerts.channels import REMINDER_MAX_MINUTES, SECRET_MIN_LENGTH, TARGET_MAX_LENGTH
from alerts.models import Channel

pytestmark = pytest.mark.django_db

WEBHOOK_URL = "https://example.com/pulse-hook?token=XXXXHOOKTOKEN"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXSLACKTOKEN"


@pytest.fixture
def staff_client(client, owner):
    owner.is_staff = True
    owner.save()
    client.force_login(owner)
    return client


def through_api(owner_client, team, fields):
    response = owner_client.post("/api/channels", {"team": team.id, **fields}, format="json")
    assert response.status_code in (201, 400), response.content
    return set(response.data) if response.status_code == 400 else set()


def through_admin(staff_client, team, fields):
    form = {"team": team.id, "secret": "", "target": "", "reminder_interval_minutes": "", "is_active": "on"}
    form.update({key: "" if value is None else value for key, value in fields.items()})
    response = staff_client.post("/admin/alerts/channel/add/", form)
    if response.status_code == 302:
        return set()
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors, "the admin neither saved nor named a problem"
    return set(errors)


REFUSED = [
    ({"kind": "email", "target": "not-an-address"}, "target"),
    ({"kind": "email"}, "target"),
    ({"kind": "slack", "target": "http://hooks.slack.com/services/T/B/X"}, "target"),
    ({"kind": "webhook", "target": "http://127.0.0.1:8080/hook"}, "target"),
    ({"kind": "webhook", "target": "https://example.com/" + "x" * TARGET_MAX_LENGTH}, "target"),
    ({"kind": "webhook", "target": WEBHOOK_URL, "secret": "s" * (SECRET_MIN_LENGTH - 1)}, "secret"),
    ({"kind": "email", "target": "a@example.com", "secret": "s" * SECRET_MIN_LENGTH}, "secret"),
    ({"kind": "apprise", "target": "bogus://XXXXAPPRISETOKEN"}, "target"),
    ({"kind": "sms", "target": "a@example.com"}, "kind"),
    ({"kind": "email", "target": "a@example.com", "reminder_interval_minutes": 0}, "reminder_interval_minutes"),
    (
        {"kind": "email", "target": "a@example.com", "reminder_interval_minutes": REMINDER_MAX_MINUTES + 1},
        "reminder_interval_minutes",
    ),
]


@pytest.mark.parametrize(("fields", "field"), REFUSED)
def test_the_api_and_the_admin_refuse_the_same_input_and_save_nothing(
    owner_client, staff_client, teams, settings, fields, field
):
    settings.PULSE_WEBHOOK_ALLOW_PRIVATE = False
    fields = {"name": "oncall", **fields}

    api_errors = through_api(owner_client, teams[0], fields)
    admin_errors = through_admin(staff_client, teams[0], fields)

    assert field in api_errors and field in admin_errors
    assert not Channel.objects.exists()


ACCEPTED = [
    {"kind": "email", "target": " a@example.com,b@example.com ", "reminder_interval_minutes": REMINDER_MAX_MINUTES},
    {"kind": "slack", "target": SLACK_URL, "reminder_interval_minutes": 1},
    {"kind": "email", "target": "c@example.com", "reminder_interval_minutes": 60, "remind_earlier_alerts": True},
    {"kind": "webhook", "target": WEBHOOK_URL, "secret": "s" * SECRET_MIN_LENGTH},
]


@pytest.mark.parametrize("fields", ACCEPTED)
def test_the_api_and_the_admin_accept_the_same_input_and_store_the_same(owner_client, staff_client, teams, fields):
    assert through_api(owner_client, teams[0], {"name": "by-api", **fields}) == set()
    assert through_admin(staff_client, teams[0], {"name": "by-admin", **fields}) == set()

    by_api, by_admin = Channel.objects.get(name="by-api"), Channel.objects.get(name="by-admin")
    assert by_api.get_target() == by_admin.get_target() == fields["target"].strip().replace(",", ", ")
    assert by_api.get_secret() == by_admin.get_secret()
    assert by_api.reminder_interval_minutes == by_admin.reminder_interval_minutes
    assert by_api.remind_earlier_alerts == by_admin.remind_earlier_alerts == fields.get("remind_earlier_alerts", False)


def test_both_generate_a_webhook_secret_on_create_only(owner_client, staff_client, teams):
    assert through_api(owner_client, teams[0], {"name": "by-api", "kind": "webhook", "target": WEBHOOK_URL}) == set()
    assert (
        through_admin(staff_client, teams[0], {"name": "by-admin", "kind": "webhook", "target": WEBHOOK_URL}) == set()
    )
    for name in ("by-api", "by-admin"):
        channel = Channel.objects.get(name=name)
        assert len(channel.get_secret()) >= 40
        Channel.objects.filter(pk=channel.pk).update(secret_encrypted="")
        response = staff_client.post(
            f"/admin/alerts/channel/{channel.id}/change/",
            {
                "name": name,
                "team": teams[0].id,
                "target": "",
                "secret": "",
                "reminder_interval_minutes": "",
                "is_active": "on",
            },
        )
        assert response.status_code == 302
        assert Channel.objects.get(pk=channel.pk).secret_encrypted == ""  # no secret made up on a change


def test_the_api_and_the_admin_refuse_to_move_a_channel_to_another_team(
    owner, owner_client, staff_client, teams, make_channel
):
    owner.groups.add(teams[1])
    channel = make_channel(teams[0], "slack", SLACK_URL, name="team-slack")

    response = owner_client.patch(f"/api/channels/{channel.id}", {"team": teams[1].id}, format="json")
    assert response.status_code == 400 and "team" in response.data
    response = staff_client.post(
        f"/admin/alerts/channel/{channel.id}/change/",
        {
            "name": "team-slack",
            "team": teams[1].id,
            "target": "",
            "secret": "",
            "reminder_interval_minutes": "",
            "is_active": "on",
        },
    )
    assert response.status_code == 200
    assert "team" in response.context["adminform"].form.errors
    channel.refresh_from_db()
    assert channel.team == teams[0]
    assert channel.get_target() == SLACK_URL
