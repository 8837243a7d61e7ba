from common.api import PulseRouter
from connections.api.views import ConnectionViewSet, MaintenanceWindowViewSet

router = PulseRouter()
router.register("connections", ConnectionViewSet, basename="connection")
router.register("maintenance-windows", MaintenanceWindowViewSet, basename="maintenance-window")
urlpatterns = router.urls
