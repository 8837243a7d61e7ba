"""manage.py monitors plan|apply|export: exit 0 when nothing would change, 2 when something would, 1 on problems."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from monitors.models import MonitoredTable

pytestmark = pytest.mark.django_db

FILE = """\
version: 1
team: acme
connections:
  - name: shop-replica
    tables:
      - table: orders
        timestamp_column: created_at
"""


def run(*args):
    out, err = StringIO(), StringIO()
    try:
        call_command("monitors", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def pulse_file(tmp_path):
    path = tmp_path / "pulse.yml"
    path.write_text(FILE)
    return path


def test_plan_exits_2_with_changes_apply_makes_them_and_plan_then_exits_0(shop, pulse_file):
    code, out, _ = run("plan", str(pulse_file))
    assert code == 2
    assert f"+ table shop-replica: public.orders ({pulse_file}:6)" in out
    assert not MonitoredTable.objects.exists()
    code, out, _ = run("apply", str(pulse_file))
    assert code == 0 and "Applied: 1 created, 0 changed, 0 deleted." in out
    assert MonitoredTable.objects.get().managed_by == "pulse.yml"
    code, out, _ = run("plan", str(pulse_file))
    assert (code, out.strip()) == (0, "No changes: Pulse matches the file.")


def test_problems_exit_1_naming_file_line_and_field(shop, pulse_file):
    pulse_file.write_text(FILE.replace("created_at", "amount"))
    code, _, err = run("apply", str(pulse_file))
    assert code == 1
    assert f"{pulse_file}:7: connections[0].tables[0].timestamp_column: column" in err
    assert "1 problem(s): nothing was applied." in err
    assert not MonitoredTable.objects.exists()


def test_export_writes_a_file_that_plans_unchanged(shop, pulse_file, tmp_path):
    assert run("apply", str(pulse_file))[0] == 0
    exported = tmp_path / "exported.yml"
    assert run("export", "--team", "acme", "--output", str(exported))[0] == 0
    assert run("plan", str(exported))[0] == 0


def test_prune_is_needed_to_delete(shop, pulse_file):
    assert run("apply", str(pulse_file))[0] == 0
    pulse_file.write_text("version: 1\nteam: acme\n")
    assert run("apply", str(pulse_file))[0] == 0
    assert MonitoredTable.objects.exists()
    code, out, _ = run("apply", "--prune", str(pulse_file))
    assert code == 0 and "Applied: 0 created, 0 changed, 1 deleted." in out
    assert not MonitoredTable.objects.exists()


def test_a_missing_file_or_team_is_an_error_not_a_traceback(db, tmp_path, teams):
    with pytest.raises(CommandError, match="No such file"):
        call_command("monitors", "plan", str(tmp_path / "missing.yml"))
    with pytest.raises(CommandError, match='team "nobody" not found'):
        call_command("monitors", "export", "--team", "nobody")
