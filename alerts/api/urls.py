from alerts.api.channels import ChannelViewSet
from alerts.api.views import AlertViewSet, MaintenanceWindowViewSet
from common.api import PulseRouter

router = PulseRouter()
router.register("alerts", AlertViewSet, basename="alert")
router.register("channels", ChannelViewSet, basename="channel")
router.register("maintenance-windows", MaintenanceWindowViewSet, basename="maintenance-window")
urlpatterns = router.urls
