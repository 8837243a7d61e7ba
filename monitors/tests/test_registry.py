"""The one registry of check kinds (monitors.checks): every list of kinds and statuses is derived from it."""

from pathlib import Path

from monitors import checks
from monitors.check_rules import AUTOMATIC_KINDS, CONFIGURABLE_KINDS
from monitors.checks import KINDS, TABLE_KINDS, Status
from monitors.models import Check, CheckResult


def test_every_module_under_checks_is_a_registered_kind():
    modules = {p.stem for p in Path(checks.__file__).parent.glob("*.py")} - {"__init__", "base"}
    assert modules == set(KINDS)
    for kind, module in KINDS.items():
        assert kind == module.KIND
        assert module.SCOPE in ("table", "connection")
        assert isinstance(module.CONFIGURABLE, bool) and module.QUERIES >= 1
        assert hasattr(module, "run") or hasattr(module, "outcome")


def test_the_model_choices_are_the_registry():
    assert [value for value, _ in CheckResult._meta.get_field("kind").choices] == list(KINDS)
    assert [value for value, _ in Check._meta.get_field("kind").choices] == list(checks.CONFIGURABLE)
    assert CheckResult.Status is Status
    assert [value for value, _ in CheckResult._meta.get_field("status").choices] == ["pass", "fail", "error", "skipped"]
    assert set(CONFIGURABLE_KINDS) | set(AUTOMATIC_KINDS) == set(KINDS)
    assert not set(CONFIGURABLE_KINDS) & set(AUTOMATIC_KINDS)


def test_table_kinds_leave_out_the_connection_level_kind():
    assert "replication_lag" not in TABLE_KINDS
    assert set(TABLE_KINDS) == set(KINDS) - {"replication_lag"}
    assert list(checks.BUILT_IN) == ["schema_change", "volume", "freshness"]


def test_labels_are_unique_and_name_the_kind():
    labels = [checks.label(kind) for kind in KINDS]
    assert len(set(labels)) == len(labels)
    assert checks.label("custom_sql") == "Custom SQL check"
    assert checks.CheckKind("null_rate").label == "Null rate"
    assert checks.label("connection_error") == "connection_error"  # not a check kind: shown as it is


def test_values_are_formatted_by_their_kind():
    assert checks.format_value("freshness", 3 * 3600 + 125) == "3 h 2 min"
    assert checks.format_value("replication_lag", 42) == "42 s"
    assert checks.format_value("null_rate", 0.125) == "12.5% NULL"
    assert checks.format_value("volume", 1234567) == "1,234,567"
    assert checks.format_value("custom_sql", 0.5) == "0.5"


def test_fractions_are_rounded_for_people():
    assert checks.format_value("volume", 915.2758163410024) == "915"  # whole rows
    assert checks.format_value("custom_sql", 334.9738082796778) == "335"
    assert checks.format_value("custom_sql", 7242.832) == "7,242.8"
    assert checks.format_value("custom_sql", 0.123456) == "0.123"
    assert checks.format_value("custom_sql", float("inf")) == "inf"  # no error on a non-finite value
