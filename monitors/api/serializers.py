from datetime import timedelta

from django.utils import timezone
from rest_framework import serializers

from common.api import ManagedModelSerializer, ReadPlanMixin, StrictModelSerializer
from common.tenancy import scope_to_user
from connections.api.serializers import UserConnectionField
from monitors.check_rules import AUTOMATIC_KINDS, check_problems, kind_problem
from monitors.discovery import (
    MAX_PATTERN_LENGTH,
    MAX_PATTERNS,
    MAX_SCHEMAS,
    SCOPE_FIELDS,
    policy_update,
    scope_problems,
)
from monitors.models import Check, CheckResult, DiscoveryPolicy, MonitoredTable
from monitors.table_rules import CATALOG_FIELDS, table_problems
from monitors.tables import table_activation_apply, table_timestamp_choice_apply


class MonitoredTableSerializer(ReadPlanMixin, ManagedModelSerializer):
    connection = UserConnectionField()

    class Meta:
        model = MonitoredTable
        fields = [
            "id",
            "connection",
            "schema_name",
            "table_name",
            "timestamp_column",
            "timestamp_column_chosen_by",
            "timestamp_column_reason",
            "discovered_at",
            "missing_since",
            "freshness_threshold_minutes",
            "check_interval_seconds",
            "failure_threshold",
            "sensitivity",
            "sensitivity_preset",
            "direction",
            "seasonality",
            "min_relative_change",
            "min_absolute_change",
            "quiet_on_holidays",
            "is_active",
            "managed_by",
            "status",
            "last_checked_at",
            "next_check_at",
            "last_error",
            "baseline_since",
            "volume_series",
            "volume_bucket_seconds",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "timestamp_column_chosen_by",
            "timestamp_column_reason",
            "discovered_at",
            "missing_since",
            "status",
            "last_checked_at",
            "next_check_at",
            "last_error",
            "baseline_since",
            "volume_series",
            "volume_bucket_seconds",
            "created_at",
            "updated_at",
        ]

    def create(self, validated_data):
        table = MonitoredTable(**validated_data)
        table_activation_apply(table=table, was_active=None)
        table_timestamp_choice_apply(table=table, previous_column=None)
        table.save()
        return table

    def update(self, instance, validated_data):
        """Deactivating a table pauses it (status `paused`: no checks, no alerts); reactivating makes it due now."""
        was_active, previous_column = instance.is_active, instance.timestamp_column
        for field, value in validated_data.items():
            setattr(instance, field, value)
        table_activation_apply(table=instance, was_active=was_active)
        table_timestamp_choice_apply(table=instance, previous_column=previous_column)
        instance.save()
        return instance

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


class CheckResultSerializer(ReadPlanMixin, serializers.ModelSerializer):
    class Meta:
        model = CheckResult
        fields = [
            "id",
            "connection",
            "table",
            "check_definition",
            "kind",
            "status",
            "observed_value",
            "expected_lower",
            "expected_upper",
            "is_anomaly",
            "marked_expected",
            "bucket_start",
            "message",
            "details",
            "started_at",
            "duration_ms",
            "queries_used",
        ]
        read_only_fields = fields


class RebaselineSerializer(serializers.Serializer):
    """Optional `since`: when the new level started (at most 14 days ago); default now."""

    since = serializers.DateTimeField(required=False)

    def validate(self, attrs):
        if isinstance(self.initial_data, dict):
            unknown = set(self.initial_data) - {"since"}
            if unknown:
                raise serializers.ValidationError({field: ["Unknown field."] for field in unknown})
        since = attrs.get("since")
        now = timezone.now()
        if since is not None and not now - timedelta(days=14) <= since <= now:
            raise serializers.ValidationError({"since": ["Must be within the last 14 days."]})
        return attrs


class ResultFilterSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=CheckResult._meta.get_field("kind").choices, required=False)


class UserTableField(serializers.PrimaryKeyRelatedField):
    def get_queryset(self):
        return scope_to_user(
            MonitoredTable.objects.select_related("connection"),
            user=self.context["request"].user,
            team_path="connection__team",
        )


