from common.api import PulseRouter
from connections.api.views import ConnectionViewSet

router = PulseRouter()
router.register("connections", ConnectionViewSet, basename="connection")
urlpatterns = router.urls
