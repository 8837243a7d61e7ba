from django.apps import AppConfig


class MonitorsAsCodeConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "monitors_as_code"
    verbose_name = "Monitors as code"
