"""Check results after they are recorded: an operator's "this was expected", and retention."""

from datetime import timedelta

from django.conf import settings

from monitors.models import CheckResult


def result_mark_expected(*, result: CheckResult) -> CheckResult:
    """An operator says this anomalous value was legitimate: it trains the baseline from now on."""
    same_value = CheckResult.objects.filter(pk=result.pk)
    if result.bucket_start is not None:
        same_value = CheckResult.objects.filter(table=result.table, kind=result.kind, bucket_start=result.bucket_start)
    same_value.update(marked_expected=True)
    result.marked_expected = True
    return result


def results_prune(*, now, retention_days: int | None = None, chunk: int = 10_000) -> int:
    """Delete results older than the retention period, in chunks to keep transactions short."""
    days = settings.PULSE_RESULT_RETENTION_DAYS if retention_days is None else retention_days
    cutoff = now - timedelta(days=days)
    deleted = 0
    while True:
        ids = list(CheckResult.objects.filter(started_at__lt=cutoff).values_list("id", flat=True)[:chunk])
        if not ids:
            return deleted
        deleted += CheckResult.objects.filter(id__in=ids).delete()[0]
