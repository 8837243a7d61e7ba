"""Shared fixtures: a real primary + hot-standby pair, tenants, and API clients."""

import pytest
from django.contrib.auth.models import Group, Permission, User
from rest_framework.test import APIClient

from connections.models import Connection
from pulse_project.pgcluster import ReplicaPair

READER = "pulse_reader"
READER_PASSWORD = "reader-s3cret-pw"
SAMPLE_DB = "shop"

SAMPLE_SCHEMA = f"""
CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}';
CREATE TABLE public.orders (
    id bigserial PRIMARY KEY, customer_id int NOT NULL, amount numeric(10, 2),
    created_at timestamptz NOT NULL DEFAULT now(), note text
);
INSERT INTO public.orders (customer_id, amount, created_at)
    SELECT g % 50, g * 1.5, now() - make_interval(mins => g) FROM generate_series(1, 500) g;
CREATE TABLE public.customers (id int PRIMARY KEY, name text NOT NULL, signup_date date);
INSERT INTO public.customers SELECT g, 'customer ' || g, current_date - g FROM generate_series(1, 50) g;
-- No autovacuum: the null-rate test needs a table that never gets statistics (it samples instead of pg_stats).
CREATE TABLE public.stale_events (id int, happened_at timestamp without time zone, kind text)
    WITH (autovacuum_enabled = false);
INSERT INTO public.stale_events
    SELECT g, (now() AT TIME ZONE 'UTC') - interval '3 days' - make_interval(mins => g), NULL
    FROM generate_series(1, 100) g;
CREATE TABLE public.empty_events (id int, at timestamptz);
CREATE SCHEMA private;
CREATE TABLE private.salaries (id int, amount int);
GRANT SELECT ON public.orders, public.customers, public.stale_events, public.empty_events TO {READER};
"""


@pytest.fixture(autouse=True)
def allow_local_receivers(settings):
    """Test receivers listen on 127.0.0.1; the SSRF guard's own tests turn this back off."""
    settings.PULSE_WEBHOOK_ALLOW_PRIVATE = True


@pytest.fixture(autouse=True)
def allow_local_replicas(settings):
    """Test replicas listen on 127.0.0.1; the target policy's own tests turn this back off."""
    settings.PULSE_CONNECTION_ALLOW_LOCAL = True


@pytest.fixture(scope="session")
def replica_pair():
    pair = ReplicaPair.create()
    try:
        with pair.primary.connect() as conn:
            conn.execute(f"CREATE DATABASE {SAMPLE_DB}")
        with pair.primary.connect(SAMPLE_DB) as conn:
            conn.execute(SAMPLE_SCHEMA)
        pair.wait_for_replay()
        yield pair
    finally:
        pair.stop()


@pytest.fixture
def replica_settings(replica_pair):
    """Connection fields pointing at the hot standby as the least-privileged reader."""
    return {
        "host": "127.0.0.1",
        "port": replica_pair.standby.port,
        "database": SAMPLE_DB,
        "username": READER,
        "password": READER_PASSWORD,
        "sslmode": "disable",
    }


@pytest.fixture
def primary_settings(replica_pair, replica_settings):
    return {**replica_settings, "port": replica_pair.primary.port}


@pytest.fixture
def teams(db):
    return Group.objects.create(name="acme"), Group.objects.create(name="globex")


def _user(username, *, team, with_permissions):
    user = User.objects.create_user(username=username, password="pw-" + username)
    user.groups.add(team)
    if with_permissions:
        user.user_permissions.add(
            *Permission.objects.filter(content_type__app_label__in=["connections", "monitors", "alerts"])
        )
    return user


@pytest.fixture
def owner(teams):
    """Member of acme with every write permission."""
    return _user("owner", team=teams[0], with_permissions=True)


@pytest.fixture
def member(teams):
    """Member of acme without model permissions: may read, may not write."""
    return _user("member", team=teams[0], with_permissions=False)


@pytest.fixture
def outsider(teams):
    """Member of globex with every permission: should have no access to acme's objects."""
    return _user("outsider", team=teams[1], with_permissions=True)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def superuser(db):
    """An operator: superusers belong to no team and see every team's objects."""
    return User.objects.create_superuser("root", password=READER_PASSWORD + "-root")


@pytest.fixture
def superuser_client(superuser):
    return client_for(superuser)


@pytest.fixture
def owner_client(owner):
    return client_for(owner)


@pytest.fixture
def member_client(member):
    return client_for(member)


@pytest.fixture
def outsider_client(outsider):
    return client_for(outsider)


@pytest.fixture
def make_connection(teams, replica_settings):
    """Store a connection to the replica directly (no probe), owned by acme unless told otherwise."""

    def make(**overrides):
        fields = {"name": "shop-replica", "team": teams[0], **replica_settings, **overrides}
        password = fields.pop("password")
        connection = Connection(**fields)
        connection.set_password(password)
        connection.save()
        return connection

    return make
