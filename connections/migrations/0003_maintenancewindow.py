"""MaintenanceWindow moves from alerts to connections (state only; the table is renamed in 0004).

The content type is relabelled rather than recreated, so the model's permissions (and the users and groups
holding them) stay as they are.
"""

import django.db.models.deletion
from django.db import migrations, models


def _relabel_content_type(apps, *, old_label: str, new_label: str) -> None:
    content_type = apps.get_model("contenttypes", "ContentType")
    if content_type.objects.filter(app_label=new_label, model="maintenancewindow").exists():
        return
    content_type.objects.filter(app_label=old_label, model="maintenancewindow").update(app_label=new_label)


def move_content_type(apps, schema_editor):
    _relabel_content_type(apps, old_label="alerts", new_label="connections")


def move_content_type_back(apps, schema_editor):
    _relabel_content_type(apps, old_label="connections", new_label="alerts")


class Migration(migrations.Migration):
    dependencies = [
        ("connections", "0002_connection_error_streak"),
        ("alerts", "0002_events_channels_notifications"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="MaintenanceWindow",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("starts_at", models.DateTimeField()),
                        ("ends_at", models.DateTimeField()),
                        ("reason", models.CharField(blank=True, default="", max_length=200)),
                        (
                            "connection",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="maintenance_windows",
                                to="connections.connection",
                            ),
                        ),
                    ],
                    options={
                        "ordering": ["-starts_at"],
                        "db_table": "alerts_maintenancewindow",
                        "constraints": [
                            models.CheckConstraint(
                                condition=models.Q(("ends_at__gt", models.F("starts_at"))),
                                name="window_ends_after_start",
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_type, move_content_type_back),
    ]
