"""Schema change: columns (name, type, nullability, order) against the accepted reference."""

from monitors.checks.base import CheckContext, Outcome, Status, format_quantity, table_catalog

KIND = "schema_change"
LABEL = "Schema change"
SCOPE = "table"
CONFIGURABLE = False
QUERIES = 1


def format_value(value: float) -> str:
    return format_quantity(value)


def describe_changes(reference: list[list], current: list[list]) -> list[str]:
    """Human-readable differences between two column lists [name, type, not_null]."""
    before = {c[0]: c for c in reference}
    after = {c[0]: c for c in current}
    changes = []
    added = [f"{c[0]} ({c[1]})" for c in current if c[0] not in before]
    removed = [c[0] for c in reference if c[0] not in after]
    retyped = [f"{n} {before[n][1]} → {after[n][1]}" for n in after if n in before and before[n][1] != after[n][1]]
    nullability = [
        f"{n} now {'NOT NULL' if after[n][2] else 'nullable'}"
        for n in after
        if n in before and before[n][2] != after[n][2]
    ]
    if added:
        changes.append("added: " + ", ".join(added))
    if removed:
        changes.append("removed: " + ", ".join(removed))
    if retyped:
        changes.append("retyped: " + ", ".join(retyped))
    if nullability:
        changes.append("nullability: " + ", ".join(nullability))
    kept_before = [c[0] for c in reference if c[0] in after]
    kept_after = [c[0] for c in current if c[0] in before]
    if kept_before != kept_after:
        changes.append("column order changed")
    return changes


def run(ctx: CheckContext, check=None) -> Outcome:
    table = ctx.table
    catalog = table_catalog(ctx)
    current = [[name, type_, bool(not_null)] for name, type_, not_null in (catalog.columns if catalog else [])]
    if not current:
        return Outcome(
            kind=KIND,
            status=Status.FAIL,
            observed_value=0,
            details={"columns": []},
            message=f"{table.qualified_name} no longer exists on the replica",
        )
    reference = table.schema_reference
    if reference is None:
        return Outcome(
            kind=KIND,
            status=Status.PASS,
            observed_value=len(current),
            details={"columns": current},
            message=f"{len(current)} columns recorded as the reference schema",
        )
    changes = describe_changes(reference, current)
    if changes:
        return Outcome(
            kind=KIND,
            status=Status.FAIL,
            observed_value=len(current),
            details={"columns": current},
            message="schema changed: " + "; ".join(changes),
        )
    return Outcome(
        kind=KIND,
        status=Status.PASS,
        observed_value=len(current),
        details={"columns": current},
        message=f"{len(current)} columns, unchanged",
    )
