"""Reading pulse.yml: safe, bounded YAML and the JSON Schema, every problem with its line and field."""

import jsonschema
import pytest

from alerts.models import Channel
from monitors.models import MonitoredTable
from monitors_as_code import document
from monitors_as_code.document import FileRefused, load


def problems_of(text):
    with pytest.raises(FileRefused) as refused:
        load(text)
    return [(p.line, p.field, p.message) for p in refused.value.problems]


def test_the_schema_is_a_valid_json_schema_whose_choices_are_the_models():
    schema = document.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    settings = schema["$defs"]["settings"]
    assert settings["direction"]["enum"] == list(MonitoredTable.Direction.values)
    assert settings["seasonality"]["enum"] == list(MonitoredTable.Seasonality.values)
    assert settings["sensitivity_preset"]["enum"] == list(MonitoredTable.SensitivityPreset.values)
    assert schema["$defs"]["channel"]["properties"]["kind"]["enum"] == list(Channel.Kind.values)


def test_a_good_file_loads_with_the_line_of_each_value():
    loaded = load("version: 1\nteam: acme\nconnections:\n  - name: shop\n    tables:\n      - table: orders\n")
    assert loaded.data["connections"][0]["tables"][0]["table"] == "orders"
    assert loaded.line(("connections", 0, "tables", 0, "table")) == 6
    assert loaded.line(("connections", 0, "tables", 0, "sensitivity")) == 6  # absent: its entry's line


def test_every_schema_problem_is_reported_at_once_with_its_line_and_field():
    text = """\
version: 1
team: acme
connections:
  - name: shop
    tables:
      - table: orders
        sensitivity: high
        direction: sideways
        colour: red
      - schema: public
"""
    assert problems_of(text) == [
        (7, "connections[0].tables[0].sensitivity", "'high' is not of type 'number'"),
        (8, "connections[0].tables[0].direction", "'sideways' is not one of ['both', 'spike', 'drop']"),
        (9, "connections[0].tables[0].colour", "unknown field"),
        (10, "connections[0].tables[1]", "'table' is a required property"),
    ]


@pytest.mark.parametrize(
    ("entry", "field", "message"),
    [
        ("target: https://hooks.slack.com/services/T/B/x", "channels[0].target", "secrets are never written"),
        ("secret: abcdefghijklmnopqrstuvwxyz", "channels[0].secret", "secrets are never written"),
        ("target_env: https://hooks.slack.com/services/T/B/x", "channels[0].target_env", "not hold its value"),
    ],
)
def test_secrets_written_in_the_file_are_refused(entry, field, message):
    text = f"version: 1\nteam: acme\nchannels:\n  - name: ops\n    kind: slack\n    target_env: OPS\n    {entry}\n"
    text = text.replace("    target_env: OPS\n    target_env:", "    target_env:")
    found = problems_of(text)
    assert any(f == field and message in m for _, f, m in found), found
    assert all(line == len(text.splitlines()) for line, f, _ in found if f == field)


def test_a_connection_password_in_the_file_is_refused():
    found = problems_of("version: 1\nteam: acme\nconnections:\n  - name: shop\n    password: hunter2\n")
    assert found == [(5, "connections[0].password", document.SECRET_KEYS["password"])]


def test_a_billion_laughs_is_refused_before_anything_is_built():
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    bomb += "".join(f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n" for i in range(9))
    assert problems_of(bomb) == [(1, "", "anchors and aliases (&name, *name) are not allowed")]


def test_merge_keys_need_anchors_and_are_refused_too():
    assert problems_of("base: &b {x: 1}\nother:\n  <<: *b\n")[0][2].startswith("anchors and aliases")


def test_a_huge_file_is_refused_by_its_size():
    text = "version: 1\nteam: acme\n# " + "x" * document.MAX_FILE_BYTES + "\n"
    assert problems_of(text) == [(None, "", f"the file is larger than {document.MAX_FILE_BYTES:,} bytes")]


def test_deep_nesting_is_refused():
    assert "nests more than" in problems_of("a: " + "[" * 100 + "]" * 100 + "\n")[0][2]


def test_too_many_values_are_refused(monkeypatch):
    monkeypatch.setattr(document, "MAX_NODES", 50)
    assert "more than 50 values" in problems_of("[" + ", ".join(["1"] * 60) + "]")[0][2]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("!!python/object/apply:os.system ['true']\n", "the tag tag:yaml.org,2002:python/object/apply:os.system"),
        ("version: !!python/name:os.system ''\n", "not allowed"),
        ("version: !custom 1\n", "the tag !custom is not allowed"),
        ("version: 1\nversion: 1\n", '"version" is given twice'),
        ("version: 1\nteam: acme\nconnections: [{name: shop, tables: [{table: t, sensitivity: .nan}]}]\n", "finite"),
        ("version: 1\nteam: [unclosed\n", "not valid YAML"),
        ("- a\n- b\n", "must be a mapping"),
        ("", "the file is empty"),
        ("version: 1\n---\nversion: 1\n", "not valid YAML"),
        (b"version: 1\nteam: \xff\n", "not UTF-8"),
        ("? [a, b]\n: 1\n", "keys must be text"),
        ('version: 1\nteam: "ac\\0me"\n', "team: must not contain NUL characters"),
    ],
)
def test_unsafe_or_malformed_yaml_is_refused_naming_the_problem(text, message):
    found = problems_of(text)
    assert message in found[0][2], found


def test_a_lone_surrogate_is_refused_by_either_parser():
    (line, _, message), *_ = problems_of('version: 1\nteam: "\\ud800"\n')
    assert line == 2
    assert "invalid Unicode character escape" in message or "unpaired surrogates" in message
