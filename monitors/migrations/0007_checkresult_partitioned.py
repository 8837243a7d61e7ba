"""Check results become a table partitioned by week of `started_at` (PostgreSQL declarative partitioning).

Retention then drops whole partitions (constant time, monitors/results.py) instead of deleting rows, and
every index is per partition, so a table's history stays one short index descent per week kept.

The conversion is generic over the columns, CHECK and foreign-key constraints and indexes the table has when
it runs (other migrations may add fields before or after this one): the old table is renamed, a partitioned
copy is created with the same definition, its rows are copied over and the old table is dropped.

PostgreSQL requires the partition key in every unique constraint, so the primary key in the database is
(id, started_at); Django still sees `id` as the primary key, which the identity sequence keeps unique.
Nothing references check results by foreign key (alerts keep result ids in an array), so no constraint
points at the composite key. A DEFAULT partition takes rows outside the weekly partitions (very old or
far-future times); `result_partitions_ensure` moves them into their week's partition when it creates it.
"""

import django.db.models.deletion
from django.db import migrations, models

# Weekly partitions are created from this many days back (older rows land in the default partition) to
# four weeks ahead; runchecks' housekeeping keeps creating them ahead (monitors/results.py).
_CONVERT = r"""
DO $convert$
DECLARE
    index_defs text[];
    constraint_defs text[];
    definition text;
    week timestamptz;
    first_week timestamptz;
    last_week timestamptz;
    oldest timestamptz;
    columns text;
BEGIN
    SELECT array_agg(pg_get_indexdef(i.indexrelid)) INTO index_defs
      FROM pg_index i WHERE i.indrelid = 'monitors_checkresult'::regclass AND NOT i.indisprimary;
    SELECT array_agg(format('ALTER TABLE monitors_checkresult ADD CONSTRAINT %I %s', c.conname,
                            pg_get_constraintdef(c.oid)))
      INTO constraint_defs
      FROM pg_constraint c WHERE c.conrelid = 'monitors_checkresult'::regclass AND c.contype = 'f';
    -- Index names are unique per schema: the old ones go before the new table takes them.
    FOR definition IN
        SELECT i.indexrelid::regclass::text FROM pg_index i
         WHERE i.indrelid = 'monitors_checkresult'::regclass AND NOT i.indisprimary
    LOOP
        EXECUTE format('DROP INDEX %s', definition);
    END LOOP;
    ALTER TABLE monitors_checkresult RENAME CONSTRAINT monitors_checkresult_pkey TO monitors_checkresult_unpartitioned_pkey;
    ALTER TABLE monitors_checkresult RENAME TO monitors_checkresult_unpartitioned;

    CREATE TABLE monitors_checkresult (
        LIKE monitors_checkresult_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY
    ) PARTITION BY RANGE (started_at);
    ALTER TABLE monitors_checkresult ADD CONSTRAINT monitors_checkresult_pkey PRIMARY KEY (id, started_at);
    FOREACH definition IN ARRAY coalesce(constraint_defs, '{}') LOOP
        EXECUTE definition;
    END LOOP;
    CREATE TABLE monitors_checkresult_default PARTITION OF monitors_checkresult DEFAULT;

    SELECT min(started_at) INTO oldest FROM monitors_checkresult_unpartitioned;
    last_week := date_trunc('week', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '4 weeks';
    first_week := date_trunc('week', greatest(coalesce(oldest, now()), now() - interval '120 days') AT TIME ZONE 'UTC')
                  AT TIME ZONE 'UTC';
    week := first_week;
    WHILE week <= last_week LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF monitors_checkresult FOR VALUES FROM (%L) TO (%L)',
            'monitors_checkresult_w' || to_char(week AT TIME ZONE 'UTC', 'YYYYMMDD'), week, week + interval '1 week'
        );
        week := week + interval '1 week';
    END LOOP;

    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO columns
      FROM pg_attribute WHERE attrelid = 'monitors_checkresult'::regclass AND attnum > 0 AND NOT attisdropped;
    EXECUTE format('INSERT INTO monitors_checkresult (%1$s) OVERRIDING SYSTEM VALUE
                    SELECT %1$s FROM monitors_checkresult_unpartitioned', columns);
    PERFORM setval(pg_get_serial_sequence('monitors_checkresult', 'id'),
                   coalesce((SELECT max(id) FROM monitors_checkresult), 0) + 1, false);
    DROP TABLE monitors_checkresult_unpartitioned;

    FOREACH definition IN ARRAY coalesce(index_defs, '{}') LOOP
        EXECUTE definition;
    END LOOP;
END
$convert$;
"""

