"""/api/channels: where a team's alert notifications go.

`target` (addresses or URL) and `secret` (webhook signing key) are write-only and stored encrypted; reads
carry `has_target` and `has_secret`. A webhook created without a secret gets a generated one, returned
once, in the create response only.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from alerts.channels import (
    REMINDER_MAX_MINUTES,
    SECRET_MAX_LENGTH,
    SECRET_MIN_LENGTH,
    TARGET_HELP,
    TARGET_MAX_LENGTH,
    channel_create,
    channel_problems,
    channel_update,
)
from alerts.models import Channel, Notification
from alerts.outbox import notification_test
from common.api import ManagedModelSerializer, SoleTeamDefault, UserTeamField
from common.viewsets import TeamScopedViewSet


class ChannelSerializer(ManagedModelSerializer):
    """A notification channel; `target` and `secret` are write-only and stored encrypted."""

    team = UserTeamField(default=SoleTeamDefault())
    target = serializers.CharField(
        write_only=True,
        required=False,
        max_length=TARGET_MAX_LENGTH,
        style={"input_type": "password"},
        help_text=TARGET_HELP + " Write-only.",
    )
    secret = serializers.CharField(
        write_only=True,
        required=False,
        min_length=SECRET_MIN_LENGTH,
        max_length=SECRET_MAX_LENGTH,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="webhook only: the HMAC-SHA256 signing key. Generated when omitted on create and then returned "
        "once in the create response; never returned otherwise.",
    )
    has_target = serializers.SerializerMethodField()
    has_secret = serializers.SerializerMethodField()
    reminder_interval_minutes = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=REMINDER_MAX_MINUTES
    )
    write_only_managed = ("target", "secret")

    class Meta:
        model = Channel
        fields = [
            "id",
            "team",
            "name",
            "kind",
            "target",
            "secret",
            "has_target",
            "has_secret",
            "reminder_interval_minutes",
            "remind_earlier_alerts",
            "is_active",
            "managed_by",
            "last_error",
            "last_error_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["last_error", "last_error_at", "created_at", "updated_at"]

    def get_has_target(self, channel: Channel) -> bool:
        return bool(channel.target_encrypted)

    def get_has_secret(self, channel: Channel) -> bool:
        return bool(channel.secret_encrypted)

    def validate(self, attrs):
        problems = channel_problems(
            kind=attrs.get("kind"),
            target=attrs.get("target"),
            secret=attrs.get("secret"),
            instance=self.instance,
            team=attrs.get("team"),
        )
        if problems:
            raise serializers.ValidationError({field: [message] for field, message in problems.items()})
        return attrs

    def create(self, validated_data):
        channel, generated = channel_create(**validated_data)
        if channel.kind == Channel.Kind.WEBHOOK:
            self.created_secret = validated_data.get("secret") or generated
        return channel

    def update(self, instance, validated_data):
        return channel_update(channel=instance, **validated_data)


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = [
            "id",
            "channel",
            "event",
            "subject",
            "body",
            "status",
            "tries",
            "next_try_at",
            "sent_at",
            "last_error",
            "created_at",
        ]
        read_only_fields = fields


class ChannelViewSet(TeamScopedViewSet):
    serializer_class = ChannelSerializer
    team_path = "team"
    action_permissions = {"test": "change"}

    def base_queryset(self):
        return Channel.objects.select_related("team")

    @extend_schema(
        description="Creates a channel. For a webhook the response also carries `secret`, the signing key "
        "(generated unless given): shown this once, never returned again."
    )
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        serializer.save()
        data = dict(serializer.data)
        created_secret = getattr(serializer, "created_secret", None)
        if created_secret:
            data["secret"] = created_secret
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={202: NotificationSerializer})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        notification = notification_test(channel=self.get_object())
        return Response(NotificationSerializer(notification).data, status=status.HTTP_202_ACCEPTED)