class CheckKindField(serializers.ChoiceField):
    """The configurable kinds; the automatic ones are refused with a message saying so."""

    def __init__(self, **kwargs):
        super().__init__(choices=Check.Kind.choices, **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, str) and data in AUTOMATIC_KINDS:
            raise serializers.ValidationError(kind_problem(data))
        return super().to_internal_value(data)


# Sending either of these means the replica is consulted again before saving (column lookup, EXPLAIN).
REPLICA_CHECKED_FIELDS = ("column", "sql")
RULE_FIELDS = ("table", "kind", "column", "sql", "min_value", "max_value")
RULE_DEFAULTS = {"column": "", "sql": "", "min_value": None, "max_value": None}


class CheckSerializer(ManagedModelSerializer):
    table = UserTableField()
    kind = CheckKindField()

    class Meta:
        model = Check
        fields = [
            "id",
            "table",
            "kind",
            "column",
            "sql",
            "min_value",
            "max_value",
            "is_active",
            "managed_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def validate_table(self, table):
        if self.instance is not None and table.pk != self.instance.table_id:
            raise serializers.ValidationError("A check cannot move to another table; create a new check instead.")
        return table

    def validate_kind(self, kind):
        if self.instance is not None and kind != self.instance.kind:
            raise serializers.ValidationError("The kind of a check cannot change; create a new check instead.")
        return kind

    def validate(self, attrs):
        merged = {
            field: attrs[field] if field in attrs else getattr(self.instance, field, RULE_DEFAULTS.get(field))
            for field in RULE_FIELDS
        }
        problems = check_problems(
            table=merged["table"],
            kind=merged["kind"],
            column=merged["column"],
            sql_text=merged["sql"],
            min_value=merged["min_value"],
            max_value=merged["max_value"],
            consult_replica=self.instance is None or any(field in attrs for field in REPLICA_CHECKED_FIELDS),
        )
        if problems:
            raise serializers.ValidationError({field: [message] for field, message in problems.items()})
        return attrs


class DiscoveryPolicySerializer(StrictModelSerializer):
    """A connection's discovery settings: schedule, scope and the defaults of the tables it adds."""

    schemas = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=63),
        required=False,
        max_length=MAX_SCHEMAS,
    )
    include_patterns = serializers.ListField(
        child=serializers.CharField(trim_whitespace=False, max_length=MAX_PATTERN_LENGTH),
        required=False,
        max_length=MAX_PATTERNS,
    )
    exclude_patterns = serializers.ListField(
        child=serializers.CharField(trim_whitespace=False, max_length=MAX_PATTERN_LENGTH),
        required=False,
        max_length=MAX_PATTERNS,
    )

    class Meta:
        model = DiscoveryPolicy
        fields = [
            "is_enabled",
            "interval_minutes",
            "schemas",
            "include_patterns",
            "exclude_patterns",
            "max_tables",
            "first_checks_per_minute",
            "check_interval_seconds",
            "freshness_threshold_minutes",
            "failure_threshold",
            "last_run_at",
            "next_run_at",
            "last_summary",
            "last_error",
        ]
        read_only_fields = ["last_run_at", "next_run_at", "last_summary", "last_error"]

    def validate(self, attrs):
        merged = {name: attrs.get(name, getattr(self.instance, name)) for name in SCOPE_FIELDS}
        problems = scope_problems(**merged)
        if problems:
            raise serializers.ValidationError({name: [message] for name, message in problems.items()})
        return attrs

    def update(self, instance, validated_data):
        return policy_update(policy=instance, changes=validated_data)


class DiscoverSerializer(serializers.Serializer):
    """`apply`: false (default) reports what discovery would do; true does it."""

    apply = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs):
        if isinstance(self.initial_data, dict):
            unknown = set(self.initial_data) - {"apply"}
            if unknown:
                raise serializers.ValidationError({field: ["Unknown field."] for field in unknown})
        return attrs
