"""API views composed in the project layer, where monitors and alerts are both visible."""

from alerts.lifecycle import table_rebaseline_accept
from monitors.api.views import MonitoredTableViewSet


class TableViewSet(MonitoredTableViewSet):
    """`/api/tables`: a rebaseline also resolves the table's open volume alert, in the same transaction."""

    table_rebaseline = staticmethod(table_rebaseline_accept)
