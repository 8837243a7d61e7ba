from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from alerts.api.channels import ChannelViewSet
from alerts.api.views import AlertViewSet
from common.api import AuthTokenView, PulseRouter
from connections.api.views import ConnectionViewSet, MaintenanceWindowViewSet
from monitors.api.views import CheckViewSet
from pulse_project.health import health
from pulse_project.views import TableViewSet

admin.autodiscover()  # here rather than at start-up (settings: SimpleAdminConfig), for the processes that serve pages

# Every API endpoint of every app, in one place: adding one is a viewset plus one line here.
router = PulseRouter()
router.register("connections", ConnectionViewSet, basename="connection")
router.register("tables", TableViewSet, basename="table")
router.register("checks", CheckViewSet, basename="check")
router.register("alerts", AlertViewSet, basename="alert")
router.register("channels", ChannelViewSet, basename="channel")
router.register("maintenance-windows", MaintenanceWindowViewSet, basename="maintenance-window")

api_patterns = [
    re_path(r"^health/?$", health, name="health"),
    re_path(r"^auth/token/?$", AuthTokenView.as_view(), name="auth-token"),
    re_path(r"^schema/?$", SpectacularAPIView.as_view(), name="schema"),
    re_path(r"^docs/?$", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    *router.urls,
]

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api-auth/", include("rest_framework.urls")),
    path("api/", include(api_patterns)),
]
