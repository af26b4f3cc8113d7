"""What an experiment asks for, checked: the one function the form, the API and the CLI all call.

:func:`validate_experiment` turns a request (JSON) into an :class:`ExperimentSpec`
or raises :class:`~..service.JobError` naming the field; nothing is created before
it has passed. Every value a trial can get satisfies the template's own JSON
Schema for that parameter: listed values are checked one by one, and a range's
ends (numbers are checked at both ends, which bound everything between).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import jsonschema

from ..registry import Template
from ..service import (
    JobError, JobService, check_max_restarts, check_name, check_project, input_entry, reference,
)
from ..store import DEFAULT_MAX_RESTARTS

SEARCHERS = ("grid", "random", "tpe")
EARLY_STOPPING = ("none", "asha", "hyperband")
MAX_GRID_POINTS = 1000
MAX_TRIALS = 1000
DEFAULT_TRIALS = 16
DEFAULT_CONCURRENT = 4
RANGE_KEYS = {"min", "max", "log", "step", "count"}
FIELDS = {
    "template", "name", "params", "search", "searcher", "early_stopping", "divisor", "max_rungs", "metric",
    "maximize", "max_trials", "max_concurrent_trials", "max_restarts", "profile", "hours", "inputs", "project",
}
SCALARS = (str, int, float, bool, type(None))


@dataclasses.dataclass
class ExperimentSpec:
    template: str
    name: str
    params: dict  # fixed ones, with the template's defaults
    search: dict  # parameter (or "object.key") -> list of values | {min, max, log, step, count}
    searcher: str
    early_stopping: str
    divisor: int
    max_rungs: int
    metric: str
    maximize: bool
    max_trials: int
    max_concurrent_trials: int
    max_restarts: int
    profile: str
    hours: float
    epochs: int  # the longest a trial trains: ASHA's maximum resource
    notes: list[str] = dataclasses.field(default_factory=list)
    project: str = "default"
    inputs: list[dict] = dataclasses.field(default_factory=list)  # every trial's, pinned to their versions
    uses: list[dict] = dataclasses.field(default_factory=list)  # what the trials mount (these and parameters')

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ExperimentSpec:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def trial_params(self, chosen: dict) -> dict:
        """The job's parameters for one trial: the fixed ones, with the chosen values put in."""
        params = {key: (dict(value) if isinstance(value, dict) else value) for key, value in self.params.items()}
        for key, value in chosen.items():
            top, _, sub = key.partition(".")
            if sub:
                params.setdefault(top, {})[sub] = value
            else:
                params[top] = value
        return params

    @property
    def min_resource(self) -> int:
        """Epochs of the shortest trial under early stopping: ``epochs / divisor^(max_rungs-1)`` (Determined's);
        1 when the epochs are not known (a script's)."""
        return max(1, math.floor(self.epochs / self.divisor ** (self.max_rungs - 1)))

    def grid(self) -> dict[str, list]:
        """Each searched parameter's grid values (only for a grid searcher)."""
        return {key: grid_values(key, entry) for key, entry in self.search.items()}


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bounded_int(request: dict, key: str, default: int, low: int, high: int) -> int:
    value = request.get(key, default)
    if not _integer(value) or not low <= value <= high:
        raise JobError(400, f"{key} must be an integer from {low} to {high}", key)
    return value


def parameter_schema(template: Template, key: str) -> dict:
    """The JSON Schema of parameter ``key`` (``object.key`` for an entry of an object parameter)."""
    properties = template.parameters.get("properties", {})
    top, _, sub = key.partition(".")
    field = f"search.{key}"
    if top not in properties:
        known = ", ".join(sorted(properties))
        raise JobError(400, f"search.{key}: {template.id} has no parameter {top!r} (its parameters: {known})", field)
    schema = properties[top]
    if not sub:
        return schema
    entries = schema.get("additionalProperties")
    if "object" not in _types(schema) or not isinstance(entries, dict):
        raise JobError(400, f"search.{key}: {top} is not an object of named values", field)
    return entries


def _types(schema: dict) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def grid_values(key: str, entry: Any) -> list:
    """A search entry's values as a grid: a list as it is; a range by its ``count`` or integer ``step``."""
    if isinstance(entry, list):
        return entry
    low, high, log, step, count = (entry.get(k) for k in ("min", "max", "log", "step", "count"))
    integer = entry.get("integer", False)
    if count is not None:
        if count == 1:
            points = [low]
        elif log:
            span = math.log(high) - math.log(low)
            points = [math.exp(math.log(low) + i * span / (count - 1)) for i in range(count)]
        else:
            points = [low + i * (high - low) / (count - 1) for i in range(count)]
        points = [round(p) for p in points] if integer else [float(f"{p:.6g}") for p in points]
        return list(dict.fromkeys(points))
    if step is not None:
        n = int(math.floor((high - low) / step + 1e-9)) + 1
        points = [low + i * step for i in range(n)]
        return [int(p) for p in points] if integer else [float(f"{p:.10g}") for p in points]
    raise JobError(400, f"search.{key}: a grid over a range needs a count (points) or a step", f"search.{key}")


