from datetime import timedelta

from django.utils import timezone
from rest_framework import serializers

from alerts.models import Alert, AlertEvent
from common.api import ReadPlanMixin

MAX_SNOOZE = timedelta(days=30)


class AlertSerializer(ReadPlanMixin, serializers.ModelSerializer):
    class Meta:
        model = Alert
        fields = [
            "id",
            "connection",
            "table",
            "kind",
            "severity",
            "status",
            "message",
            "opened_at",
            "last_seen_at",
            "resolved_at",
            "consecutive_failures",
            "snoozed_until",
            "resolved_while_failing_at",
        ]
        read_only_fields = fields


class AlertEventSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = AlertEvent
        fields = ["id", "kind", "at", "message", "actor"]
        read_only_fields = fields


class SnoozeSerializer(serializers.Serializer):
    """Either `minutes` from now or an `until` timestamp, at most 30 days ahead."""

    minutes = serializers.IntegerField(min_value=1, max_value=int(MAX_SNOOZE.total_seconds() // 60), required=False)
    until = serializers.DateTimeField(required=False)

    def validate(self, attrs):
        unknown = set(self.initial_data) - {"minutes", "until"} if isinstance(self.initial_data, dict) else set()
        if unknown:
            raise serializers.ValidationError({field: ["Unknown field."] for field in unknown})
        if ("minutes" in attrs) == ("until" in attrs):
            raise serializers.ValidationError("Give exactly one of `minutes` or `until`.")
        now = timezone.now()
        until = attrs["until"] if "until" in attrs else now + timedelta(minutes=attrs["minutes"])
        if until <= now:
            raise serializers.ValidationError({"until": ["Must be in the future."]})
        if until > now + MAX_SNOOZE:
            raise serializers.ValidationError({"until": ["Must be at most 30 days ahead."]})
        return {"until": until}
