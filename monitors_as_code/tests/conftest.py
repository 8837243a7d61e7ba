import pytest
from django.contrib.auth.models import Group
from psycopg import sql

from conftest import READER, SAMPLE_DB
from monitors_as_code.apply import plan_apply
from monitors_as_code.plan import plan_build

SLACK_URL = "https://hooks.slack.com/services/T000/B000/abcdefghijklmnop"


@pytest.fixture
def shop(make_connection):
    return make_connection()


@pytest.fixture
def env():
    return {"OPS_SLACK_URL": SLACK_URL, "HOOK_URL": "https://hooks.example.com/pulse", "HOOK_KEY": "k" * 32}


@pytest.fixture
def plan(teams, env):
    """plan(text, prune=False, **kwargs): the plan of `text` as the CLI builds it (every team, the given env)."""

    def build(text, *, prune=False, env=env, teams=None):
        return plan_build(content=text, filename="pulse.yml", teams=teams or Group.objects.all(), env=env, prune=prune)

    return build


@pytest.fixture
def apply(teams, env):
    def run(text, *, prune=False, env=env, teams=None):
        return plan_apply(content=text, filename="pulse.yml", teams=teams or Group.objects.all(), env=env, prune=prune)

    return run


@pytest.fixture
def replica_tables(replica_pair):
    """replica_tables(schema, names): create tables (id, created_at, note) on the primary, readable by the
    reader, and wait until the standby has replayed them. The pair lives for the session: use fresh names."""

    def create(schema: str, names) -> None:
        reader = sql.Identifier(READER)
        statements = [
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)),
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), reader),
        ]
        for name in names:
            table = sql.Identifier(schema, name)
            statements.append(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (id int, created_at timestamptz DEFAULT now(), note text)"
                ).format(table)
            )
            statements.append(sql.SQL("GRANT SELECT ON {} TO {}").format(table, reader))
        with replica_pair.primary.connect(SAMPLE_DB) as conn:
            conn.execute(sql.SQL("; ").join(statements))
        replica_pair.wait_for_replay()

    return create
