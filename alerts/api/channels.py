"""/api/channels: where a team's alert notifications go.

`target` (addresses or URL) and `secret` (webhook signing key) are write-only and stored encrypted; reads
carry `has_target` and `has_secret`. A webhook created without a secret gets a generated one, returned
once, in the create response only.
"""

import secrets

from django.contrib.auth.models import Group
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from alerts.models import Channel, Notification
from alerts.outbox import notification_test
from alerts.transports import target_clean
from common.api import SoleTeamDefault, StrictModelSerializer, TeamModelPermissions, UserTeamField
from common.tenancy import scope_to_user

REMINDER_MAX_MINUTES = 7 * 24 * 60


class ChannelSerializer(StrictModelSerializer):
    """A notification channel; `target` and `secret` are write-only and stored encrypted."""

    team = UserTeamField(default=SoleTeamDefault())
    target = serializers.CharField(
        write_only=True,
        required=False,
        max_length=2000,
        style={"input_type": "password"},
        help_text="email: comma-separated addresses; slack: https://hooks.slack.com/… URL; webhook: http(s) URL; "
        "apprise: an Apprise URL. Write-only, stored encrypted.",
    )
    secret = serializers.CharField(
        write_only=True,
        required=False,
        min_length=16,
        max_length=200,
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
            "is_active",
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

    def validate_team(self, team: Group) -> Group:
        if self.instance is not None and team.pk != self.instance.team_id:
            raise serializers.ValidationError("A channel cannot move to another team.")
        return team

    def validate_kind(self, kind: str) -> str:
        if self.instance is not None and kind != self.instance.kind:
            raise serializers.ValidationError("A channel's kind cannot change; create a new channel.")
        return kind

    def validate(self, attrs):
        kind = attrs.get("kind", self.instance.kind if self.instance else None)
        errors = {}
        if "target" in attrs:
            try:
                attrs["target"] = target_clean(kind=kind, target=attrs["target"])
            except ValueError as exc:
                errors["target"] = [str(exc)]
        elif self.instance is None:
            errors["target"] = ["This field is required."]
        if "secret" in attrs and kind != Channel.Kind.WEBHOOK:
            errors["secret"] = ["Only webhook channels have a signing secret."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def create(self, validated_data):
        target = validated_data.pop("target")
        secret = validated_data.pop("secret", None)
        channel = Channel(**validated_data)
        channel.set_target(target)
        if channel.kind == Channel.Kind.WEBHOOK:
            secret = secret or secrets.token_urlsafe(32)
            channel.set_secret(secret)
            self.created_secret = secret
        channel.save()
        return channel

    def update(self, instance, validated_data):
        if "target" in validated_data:
            instance.set_target(validated_data.pop("target"))
        if "secret" in validated_data:
            instance.set_secret(validated_data.pop("secret"))
        for field, value in validated_data.items():
            setattr(instance, field, value)
        instance.save()
        return instance


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


class ChannelViewSet(viewsets.ModelViewSet):
    serializer_class = ChannelSerializer
    permission_classes = [TeamModelPermissions]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    action_permissions = {"test": "change"}

    def get_queryset(self):
        return scope_to_user(Channel.objects.select_related("team"), user=self.request.user, team_path="team")

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
