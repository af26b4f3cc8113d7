"""The templates registry: good templates load, broken ones are skipped and reported."""

from pathlib import Path

import jsonschema

from clusterlab_server.registry import TEMPLATE_SCHEMA, Registry

REPO = Path(__file__).resolve().parents[1]

GOOD = """\
id: {id}
name: {name}
kind: training
category: tabular
description: A test template.
entry: ["{{python}}", "{{template}}/run.py"]
parameters:
  type: object
  properties:
    epochs: {{type: integer, minimum: 1, default: 3}}
"""


def write(folder: Path, template_id: str, text: str) -> None:
    (folder / template_id).mkdir(parents=True, exist_ok=True)
    (folder / template_id / "template.yaml").write_text(text)


def test_shipped_templates_load_without_problems():
    registry = Registry.load([REPO / "templates"])
    assert registry.problems == []
    assert "python-script" in registry.templates


def test_broken_templates_are_skipped_and_reported(tmp_path):
    write(tmp_path, "good", GOOD.format(id="good", name="Good"))
    write(tmp_path, "not-yaml", "id: [unclosed\n")
    write(tmp_path, "missing", "id: missing\nname: x\n")
    write(tmp_path, "badkind", GOOD.format(id="badkind", name="x").replace("kind: training", "kind: magic"))
    write(tmp_path, "badschema", GOOD.format(id="badschema", name="x").replace("type: integer", "type: 12"))
    write(tmp_path, "elsewhere", GOOD.format(id="other-id", name="x"))
    registry = Registry.load([tmp_path])
    assert set(registry.templates) == {"good"}
    problems = "\n".join(registry.problems)
    assert len(registry.problems) == 5
    assert "not-yaml/template.yaml: cannot be read as YAML" in problems
    assert "missing/template.yaml: (top level): 'kind' is a required property" in problems
    assert "badkind/template.yaml: kind:" in problems
    assert "badschema/template.yaml: parameters is not a valid JSON Schema" in problems
    assert "must match its folder name 'elsewhere'" in problems
    good = registry.templates["good"]
    assert good.defaults() == {"epochs": 3}
    assert good.command()[1] == str(tmp_path / "good" / "run.py")


def test_later_folders_override_earlier_ones_by_id(tmp_path):
    site, user = tmp_path / "site", tmp_path / "user"
    write(site, "mine", GOOD.format(id="mine", name="Site version"))
    write(user, "mine", GOOD.format(id="mine", name="My version"))
    registry = Registry.load([REPO / "templates", site, user, tmp_path / "missing-folder"])
    assert registry.templates["mine"].name == "My version"
    assert "python-script" in registry.templates


def test_the_template_schema_is_a_valid_json_schema():
    # checked here once, not on every template load (registry.TEMPLATE_VALIDATOR)
    jsonschema.Draft202012Validator.check_schema(TEMPLATE_SCHEMA)
