from monitors.api.views import CheckViewSet, MonitoredTableViewSet
from pulse_project.api import PulseRouter

router = PulseRouter()
router.register("tables", MonitoredTableViewSet, basename="table")
router.register("checks", CheckViewSet, basename="check")
urlpatterns = router.urls
