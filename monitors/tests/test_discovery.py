"""monitors.discovery against the real replica pair: the timestamp choice on tables built to mislead, scope,
privileges, the cap, tables that come and go, staggered first checks, and the one catalog round trip."""

from datetime import timedelta

import pytest
from django.utils import timezone

from conftest import READER
from connections.models import QueryAllowance
from monitors import discovery
from monitors.discovery import ColumnFacts, DiscoveryInputError, timestamp_column_choose
from monitors.models import CheckResult, DiscoveryPolicy, MonitoredTable
from monitors.tables import table_timestamp_choice_apply
from monitors.testing import DISCOVERY_DB, DISCOVERY_EXPECTED, discovery_database_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def disco(replica_pair, make_connection):
    """A connection to the discovery test database on the standby, as the least-privileged reader."""
    database = discovery_database_create(pair=replica_pair, reader=READER)
    return make_connection(name="disco-replica", database=database)


class Recorder:
    """Stands in for the alert intake: keeps what discovery hands over."""

    def __init__(self):
        self.batches = []

    def __call__(self, *, connection, results):
        self.batches.append(list(results))


def run(connection, *, apply=True, recorder=None, **policy):
    if policy:
        DiscoveryPolicy.objects.update_or_create(connection=connection, defaults=policy)
    return discovery.discovery_run(connection=connection, apply=apply, on_recorded=recorder or Recorder())


def on_primary(pair, statement: str) -> None:
    with pair.primary.connect(DISCOVERY_DB) as conn:
        conn.execute(statement)
    pair.wait_for_replay(timeout=30)


def test_timestamp_column_chosen_on_tables_built_to_mislead(disco):
    summary = run(disco)
    chosen = {f"{t['schema']}.{t['table']}": t["timestamp_column"] for t in summary["added"]}
    assert chosen == DISCOVERY_EXPECTED
    stored = {t.qualified_name: t for t in MonitoredTable.objects.filter(connection=disco)}
    assert {name: t.timestamp_column for name, t in stored.items()} == DISCOVERY_EXPECTED
    assert all(t.timestamp_column_chosen_by == "discovery" and t.discovered_at for t in stored.values())
    reasons = {name: t.timestamp_column_reason for name, t in stored.items()}
    assert "its name says insert time" in reasons["public.events"]
    assert "updated_at is not indexed" in reasons["public.profiles"]
    assert "created_at is of type text" in reasons["public.profiles"]
    assert "records updates" in reasons["public.accounts"]
    assert reasons["public.lookup_codes"].startswith("no timestamp column")


def test_a_dry_run_changes_nothing_and_says_what_it_would_add(disco):
    summary = run(disco, apply=False)
    assert not summary["applied"] and summary["added_count"] == len(DISCOVERY_EXPECTED)
    assert all(t["reason"] for t in summary["added"])
    assert not MonitoredTable.objects.filter(connection=disco).exists()
    assert DiscoveryPolicy.objects.get(connection=disco).last_run_at is None


def test_one_catalog_statement_per_discovery_from_the_budget(disco):
    run(disco)
    # The catalog query and the session's recovery check: two statements, whatever the number of tables.
    assert QueryAllowance.objects.get(connection=disco).queries_used == discovery.CATALOG_QUERIES + 1


def test_a_table_without_select_is_skipped_with_the_reason(disco):
    summary = run(disco)
    assert summary["skipped"] == [{"table": "public.payroll", "reason": f'no SELECT privilege for user "{READER}"'}]
    assert not MonitoredTable.objects.filter(connection=disco, table_name="payroll").exists()


def test_a_scope_that_excludes_a_schema(disco):
    run(disco, schemas=["public"])
    names = set(MonitoredTable.objects.filter(connection=disco).values_list("schema_name", flat=True))
    assert names == {"public"}


def test_patterns_include_and_exclude_table_names(disco):
    run(disco, include_patterns=["*s"], exclude_patterns=["account?", "lookup_*"])
    names = set(MonitoredTable.objects.filter(connection=disco).values_list("table_name", flat=True))
    assert names == {"events", "profiles", "imports", "daily_totals", "raw_events", "clicks"}


def test_the_cap_counts_tables_already_monitored(disco):
    MonitoredTable.objects.create(connection=disco, schema_name="public", table_name="events")
    summary = run(disco, max_tables=3)
    assert summary["added_count"] == 2 and summary["over_cap_count"] == len(DISCOVERY_EXPECTED) - 3
    assert MonitoredTable.objects.filter(connection=disco).count() == 3


def test_first_checks_are_spread_at_the_policy_rate(disco):
    now = timezone.now()
    discovery.discovery_run(connection=disco, apply=True, on_recorded=Recorder(), now=now)
    due = sorted(MonitoredTable.objects.filter(connection=disco).values_list("next_check_at", flat=True))
    # 20 first checks (each with its history backfill) a minute by default: 3 s apart, the first now.
    assert due[0] == now
    assert [round((b - a).total_seconds(), 3) for a, b in zip(due, due[1:], strict=False)] == [3.0] * (len(due) - 1)


