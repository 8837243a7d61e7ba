import django_filters
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from alerts.api.serializers import AlertEventSerializer, AlertSerializer, SnoozeSerializer
from alerts.lifecycle import AlertStateError, alert_acknowledge, alert_resolve, alert_snooze
from alerts.models import Alert
from common.api import IdFilter
from common.viewsets import TeamScopedMixin


class AlertFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Alert.Status.choices)
    kind = django_filters.ChoiceFilter(choices=Alert.Kind.choices)
    table = IdFilter(field_name="table_id")
    connection = IdFilter(field_name="connection_id")

    class Meta:
        model = Alert
        fields = ["status", "kind", "table", "connection"]


class AlertViewSet(TeamScopedMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = AlertSerializer
    team_path = "connection__team"
    filter_backends = [DjangoFilterBackend]
    filterset_class = AlertFilter
    action_permissions = {"acknowledge": "change", "resolve": "change", "snooze": "change"}

    def base_queryset(self):
        return Alert.objects.all()  # the serializer shows connection and table ids only: no join needed

    def _transition(self, transition, **kwargs):
        try:
            alert = transition(alert=self.get_object(), user=self.request.user, **kwargs)
        except AlertStateError as exc:
            raise serializers.ValidationError({"status": [str(exc)]}) from None
        return Response(AlertSerializer(alert).data)

    @extend_schema(request=None, responses=AlertSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        return self._transition(alert_acknowledge)

    @extend_schema(
        request=None,
        responses=AlertSerializer,
        description="Resolve the alert by hand. If its check still fails, the resolve holds until the check "
        "recovers: `resolved_while_failing_at` is set, the same failure opens no new alert, and only a failure "
        "after a passing run alerts again. Resolving a schema_change alert accepts the new schema.",
    )
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        return self._transition(alert_resolve)

    @extend_schema(request=SnoozeSerializer, responses=AlertSerializer)
    @action(detail=True, methods=["post"])
    def snooze(self, request, pk=None):
        self.get_object()  # 404 before 400 for other teams' alerts
        params = SnoozeSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        return self._transition(alert_snooze, until=params.validated_data["until"])

    @extend_schema(responses=AlertEventSerializer(many=True))
    @action(detail=True, methods=["get"], filter_backends=[])
    def events(self, request, pk=None):
        events = self.get_object().events.select_related("actor").order_by("at", "id")
        page = self.paginate_queryset(events)
        return self.get_paginated_response(AlertEventSerializer(page, many=True).data)
