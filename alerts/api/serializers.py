from rest_framework import serializers

from alerts.models import Alert


class AlertSerializer(serializers.ModelSerializer):
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
        ]
        read_only_fields = fields