def test_a_second_discovery_queues_behind_the_first(disco):
    now = timezone.now()
    discovery.discovery_run(connection=disco, apply=True, on_recorded=Recorder(), now=now)
    first = MonitoredTable.objects.filter(connection=disco).order_by("next_check_at").first()
    first.delete()
    discovery.discovery_run(connection=disco, apply=True, on_recorded=Recorder(), now=now + timedelta(seconds=1))
    again = MonitoredTable.objects.get(connection=disco, table_name=first.table_name)
    # The first checks still pending (3 s apart) end at now + 3 s x (n - 1): the re-added table comes 3 s later.
    assert again.next_check_at == now + timedelta(seconds=3 * len(DISCOVERY_EXPECTED))


def test_tables_that_come_and_go(disco, replica_pair):
    on_primary(
        replica_pair,
        "CREATE TABLE public.doomed (id int, created_at timestamptz); CREATE INDEX ON public.doomed (created_at)",
    )
    recorder = Recorder()
    try:
        run(disco, recorder=recorder)
        doomed = MonitoredTable.objects.get(connection=disco, table_name="doomed")
        CheckResult.objects.create(
            connection=disco, table=doomed, kind="volume", status="pass", started_at=timezone.now()
        )
        assert recorder.batches == []  # nothing missing: no result
        on_primary(
            replica_pair,
            "DROP TABLE public.doomed; CREATE TABLE public.newcomer (id int, inserted_at timestamptz NOT NULL);"
            " CREATE INDEX ON public.newcomer (inserted_at)",
        )
        summary = run(disco, recorder=recorder)
        assert summary["missing"] == ["public.doomed"] and [t["table"] for t in summary["added"]] == ["newcomer"]
        doomed.refresh_from_db()
        assert doomed.status == MonitoredTable.Status.MISSING and doomed.missing_since is not None
        assert CheckResult.objects.filter(table=doomed).count() == 1  # history kept
        newcomer = MonitoredTable.objects.get(connection=disco, table_name="newcomer")
        assert newcomer.timestamp_column == "inserted_at"
        [[result]] = recorder.batches
        assert (result.table_id, result.kind, result.status) == (None, "schema_change", "fail")
        assert "public.doomed" in result.message and result.details["missing"] == ["public.doomed"]
        run(disco, recorder=recorder)  # still gone: the same single problem, seen again
        assert len(recorder.batches) == 2 and recorder.batches[1][0].status == "fail"

        on_primary(
            replica_pair,
            "CREATE TABLE public.doomed (id int, created_at timestamptz); CREATE INDEX ON public.doomed (created_at)",
        )
        summary = run(disco, recorder=recorder)
        assert summary["returned"] == ["public.doomed"] and summary["added_count"] == 0
        doomed.refresh_from_db()
        assert (doomed.status, doomed.missing_since, doomed.next_check_at) == ("unknown", None, None)
        assert recorder.batches[-1][0].status == "pass"
        run(disco, recorder=recorder)
        assert len(recorder.batches) == 3  # nothing missing and nothing was: no further result
    finally:
        on_primary(replica_pair, "DROP TABLE IF EXISTS public.doomed; DROP TABLE IF EXISTS public.newcomer")


def test_views_and_partitions_are_not_discovered_but_never_missing(disco):
    for name in ("recent_events", "clicks_2026"):
        MonitoredTable.objects.create(connection=disco, table_name=name)  # registered by hand
    summary = run(disco)
    assert summary["missing"] == [] and "public.clicks" in {f"{t['schema']}.{t['table']}" for t in summary["added"]}
    assert not {"recent_events", "clicks_2026"} & {t["table"] for t in summary["added"]}
    assert set(
        MonitoredTable.objects.filter(table_name__in=["recent_events", "clicks_2026"]).values_list("status", flat=True)
    ) == {"unknown"}


def test_a_missing_table_is_not_claimed(disco):
    from monitors.claims import tables_next_due

    table = MonitoredTable.objects.create(connection=disco, table_name="gone", status=MonitoredTable.Status.MISSING)
    assert tables_next_due(now=timezone.now(), table_ids=[table.pk]) is None


def test_a_users_choice_is_kept_across_rediscovery(disco, replica_pair):
    run(disco)
    events = MonitoredTable.objects.get(connection=disco, table_name="events")
    events.timestamp_column = "updated_at"
    table_timestamp_choice_apply(table=events, previous_column="created_at")
    events.save()
    on_primary(replica_pair, "DROP INDEX public.events_updated_at_idx")
    try:
        summary = run(disco)
        events.refresh_from_db()
        assert (events.timestamp_column, events.timestamp_column_chosen_by) == ("updated_at", "user")
        assert summary["rechosen"] == []
    finally:
        on_primary(replica_pair, "CREATE INDEX events_updated_at_idx ON public.events (updated_at)")


