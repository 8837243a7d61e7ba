from alerts.api.views import AlertViewSet
from pulse_project.api import PulseRouter

router = PulseRouter()
router.register("alerts", AlertViewSet, basename="alert")
urlpatterns = router.urls
