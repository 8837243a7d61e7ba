import pytest
from django.contrib.auth.models import Group

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