# Back to one plain table with `id` as its primary key (same generic copy, the other way round).
_UNCONVERT = r"""
DO $unconvert$
DECLARE
    index_defs text[];
    constraint_defs text[];
    definition text;
    columns text;
BEGIN
    SELECT array_agg(pg_get_indexdef(i.indexrelid)) INTO index_defs
      FROM pg_index i WHERE i.indrelid = 'monitors_checkresult'::regclass AND NOT i.indisprimary;
    SELECT array_agg(format('ALTER TABLE monitors_checkresult ADD CONSTRAINT %I %s', c.conname,
                            pg_get_constraintdef(c.oid)))
      INTO constraint_defs
      FROM pg_constraint c WHERE c.conrelid = 'monitors_checkresult'::regclass AND c.contype = 'f';
    FOR definition IN
        SELECT i.indexrelid::regclass::text FROM pg_index i
         WHERE i.indrelid = 'monitors_checkresult'::regclass AND NOT i.indisprimary
    LOOP
        EXECUTE format('DROP INDEX %s', definition);
    END LOOP;
    ALTER TABLE monitors_checkresult RENAME CONSTRAINT monitors_checkresult_pkey TO monitors_checkresult_partitioned_pkey;
    ALTER TABLE monitors_checkresult RENAME TO monitors_checkresult_partitioned;

    CREATE TABLE monitors_checkresult (
        LIKE monitors_checkresult_partitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY
    );
    ALTER TABLE monitors_checkresult ADD CONSTRAINT monitors_checkresult_pkey PRIMARY KEY (id);
    FOREACH definition IN ARRAY coalesce(constraint_defs, '{}') LOOP
        EXECUTE definition;
    END LOOP;
    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO columns
      FROM pg_attribute WHERE attrelid = 'monitors_checkresult'::regclass AND attnum > 0 AND NOT attisdropped;
    EXECUTE format('INSERT INTO monitors_checkresult (%1$s) OVERRIDING SYSTEM VALUE
                    SELECT %1$s FROM monitors_checkresult_partitioned', columns);
    PERFORM setval(pg_get_serial_sequence('monitors_checkresult', 'id'),
                   coalesce((SELECT max(id) FROM monitors_checkresult), 0) + 1, false);
    DROP TABLE monitors_checkresult_partitioned;
    FOREACH definition IN ARRAY coalesce(index_defs, '{}') LOOP
        EXECUTE replace(definition, ' ON ONLY ', ' ON ');
    END LOOP;
END
$unconvert$;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("connections", "0004_maintenancewindow_table"),
        ("monitors", "0006_table_discovery"),
    ]

    operations = [
        migrations.RunSQL(_CONVERT, reverse_sql=_UNCONVERT),
        # A table's whole history, newest first (GET /api/tables/{id}/results without ?kind=).
        migrations.AddIndex(
            model_name="checkresult",
            index=models.Index(fields=["table", "-started_at", "-id"], name="result_table_latest"),
        ),
        # Each check result wrote nine indexes; these two single-column ones repeat the leading column of others.
        migrations.AlterField(
            model_name="checkresult",
            name="connection",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="results",
                to="connections.connection",
            ),
        ),
        migrations.AlterField(
            model_name="checkresult",
            name="table",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                help_text="Empty for connection-level checks (replication_lag).",
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="results",
                to="monitors.monitoredtable",
            ),
        ),
    ]
