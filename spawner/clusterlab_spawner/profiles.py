"""Instance sizes: the one definition, read from ``hub_config/profiles.yaml``.

A profile says what a server (or a job) may use: cores, memory, GPUs and wall
time, plus the few extras each backend needs (a Slurm partition, a Kubernetes
image...). Everything that offers or enforces a size reads it from here: the
spawn form, the validation of ``user_options``, every backend and, later, the
job form.

Loading is strict: a typo in the file stops the hub at start with a message
that names the file, the profile and the field, rather than letting a wrong
size reach a scheduler.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jsonschema
import yaml

# The file format, as a JSON Schema: `additionalProperties: false` everywhere
# so that a misspelt key is an error, not a silently ignored setting.
PROFILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "display_name", "cpus", "memory_gb", "max_hours", "default_hours"],
    "properties": {
        "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$", "maxLength": 40},
        "display_name": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "cpus": {"type": "integer", "minimum": 1},
        "memory_gb": {"type": "number", "exclusiveMinimum": 0},
        "gpus": {"type": "integer", "minimum": 0},
        # several nodes of this size at once (cpus, memory_gb and gpus are per node): jobs only
        "nodes": {"type": "integer", "minimum": 1, "maximum": 64},
        "gpu_type": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
        "max_hours": {"type": "number", "exclusiveMinimum": 0},
        "default_hours": {"type": "number", "exclusiveMinimum": 0},
        "slurm": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                key: {"type": "string", "pattern": "^[A-Za-z0-9_.,:&|-]+$"}
                for key in ("partition", "account", "qos", "constraint")
            },
        },
        "kubernetes": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "image": {"type": "string", "minLength": 1},
                "node_selector": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                },
                "tolerations": {"type": "array", "items": {"type": "object"}},
                # size of the memory-backed /dev/shm (default: half of memory_gb)
                "shm_gb": {"type": "number", "exclusiveMinimum": 0},
            },
        },
    },
}

FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["profiles"],
    "properties": {"profiles": {"type": "array", "minItems": 1, "items": PROFILE_SCHEMA}},
}


class ProfileError(ValueError):
    """profiles.yaml is not valid; the message names file, profile and field."""


@dataclasses.dataclass(frozen=True)
class Profile:
    """One instance size."""

    id: str
    display_name: str
    cpus: int
    memory_gb: float
    max_hours: float
    default_hours: float
    description: str = ""
    gpus: int = 0
    gpu_type: str = ""
    nodes: int = 1
    slurm: dict = dataclasses.field(default_factory=dict)
    kubernetes: dict = dataclasses.field(default_factory=dict)

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gb * 1024**3)

    def shm_gb(self, fraction: float = 0.5) -> float:
        """Size of a Kubernetes pod's memory-backed /dev/shm: ``kubernetes.shm_gb``, else a
        fraction of the memory (PyTorch data loaders pass batches through it)."""
        return self.kubernetes.get("shm_gb") or self.memory_gb * fraction

    @property
    def multi_node(self) -> bool:
        """Spans several nodes: for distributed jobs, never a JupyterLab (which runs on one)."""
        return self.nodes > 1

    @property
    def tasks_per_node(self) -> int:
        """Processes a distributed job starts on each node: one per GPU, or one on CPU."""
        return max(self.gpus, 1)

    @property
    def summary(self) -> str:
        """One line a person reads: '4 cores · 16 GB · 1 GPU (a100)', or '2 nodes × 2 cores · 2 GB'."""
        parts = [f"{self.cpus} core{'s' if self.cpus != 1 else ''}", f"{self.memory_gb:g} GB"]
        if self.gpus:
            gpu = f"{self.gpus} GPU{'s' if self.gpus != 1 else ''}"
            parts.append(f"{gpu} ({self.gpu_type})" if self.gpu_type else gpu)
        per_node = " · ".join(parts)
        return f"{self.nodes} nodes × {per_node}" if self.multi_node else per_node

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _field_path(error: jsonschema.ValidationError) -> str:
    path = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties":
        # jsonschema reports unknown keys on the parent; name the key itself
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        path.append(",".join(extra))
    elif error.validator == "required":
        path.append(error.message.split("'")[1])
    return ".".join(path)


def parse_profiles(data: Any, source: str = "profiles.yaml") -> list[Profile]:
    """Validate already-parsed YAML and return the profiles, in file order."""
    validator = jsonschema.Draft202012Validator(FILE_SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        path = list(error.absolute_path)
        where = f"{source}"
        if len(path) >= 2 and path[0] == "profiles":
            entry = data["profiles"][path[1]]
            name = entry.get("id") if isinstance(entry, dict) else None
            where += f": profile {name!r}" if name else f": profile #{path[1] + 1}"
            field = ".".join(_field_path(error).split(".")[2:])
        else:
            field = _field_path(error)
        if field:
            where += f": field {field!r}"
        raise ProfileError(f"{where}: {error.message}")

    profiles = []
    seen: set[str] = set()
    for entry in data["profiles"]:
        where = f"{source}: profile {entry['id']!r}"
        if entry["id"] in seen:
            raise ProfileError(f"{where}: field 'id': duplicate id")
        seen.add(entry["id"])
        if entry["default_hours"] > entry["max_hours"]:
            raise ProfileError(
                f"{where}: field 'default_hours': {entry['default_hours']} is over "
                f"max_hours ({entry['max_hours']})"
            )
        shm_gb = entry.get("kubernetes", {}).get("shm_gb")
        if shm_gb is not None and shm_gb > entry["memory_gb"]:
            raise ProfileError(
                f"{where}: field 'kubernetes.shm_gb': {shm_gb} is over memory_gb ({entry['memory_gb']}), "
                "and /dev/shm counts against the pod's memory"
            )
        if entry.get("gpu_type") and not entry.get("gpus"):
            raise ProfileError(f"{where}: field 'gpu_type': set, but 'gpus' is 0")
        profiles.append(Profile(**entry))
    return profiles


def load_profiles(path: str | Path) -> list[Profile]:
    """Read and validate a profiles file; raises ProfileError naming what is wrong."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ProfileError(f"{path}: cannot read: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ProfileError(f"{path}: not valid YAML: {e}") from None
    return parse_profiles(data, source=str(path))
