import django_filters
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.response import Response

from common.api import IdFilter
from common.viewsets import TeamScopedViewSet
from connections.api.serializers import ConnectionSerializer, ConnectionTestSerializer, MaintenanceWindowSerializer
from connections.models import Connection, MaintenanceWindow
from connections.state import connection_test


class ConnectionViewSet(TeamScopedViewSet):
    serializer_class = ConnectionSerializer
    action_permissions = {"test": "change"}

    def base_queryset(self):
        return Connection.objects.select_related("allowance")

    @extend_schema(request=None, responses=ConnectionTestSerializer)
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        result = connection_test(connection=self.get_object())
        return Response(ConnectionTestSerializer(result).data)


class MaintenanceWindowFilter(django_filters.FilterSet):
    connection = IdFilter(field_name="connection_id")

    class Meta:
        model = MaintenanceWindow
        fields = ["connection"]


class MaintenanceWindowViewSet(TeamScopedViewSet):
    serializer_class = MaintenanceWindowSerializer
    team_path = "connection__team"
    filter_backends = [DjangoFilterBackend]
    filterset_class = MaintenanceWindowFilter

    def base_queryset(self):
        return MaintenanceWindow.objects.all()
