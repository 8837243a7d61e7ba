"""`manage.py monitors plan|apply|export`: a team's monitors as a reviewed file (issue 13).

plan FILE [--prune]   print the diff; exit 0 when nothing would change, 2 when something would, 1 on problems
apply FILE [--prune]  make exactly that change in one transaction (every problem listed, nothing written)
export --team NAME    write the team's monitors as a file that `plan` reports as unchanged
"""

import os
import sys
from pathlib import Path

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from monitors_as_code.apply import plan_apply
from monitors_as_code.document import MAX_FILE_BYTES
from monitors_as_code.export import export_text
from monitors_as_code.plan import DEFAULT_SOURCE, plan_build

EXIT_PROBLEMS = 1
EXIT_CHANGES = 2


class Command(BaseCommand):
    help = "Plan, apply or export a team's monitors as code (pulse.yml)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        for name in ("plan", "apply"):
            action = sub.add_parser(name)
            action.add_argument("file")
            action.add_argument("--prune", action="store_true", help="Delete managed objects that left the file.")
        export = sub.add_parser("export")
        export.add_argument("--team", required=True)
        export.add_argument("--source", default=DEFAULT_SOURCE)
        export.add_argument("--output", "-o", help="Write here instead of standard output.")

    def handle(self, *args, action, **options):
        if action == "export":
            return self._export(**options)
        path = Path(options["file"])
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise CommandError(f"{path}: the file is larger than {MAX_FILE_BYTES:,} bytes")
            content = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"{path}: {exc.strerror}") from None
        build = plan_build if action == "plan" else plan_apply
        plan = build(
            content=content, filename=str(path), teams=Group.objects.all(), env=dict(os.environ), prune=options["prune"]
        )
        if plan.problems:
            for line in plan.problem_lines():
                self.stderr.write(line)
            self.stderr.write(
                f"{len(plan.problems)} problem(s): nothing was {'planned' if action == 'plan' else 'applied'}."
            )
            sys.exit(EXIT_PROBLEMS)
        self.stdout.write(plan.text())
        if action == "apply":
            counts = plan.counts()
            self.stdout.write(
                f"Applied: {counts['create']} created, {counts['change'] + counts['adopt']} changed, "
                f"{counts['delete']} deleted."
            )
            return
        if plan.has_changes:
            sys.exit(EXIT_CHANGES)

    def _export(self, *, team, source, output, **options):
        group = Group.objects.filter(name=team).first()
        if group is None:
            raise CommandError(f'team "{team}" not found')
        text = export_text(team=group, source=source)
        if output:
            Path(output).write_text(text)
        else:
            self.stdout.write(text, ending="")
