from dataclasses import asdict

from django.core.exceptions import ObjectDoesNotExist
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common.api import ManagedModelSerializer, SoleTeamDefault, StrictModelSerializer, UserTeamField
from common.tenancy import scope_to_user
from connections import guardrails, replica
from connections.maintenance import maintenance_window_problems
from connections.models import Connection, MaintenanceWindow, holidays_in_order
from connections.state import connection_activation_apply, connection_change_problems

# Changing any of these means Pulse must reach the replica again before saving.
PROBED_FIELDS = ("host", "port", "database", "username", "password", "sslmode", "require_replica")


class UserConnectionField(serializers.PrimaryKeyRelatedField):
    """A connection of one of the requesting user's teams; any other id is "does not exist"."""

    def get_queryset(self):
        return scope_to_user(Connection.objects.all(), user=self.context["request"].user, team_path="team")


class ReplicaTimeSerializer(serializers.Serializer):
    """The replica time share a connection's checks use: its limit and what was used now and this hour."""

    limit_percent = serializers.FloatField(help_text="replica_time_share_percent: the share of one backend.")
    burst_seconds = serializers.FloatField(help_text="replica_time_burst_seconds.")
    now_percent = serializers.FloatField(help_text="Share of one backend used over about the last minute.")
    this_hour_seconds = serializers.FloatField(help_text="Server time used since the hour began.")
    this_hour_percent = serializers.FloatField(help_text="Share of one backend used since the hour began.")
    available_seconds = serializers.FloatField(help_text="Server time available at once now (negative: debt).")
    queries_this_hour = serializers.IntegerField(help_text="Queries sent since the hour began.")


class ConnectionSerializer(StrictModelSerializer):
    team = UserTeamField(default=SoleTeamDefault())
    password = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=1024,
        trim_whitespace=False,
        style={"input_type": "password"},
    )
    has_password = serializers.BooleanField(read_only=True)
    replica_time = serializers.SerializerMethodField()

    class Meta:
        model = Connection
        fields = [
            "id",
            "name",
            "team",
            "host",
            "port",
            "database",
            "username",
            "password",
            "has_password",
            "sslmode",
            "require_replica",
            "statement_timeout_ms",
            "max_queries_per_hour",
            "max_concurrent_queries",
            "max_queries_per_second",
            "max_query_cost",
            "replica_time_share_percent",
            "replica_time_burst_seconds",
            "replica_time",
            "replication_lag_threshold_seconds",
            "connection_error_threshold",
            "holidays",
            "is_active",
            "status",
            "last_error",
            "last_checked_at",
            "consecutive_failures",
            "backoff_until",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "status",
            "last_error",
            "last_checked_at",
            "consecutive_failures",
            "backoff_until",
            "created_at",
            "updated_at",
        ]

    @extend_schema_field(ReplicaTimeSerializer)
    def get_replica_time(self, connection: Connection) -> dict:
        try:
            allowance = connection.allowance
        except ObjectDoesNotExist:
            allowance = None
        return asdict(guardrails.share_use(connection=connection, allowance=allowance, now=timezone.now()))

    def validate_holidays(self, value: list) -> list:
        return holidays_in_order(value)

    def validate(self, attrs):
        problems = connection_change_problems(
            connection=self.instance,
            changes=attrs,
            password_given="password" in attrs,
            user=self.context["request"].user,
        )
        if problems:
            raise serializers.ValidationError(problems)
        if self.instance is None or any(f in attrs for f in PROBED_FIELDS):
            self._probe(attrs)
        return attrs

    def _probe(self, attrs) -> None:
        def current(field, default=None):
            if field in attrs:
                return attrs[field]
            return getattr(self.instance, field, default) if self.instance else default

        password = attrs["password"] if "password" in attrs else (self.instance.get_password() if self.instance else "")
        conninfo = {
            "host": current("host"),
            "port": current("port", 5432),
            "dbname": current("database"),
            "user": current("username"),
            "password": password,
            "sslmode": current("sslmode", Connection.SSLMode.PREFER),
        }
        result = replica.probe(
            conninfo=conninfo,
            statement_timeout_ms=current("statement_timeout_ms", 5000),
            require_replica=current("require_replica", True),
        )
        if not result.ok:
            raise serializers.ValidationError({"non_field_errors": [f"Connection check failed: {result.error}"]})
        self.probe_result = result

    def _save_with_password(self, instance: Connection, password: str | None) -> Connection:
        """Save after a successful probe (or a change that needs none); a deactivated connection is paused."""
        if password is not None:
            instance.set_password(password)
        connection_activation_apply(connection=instance, probed=hasattr(self, "probe_result"))
        instance.save()
        return instance

    def create(self, validated_data):
        password = validated_data.pop("password", "")
        return self._save_with_password(Connection(**validated_data), password)

    def update(self, instance, validated_data):
        password = validated_data.pop("password", None)
        for field, value in validated_data.items():
            setattr(instance, field, value)
        return self._save_with_password(instance, password)


class ConnectionTestSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    in_recovery = serializers.BooleanField(allow_null=True)
    server_version = serializers.CharField(allow_null=True)
    error = serializers.CharField(allow_null=True)


class MaintenanceWindowSerializer(ManagedModelSerializer):
    connection = UserConnectionField()

    class Meta:
        model = MaintenanceWindow
        fields = ["id", "connection", "starts_at", "ends_at", "reason", "managed_by"]

    def validate(self, attrs):
        problems = maintenance_window_problems(window=self.instance, changes=attrs)
        if problems:
            raise serializers.ValidationError({field: [message] for field, message in problems.items()})
        return attrs
