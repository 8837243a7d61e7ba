"""The dashboard's inputs: overview filters, table thresholds, snoozes and the chart's point in time."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.utils import timezone

from alerts.api.serializers import MAX_SNOOZE
from dashboard.status import TABLE_STATES
from monitors.models import MonitoredTable


class OverviewFilterForm(forms.Form):
    connection = forms.IntegerField(required=False, min_value=1, max_value=2**62)
    status = forms.ChoiceField(required=False, choices=[("", "any status")] + [(s, s) for s in TABLE_STATES])
    name = forms.CharField(required=False, max_length=100, strip=True)

    def clean_name(self):
        name = self.cleaned_data["name"]
        if "\x00" in name:
            raise forms.ValidationError("The name may not contain NUL characters.")
        return name


class ThresholdsForm(forms.ModelForm):
    """The table's thresholds; the model's validators give the bounds (and refuse NaN and infinities)."""

    class Meta:
        model = MonitoredTable
        fields = [
            "freshness_threshold_minutes",
            "check_interval_seconds",
            "failure_threshold",
            "sensitivity",
            "direction",
            "seasonality",
            "min_relative_change",
            "min_absolute_change",
        ]
        labels = {
            "freshness_threshold_minutes": "Freshness limit (minutes)",
            "check_interval_seconds": "Check every (seconds)",
            "failure_threshold": "Failing runs before an alert",
            "sensitivity": "Volume sensitivity (z-score)",
            "min_relative_change": "Ignore changes below (fraction)",
            "min_absolute_change": "Ignore changes below (rows)",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = True


SNOOZE_CHOICES = [("60", "1 hour"), ("1440", "1 day"), ("until", "until…")]


class SnoozeForm(forms.Form):
    """`for`: 60 or 1440 minutes, or `until` with a time (in the viewer's time zone), at most 30 days ahead."""

    duration = forms.ChoiceField(choices=SNOOZE_CHOICES)
    until = forms.DateTimeField(required=False)

    def clean(self):
        cleaned = super().clean()
        duration = cleaned.get("duration")
        if duration is None:
            return cleaned
        now = timezone.now()
        if duration == "until":
            until = cleaned.get("until")
            if until is None:
                if "until" not in self.errors:
                    self.add_error("until", "Give the time the snooze ends.")
                return cleaned
        else:
            until = now + timedelta(minutes=int(duration))
        if until <= now:
            self.add_error("until", "Must be in the future.")
        elif until > now + MAX_SNOOZE:
            self.add_error("until", "Must be at most 30 days ahead.")
        cleaned["until"] = until
        return cleaned


class PointInTimeForm(forms.Form):
    """`at`: the time a chart centres on (an alert's opening), within the results' retention."""

    at = forms.DateTimeField(required=False)

    def clean_at(self):
        at = self.cleaned_data["at"]
        if at is not None and at > timezone.now() + timedelta(days=1):
            raise forms.ValidationError("Must not be in the future.")
        return at


def first_error(form: forms.Form) -> str:
    """`field: problem` of a form's first error, for the message people see."""
    for field, errors in form.errors.items():
        label = "" if field == "__all__" else f"{field}: "
        return f"{label}{errors[0]}"
    return ""
