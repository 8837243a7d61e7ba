import django_filters
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action

from connections.tenancy import scope_to_user
from monitors.api.serializers import (
    CheckResultSerializer,
    CheckSerializer,
    MonitoredTableSerializer,
    ResultFilterSerializer,
)
from monitors.models import Check, CheckKind, MonitoredTable
from pulse_project.api import IdFilter, TeamModelPermissions


class MonitoredTableFilter(django_filters.FilterSet):
    connection = IdFilter(field_name="connection_id")

    class Meta:
        model = MonitoredTable
        fields = ["connection"]


class MonitoredTableViewSet(viewsets.ModelViewSet):
    serializer_class = MonitoredTableSerializer
    permission_classes = [TeamModelPermissions]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filter_backends = [DjangoFilterBackend]
    filterset_class = MonitoredTableFilter

    def get_queryset(self):
        return scope_to_user(
            MonitoredTable.objects.select_related("connection"), user=self.request.user, team_path="connection__team"
        )

    @extend_schema(
        parameters=[OpenApiParameter("kind", str, enum=CheckKind.values)],
        responses=CheckResultSerializer(many=True),
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def results(self, request, pk=None):
        table = self.get_object()
        params = ResultFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        results = table.results.order_by("-started_at", "-id")
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


class CheckViewSet(viewsets.ModelViewSet):
    serializer_class = CheckSerializer
    permission_classes = [TeamModelPermissions]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filter_backends = [DjangoFilterBackend]
    filterset_class = CheckFilter

    def get_queryset(self):
        return scope_to_user(
            Check.objects.select_related("table", "table__connection"),
            user=self.request.user,
            team_path="table__connection__team",
        )
