from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from common.api import TeamModelPermissions
from common.tenancy import scope_to_user
from connections.api.serializers import ConnectionSerializer, ConnectionTestSerializer
from connections.models import Connection
from connections.state import connection_test


class ConnectionViewSet(viewsets.ModelViewSet):
    serializer_class = ConnectionSerializer
    permission_classes = [TeamModelPermissions]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    action_permissions = {"test": "change"}

    def get_queryset(self):
        return scope_to_user(Connection.objects.all(), user=self.request.user, team_path="team")

    @extend_schema(request=None, responses=ConnectionTestSerializer)
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        result = connection_test(connection=self.get_object())
        return Response(ConnectionTestSerializer(result).data)