def test_discoverys_own_choice_is_revisited_when_it_no_longer_works(disco, replica_pair):
    run(disco)
    on_primary(replica_pair, "DROP INDEX public.imports_loaded_at_idx")
    try:
        summary = run(disco)
        imports = MonitoredTable.objects.get(connection=disco, table_name="imports")
        assert summary["rechosen"][0]["from"] == "loaded_at" and imports.timestamp_column == ""
        assert imports.baseline_since is not None and "loaded_at is not indexed" in imports.timestamp_column_reason
    finally:
        on_primary(replica_pair, "CREATE INDEX imports_loaded_at_idx ON public.imports (loaded_at)")


def test_pattern_strings_reach_the_replica_only_as_literals(disco):
    hostile = ["x'; DROP TABLE public.events; --", "%", "_", "\\", "events') OR true --"]
    summary = run(disco, include_patterns=hostile)
    assert summary["added_count"] == 0  # no pattern matched anything: `%` and `_` are literal characters here
    assert run(disco, apply=False, include_patterns=[])["added_count"] == len(DISCOVERY_EXPECTED)  # nothing dropped


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"include_patterns": ["t*"] * (discovery.MAX_PATTERNS + 1)}, "include_patterns"),
        ({"exclude_patterns": ["x" * (discovery.MAX_PATTERN_LENGTH + 1)]}, "exclude_patterns"),
        ({"exclude_patterns": [""]}, "exclude_patterns"),
        ({"schemas": ["a\x00b"]}, "schemas"),
        ({"schemas": ["s" * 64]}, "schemas"),
        ({"schemas": "public"}, "schemas"),
    ],
)
def test_bad_scope_is_refused_and_nothing_saved(disco, changes, field):
    policy = discovery.policy_for(connection=disco)
    with pytest.raises(DiscoveryInputError) as refused:
        discovery.policy_update(policy=policy, changes=changes)
    assert field in refused.value.problems
    policy.refresh_from_db()
    assert (policy.schemas, policy.include_patterns, policy.exclude_patterns) == ([], [], [])


def test_scheduled_discovery_runs_enabled_due_policies_once(disco):
    discovery.policy_update(policy=discovery.policy_for(connection=disco), changes={"is_enabled": True})
    now = timezone.now()
    assert discovery.discoveries_run_due(on_recorded=Recorder(), now=now) == 1
    assert MonitoredTable.objects.filter(connection=disco).count() == len(DISCOVERY_EXPECTED)
    policy = DiscoveryPolicy.objects.get(connection=disco)
    assert policy.next_run_at == now + timedelta(minutes=60) and policy.last_summary["added_count"] == len(
        DISCOVERY_EXPECTED
    )
    assert discovery.discoveries_run_due(on_recorded=Recorder(), now=now + timedelta(minutes=1)) == 0


def test_a_failing_scheduled_discovery_stores_its_error(make_connection, closed_port):
    connection = make_connection(port=closed_port)
    discovery.policy_update(policy=discovery.policy_for(connection=connection), changes={"is_enabled": True})
    assert discovery.discoveries_run_due(on_recorded=Recorder()) == 1
    policy = DiscoveryPolicy.objects.get(connection=connection)
    assert (
        "connection refused" in policy.last_error and not MonitoredTable.objects.filter(connection=connection).exists()
    )


def test_choice_rules_on_facts():
    def col(name, type_="timestamp with time zone", **facts):
        return ColumnFacts(
            name=name, type=type_, not_null=facts.pop("not_null", True), indexed=facts.pop("indexed", True), **facts
        )

    assert timestamp_column_choose([col("updated_at"), col("created_at")]).column == "created_at"
    assert timestamp_column_choose([col("expires_at"), col("deleted_at")]).column == ""
    shipped = col("shipped_at", not_null=False, null_frac=0.6, correlation=0.1)
    assert timestamp_column_choose([shipped, col("event_time", correlation=0.99)]).column == "event_time"
    assert timestamp_column_choose([col("created_at", indexed=False), col("updated_at")]).column == "updated_at"
    assert timestamp_column_choose([col("id", "bigint")]).reason.endswith("no date or timestamp column")
    assert timestamp_column_choose([col("run_at", newest_age_seconds=-86_400)]).column == ""
    # Rows inserted long ago and updated in place: the update time is what moves.
    upserted = [col("created_at", newest_age_seconds=90 * 86_400), col("updated_at", newest_age_seconds=60)]
    choice = timestamp_column_choose(upserted)
    assert choice.column == "updated_at" and "updated in place" in choice.reason


def test_newest_values_are_read_only_for_small_catalogs(disco, monkeypatch):
    policy = discovery.policy_for(connection=disco)

    def newest_of_events_created_at():
        catalog = discovery.catalog_read(connection=disco, policy=policy, known=[])
        events = next(t for t in catalog.tables if t.key == ("public", "events"))
        return next(c for c in events.columns if c.name == "created_at").newest_age_seconds

    assert 0 <= newest_of_events_created_at() < 86_400  # from the histogram's upper bound
    monkeypatch.setattr(discovery, "NEWEST_VALUES_UP_TO", 3)
    assert newest_of_events_created_at() is None
