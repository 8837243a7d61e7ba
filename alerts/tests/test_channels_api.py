"""/api/channels (and the channel and notification admins, which apply the same rules)."""

import logging

import pytest

from alerts.models import Channel, Notification

pytestmark = pytest.mark.django_db

SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXSLACKTOKEN"
WEBHOOK_URL = "https://example.com/pulse-hook?token=XXXXHOOKTOKEN"


def create(client, **fields):
    return client.post(
        "/api/channels", {"name": "oncall", "kind": "email", "target": "a@example.com", **fields}, format="json"
    )


@pytest.fixture
def channel(make_channel, teams):
    return make_channel(teams[0], "slack", SLACK_URL, name="team-slack")


def test_it_creates_an_email_channel_without_returning_the_target(owner_client, teams):
    response = create(owner_client, target=" oncall@example.com,data@example.com ", reminder_interval_minutes=30)

    assert response.status_code == 201, response.data
    body = response.json()
    assert body["team"] == teams[0].id  # the user's only team
    assert body["kind"] == "email"
    assert body["has_target"] is True
    assert body["has_secret"] is False
    assert body["reminder_interval_minutes"] == 30
    assert body["is_active"] is True
    assert "target" not in body and "secret" not in body
    assert "oncall@example.com" not in response.content.decode()
    stored = Channel.objects.get(pk=body["id"])
    assert stored.get_target() == "oncall@example.com, data@example.com"
    assert "oncall@example.com" not in stored.target_encrypted


def test_it_returns_a_generated_webhook_secret_once_and_never_again(owner_client):
    response = create(owner_client, name="hook", kind="webhook", target=WEBHOOK_URL)

    assert response.status_code == 201, response.data
    secret = response.json()["secret"]
    assert len(secret) >= 40
    channel = Channel.objects.get(pk=response.json()["id"])
    assert channel.get_secret() == secret
    assert secret not in channel.secret_encrypted
    assert "XXXXHOOKTOKEN" not in response.content.decode()
    assert "XXXXHOOKTOKEN" not in channel.target_encrypted

    for later in (
        owner_client.get(f"/api/channels/{channel.id}"),
        owner_client.get("/api/channels"),
        owner_client.patch(f"/api/channels/{channel.id}", {"name": "renamed"}, format="json"),
    ):
        assert later.status_code == 200
        assert secret not in later.content.decode()
        assert "XXXXHOOKTOKEN" not in later.content.decode()
    detail = owner_client.get(f"/api/channels/{channel.id}").json()
    assert "secret" not in detail and detail["has_secret"] is True


def test_it_keeps_a_chosen_webhook_secret_and_lets_it_be_rotated(owner_client):
    response = create(owner_client, kind="webhook", target=WEBHOOK_URL, secret="my-own-signing-secret-123")
    assert response.status_code == 201
    channel = Channel.objects.get(pk=response.json()["id"])
    assert channel.get_secret() == "my-own-signing-secret-123"

    response = owner_client.patch(
        f"/api/channels/{channel.id}", {"secret": "rotated-signing-secret-456"}, format="json"
    )
    assert response.status_code == 200
    assert "rotated-signing-secret-456" not in response.content.decode()
    channel.refresh_from_db()
    assert channel.get_secret() == "rotated-signing-secret-456"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"target": "not-an-address"}, "target"),
        ({"target": "a@example.com, nope"}, "target"),
        ({"target": ""}, "target"),
        ({"target": None}, "target"),
        ({"kind": "slack", "target": "http://hooks.slack.com/services/T/B/X"}, "target"),
        ({"kind": "slack", "target": "https://hooks.slack.com.evil.example/services/T/B/X"}, "target"),
        ({"kind": "slack", "target": "https://hooks.slack.com/"}, "target"),
        ({"kind": "webhook", "target": "ftp://example.com/hook"}, "target"),
        ({"kind": "webhook", "target": "https:///no-host"}, "target"),
        ({"kind": "webhook", "target": "https://example.com:99999/x"}, "target"),
        ({"kind": "webhook", "target": "https://exa mple.com/x"}, "target"),
        ({"kind": "webhook", "target": WEBHOOK_URL, "secret": "short"}, "secret"),
        ({"kind": "apprise", "target": "bogus://XXXXAPPRISETOKEN"}, "target"),
        ({"kind": "apprise", "target": "https://example.com/not-apprise"}, "target"),
        ({"secret": "an-email-channel-has-no-secret"}, "secret"),
        ({"kind": "sms"}, "kind"),
        ({"name": ""}, "name"),
        ({"reminder_interval_minutes": 0}, "reminder_interval_minutes"),
        ({"reminder_interval_minutes": 10081}, "reminder_interval_minutes"),
        ({"reminder_interval_minutes": "often"}, "reminder_interval_minutes"),
        ({"last_error": "x"}, "last_error"),
        ({"has_target": True}, "has_target"),
        ({"colour": "red"}, "colour"),
        ({"team": 99999999}, "team"),
    ],
)
def test_it_refuses_bad_input_and_saves_nothing(owner_client, fields, field, caplog):
    caplog.set_level(logging.DEBUG)
    response = create(owner_client, **fields)
    assert response.status_code == 400
    assert field in response.data
    assert Channel.objects.count() == 0
    target = str(fields.get("target"))
    if "XXXX" in target:
        assert "XXXX" not in response.content.decode()
        assert "XXXX" not in caplog.text


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "https://api.localhost/hook",
        "http://10.0.0.5/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9000/hook",
        "http://[::ffff:192.168.0.1]/hook",
    ],
)
def test_it_refuses_webhooks_to_private_or_internal_addresses(owner_client, settings, target):
    settings.PULSE_WEBHOOK_ALLOW_PRIVATE = False
    response = create(owner_client, kind="webhook", target=target, secret="s" * 32)
    assert response.status_code == 400
    assert "private or internal" in str(response.data["target"])
    assert "PULSE_WEBHOOK_ALLOW_PRIVATE=on" in str(response.data["target"])  # the setting a private network needs
    assert Channel.objects.count() == 0


