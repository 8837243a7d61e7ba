from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from alerts.api.channels import ChannelViewSet
from alerts.api.views import AlertViewSet
from common.api import AuthTokenView
from connections.api.views import MaintenanceWindowViewSet
from monitors.api.views import CheckViewSet
from monitors_as_code.api import ApplyView, PlanView
from observability.api.views import BadgeViewSet
from observability.views import badge, metrics
from pulse_project.health import health
from pulse_project.views import ApiRouter, ConnectionViewSet, TableViewSet

admin.autodiscover()  # here rather than at start-up (settings: SimpleAdminConfig), for the processes that serve pages

# Every API endpoint of every app, in one place: adding one is a viewset plus one line here.
router = ApiRouter()
router.register("connections", ConnectionViewSet, basename="connection")
router.register("tables", TableViewSet, basename="table")
router.register("checks", CheckViewSet, basename="check")
router.register("alerts", AlertViewSet, basename="alert")
router.register("channels", ChannelViewSet, basename="channel")
router.register("maintenance-windows", MaintenanceWindowViewSet, basename="maintenance-window")
router.register("badges", BadgeViewSet, basename="badge-key")

api_patterns = [
    re_path(r"^health/?$", health, name="health"),
    re_path(r"^auth/token/?$", AuthTokenView.as_view(), name="auth-token"),
    re_path(r"^schema/?$", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI and Redoc from drf-spectacular-sidecar's static files: no CDN, pinned in requirements.txt.
    re_path(r"^docs/?$", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    re_path(
        r"^redoc/?$", SpectacularRedocView.as_view(url_name="schema", template_name="api/redoc.html"), name="redoc"
    ),
    re_path(r"^monitors/plan/?$", PlanView.as_view(), name="monitors-plan"),
    re_path(r"^monitors/apply/?$", ApplyView.as_view(), name="monitors-apply"),
    *router.urls,
]

urlpatterns = [
    path("", include("dashboard.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api-auth/", include("rest_framework.urls")),
    path("api/", include(api_patterns)),
    re_path(r"^metrics/?$", metrics, name="metrics"),
    re_path(r"^badges/(?P<key>[^/]{1,100})\.svg$", badge, name="badge"),
]
