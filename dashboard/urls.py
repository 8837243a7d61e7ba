"""The dashboard's pages and actions (included at the site root by pulse_project/urls.py)."""

from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("live/", views.live, name="live"),
    path("tables/<int:pk>/", views.table_page, name="table"),
    path("tables/<int:pk>/sparkline.svg", views.table_sparkline, name="table-sparkline"),
    path("tables/<int:pk>/run-now/", views.table_run_now_view, name="table-run-now"),
    path("tables/<int:pk>/pause/", views.table_pause, name="table-pause"),
    path("tables/<int:pk>/resume/", views.table_resume, name="table-resume"),
    path("tables/<int:pk>/rebaseline/", views.table_rebaseline_view, name="table-rebaseline"),
    path("tables/<int:pk>/thresholds/", views.table_thresholds, name="table-thresholds"),
    path(
        "tables/<int:pk>/results/<int:result_id>/mark-expected/",
        views.result_mark_expected_view,
        name="result-mark-expected",
    ),
    path("alerts/", views.alerts_page, name="alerts"),
    path("alerts/<int:pk>/acknowledge/", views.alert_acknowledge_view, name="alert-acknowledge"),
    path("alerts/<int:pk>/resolve/", views.alert_resolve_view, name="alert-resolve"),
    path("alerts/<int:pk>/snooze/", views.alert_snooze_view, name="alert-snooze"),
    path("connections/<int:pk>/", views.connection_page, name="connection"),
    path("connections/<int:pk>/test/", views.connection_test_view, name="connection-test"),
]
