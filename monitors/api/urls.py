from common.api import PulseRouter
from monitors.api.views import CheckViewSet, MonitoredTableViewSet

router = PulseRouter()
router.register("tables", MonitoredTableViewSet, basename="table")
router.register("checks", CheckViewSet, basename="check")
urlpatterns = router.urls
