"""Durations for people; no Django, so `runchecks --once` can say when the next table is due before Django starts."""


def format_duration(seconds: float) -> str:
    """Seconds for people, at the two coarsest units: '2 d 3 h', '1 h 5 min', '4 min', '12 s'."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"
