import django_filters
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from alerts.api.serializers import AlertSerializer
from alerts.lifecycle import AlertStateError, alert_acknowledge, alert_resolve
from alerts.models import Alert
from connections.tenancy import scope_to_user
from pulse_project.api import IdFilter, TeamModelPermissions


class AlertFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Alert.Status.choices)
    kind = django_filters.ChoiceFilter(choices=Alert.Kind.choices)
    table = IdFilter(field_name="table_id")
    connection = IdFilter(field_name="connection_id")

    class Meta:
        model = Alert
        fields = ["status", "kind", "table", "connection"]


class AlertViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = AlertSerializer
    permission_classes = [TeamModelPermissions]
    filter_backends = [DjangoFilterBackend]
    filterset_class = AlertFilter
    action_permissions = {"acknowledge": "change", "resolve": "change"}

    def get_queryset(self):
        return scope_to_user(
            Alert.objects.select_related("connection", "table"),
            user=self.request.user,
            team_path="connection__team",
        )

    def _transition(self, transition):
        try:
            alert = transition(alert=self.get_object())
        except AlertStateError as exc:
            raise serializers.ValidationError({"status": [str(exc)]}) from None
        return Response(AlertSerializer(alert).data)

    @extend_schema(request=None, responses=AlertSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        return self._transition(alert_acknowledge)

    @extend_schema(request=None, responses=AlertSerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        return self._transition(alert_resolve)
