from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from common.api import AuthTokenView
from pulse_project.health import health

api_patterns = [
    re_path(r"^health/?$", health, name="health"),
    re_path(r"^auth/token/?$", AuthTokenView.as_view(), name="auth-token"),
    re_path(r"^schema/?$", SpectacularAPIView.as_view(), name="schema"),
    re_path(r"^docs/?$", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("", include("connections.api.urls")),
    path("", include("monitors.api.urls")),
    path("", include("alerts.api.urls")),
]

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api-auth/", include("rest_framework.urls")),
    path("api/", include(api_patterns)),
]
