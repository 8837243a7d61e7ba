from alerts.api.channels import ChannelViewSet
from alerts.api.views import AlertViewSet
from common.api import PulseRouter

router = PulseRouter()
router.register("alerts", AlertViewSet, basename="alert")
router.register("channels", ChannelViewSet, basename="channel")
urlpatterns = router.urls
