"""Template filters of the dashboard: values and bands in each check kind's own format."""

from django import template

from monitors.checks import format_value

register = template.Library()


@register.filter
def value_text(result) -> str:
    """The value in its kind's unit; a schema check's value is the table's number of columns."""
    if result.observed_value is None:
        return "—"
    if result.kind == "schema_change":
        columns = int(result.observed_value)
        return f"{columns} column{'' if columns == 1 else 's'}"
    return format_value(result.kind, result.observed_value)


@register.filter
def band_text(result) -> str:
    low, high = result.expected_lower, result.expected_upper
    if low is None and high is None:
        return "—"
    if low is None:
        return f"≤ {format_value(result.kind, high)}"
    if high is None:
        return f"≥ {format_value(result.kind, low)}"
    return f"{format_value(result.kind, low)} – {format_value(result.kind, high)}"


@register.filter
def get_item(mapping, key):
    return mapping.get(key)
