from monitors.api.views import MonitoredTableViewSet
from pulse_project.api import PulseRouter

router = PulseRouter()
router.register("tables", MonitoredTableViewSet, basename="table")
urlpatterns = router.urls