def _check_value(template: Template, key: str, schema: dict, value: Any, service: JobService) -> None:
    """One value a trial may get, against the parameter's own schema; paths as the job service checks them."""
    field = f"search.{key}"
    if not isinstance(value, SCALARS):
        raise JobError(400, f"{field}: values must be numbers, strings, booleans or null, not {type(value).__name__}",
                       field)
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema, format_checker=service.format_checker()).iter_errors(value))
    if error is not None:
        cause = error.cause if isinstance(error.cause, ValueError) else None
        raise JobError(400, f"{field}: {value!r}: {cause or error.message}", field)


def _check_range(template: Template, key: str, schema: dict, entry: dict, searcher: str,
                 service: JobService) -> dict:
    field = f"search.{key}"
    unknown = sorted(set(entry) - RANGE_KEYS)
    if unknown:
        raise JobError(400, f"{field}: unknown range key {unknown[0]!r} (a range has min, max, log, step, count)",
                       field)
    types = _types(schema)
    integer = "integer" in types and "number" not in types
    if not integer and "number" not in types:
        raise JobError(400, f"{field}: a range needs a number or integer parameter; give a list of values instead",
                       field)
    low, high = entry.get("min"), entry.get("max")
    kind = "integers" if integer else "numbers"
    check = _integer if integer else _number
    if not check(low) or not check(high):
        raise JobError(400, f"{field}: min and max must be {kind}", field)
    if low > high:
        raise JobError(400, f"{field}: min ({low}) is more than max ({high})", field)
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise JobError(400, f"{field}: log must be true or false", field)
    if log and low <= 0:
        raise JobError(400, f"{field}: a log range needs min > 0", field)
    step, count = entry.get("step"), entry.get("count")
    if step is not None and (not check(step) or step <= 0):
        raise JobError(400, f"{field}: step must be a positive {kind[:-1]}", field)
    if step is not None and log:
        raise JobError(400, f"{field}: a range has a step or log, not both", field)
    if count is not None and (not _integer(count) or not 1 <= count <= MAX_GRID_POINTS):
        raise JobError(400, f"{field}: count must be an integer from 1 to {MAX_GRID_POINTS}", field)
    if count is not None and searcher != "grid":
        raise JobError(400, f"{field}: count is for the grid searcher; {searcher} samples the range", field)
    for end in (low, high):
        _check_value(template, key, schema, end, service)
    clean = {"min": low, "max": high, "log": log, **({"step": step} if step is not None else {}),
             **({"count": count} if count is not None else {}), "integer": integer}
    return clean


