"""Reading a monitors-as-code file: bounded safe YAML, every value with its line, then the JSON Schema.

The file is refused before it is parsed into Python objects when it is too large, nests too deep, has too many
nodes, or uses anchors and aliases (`&a`, `*a`: the "billion laughs" expands a few lines into gigabytes).
Only YAML's safe types are constructed (no tags that build objects). Every problem names the line and the
field (a path such as `connections[0].tables[2].timestamp_column`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import jsonschema
import yaml
from django.conf import settings

from common.parsers import text_encodable

MAX_FILE_BYTES = 2_000_000
MAX_DEPTH = 16
MAX_NODES = 250_000
# libyaml's parser when PyYAML was built with it (the pure-Python one is ~10x slower on a 1,000-table file).
PARSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SAFE_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("map", "seq", "str", "int", "float", "bool", "null", "timestamp")}
SCHEMA_PATH = Path(settings.BASE_DIR) / "docs" / "pulse.schema.json"

# Keys that would put a secret or a connection's credentials in the file, with what to write instead.
SECRET_KEYS = {
    "target": "secrets are never written in the file: put the address or URL in an environment variable and "
    "name it with target_env",
    "secret": "secrets are never written in the file: put the signing key in an environment variable and name "
    "it with secret_env",
    "password": "passwords are never written in the file: the connection and its password stay in the admin/API",
    "host": "the connection itself stays in the admin/API: a file names an existing connection",
}


@dataclass(frozen=True)
class Problem:
    line: int | None
    field: str
    message: str

    def shown(self, filename: str) -> str:
        where = f"{filename}:{self.line}" if self.line else filename
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"

    def as_dict(self, filename: str) -> dict:
        return {"file": filename, "line": self.line, "field": self.field, "message": self.message}


class FileRefused(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def field_name(path) -> str:
    """("connections", 0, "tables", 2, "table") -> "connections[0].tables[2].table"."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass
class Document:
    data: dict
    lines: dict[tuple, int] = field(default_factory=dict)

    def line(self, path) -> int | None:
        """The line of `path`, or of its nearest parent that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def problem(self, path, message: str) -> Problem:
        return Problem(line=self.line(path), field=field_name(path), message=message)


def _refuse(line: int | None, message: str):
    raise FileRefused([Problem(line=line, field="", message=message)])


def _scan(text: str) -> None:
    """Walk the YAML events once (no objects built): size, depth, node count, anchors and aliases."""
    depth = nodes = 0
    try:
        for event in yaml.parse(text, Loader=PARSER):
            line = event.start_mark.line + 1
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                _refuse(line, "anchors and aliases (&name, *name) are not allowed")
            if isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent):
                nodes += 1
                if nodes > MAX_NODES:
                    _refuse(line, f"the file has more than {MAX_NODES:,} values")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    _refuse(line, f"the file nests more than {MAX_DEPTH} levels deep")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        _refuse(mark.line + 1 if mark else None, f"not valid YAML: {exc.problem or exc.context}")
    except yaml.YAMLError as exc:
        _refuse(None, f"not valid YAML: {exc}")


class _Converter:
    def __init__(self):
        self.constructor = yaml.SafeLoader("")
        self.lines: dict[tuple, int] = {}

    def value(self, node, path: tuple):
        line = node.start_mark.line + 1
        self.lines[path] = line
        if node.tag not in SAFE_TAGS:
            _refuse(line, f"{field_name(path) or 'the file'}: the tag {node.tag} is not allowed")
        if isinstance(node, yaml.MappingNode):
            result = {}
            for key_node, value_node in node.value:
                key = self.scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
                if not isinstance(key, str):
                    _refuse(key_node.start_mark.line + 1, f"{field_name(path) or 'the file'}: keys must be text")
                if key in result:
                    _refuse(key_node.start_mark.line + 1, f'{field_name((*path, key))}: "{key}" is given twice')
                result[key] = self.value(value_node, (*path, key))
                self.lines[(*path, key)] = key_node.start_mark.line + 1  # where the field is named
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, (*path, index)) for index, item in enumerate(node.value)]
        return self.scalar(node, path)

    def scalar(self, node, path: tuple):
        try:
            value = self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            _refuse(node.start_mark.line + 1, f"{field_name(path)}: {getattr(exc, 'problem', None) or exc}")
        if isinstance(value, str) and ("\x00" in value or not text_encodable(value)):
            _refuse(
                node.start_mark.line + 1,
                f"{field_name(path)}: must not contain NUL characters or unpaired surrogates (\\ud800-\\udfff)",
            )
        if isinstance(value, float) and not math.isfinite(value):
            _refuse(node.start_mark.line + 1, f"{field_name(path)}: must be a finite number (not NaN or Infinity)")
        if isinstance(value, dt.datetime | dt.date):
            return value.isoformat()
        return value


@cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def _schema_problems(document: Document) -> list[Problem]:
    validator = jsonschema.Draft202012Validator(schema())
    problems = []
    for error in validator.iter_errors(document.data):
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = set(error.schema.get("properties", {}))
            for key in error.instance:
                if key not in known:
                    problems.append(document.problem((*path, key), SECRET_KEYS.get(key, "unknown field")))
            continue
        if error.validator == "pattern" and path and path[-1] in ("target_env", "secret_env"):
            problems.append(
                document.problem(path, "must name an environment variable (letters, digits, _), not hold its value")
            )
            continue
        problems.append(document.problem(path, error.message))
    return sorted(problems, key=lambda p: (p.line or 0, p.field))


def load(content: str | bytes) -> Document:
    """Parse and check the file's shape; FileRefused with every problem found."""
    raw = content.encode() if isinstance(content, str) else content
    if len(raw) > MAX_FILE_BYTES:
        _refuse(None, f"the file is larger than {MAX_FILE_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        _refuse(None, "the file is not UTF-8 text")
    _scan(text)
    try:
        node = yaml.compose(text, Loader=PARSER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        _refuse(mark.line + 1 if mark else None, f"not valid YAML: {exc.problem or exc.context}")
    if node is None:
        _refuse(None, "the file is empty")
    converter = _Converter()
    data = converter.value(node, ())
    document = Document(data=data, lines=converter.lines)
    if not isinstance(data, dict):
        _refuse(1, "the file must be a mapping (version, team, connections, channels)")
    problems = _schema_problems(document)
    if problems:
        raise FileRefused(problems)
    return document
