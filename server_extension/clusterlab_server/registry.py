"""The templates registry: every ``template.yaml`` the user may run, checked.

A template is a folder with ``template.yaml`` and the scripts it runs. They come
from three places, later ones overriding earlier ones by id: the templates
shipped with ClusterLab, a site folder, and the user's own
``~/.clusterlab/templates/``. A broken file never breaks the registry: it is
skipped, logged, and listed among ``problems`` (the API shows them).

A template's ``parameters`` is a JSON Schema object; it drives the job form,
the CLI's ``-p key=value`` parsing and the validation of every submission.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

log = logging.getLogger(__name__)

KINDS = ("training", "inference", "script", "notebook")

TEMPLATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "name", "kind", "category", "description", "entry", "parameters"],
    "properties": {
        "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$", "maxLength": 60},
        "name": {"type": "string", "minLength": 1},
        "version": {"type": ["string", "integer"]},
        "kind": {"enum": list(KINDS)},
        "category": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
        "description": {"type": "string"},
        "icon": {"type": "string"},
        # argv run in the job's output folder; "{template}" is the template's folder
        "entry": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
        "default_profile": {"type": "string"},
        # what the template writes to metrics.jsonl, and which way is better: an experiment's metric is one of these
        "metrics": {
            "type": "object",
            "propertyNames": {"pattern": "^[A-Za-z0-9_]+$"},
            "additionalProperties": {
                "type": "object", "additionalProperties": False, "required": ["goal"],
                "properties": {"title": {"type": "string"}, "goal": {"enum": ["maximize", "minimize"]}},
            },
        },
        "parameters": {
            "type": "object",
            "required": ["type", "properties"],
            "properties": {"type": {"const": "object"}, "properties": {"type": "object"}},
        },
    },
}


class TemplateError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Template:
    id: str
    name: str
    kind: str
    category: str
    description: str
    entry: tuple[str, ...]
    parameters: dict
    folder: Path
    version: str = "1"
    icon: str = ""
    default_profile: str = ""
    metrics: dict = dataclasses.field(default_factory=dict)

    @property
    def any_metric(self) -> bool:
        """A script template's metrics are whatever the user's own code reports."""
        return self.kind == "script"

    def command(self) -> list[str]:
        """The entry argv, with ``{template}`` (its folder) and ``{python}`` filled in."""
        return [
            part.replace("{template}", str(self.folder)).replace("{python}", sys.executable)
            for part in self.entry
        ]

    def defaults(self) -> dict:
        return {
            key: spec["default"]
            for key, spec in self.parameters.get("properties", {}).items()
            if "default" in spec
        }

    def to_json(self) -> dict:
        return {
            "id": self.id, "name": self.name, "version": self.version, "kind": self.kind,
            "category": self.category, "description": self.description, "icon": self.icon,
            "default_profile": self.default_profile, "parameters": self.parameters,
            "metrics": self.metrics, "any_metric": self.any_metric,
        }


# Every JupyterLab reads the templates as it starts: libyaml's parser where PyYAML
# has it (several times faster than the pure-Python one), and the template schema's
# validator built once (jsonschema.validate checks the schema itself on every call;
# tests/test_registry.py checks it once).
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
TEMPLATE_VALIDATOR = jsonschema.Draft202012Validator(TEMPLATE_SCHEMA)


def load_template(path: Path) -> Template:
    """One ``template.yaml`` -> Template, or TemplateError naming the file and field."""
    try:
        data = yaml.load(path.read_text(), Loader=SAFE_LOADER)
    except (OSError, yaml.YAMLError) as e:
        raise TemplateError(f"{path}: cannot be read as YAML: {e}") from None
    try:
        error = jsonschema.exceptions.best_match(TEMPLATE_VALIDATOR.iter_errors(data))
        if error is not None:
            raise error
        jsonschema.Draft202012Validator.check_schema(data["parameters"])
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise TemplateError(f"{path}: {where}: {e.message}") from None
    except jsonschema.SchemaError as e:
        raise TemplateError(f"{path}: parameters is not a valid JSON Schema: {e.message}") from None
    if data["id"] != path.parent.name:
        raise TemplateError(f"{path}: id {data['id']!r} must match its folder name {path.parent.name!r}")
    return Template(
        id=data["id"], name=data["name"], kind=data["kind"], category=data["category"],
        description=data["description"], entry=tuple(data["entry"]), parameters=data["parameters"],
        folder=path.parent.resolve(), version=str(data.get("version", "1")),
        icon=data.get("icon", ""), default_profile=data.get("default_profile", ""),
        metrics=data.get("metrics", {}),
    )


@dataclasses.dataclass
class Registry:
    templates: dict[str, Template]
    problems: list[str]

    @classmethod
    def load(cls, folders: list[Path]) -> Registry:
        templates, problems = {}, []
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob("*/template.yaml")):
                try:
                    template = load_template(path)
                except TemplateError as e:
                    log.warning("Skipping template: %s", e)
                    problems.append(str(e))
                    continue
                templates[template.id] = template
        return cls(templates, problems)
