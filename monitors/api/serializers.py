from rest_framework import serializers

from connections.models import Connection
from connections.tenancy import scope_to_user
from monitors.models import CheckResult, MonitoredTable
from monitors.validation import table_problems
from pulse_project.api import StrictModelSerializer

# Changing any of these means the replica's catalog is consulted again before saving.
CATALOG_FIELDS = ("connection", "schema_name", "table_name", "timestamp_column")


class UserConnectionField(serializers.PrimaryKeyRelatedField):
    def get_queryset(self):
        return scope_to_user(Connection.objects.all(), user=self.context["request"].user, team_path="team")


class MonitoredTableSerializer(StrictModelSerializer):
    connection = UserConnectionField()

    class Meta:
        model = MonitoredTable
        fields = [
            "id",
            "connection",
            "schema_name",
            "table_name",
            "timestamp_column",
            "freshness_threshold_minutes",
            "check_interval_seconds",
            "failure_threshold",
            "is_active",
            "status",
            "last_checked_at",
            "next_check_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["status", "last_checked_at", "next_check_at", "created_at", "updated_at"]

    def validate_connection(self, connection):
        if self.instance is not None and connection.pk != self.instance.connection_id:
            raise serializers.ValidationError("A monitored table cannot move to another connection.")
        return connection

    def validate(self, attrs):
        if self.instance is None or any(field in attrs for field in CATALOG_FIELDS):
            merged = {field: attrs.get(field, getattr(self.instance, field, None)) for field in CATALOG_FIELDS}
            problems = table_problems(
                connection=merged["connection"],
                schema_name=merged["schema_name"] if merged["schema_name"] is not None else "public",
                table_name=merged["table_name"],
                timestamp_column=merged["timestamp_column"] or "",
            )
            if problems:
                raise serializers.ValidationError({field: [message] for field, message in problems.items()})
        return attrs


class CheckResultSerializer(serializers.ModelSerializer):
    class Meta:
        model = CheckResult
        fields = [
            "id",
            "table",
            "kind",
            "status",
            "observed_value",
            "expected_lower",
            "expected_upper",
            "message",
            "started_at",
            "duration_ms",
            "queries_used",
        ]
        read_only_fields = fields


class ResultFilterSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=CheckResult._meta.get_field("kind").choices, required=False)
