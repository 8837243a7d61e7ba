from django.apps import AppConfig


class PulseProjectConfig(AppConfig):
    """The top layer: wires the apps together (management commands, admin); it has no models."""

    name = "pulse_project"
