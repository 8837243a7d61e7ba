from connections.api.views import ConnectionViewSet
from pulse_project.api import PulseRouter

router = PulseRouter()
router.register("connections", ConnectionViewSet, basename="connection")
urlpatterns = router.urls
