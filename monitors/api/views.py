import django_filters
import psycopg
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from common.api import IdFilter
from common.pagination import IdsFirstPagination, TimeOrderedPagination
from common.tenancy import scope_to_user
from common.viewsets import TeamScopedViewSet
from connections import guardrails, replica
from connections.api.views import ConnectionViewSet
from connections.models import Connection
from monitors import discovery, tables
from monitors.api.serializers import (
    CheckResultSerializer,
    CheckSerializer,
    DiscoverSerializer,
    DiscoveryPolicySerializer,
    MonitoredTableSerializer,
    RebaselineSerializer,
    ResultFilterSerializer,
)
from monitors.models import Check, CheckKind, MonitoredTable
from monitors.results import result_mark_expected


class MonitoredTableFilter(django_filters.FilterSet):
    connection = IdFilter(field_name="connection_id")

    class Meta:
        model = MonitoredTable
        fields = ["connection"]


class MonitoredTableViewSet(TeamScopedViewSet):
    """The project registers a subclass that binds `table_rebaseline` to the alert-resolving version."""

    serializer_class = MonitoredTableSerializer
    team_path = "connection__team"
    filter_backends = [DjangoFilterBackend]
    filterset_class = MonitoredTableFilter
    action_permissions = {"rebaseline": "change", "mark_expected": "change"}
    table_rebaseline = staticmethod(tables.table_rebaseline)

    pagination_class = IdsFirstPagination

    def base_queryset(self):
        return MonitoredTable.objects.all()  # the serializer shows the connection id only: no join needed

    def get_queryset(self):
        """The list names the team's connection ids (one small query first) rather than joining connections:
        with the ids in hand, PostgreSQL reads the tables in list order from the `table_list_order` index."""
        if self.action != "list":
            return super().get_queryset()
        connections = scope_to_user(Connection.objects.all(), user=self.request.user, team_path="team")
        return self.base_queryset().filter(connection_id__in=list(connections.order_by().values_list("id", flat=True)))

    @extend_schema(request=RebaselineSerializer, responses=MonitoredTableSerializer)
    @action(detail=True, methods=["post"])
    def rebaseline(self, request, pk=None):
        """Accept a level shift: volume takes the new level from `since` (default now); the volume alert resolves."""
        table = self.get_object()
        params = RebaselineSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        table = self.table_rebaseline(table=table, since=params.validated_data.get("since"))
        return Response(MonitoredTableSerializer(table, context=self.get_serializer_context()).data)

    @extend_schema(request=None, responses=CheckResultSerializer)
    @action(detail=True, methods=["post"], url_path=r"results/(?P<result_id>[0-9]{1,18})/mark-expected")
    def mark_expected(self, request, pk=None, result_id=None):
        """Say an anomalous value was legitimate: it then trains the baseline."""
        table = self.get_object()
        result = table.results.filter(pk=result_id).first()
        if result is None:
            raise serializers.ValidationError({"result": ["No such result for this table."]})
        if not result.is_anomaly:
            raise serializers.ValidationError({"result": ["Only results judged anomalous can be marked expected."]})
        return Response(CheckResultSerializer(result_mark_expected(result=result)).data)

    @extend_schema(
        parameters=[OpenApiParameter("kind", str, enum=CheckKind.values)],
        responses=CheckResultSerializer(many=True),
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=TimeOrderedPagination)
    def results(self, request, pk=None):
        """The table's results, newest first, by cursor (`next`, `previous`) or `?page=N`; no count."""
        table = self.get_object()
        params = ResultFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        results = table.results.all()
        if "kind" in params.validated_data:
            results = results.filter(kind=params.validated_data["kind"])
        page = self.paginate_queryset(results)
        return self.get_paginated_response(CheckResultSerializer(page, many=True).data)


class CheckFilter(django_filters.FilterSet):
    table = IdFilter(field_name="table_id")
    kind = django_filters.ChoiceFilter(choices=Check.Kind.choices)

    class Meta:
        model = Check
        fields = ["table", "kind"]


class CheckViewSet(TeamScopedViewSet):
    serializer_class = CheckSerializer
    team_path = "table__connection__team"
    filter_backends = [DjangoFilterBackend]
    filterset_class = CheckFilter

    def base_queryset(self):
        return Check.objects.select_related("table", "table__connection")


class ConnectionDiscoveryViewSet(ConnectionViewSet):
    """`/api/connections` with discovery: `POST {id}/discover` and `GET, PATCH {id}/discovery` (its settings).

    The project registers a subclass that binds `on_recorded` to the alert intake (the missing-tables alert)."""

    action_permissions = {**ConnectionViewSet.action_permissions, "discover": "change"}
    on_recorded = None

    @extend_schema(request=DiscoverSerializer, responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["post"])
    def discover(self, request, pk=None):
        """Dry run by default: the tables discovery would add (chosen timestamp columns and why), skip and
        mark missing; `{"apply": true}` does it."""
        connection = self.get_object()
        params = DiscoverSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        try:
            summary = discovery.discovery_run(
                connection=connection, apply=params.validated_data["apply"], on_recorded=self.on_recorded
            )
        except (replica.ReplicaError, guardrails.GuardrailStop, guardrails.CheckError) as exc:
            raise serializers.ValidationError({"connection": [f"cannot read the replica's catalog: {exc}"]}) from None
        except psycopg.Error as exc:  # the catalog query failed (timeout, conflict): a clear 400, never a 500
            raise serializers.ValidationError(
                {"connection": [f"cannot read the replica's catalog: {replica.describe_error(exc)}"]}
            ) from None
        return Response(summary)

    @extend_schema(request=DiscoveryPolicySerializer, responses=DiscoveryPolicySerializer)
    @action(detail=True, methods=["get", "patch"], filter_backends=[])
    def discovery(self, request, pk=None):
        """The connection's discovery settings (created disabled, with the defaults, when first read)."""
        policy = discovery.policy_for(connection=self.get_object())
        if request.method == "GET":
            return Response(DiscoveryPolicySerializer(policy).data)
        serializer = DiscoveryPolicySerializer(policy, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(DiscoveryPolicySerializer(policy).data)