def test_it_accepts_webhooks_to_public_hosts_and_private_ones_when_allowed(owner_client, settings):
    settings.PULSE_WEBHOOK_ALLOW_PRIVATE = False
    assert (
        create(owner_client, kind="webhook", target="https://hooks.example.com/pulse", secret="s" * 32).status_code
        == 201
    )
    settings.PULSE_WEBHOOK_ALLOW_PRIVATE = True
    response = create(owner_client, kind="webhook", target="http://10.0.0.5/hook", name="internal", secret="s" * 32)
    assert response.status_code == 201


def test_it_requires_a_target_on_create_only(owner_client, channel):
    response = owner_client.post("/api/channels", {"name": "x", "kind": "email"}, format="json")
    assert response.status_code == 400
    assert "target" in response.data
    response = owner_client.patch(f"/api/channels/{channel.id}", {"is_active": False}, format="json")
    assert response.status_code == 200
    channel.refresh_from_db()
    assert channel.get_target() == SLACK_URL
    assert channel.is_active is False


def test_it_validates_a_new_target_against_the_channels_kind(owner_client, channel):
    response = owner_client.patch(f"/api/channels/{channel.id}", {"target": "a@example.com"}, format="json")
    assert response.status_code == 400
    new_url = "https://hooks.slack.com/services/T111/B111/NEWTOKEN"
    response = owner_client.patch(f"/api/channels/{channel.id}", {"target": new_url}, format="json")
    assert response.status_code == 200
    channel.refresh_from_db()
    assert channel.get_target() == new_url


def test_it_refuses_to_change_kind_or_team(owner_client, owner, channel, teams):
    owner.groups.add(teams[1])
    response = owner_client.patch(
        f"/api/channels/{channel.id}", {"kind": "webhook", "target": WEBHOOK_URL}, format="json"
    )
    assert response.status_code == 400 and "kind" in response.data
    response = owner_client.patch(f"/api/channels/{channel.id}", {"team": teams[1].id}, format="json")
    assert response.status_code == 400 and "team" in response.data
    channel.refresh_from_db()
    assert (channel.kind, channel.team) == ("slack", teams[0])


def test_it_refuses_a_duplicate_name_in_the_team(make_channel, owner_client, channel):
    response = create(owner_client, name="team-slack")
    assert response.status_code == 400
    assert "unique" in str(response.data)
    other = make_channel(channel.team, "email", "a@example.com", name="other")
    response = owner_client.patch(f"/api/channels/{other.id}", {"name": "team-slack"}, format="json")
    assert response.status_code == 400
    assert Channel.objects.filter(name="team-slack").count() == 1


def test_it_needs_a_team_when_the_user_has_several_and_refuses_foreign_ones(owner_client, owner, teams):
    owner.groups.add(teams[1])
    assert create(owner_client).status_code == 400
    owner.groups.remove(teams[1])
    response = create(owner_client, team=teams[1].id)
    assert response.status_code == 400 and "team" in response.data
    assert Channel.objects.count() == 0


def test_it_lists_reads_updates_and_deletes_with_or_without_a_slash(owner_client, channel):
    assert owner_client.get("/api/channels").json()["count"] == 1
    assert owner_client.get("/api/channels/").json()["results"][0]["name"] == "team-slack"
    assert owner_client.get(f"/api/channels/{channel.id}/").json()["has_target"] is True
    response = owner_client.patch(f"/api/channels/{channel.id}/", {"reminder_interval_minutes": None}, format="json")
    assert response.status_code == 200
    assert create(owner_client, name="with-slash").status_code == 201
    assert owner_client.delete(f"/api/channels/{channel.id}").status_code == 204
    assert not Channel.objects.filter(pk=channel.pk).exists()


def test_the_test_action_queues_a_pending_notification(owner_client, channel):
    response = owner_client.post(f"/api/channels/{channel.id}/test")
    assert response.status_code == 202
    notification = Notification.objects.get()
    assert response.json()["id"] == notification.id
    assert response.json()["status"] == "pending"
    assert notification.channel == channel
    assert notification.event is None
    assert owner_client.post(f"/api/channels/{channel.id}/test/").status_code == 202


