"""API views composed in the project layer, where monitors and alerts are both visible."""

from alerts.intake import results_intake
from alerts.lifecycle import table_rebaseline_accept
from monitors.api.views import ConnectionDiscoveryViewSet, MonitoredTableViewSet


class ConnectionViewSet(ConnectionDiscoveryViewSet):
    """`/api/connections`: a discovery's missing-tables result goes through the alert intake."""

    on_recorded = staticmethod(results_intake)


class TableViewSet(MonitoredTableViewSet):
    """`/api/tables`: a rebaseline also resolves the table's open volume alert, in the same transaction."""

    table_rebaseline = staticmethod(table_rebaseline_accept)