def validate_experiment(service: JobService, request: Any, max_concurrent_quota: int) -> ExperimentSpec:
    """The request, checked whole before anything is made; JobError naming the field otherwise."""
    if not isinstance(request, dict):
        raise JobError(400, "the body must be a JSON object with template, name, search and metric")
    unknown = sorted(set(request) - FIELDS)
    if unknown:
        raise JobError(400, f"unknown field {unknown[0]!r}", unknown[0])
    template = service.template(request.get("template"))
    if template.kind not in ("training", "script"):
        raise JobError(400, f"{template.id} is a {template.kind} template: experiments search training templates "
                       "(or your own script)", "template")
    name = check_name(request.get("name"))
    searcher = request.get("searcher", "tpe")
    if searcher not in SEARCHERS:
        raise JobError(400, f"searcher must be one of {', '.join(SEARCHERS)}", "searcher")

    search = request.get("search")
    if not isinstance(search, dict) or not search:
        raise JobError(400, "search: give at least one parameter to search, with its values or range", "search")
    params = request.get("params", {})
    if not isinstance(params, dict):
        raise JobError(400, "params must be a JSON object", "params")
    clean_search: dict[str, Any] = {}
    for key, entry in search.items():
        field = f"search.{key}"
        schema = parameter_schema(template, key)
        if key.partition(".")[0] in params and "." not in key:
            raise JobError(400, f"{field}: {key} is both fixed (params) and searched; give it in one place", field)
        if isinstance(entry, list):
            if not entry:
                raise JobError(400, f"{field}: give at least one value", field)
            if len(entry) > MAX_GRID_POINTS:
                raise JobError(400, f"{field}: at most {MAX_GRID_POINTS} values", field)
            for value in entry:
                _check_value(template, key, schema, value, service)
            clean_search[key] = list(dict.fromkeys(entry))
        elif isinstance(entry, dict):
            clean_search[key] = _check_range(template, key, schema, entry, searcher, service)
        else:
            raise JobError(400, f"{field}: give a list of values or a range {{min, max, log, step}}", field)

    grid_size = 0
    notes: list[str] = []
    if searcher == "grid":
        sizes = [len(grid_values(key, entry)) for key, entry in clean_search.items()]
        grid_size = math.prod(sizes)
        if grid_size > MAX_GRID_POINTS:
            raise JobError(400, f"search: the grid has {grid_size:,} points ({' × '.join(map(str, sizes))}); "
                           f"at most {MAX_GRID_POINTS:,}: give fewer values", "search")
    max_trials = _bounded_int(request, "max_trials", grid_size or DEFAULT_TRIALS, 1, MAX_TRIALS)
    if grid_size and max_trials > grid_size:
        notes.append(f"max_trials {max_trials} is more than the grid's {grid_size} points: {grid_size} trials")
        max_trials = grid_size
    elif grid_size and max_trials < grid_size:
        notes.append(f"max_trials {max_trials} of the grid's {grid_size} points, chosen at random")
    quota = max_concurrent_quota
    concurrent = request.get("max_concurrent_trials", min(DEFAULT_CONCURRENT, max_trials, quota))
    if not _integer(concurrent) or concurrent < 1:
        raise JobError(400, "max_concurrent_trials must be an integer of 1 or more", "max_concurrent_trials")
    if concurrent > quota:
        raise JobError(400, f"max_concurrent_trials: {concurrent} is over your quota of {quota} trials at once",
                       "max_concurrent_trials")

    metric = request.get("metric")
    declared = template.metrics
    if metric is None and declared:
        metric = next(iter(declared))
    if not isinstance(metric, str) or not metric:
        raise JobError(400, "metric: name the metric to optimise (a key of metrics.jsonl)", "metric")
    if template.any_metric:
        check_name(metric, "metric")
    elif metric not in declared:
        raise JobError(400, f"metric: {template.id} does not report {metric!r}; it reports "
                       f"{', '.join(declared) or 'no metric'}", "metric")
    maximize = request.get("maximize", declared.get(metric, {}).get("goal", "maximize") == "maximize")
    if not isinstance(maximize, bool):
        raise JobError(400, "maximize must be true or false", "maximize")

    early_stopping = request.get("early_stopping", "none")
    if early_stopping not in EARLY_STOPPING:
        raise JobError(400, f"early_stopping must be one of {', '.join(EARLY_STOPPING)}", "early_stopping")
    divisor = _bounded_int(request, "divisor", 4, 2, 10)
    max_rungs = _bounded_int(request, "max_rungs", 5, 1, 10)
    max_restarts = check_max_restarts(request.get("max_restarts", DEFAULT_MAX_RESTARTS))

    # the fixed parameters, with each searched one at a value it may take: the whole job must be valid
    fixed = {**template.defaults(), **params}
    first = {key: (entry[0] if isinstance(entry, list) else entry["min"]) for key, entry in clean_search.items()}
    spec_epochs = _epochs(fixed, clean_search)
    spec = ExperimentSpec(
        template=template.id, name=name, params=fixed, search=clean_search, searcher=searcher,
        early_stopping=early_stopping, divisor=divisor, max_rungs=max_rungs, metric=metric, maximize=maximize,
        max_trials=max_trials, max_concurrent_trials=concurrent, max_restarts=max_restarts, profile="", hours=0,
        epochs=spec_epochs, notes=notes,
    )
    service.check_params(template, spec.trial_params(first))
    choice = service.choice(template, request.get("profile"), request.get("hours"))
    spec.profile, spec.hours = choice.profile.id, choice.hours
    spec.project = check_project(request.get("project"))
    _pin_inputs(service, template, spec, request.get("inputs", []))
    return spec


def _pin_inputs(service: JobService, template: Template, spec: ExperimentSpec, inputs: Any) -> None:
    """Every trial mounts the same versions: "shapes" (its latest) and a job's output are pinned now, in the
    inputs and in the fixed parameters that name them."""
    param_inputs = service.param_inputs(template, spec.params)
    checked = service.check_inputs(inputs, taken=set(param_inputs) | set(spec.search))
    resolved = [service.datasets.resolve_input(entry, field) for entry, field in checked]
    spec.inputs = [input_entry(r) for r in resolved]
    for key, entry in param_inputs.items():
        pinned = {**service.datasets.resolve_input(entry, f"params.{key}"), "param": key}
        spec.params[key] = reference(pinned)
        resolved.append(pinned)
    spec.uses = resolved


def _epochs(fixed: dict, search: dict) -> int:
    """The most epochs a trial trains (the searched maximum, or the fixed value); 0 when unknown.

    ``epochs``, or a script's ``options.epochs``.
    """
    key = "epochs" if "epochs" in search or "epochs" in fixed else "options.epochs"
    entry = search.get(key)
    if entry is None:
        value = fixed.get("epochs") if key == "epochs" else (fixed.get("options") or {}).get("epochs")
        return value if _integer(value) else 0
    values = entry if isinstance(entry, list) else [entry["max"]]
    return max((v for v in values if _integer(v)), default=0)


def grid_points(spec: ExperimentSpec) -> list[dict]:
    """Every point of a grid searcher's grid, in a fixed order."""
    grid = spec.grid()
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def trial_name(spec: ExperimentSpec, number: int) -> str:
    """The job name of an experiment's trial."""
    return f"{spec.name[:90]}_t{number}"