def test_outsider_gets_404_everywhere(outsider_client, channel):
    assert outsider_client.get("/api/channels").json()["count"] == 0
    assert outsider_client.get(f"/api/channels/{channel.id}").status_code == 404
    assert outsider_client.patch(f"/api/channels/{channel.id}", {"name": "x"}, format="json").status_code == 404
    assert outsider_client.post(f"/api/channels/{channel.id}/test").status_code == 404
    assert outsider_client.delete(f"/api/channels/{channel.id}").status_code == 404
    channel.refresh_from_db()
    assert channel.name == "team-slack"
    assert Notification.objects.count() == 0


def test_member_reads_but_cannot_write(member_client, channel):
    assert member_client.get(f"/api/channels/{channel.id}").status_code == 200
    assert create(member_client).status_code == 403
    assert member_client.patch(f"/api/channels/{channel.id}", {"name": "x"}, format="json").status_code == 403
    assert member_client.post(f"/api/channels/{channel.id}/test").status_code == 403
    assert member_client.delete(f"/api/channels/{channel.id}").status_code == 403
    assert Channel.objects.get().name == "team-slack"
    assert Notification.objects.count() == 0


def test_the_test_action_needs_the_change_permission(member, member_client, channel):
    from django.contrib.auth.models import Permission

    member.user_permissions.add(Permission.objects.get(codename="add_channel"))
    assert member_client.post(f"/api/channels/{channel.id}/test").status_code == 403
    member.user_permissions.add(Permission.objects.get(codename="change_channel"))
    member = type(member).objects.get(pk=member.pk)  # drop the permission cache
    member_client.force_authenticate(member)
    assert member_client.post(f"/api/channels/{channel.id}/test").status_code == 202


def test_anonymous_users_get_nothing(client, channel):
    assert client.get("/api/channels").status_code in (401, 403)


# --- admin -------------------------------------------------------------------------------------------------


def admin_form(channel, **fields):
    return {
        "name": channel.name,
        "team": channel.team_id,
        "target": "",
        "secret": "",
        "reminder_interval_minutes": "",
        "is_active": "on",
        **fields,
    }


def test_the_admin_masks_the_target_and_a_blank_one_keeps_it(client, staff, channel):
    client.force_login(staff)
    url = f"/admin/alerts/channel/{channel.id}/change/"
    page = client.get(url).content.decode()
    assert 'type="password"' in page
    assert "XXXXSLACKTOKEN" not in page and channel.target_encrypted not in page

    response = client.post(url, admin_form(channel, name="renamed"))
    assert response.status_code == 302, response.content.decode()[:2000]
    channel.refresh_from_db()
    assert channel.name == "renamed"
    assert channel.get_target() == SLACK_URL

    response = client.post(url, admin_form(channel, target="https://example.com/not-slack"))
    assert response.status_code == 200  # the form again, with the error
    channel.refresh_from_db()
    assert channel.get_target() == SLACK_URL


def test_the_admin_generates_a_webhook_secret_and_shows_it_once(client, staff, teams):
    client.force_login(staff)
    response = client.post(
        "/admin/alerts/channel/add/",
        {
            "name": "hook",
            "team": teams[0].id,
            "kind": "webhook",
            "target": WEBHOOK_URL,
            "secret": "",
            "reminder_interval_minutes": "",
            "is_active": "on",
        },
        follow=True,
    )
    assert response.status_code == 200
    channel = Channel.objects.get(name="hook")
    secret = channel.get_secret()
    assert len(secret) >= 40
    assert secret in response.content.decode()
    assert secret not in client.get(f"/admin/alerts/channel/{channel.id}/change/").content.decode()


def test_the_admin_sends_test_notifications_for_its_teams_channels_only(make_channel, client, staff, channel, teams):
    theirs = make_channel(teams[1], "email", "them@example.com", name="theirs")
    client.force_login(staff)
    listing = client.get("/admin/alerts/channel/").content.decode()
    assert "team-slack" in listing and "theirs" not in listing
    client.post("/admin/alerts/channel/", {"action": "send_test", "_selected_action": [channel.id, theirs.id]})
    assert list(Notification.objects.values_list("channel_id", flat=True)) == [channel.id]

    outbox = client.get("/admin/alerts/notification/").content.decode()
    assert "Test notification for channel team-slack" in outbox
    assert "theirs" not in outbox and "globex" not in listing  # not even in the filters
    mine = Notification.objects.get()
    detail = client.get(f"/admin/alerts/notification/{mine.id}/change/")
    assert detail.status_code == 200
    assert 'name="subject"' not in detail.content.decode()  # read-only: no form inputs
    notification_test_theirs = Notification.objects.create(
        channel=theirs, subject="theirs-subject", body="b", next_try_at=channel.created_at
    )
    assert "theirs-subject" not in client.get("/admin/alerts/notification/").content.decode()
    assert client.get(f"/admin/alerts/notification/{notification_test_theirs.id}/change/").status_code in (302, 404)
