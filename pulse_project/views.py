"""API views composed in the project layer, where monitors, alerts and observability are all visible."""

from rest_framework import routers
from rest_framework.permissions import AllowAny
from rest_framework.reverse import reverse

from alerts.intake import results_intake
from alerts.lifecycle import table_rebaseline_accept
from common.api import PulseRouter
from connections.api.serializers import ConnectionSerializer as BaseConnectionSerializer
from monitors.api.serializers import MonitoredTableSerializer
from monitors.api.views import ConnectionDiscoveryViewSet, MonitoredTableViewSet
from observability.api.serializers import BadgeUrlField


class TableSerializer(MonitoredTableSerializer):
    badge_url = BadgeUrlField()

    class Meta(MonitoredTableSerializer.Meta):
        fields = [*MonitoredTableSerializer.Meta.fields, "badge_url"]


class TableViewSet(MonitoredTableViewSet):
    """`/api/tables`: a rebaseline also resolves the table's open volume alert, in the same transaction; each
    table shows its public badge URL."""

    serializer_class = TableSerializer
    table_rebaseline = staticmethod(table_rebaseline_accept)


class ConnectionSerializer(BaseConnectionSerializer):
    """The connection with its public badge URL (the OpenAPI component keeps the name `Connection`)."""

    badge_url = BadgeUrlField()

    class Meta(BaseConnectionSerializer.Meta):
        fields = [*BaseConnectionSerializer.Meta.fields, "badge_url"]


class ConnectionViewSet(ConnectionDiscoveryViewSet):
    """`/api/connections`, with each connection's public badge URL; a discovery's missing-tables result goes
    through the alert intake."""

    serializer_class = ConnectionSerializer
    on_recorded = staticmethod(results_intake)


class ApiRootView(routers.APIRootView):
    """`/api/`: every endpoint of the router, then the documentation and service endpoints. Open to anyone, like
    the schema it points to: it lists addresses, never data."""

    permission_classes = [AllowAny]
    extra_links = {"docs": "docs", "redoc": "redoc", "schema": "schema", "health": "health", "auth-token": "auth-token"}

    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        for label, url_name in self.extra_links.items():
            response.data[label] = reverse(url_name, request=request, format=kwargs.get("format"))
        return response


class ApiRouter(PulseRouter):
    """The project's one router, with the browsable API root at `/api/`."""

    include_root_view = True
    APIRootView = ApiRootView
