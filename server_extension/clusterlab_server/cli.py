"""The ``clusterlab`` command: cluster jobs from a JupyterLab terminal or over SSH.

It drives the same :class:`~clusterlab_server.service.JobService` as the REST
API (same store, same templates, same validation, same errors), so a job
submitted here shows in the web job list and the other way round::

    clusterlab templates                      # what can be run
    clusterlab templates python-script        # its parameters
    clusterlab submit python-script --name try_1 -p script=train.py -p args=--epochs,3 --follow
    clusterlab jobs --status running
    clusterlab logs 20250101-120000-abcdef -f
    clusterlab cancel 20250101-120000-abcdef
    clusterlab rerun 20250101-120000-abcdef -p args=--epochs,10
    clusterlab reindex                        # rebuild the job list from the job folders

An experiment is a hyperparameter search: trials, each an ordinary job, of one
training template over a search space (docs/experiments.md)::

    clusterlab experiment create image-classification-train --name lr_sweep -p dataset=demo/shapes \
        --search learning_rate=loguniform:1e-4:1e-1 --search batch_size=32,64 \
        --searcher tpe --early-stopping asha --metric val_accuracy --maximize --max-trials 16
    clusterlab experiments
    clusterlab experiment wait 20250101-120000-abcdef      # a line per change, until it ends
    clusterlab experiment show 20250101-120000-abcdef      # the trials, best first
    clusterlab experiment rerun-best 20250101-120000-abcdef -p epochs=30
    clusterlab experiment csv 20250101-120000-abcdef > trials.csv
    clusterlab experiment cancel|resume|delete 20250101-120000-abcdef

A dataset is a folder's files frozen as numbered versions (1, 2, 3...); a job
sees each of its inputs, a dataset version or an earlier job's output, read-only
at ``../input/<as>/`` (its cwd is ``output/``). A project groups jobs,
experiments and datasets (docs/datasets.md)::

    clusterlab data create shapes demo/shapes --description "three shapes" --project vision
    clusterlab data ls --project vision
    clusterlab data show shapes:1 --files      # size, digest, who made it, which jobs used it
    clusterlab submit python-script --name train_1 -p script=train.py --input shapes:1 --project vision
    clusterlab submit python-script --name evaluate -p script=eval.py \
        --input shapes:1:data --input job:20250101-120000-abcdef:model --project vision
    clusterlab submit image-classification-train --name train_2 -p dataset=shapes:1
    clusterlab jobs --project vision
    clusterlab projects
    clusterlab project show vision             # each job's inputs, and who used its output
    clusterlab data rm shapes:1

``-p KEY=VALUE`` is read by the template's JSON Schema type of KEY: integer,
number, boolean (true/false), null, array (comma-separated, or a JSON array),
object (JSON), string (as is). A key the template does not have is passed as
text, so the service refuses it and names it. Nothing is ever run through a
shell: values reach the job only in its ``params.json``.

``--search KEY=SPEC`` (experiment create), repeatable:
  a,b,c                      values, each read as -p reads it (or a JSON array)
  uniform:MIN:MAX            a range (of integers for an integer parameter)
  loguniform:MIN:MAX         a range on a log scale
  ...:step=S, ...:count=N    a range's grid step, its number of grid points
KEY may be PARAM.NAME inside an object parameter (python-script's options.lr).
Only the text is read here: the service checks the search as the API's.

``--input REF`` (submit, rerun, experiment create), repeatable:
  NAME[:VERSION][:AS]        a dataset's version (no VERSION: its latest, pinned at submit),
                             seen at input/AS (default: NAME); NAME:AS when AS is not a number
  job:ID[:AS]                an ended job's output/, seen at input/AS (default: the job's name)
A parameter of format dataset or job-output takes the same refs without AS
(``-p dataset=shapes:2``, ``-p model=job:ID``), seen at input/<parameter>.

Where things are comes from the environment the hub sets (``Settings.from_environment``);
``--jobs-root``, ``--workspace``, ``--profiles``, ``--backend`` and ``--templates``
(an extra template folder, searched last) override it.

Exit status (for scripts):
  0  success
  1  the followed job (submit/rerun/experiment rerun-best --follow, logs -f) ended failed or cancelled
  2  bad input: a refused request (400, 413, 422) or a command-line usage error
  3  not found (404): no such job, template, experiment, dataset, version or project
  4  conflict (409): e.g. cancelling a job that has already ended, deleting a dataset version in use
  5  the scheduler or the system failed (5xx, or the jobs folder cannot be used)
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import json
import math
import os
import sys
import time
import types
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version_of
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .store import STATUSES

if TYPE_CHECKING:  # the service (jsonschema, the registry) is imported once the command line parses
    from .registry import Template
    from .service import JobError, JobService, Settings
    from .store import Job


def package_version() -> str:
    try:
        return package_version_of("clusterlab")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


EXIT_OK, EXIT_JOB_FAILED, EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_SCHEDULER = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141

# the module doc's table, so that --help and the docs cannot disagree
EPILOG = "exit status:\n" + __doc__.split("Exit status (for scripts):\n", 1)[1]
# experiment's: how --search reads, then the same table
EXPERIMENT_EPILOG = "search specs:\n" + __doc__.split("(experiment create), repeatable:\n", 1)[1].split(
    "\n\n", 1)[0] + "\n\n" + EPILOG
# how --input reads, then the same table
INPUT_EPILOG = "inputs:\n" + __doc__.split("(submit, rerun, experiment create), repeatable:\n", 1)[1].split(
    "\n\n", 1)[0] + "\n\n" + EPILOG
EXPERIMENT_STATUSES = ("running", "completed", "failed", "cancelled")  # experiments/store.py's, without its imports

POLL_SECONDS = 0.5
DEFAULT_LIMIT = 50


def exit_code(status: int) -> int:
    """A JobError's HTTP status -> the exit status scripts rely on."""
    if status == 404:
        return EXIT_NOT_FOUND
    if status == 409:
        return EXIT_CONFLICT
    if status >= 500:
        return EXIT_SCHEDULER
    return EXIT_BAD_INPUT


# ----- -p KEY=VALUE -----------------------------------------------------------------------


def key_value(text: str) -> tuple[str, str]:
    """argparse type of ``-p``: split at the first ``=``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text[:60]!r}")
    return key.strip(), value


def _bad(key: str, expected: str, raw: str) -> JobError:
    from .service import JobError

    return JobError(400, f"expected {expected}, got {raw[:60]!r}", f"params.{key}")


def _as_integer(key: str, raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise _bad(key, "an integer", raw) from None


def _as_number(key: str, raw: str) -> int | float:
    try:
        return int(raw.strip())
    except ValueError:
        pass
    try:
        value = float(raw.strip())
    except ValueError:
        raise _bad(key, "a number", raw) from None
    if not math.isfinite(value):
        raise _bad(key, "a finite number", raw)
    return value


def _as_boolean(key: str, raw: str) -> bool:
    word = raw.strip().lower()
    if word not in ("true", "false"):
        raise _bad(key, "true or false", raw)
    return word == "true"


def _as_null(key: str, raw: str) -> None:
    if raw.strip() != "null":
        raise _bad(key, "null", raw)


def _as_json(key: str, raw: str, kind: type, expected: str) -> Any:
    try:
        value = json.loads(raw)
    except ValueError:
        raise _bad(key, expected, raw) from None
    if not isinstance(value, kind):
        raise _bad(key, expected, raw)
    return value


def _as_array(key: str, raw: str, spec: dict) -> list:
    if raw.lstrip().startswith("["):
        return _as_json(key, raw, list, "a JSON array")
    items = raw.split(",") if raw else []
    item_spec = spec.get("items")
    if isinstance(item_spec, dict) and item_spec.get("type") not in (None, "string"):
        return [convert_value(f"{key}.{i}", item, item_spec) for i, item in enumerate(items)]
    return items


def convert_value(key: str, raw: str, spec: Any) -> Any:
    """One ``-p`` value, typed by its JSON Schema (``spec``); JobError if it cannot be."""
    from .service import JobError

    declared = spec.get("type") if isinstance(spec, dict) else None
    types = [declared] if isinstance(declared, str) else [t for t in declared or [] if isinstance(t, str)]
    if not types:
        return raw  # no declared type: the schema judges the text
    # in a union, a typed reading wins over plain text ("5" is 5 for ["integer", "string"])
    ordered = [t for t in types if t != "string"] + (["string"] if "string" in types else [])
    converters = {
        "integer": lambda: _as_integer(key, raw),
        "number": lambda: _as_number(key, raw),
        "boolean": lambda: _as_boolean(key, raw),
        "null": lambda: _as_null(key, raw),
        "array": lambda: _as_array(key, raw, spec),
        "object": lambda: _as_json(key, raw, dict, "a JSON object"),
        "string": lambda: raw,
    }
    first_error = None
    for kind in ordered:
        if kind not in converters:
            continue
        try:
            return converters[kind]()
        except JobError as e:
            first_error = first_error or e
    if len(ordered) > 1 or first_error is None:
        raise _bad(key, " or ".join(ordered) or "a value", raw)
    raise first_error


def convert_params(pairs: list[tuple[str, str]] | None, template: Template | None) -> dict:
    """``-p`` pairs -> the params object; a later ``-p`` for the same key wins."""
    properties = template.parameters.get("properties", {}) if template is not None else {}
    params: dict[str, Any] = {}
    for key, raw in pairs or []:
        spec = properties.get(key) if isinstance(properties, dict) else None
        params[key] = convert_value(key, raw, spec) if spec is not None else raw
    return params


# ----- --search KEY=SPEC ------------------------------------------------------------------

SEARCH_FORMS = ("a,b,c (values), a JSON array, uniform:MIN:MAX or loguniform:MIN:MAX "
                "(optionally :step=S and/or :count=N)")


def key_spec(text: str) -> tuple[str, str]:
    """argparse type of ``--search``: split at the first ``=``."""
    key, sep, spec = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=SPEC, got {text[:60]!r}")
    return key.strip(), spec


def search_schema(key: str, template: Template | None) -> Any:
    """The JSON Schema of what ``KEY`` searches: a parameter, or ``param.name`` inside an object parameter.

    ``param.name``'s schema is the object's ``additionalProperties`` (as the service reads
    it, experiments/spec.py). None when unknown: values stay text and ranges are read as
    numbers, and the service refuses the key, naming it.
    """
    properties = template.parameters.get("properties", {}) if template is not None else {}
    if not isinstance(properties, dict):
        return None
    top, _, sub = key.partition(".")
    schema = properties.get(top)
    if not sub or not isinstance(schema, dict):
        return schema
    entries = schema.get("additionalProperties")
    return entries if isinstance(entries, dict) else None


def _search_error(key: str, message: str) -> JobError:
    from .service import JobError

    return JobError(400, message, f"search.{key}")


def _range_number(key: str, what: str, raw: str, spec: Any, integer: bool | None = None) -> int | float:
    """A range's MIN, MAX or step: an integer for an integer parameter, else a number."""
    from .service import JobError

    if integer is None:
        declared = spec.get("type") if isinstance(spec, dict) else None
        kinds = {declared} if isinstance(declared, str) else set(declared or [])
        integer = "integer" in kinds and "number" not in kinds
    try:
        return _as_integer(key, raw) if integer else _as_number(key, raw)
    except JobError as e:
        raise _search_error(key, f"{what}: {e.message}") from None


def search_spec(key: str, raw: str, spec: Any) -> list | dict:
    """One ``--search`` SPEC -> the request's ``search[KEY]``: a list of values or a range.

    ``a,b,c``: values, each typed by ``spec`` as ``-p`` types it; ``[...]``: a JSON array
    of values, as it is; ``uniform:MIN:MAX`` -> ``{"min", "max"}``, ``loguniform:MIN:MAX``
    -> ``{"min", "max", "log": true}``, each optionally followed by ``:step=S`` and/or
    ``:count=N``. Only the text is read here: what the values may be is the service's
    to say. A spec that cannot be read is a JobError(400) on ``search.KEY``.
    """
    from .service import JobError

    text = raw.strip()
    if not text:
        raise _search_error(key, f"expected {SEARCH_FORMS}; got nothing")
    kind, colon, rest = text.partition(":")
    if colon and kind in ("uniform", "loguniform"):
        parts = [part.strip() for part in rest.split(":")]
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise _search_error(key, f"expected {kind}:MIN:MAX, optionally :step=S and/or :count=N; got {raw[:60]!r}")
        found: dict[str, Any] = {"min": _range_number(key, "min", parts[0], spec),
                                 "max": _range_number(key, "max", parts[1], spec)}
        if kind == "loguniform":
            found["log"] = True
        for option in parts[2:]:
            name, equals, value = option.partition("=")
            name = name.strip()
            if not equals or name not in ("step", "count"):
                raise _search_error(key, f"unknown option {option[:60]!r} of {kind}: expected step=S or count=N")
            if name in found:
                raise _search_error(key, f"{name} is given twice")
            found[name] = _range_number(key, name, value, spec, integer=True if name == "count" else None)
        return found
    if text.startswith("["):
        try:
            values = json.loads(text)
        except ValueError:
            values = None
        if not isinstance(values, list):
            raise _search_error(key, f"expected a JSON array, got {raw[:60]!r}")
        return values
    try:
        return [convert_value(key, item, spec) for item in raw.split(",")]
    except JobError as e:
        raise _search_error(key, e.message) from None


def convert_search(pairs: list[tuple[str, str]] | None, template: Template | None) -> dict:
    """``--search`` pairs -> the search object; a later ``--search`` for the same key wins."""
    return {key: search_spec(key, raw, search_schema(key, template)) for key, raw in pairs or []}


# ----- --input REF, dataset refs ----------------------------------------------------------

INPUT_FORMS = "NAME[:VERSION][:AS] (a dataset version) or job:ID[:AS] (an ended job's output)"


def input_ref(text: str) -> dict:
    """argparse type of ``--input``: ``NAME[:VERSION][:AS]`` or ``job:ID[:AS]`` -> the request's input entry.

    Only the form is read here (a malformed one is a usage error naming --input); whether
    the dataset, the version or the job exists and the names follow the rule is the
    service's to say, naming ``inputs.N``. VERSION is a number: ``shapes:train`` is the
    latest version of shapes seen as ``input/train``, ``shapes::train`` says the same.
    """
    parts = text.strip().split(":")

    def bad(why: str) -> argparse.ArgumentTypeError:
        return argparse.ArgumentTypeError(f"{why} in {text[:80]!r}: expected {INPUT_FORMS}")

    if len(parts) > 3:
        raise bad("too many parts")
    if parts[0] == "job":
        if len(parts) < 2 or not parts[1]:
            raise bad("no job id")
        entry: dict[str, Any] = {"job": parts[1]}
        rest = parts[2:]
    else:
        if not parts[0]:
            raise bad("no dataset name")
        entry = {"dataset": parts[0]}
        rest = parts[1:]
        if len(rest) == 2 or (rest and rest[0].isdigit()):
            version, rest = rest[0], rest[1:]
            if version:
                if not (version.isascii() and version.isdigit()):
                    raise bad(f"the version {version[:20]!r} is not a number")
                entry["version"] = int(version)
    if rest:
        if not rest[0]:
            raise bad("no name after the last ':'")
        entry["as"] = rest[0]
    return entry


def dataset_ref(text: str, version_required: bool = False) -> tuple[str, int | None]:
    """``NAME`` or ``NAME:VERSION`` (data show, data rm) -> (name, version or None)."""
    name, colon, version = text.strip().partition(":")
    form = "NAME:VERSION" if version_required else "NAME or NAME:VERSION"
    if not name or name == "job" or (colon and not (version.isascii() and version.isdigit())):
        raise argparse.ArgumentTypeError(f"expected {form} (VERSION a number), got {text[:80]!r}")
    if version_required and not colon:
        raise argparse.ArgumentTypeError(f"give the version to delete: {name}:VERSION (see: clusterlab data show "
                                         f"{name[:60]})")
    return name, int(version) if colon else None


def dataset_version_ref(text: str) -> tuple[str, int | None]:
    return dataset_ref(text, version_required=True)


# ----- output -----------------------------------------------------------------------------


def clean(value: Any) -> str:
    """One table cell: no newlines or control characters from YAML or elsewhere."""
    text = "" if value is None else str(value)
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def print_table(headers: list[str], rows: list[list[Any]], out: TextIO) -> None:
    cells = [[clean(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    for row in [headers, *cells]:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")


def print_json(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, indent=2, default=str) + "\n")


def size_text(count: Any) -> str:
    """Bytes in decimal units, as the quota counts them: ``950 B``, ``1.2 MB``."""
    if not isinstance(count, (int, float)) or isinstance(count, bool):
        return ""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1000
    return ""  # not reached


def plural(count: Any, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def local_time(value: datetime.datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:  # SQLite drops the zone; the store only holds UTC
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def schema_type(spec: dict) -> str:
    declared = spec.get("type")
    text = "|".join(declared) if isinstance(declared, list) else (declared or "any")
    items = spec.get("items")
    if "array" in text and isinstance(items, dict) and isinstance(items.get("type"), str):
        text += f" of {items['type']}"
    if spec.get("format"):
        text += f" ({spec['format']})"
    if spec.get("enum"):
        text += ": " + "|".join(json.dumps(v) if not isinstance(v, str) else v for v in spec["enum"])
    return text


# ----- following a job --------------------------------------------------------------------


def drain(service: JobService, job_id: str, offset: int, out: TextIO) -> tuple[int, dict]:
    """Write the log from ``offset`` to its current end; returns the new offset and the last answer."""
    while True:
        chunk = service.log(job_id, offset)
        if chunk["text"]:
            out.write(chunk["text"])
            out.flush()
        if chunk["offset"] == offset:
            return offset, chunk
        offset = chunk["offset"]


def follow(service: JobService, job_id: str, out: TextIO, offset: int = 0) -> Job:
    """Stream a job's log until the job has ended; returns the ended job."""
    while True:
        service.refresh()
        offset, last = drain(service, job_id, offset, out)
        if last["done"]:  # read after the job ended: the log is complete
            return service.get(job_id)
        time.sleep(POLL_SECONDS)


def follow_to_end(service: JobService, job: Job, args) -> int:
    """--follow for submit and rerun: the log on stdout (stderr with --json), then the outcome."""
    try:
        ended = follow(service, job.id, sys.stderr if args.json else sys.stdout)
    except KeyboardInterrupt:
        sys.stderr.write(f"\nclusterlab: stopped following; job {job.id} goes on "
                         f"(clusterlab logs -f {job.id}, clusterlab cancel {job.id})\n")
        return EXIT_INTERRUPTED
    if args.json:
        print_json(service.job_json(ended), sys.stdout)
    else:
        sys.stderr.write(f"clusterlab: job {ended.id} {describe_end(ended)}\n")
    return EXIT_OK if ended.status == "completed" else EXIT_JOB_FAILED


def describe_end(job: Job) -> str:
    text = job.status
    if job.exit_code is not None:
        text += f" (exit code {job.exit_code})"
    if job.reason and job.status != "completed":
        text += f": {job.reason}"
    return text


# ----- the commands -----------------------------------------------------------------------


def cmd_templates(service: JobService, args) -> int:
    registry = service.registry
    if args.id is not None:
        template = service.template(args.id, field="id")
        if args.json:
            print_json(template.to_json(), sys.stdout)
            return EXIT_OK
        out = sys.stdout
        out.write(f"{template.id}: {clean(template.name)} ({template.kind}, {template.category})\n")
        out.write(f"{clean(template.description)}\n")
        if template.default_profile:
            out.write(f"default size: {template.default_profile}\n")
        properties = template.parameters.get("properties", {})
        required = set(template.parameters.get("required", []))
        out.write("\n")
        if not properties:
            out.write("no parameters\n")
            return EXIT_OK
        rows = [
            [key, schema_type(spec), json.dumps(spec["default"]) if "default" in spec else "",
             "yes" if key in required else "no", spec.get("description") or spec.get("title") or ""]
            for key, spec in properties.items()
        ]
        print_table(["PARAMETER", "TYPE", "DEFAULT", "REQUIRED", "DESCRIPTION"], rows, out)
        example = " ".join(f"-p {key}=..." for key in properties if key in required)
        out.write(f"\nclusterlab submit {template.id} --name NAME {example}".rstrip() + "\n")
        return EXIT_OK
    templates = sorted(registry.templates.values(), key=lambda t: t.id)
    if args.json:
        print_json({"templates": [t.to_json() for t in templates], "problems": registry.problems}, sys.stdout)
        return EXIT_OK
    for problem in registry.problems:
        sys.stderr.write(f"clusterlab: warning: skipped a template: {problem}\n")
    print_table(["ID", "KIND", "CATEGORY", "NAME"], [[t.id, t.kind, t.category, t.name] for t in templates],
                sys.stdout)
    return EXIT_OK


def cmd_submit(service: JobService, args) -> int:
    template = service.registry.templates.get(args.template)
    request: dict[str, Any] = {
        "template": args.template, "name": args.name, "params": convert_params(args.param, template),
    }
    picked = ""
    if args.profile is not None:
        request["profile"] = args.profile
    elif template is not None:  # the service's pick, said: the size sets the job's cores and GPUs
        request["profile"], why = service.default_profile(template)
        picked = f"clusterlab: size {request['profile']}: {why}\n"
    if args.hours is not None:
        request["hours"] = args.hours
    request.update(inputs_and_project(args))
    job = service.submit(request)
    sys.stderr.write(picked)
    return submitted(service, job, args)


def inputs_and_project(args) -> dict:
    """``--input`` (as the request's ``inputs``) and ``--project``, where given."""
    found: dict[str, Any] = {}
    if getattr(args, "input", None):
        found["inputs"] = args.input
    if getattr(args, "project", None) is not None:
        found["project"] = args.project
    return found


def cmd_rerun(service: JobService, args) -> int:
    old = service.get(args.id)
    changes: dict[str, Any] = {}
    if args.param:
        changes["params"] = convert_params(args.param, service.registry.templates.get(old.template))
    for key in ("name", "profile", "hours"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    changes.update(inputs_and_project(args))
    return submitted(service, service.rerun(old.id, changes), args)


def input_text(resolved: dict) -> str:
    """A pinned input in words: ``input/data: shapes:2 (2000 files, 1.2 MB, sha256:0123456789ab...)``."""
    if "job" in resolved:
        what = f"job:{resolved['job']} (the output of {resolved.get('job_name', '?')}, "
    else:
        site = "the site's, " if resolved.get("shared") else ""
        what = f"{resolved.get('dataset')}:{resolved.get('version')} ({site}"
    return (f"input/{resolved.get('as')}: {what}{plural(resolved.get('files'), 'file')}, "
            f"{size_text(resolved.get('bytes'))}, {str(resolved.get('digest', ''))[:19]}...)")


def submitted(service: JobService, job: Job, args) -> int:
    if not args.json:
        sys.stdout.write(job.id + "\n")
        sys.stdout.flush()
        for resolved in job.inputs or []:  # what was pinned: a bare name became its latest version
            sys.stderr.write(f"clusterlab: {clean(input_text(resolved))}\n")
    if args.follow:
        return follow_to_end(service, job, args)
    if args.json:
        print_json(service.job_json(job), sys.stdout)
    return EXIT_OK


def cmd_jobs(service: JobService, args) -> int:
    service.refresh()
    jobs, total = service.list(status=args.status, template=args.template, project=args.project, limit=args.limit)
    if args.json:
        print_json({"jobs": [service.job_json(j) for j in jobs], "total": total}, sys.stdout)
        return EXIT_OK
    if not jobs:
        sys.stderr.write("clusterlab: no jobs\n")
        return EXIT_OK
    rows = [[j.id, j.name, j.template, j.status, j.profile, local_time(j.submit_time),
             "" if j.exit_code is None else j.exit_code] for j in jobs]
    print_table(["ID", "NAME", "TEMPLATE", "STATUS", "PROFILE", "SUBMITTED", "EXIT"], rows, sys.stdout)
    if total > len(jobs):
        sys.stderr.write(f"clusterlab: {len(jobs)} of {total} jobs shown (newest first); see --limit\n")
    return EXIT_OK


def cmd_logs(service: JobService, args) -> int:
    if not args.follow:
        drain(service, args.id, 0, sys.stdout)
        return EXIT_OK
    try:
        ended = follow(service, args.id, sys.stdout)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_OK if ended.status == "completed" else EXIT_JOB_FAILED


def cmd_cancel(service: JobService, args) -> int:
    job = service.cancel(args.id)
    if args.json:
        print_json(service.job_json(job), sys.stdout)
    else:
        sys.stdout.write(f"{job.id} {job.status}\n")
    return EXIT_OK


def cmd_reindex(service: JobService, args) -> int:
    """The index (``jobs.sqlite``) made again from the job and experiment folders, which are the record."""
    done = service.store.reindex()
    service.refresh()  # a job the folders say is queued or running: what the scheduler says now
    if args.json:
        print_json(done, sys.stdout)
        return EXIT_OK
    for why in done["unreadable"]:
        sys.stderr.write(f"clusterlab: skipped {clean(why)}\n")
    sys.stdout.write(f"{plural(done['jobs'], 'job')} and {plural(done['experiments'], 'experiment')} "
                     "indexed from their folders\n")
    return EXIT_OK


# ----- experiments ------------------------------------------------------------------------


def experiments_of(service: JobService):
    """The experiments over this job service (imported only by the experiment commands)."""
    from .experiments.service import ExperimentService

    return ExperimentService(service)


def number_text(value: Any) -> str:
    """A metric or parameter value in a table: floats to 4 significant digits, the rest as JSON would."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else json.dumps(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value)


def params_text(params: dict | None) -> str:
    """``key=value, ...``: values as in a table, null as null."""
    return ", ".join(f"{key}={'null' if value is None else number_text(value)}"
                     for key, value in (params or {}).items())


def search_text(search: dict) -> str:
    """The search space in a few words: ``learning_rate in [0.0001, 0.1] (log), batch_size in {32, 64}``."""
    parts = []
    for key, spec in (search or {}).items():
        if isinstance(spec, list):
            parts.append(f"{key} in {{{', '.join(number_text(v) for v in spec)}}}")
        elif isinstance(spec, dict):
            extra = [word for word, on in (("log", spec.get("log")), (f"step {number_text(spec.get('step'))}",
                     "step" in spec), (f"{spec.get('count')} points", "count" in spec)) if on]
            text = f"{key} in [{number_text(spec.get('min'))}, {number_text(spec.get('max'))}]"
            parts.append(text + (f" ({', '.join(extra)})" if extra else ""))
    return ", ".join(parts)


def experiment_summary(experiment: dict) -> str:
    """One line: what an experiment searches, how, and for what."""
    goal = "maximize" if experiment.get("maximize") else "minimize"
    text = (f"{experiment.get('searcher')} search of {experiment.get('max_trials')} trials "
            f"({experiment.get('max_concurrent_trials')} at once) over {search_text(experiment.get('search'))}; "
            f"{goal} {experiment.get('metric')}")
    stopping = experiment.get("early_stopping")
    if stopping and stopping != "none":
        text += (f"; early stopping {stopping} (divisor {experiment.get('divisor')}, "
                 f"{experiment.get('max_rungs')} rungs)")
    if experiment.get("profile"):
        text += f"; each trial on {experiment['profile']}"
        if experiment.get("hours") is not None:
            text += f" for {number_text(experiment['hours'])} h"
    return text


def best_text(experiment: dict) -> str:
    best = experiment.get("best")
    if not best or best.get("value") is None:
        return ""
    return number_text(best["value"])


def cmd_experiment_create(service: JobService, args) -> int:
    template = service.registry.templates.get(args.template)
    request: dict[str, Any] = {
        "template": args.template, "name": args.name, "params": convert_params(args.param, template),
    }
    if args.search is not None:  # none given: the service says search is required
        request["search"] = convert_search(args.search, template)
    for key in ("searcher", "early_stopping", "divisor", "max_rungs", "metric", "maximize", "max_trials",
                "max_concurrent_trials", "max_restarts", "profile", "hours"):
        if getattr(args, key) is not None:
            request[key] = getattr(args, key)
    request.update(inputs_and_project(args))
    experiment = experiments_of(service).create(request)
    if args.json:
        print_json(experiment, sys.stdout)
        return EXIT_OK
    sys.stdout.write(experiment["id"] + "\n")
    sys.stderr.write(f"clusterlab: experiment {experiment.get('name')}: {clean(experiment_summary(experiment))}\n")
    for resolved in experiment.get("inputs") or []:  # pinned once, for every trial
        sys.stderr.write(f"clusterlab: {clean(input_text(resolved))}\n")
    for note in experiment.get("notes") or []:
        sys.stderr.write(f"clusterlab: note: {clean(note)}\n")
    return EXIT_OK


def cmd_experiments(service: JobService, args) -> int:
    service.refresh()
    experiments, total = experiments_of(service).list(status=args.status, project=args.project, limit=args.limit)
    if args.json:
        print_json({"experiments": experiments, "total": total}, sys.stdout)
        return EXIT_OK
    if not experiments:
        sys.stderr.write("clusterlab: no experiments\n")
        return EXIT_OK
    rows = []
    for e in experiments:
        counts = e.get("counts") or {}
        rows.append([e["id"], e.get("name"), e.get("template"), e.get("status"),
                     *(counts.get(k, 0) for k in ("completed", "running", "pruned", "failed")),
                     e.get("metric"), best_text(e)])
    print_table(["ID", "NAME", "TEMPLATE", "STATUS", "DONE", "RUNNING", "PRUNED", "FAILED", "METRIC", "BEST"],
                rows, sys.stdout)
    if total > len(experiments):
        sys.stderr.write(f"clusterlab: {len(experiments)} of {total} experiments shown (newest first); "
                         f"see --limit\n")
    return EXIT_OK


def trials_best_first(experiment: dict) -> list[dict]:
    """The trials, the best one first, then by their metric (better first), then those without one."""
    best = (experiment.get("best") or {}).get("trial")
    sign = -1 if experiment.get("maximize") else 1

    def key(trial: dict):
        value = trial.get("value")
        scored = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return (trial.get("trial") != best, not scored, sign * value if scored else 0, trial.get("trial", 0))

    return sorted(experiment.get("trials") or [], key=key)


def iso_local_time(text: str | None) -> str:
    """An experiment's ISO time (UTC, with or without its zone) in local time."""
    if not text:
        return ""
    try:
        return local_time(datetime.datetime.fromisoformat(text))
    except (TypeError, ValueError):
        return str(text)


def cmd_experiment_show(service: JobService, args) -> int:
    service.refresh()
    experiment = experiments_of(service).get(args.id)
    if args.json:
        print_json(experiment, sys.stdout)
        return EXIT_OK
    out = sys.stdout
    searched = list(experiment.get("search") or {})
    status = experiment.get("status", "")
    if experiment.get("reason"):
        status += f": {experiment['reason']}"
    counts = experiment.get("counts") or {}
    fixed = {k: v for k, v in (experiment.get("params") or {}).items() if k not in searched}
    created = iso_local_time(experiment.get("created"))
    if experiment.get("ended"):
        created += f", ended {iso_local_time(experiment['ended'])}"
    lines = [
        ("status", status),
        ("search", experiment_summary(experiment)),
        ("fixed", params_text(fixed)),
        ("trials", f"{counts.get('trials', 0)}: " + ", ".join(
            f"{counts.get(k, 0)} {k}" for k in ("queued", "running", "completed", "pruned", "failed", "cancelled"))),
        ("created", created),
        ("project", experiment.get("project") or "default"),
    ]
    lines += [("input", input_text(resolved)) for resolved in experiment.get("inputs") or []]
    best = experiment.get("best")
    if best:
        at = f" at epoch {best['epoch']}" if best.get("epoch") is not None else ""
        lines.append(("best", f"trial {best.get('trial')} (job {best.get('job_id')}): "
                              f"{params_text(best.get('params'))}; "
                              f"{experiment.get('metric')} {number_text(best.get('value'))}{at}"))
        if best.get("model_path"):
            lines.append(("model", best["model_path"]))
    else:
        lines.append(("best", "none yet"))
    controller = experiment.get("controller") or {}
    if controller:
        lines.append(("controller", f"{controller.get('status')} (job {controller.get('job_id')}, "
                                    f"{controller.get('restarts', 0)} restarts)"))
    lines += [("note", note) for note in experiment.get("notes") or []]
    out.write(f"{experiment['id']}: {clean(experiment.get('name'))} ({clean(experiment.get('template'))})\n")
    for label, text in lines:
        out.write(f"{label + ':':<12}{clean(text)}\n")
    trials = trials_best_first(experiment)
    out.write("\n")
    if not trials:
        out.write("no trials yet\n")
        return EXIT_OK
    rows = [[t.get("trial"), t.get("job_id"), t.get("status"),
             *(number_text((t.get("params") or {}).get(k)) for k in searched),
             number_text(t.get("value")), "" if t.get("epoch") is None else t["epoch"], t.get("restarts", 0)]
            for t in trials]
    print_table(["TRIAL", "JOB", "STATUS", *searched, experiment.get("metric") or "VALUE", "EPOCH", "RESTARTS"],
                rows, out)
    return EXIT_OK


def print_state(experiment: dict, args, also: str = "") -> int:
    """An experiment after an action: its JSON, or ``ID STATUS`` (and ``also``)."""
    if args.json:
        print_json(experiment, sys.stdout)
    else:
        sys.stdout.write(f"{experiment['id']} {experiment.get('status')}{also}\n")
    return EXIT_OK


def cmd_experiment_cancel(service: JobService, args) -> int:
    return print_state(experiments_of(service).cancel(args.id), args)


def cmd_experiment_delete(service: JobService, args) -> int:
    experiments_of(service).delete(args.id)
    sys.stdout.write(f"{args.id} deleted\n")
    return EXIT_OK


def cmd_experiment_resume(service: JobService, args) -> int:
    experiment = experiments_of(service).resume(args.id)
    controller = (experiment.get("controller") or {}).get("status", "")
    return print_state(experiment, args, f" (controller {controller})" if controller else "")


def cmd_experiment_rerun_best(service: JobService, args) -> int:
    experiments = experiments_of(service)
    changes: dict[str, Any] = {}
    if args.param:
        experiment = experiments.get(args.id)
        changes["params"] = convert_params(args.param, service.registry.templates.get(experiment.get("template")))
    for key in ("name", "profile", "hours"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    return submitted(service, experiments.rerun_best(args.id, changes), args)


def progress_line(experiment: dict) -> str:
    """``running: 4 of 16 trials done, 2 running, 1 pruned, 0 failed; best val_accuracy 0.93 (trial 2)``."""
    counts = experiment.get("counts") or {}
    done = counts.get("completed", 0)
    text = (f"{experiment.get('status')}: {done} of {experiment.get('max_trials')} trials done, "
            f"{counts.get('running', 0) + counts.get('queued', 0)} running, {counts.get('pruned', 0)} pruned, "
            f"{counts.get('failed', 0) + counts.get('cancelled', 0)} failed")
    best = experiment.get("best")
    if best and best.get("value") is not None:
        text += f"; best {experiment.get('metric')} {number_text(best['value'])} (trial {best['trial']})"
    return text


def cmd_experiment_wait(service: JobService, args) -> int:
    """A line whenever the trials' counts change, until the experiment ends; its end decides the exit status."""
    experiments = experiments_of(service)
    last = ""
    while True:
        service.refresh()
        experiment = experiments.get(args.id)
        line = progress_line(experiment)
        if line != last:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
            last = line
        if experiment["status"] != "running":
            if experiment.get("reason"):
                sys.stderr.write(f"{experiment['reason']}\n")
            return EXIT_OK if experiment["status"] == "completed" else EXIT_JOB_FAILED
        time.sleep(args.interval)


def cmd_experiment_csv(service: JobService, args) -> int:
    service.refresh()
    sys.stdout.write(experiments_of(service).trials_csv(args.id))
    return EXIT_OK


# ----- datasets and projects --------------------------------------------------------------


def where_text(item: dict) -> str:
    return "site" if item.get("shared") else "own"


def ref_text(version: dict) -> str:
    return f"{version.get('name')}:{version.get('version')}"


def cmd_data_create(service: JobService, args) -> int:
    # FOLDER as a terminal reads it: relative to the current folder (the service keeps it inside the user's roots)
    request: dict[str, Any] = {"name": args.name, "folder": str(Path(args.folder).expanduser().absolute())}
    if args.description is not None:
        request["description"] = args.description
    if args.project is not None:
        request["project"] = args.project
    version = service.datasets.create(request, site=args.site)
    if args.json:
        print_json(version, sys.stdout)
        return EXIT_OK
    sys.stdout.write(ref_text(version) + "\n")
    sys.stderr.write(f"clusterlab: {'site ' if version.get('shared') else ''}dataset {ref_text(version)}: "
                     f"{plural(version.get('files'), 'file')}, {size_text(version.get('bytes'))} "
                     f"({size_text(version.get('new_bytes'))} new), {version.get('digest')}\n")
    return EXIT_OK


def cmd_data_ls(service: JobService, args) -> int:
    datasets = service.datasets.list(project=args.project)
    if args.json:
        print_json({"datasets": datasets}, sys.stdout)
        return EXIT_OK
    if not datasets:
        sys.stderr.write("clusterlab: no datasets" + (f" in project {args.project}" if args.project else "") +
                         " (make one: clusterlab data create NAME FOLDER)\n")
        return EXIT_OK
    rows = []
    for d in datasets:
        latest = (d.get("versions") or [{}])[0]
        rows.append([d.get("name"), d.get("latest"), len(d.get("versions") or []), latest.get("files"),
                     size_text(latest.get("bytes")), d.get("project"), where_text(d),
                     iso_local_time(latest.get("created")), d.get("description")])
    print_table(["NAME", "LATEST", "VERSIONS", "FILES", "SIZE", "PROJECT", "WHERE", "CREATED", "DESCRIPTION"],
                rows, sys.stdout)
    return EXIT_OK


def cmd_data_show(service: JobService, args) -> int:
    name, number = args.ref
    datasets = service.datasets
    version = datasets.version(name, number)
    manifest = datasets.manifest(name, version["version"]) if args.files else None
    if args.json:
        print_json({**version, "manifest": manifest} if manifest is not None else version, sys.stdout)
        return EXIT_OK
    numbers = [v.get("version") for v in datasets.get(name).get("versions") or []]
    out = sys.stdout
    owner = "a site dataset" if version.get("shared") else "your dataset"
    out.write(f"{ref_text(version)} ({owner}, project {clean(version.get('project'))})\n")
    lines = [
        ("description", version.get("description") or ""),
        ("size", f"{plural(version.get('files'), 'file')}, {size_text(version.get('bytes'))} "
                 f"({size_text(version.get('new_bytes'))} stored anew by this version)"),
        ("digest", version.get("digest")),
        ("created", f"{iso_local_time(version.get('created'))} by {version.get('creator')}"),
        ("source", version.get("source")),
        ("path", version.get("path")),
        ("versions", ", ".join(str(n) for n in numbers)),
    ]
    for label, text in lines:
        out.write(f"{label + ':':<13}{clean(text)}\n")
    used_by = version.get("used_by") or []
    out.write("\n")
    if used_by:
        out.write("used by:\n")
        print_table(["JOB", "NAME", "STATUS", "AS"],
                    [[u.get("id"), u.get("name"), u.get("status"), f"input/{u.get('as')}"] for u in used_by], out)
    else:
        out.write("used by no job yet\n")
    if manifest is not None:
        out.write("\n")
        print_table(["PATH", "SIZE", "SHA256"],
                    [[f.get("path"), size_text(f.get("size")), str(f.get("sha256", ""))[:16]]
                     for f in manifest.get("files") or []], out)
    return EXIT_OK


def cmd_data_rm(service: JobService, args) -> int:
    name, number = args.ref
    service.datasets.delete(name, number)
    sys.stdout.write(f"{name}:{number} deleted\n")
    return EXIT_OK


def projects_of(service: JobService):
    """The projects over this job service and its experiments (imported only by the project commands)."""
    from .projects import ProjectService

    return ProjectService(service, experiments_of(service))


def cmd_projects(service: JobService, args) -> int:
    service.refresh()
    projects = projects_of(service).list()
    if args.json:
        print_json({"projects": projects}, sys.stdout)
        return EXIT_OK
    print_table(["NAME", "JOBS", "EXPERIMENTS", "DATASETS"],
                [[p.get("name"), p.get("jobs"), p.get("experiments"), p.get("datasets")] for p in projects],
                sys.stdout)
    return EXIT_OK


def inputs_cell(job: dict) -> str:
    """A job's inputs in a table cell: ``data=shapes:2, model=job:<id>``."""
    return ", ".join(f"{i.get('as')}=job:{i['job']}" if "job" in i else f"{i.get('as')}={i.get('dataset')}:"
                     f"{i.get('version')}" for i in job.get("inputs") or [])


def cmd_project_show(service: JobService, args) -> int:
    service.refresh()
    project = projects_of(service).get(args.name)
    if args.json:
        print_json(project, sys.stdout)
        return EXIT_OK
    out = sys.stdout
    jobs, experiments, datasets = (project.get(k) or [] for k in ("jobs", "experiments", "datasets"))
    out.write(f"project {clean(project.get('name'))}: {plural(len(jobs), 'job')}, "
              f"{plural(len(experiments), 'experiment')}, {plural(len(datasets), 'dataset')}\n")
    if jobs:
        out.write("\njobs (newest first):\n")
        print_table(["ID", "NAME", "TEMPLATE", "STATUS", "INPUTS", "USED BY"],
                    [[j.get("id"), j.get("name"), j.get("template"), j.get("status"), inputs_cell(j),
                      ", ".join(j.get("used_by") or [])] for j in jobs], out)
    if experiments:
        out.write("\nexperiments:\n")
        print_table(["ID", "NAME", "TEMPLATE", "STATUS", "INPUTS", "METRIC", "BEST"],
                    [[e.get("id"), e.get("name"), e.get("template"), e.get("status"), inputs_cell(e),
                      e.get("metric"), best_text(e)] for e in experiments], out)
    if datasets:
        out.write("\ndatasets:\n")
        print_table(["NAME", "LATEST", "VERSIONS", "SIZE", "DESCRIPTION"],
                    [[d.get("name"), d.get("latest"), len(d.get("versions") or []),
                      size_text(((d.get("versions") or [{}])[0]).get("bytes")), d.get("description")]
                     for d in datasets], out)
    return EXIT_OK


# ----- the command line -------------------------------------------------------------------


def add_location_options(parser: argparse.ArgumentParser, on_subcommand: bool) -> None:
    """The overrides of Settings.from_environment, before or after the subcommand.

    After the subcommand they are left out of the namespace unless given, so they
    override the ones given before it only when present; extra template folders add up.
    """
    default = argparse.SUPPRESS if on_subcommand else None
    group = parser.add_argument_group("where things are (default: from the environment)")
    group.add_argument("--jobs-root", type=Path, metavar="DIR", default=default,
                       help="the job folders and their index (default: $CLUSTERLAB_JOBS_ROOT or ~/.clusterlab/jobs)")
    group.add_argument("--workspace", type=Path, metavar="DIR", default=default,
                       help="where path parameters are resolved and code is snapshotted "
                            "(default: $CLUSTERLAB_WORKSPACE or ~)")
    group.add_argument("--profiles", type=Path, metavar="FILE", default=default,
                       help="the instance sizes file (default: $CLUSTERLAB_PROFILES or the shipped one)")
    group.add_argument("--backend", choices=("local", "slurm"), default=default,
                       help="where jobs run (default: $CLUSTERLAB_JOB_BACKEND, slurm inside a Slurm job, else local)")
    group.add_argument("--templates", type=Path, metavar="DIR", action="append",
                       dest="templates_after" if on_subcommand else "templates", default=default,
                       help="an extra template folder, searched after the usual ones (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    from .studio.cli import add_commands as add_studio_commands  # AI Studio's: labelling, studio, model

    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="clusterlab", formatter_class=formatter, epilog=EPILOG,
        description="Submit, follow and manage ClusterLab jobs (the same jobs as the web job list).",
    )
    parser.add_argument("--version", action="version", version=f"clusterlab {package_version()}")
    add_location_options(parser, on_subcommand=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, summary: str, handler) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=summary, epilog=EPILOG, formatter_class=formatter)
        sub.set_defaults(handler=handler)
        add_location_options(sub, on_subcommand=True)
        return sub

    def json_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--json", action="store_true", help="print JSON instead of a table (for scripts)")

    def param_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("-p", "--param", type=key_value, action="append", metavar="KEY=VALUE",
                         help="a parameter, read by the template's type for KEY: numbers, true/false, "
                              "lists as a,b,c or a JSON array, objects as JSON (repeatable)")

    def input_options(sub: argparse.ArgumentParser, what: str) -> None:
        sub.add_argument("--input", type=input_ref, action="append", metavar="REF",
                         help=f"{what}: a dataset version NAME[:VERSION][:AS] or an ended job's output job:ID[:AS], "
                              "seen read-only at input/AS (repeatable; see below)")
        sub.add_argument("--project", metavar="P", help="the project it belongs to (default: default)")

    def project_filter(sub: argparse.ArgumentParser, what: str) -> None:
        sub.add_argument("--project", metavar="P", help=f"only {what} of this project")

    def follow_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("-f", "--follow", action="store_true",
                         help="stream the log until the job ends; exit 0 if it completed, 1 otherwise")

    sub = command("templates", "list the job templates, or show one's parameters", cmd_templates)
    sub.add_argument("id", nargs="?", metavar="ID", help="a template id: show its parameters")
    json_option(sub)

    sub = command("submit", "submit a job from a template; prints its id", cmd_submit)
    sub.add_argument("template", metavar="TEMPLATE", help="the template id (see: clusterlab templates)")
    sub.add_argument("--name", required=True, help="the job's name: letters, digits and underscores")
    param_option(sub)
    sub.add_argument("--profile", help="the instance size (default: the template's if it can run here, "
                                       "else the first that can; said on stderr)")
    sub.add_argument("--hours", type=float, help="the wall time in hours (default: the size's)")
    input_options(sub, "an input")
    sub.epilog = INPUT_EPILOG
    follow_option(sub)
    json_option(sub)

    sub = command("jobs", "list jobs, newest first (after asking the scheduler)", cmd_jobs)
    sub.add_argument("--status", choices=STATUSES, help="only jobs with this status")
    sub.add_argument("--template", metavar="TEMPLATE", help="only jobs of this template")
    project_filter(sub, "jobs")
    sub.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                     help=f"at most N jobs, 1 to 1000 (default: {DEFAULT_LIMIT})")
    json_option(sub)

    sub = command("logs", "print a job's log", cmd_logs)
    sub.add_argument("id", metavar="ID", help="the job id")
    follow_option(sub)

    sub = command("cancel", "cancel a queued or running job", cmd_cancel)
    sub.add_argument("id", metavar="ID", help="the job id")
    json_option(sub)

    sub = command("rerun", "submit a job again, with changes; prints the new id", cmd_rerun)
    sub.add_argument("id", metavar="ID", help="the job to run again")
    param_option(sub)
    sub.add_argument("--name", help="a new name (default: the same)")
    sub.add_argument("--profile", help="another instance size (default: the same)")
    sub.add_argument("--hours", type=float, help="another wall time in hours (default: the same)")
    input_options(sub, "an input; any --input replaces the job's inputs (default: the same versions)")
    sub.epilog = INPUT_EPILOG
    follow_option(sub)
    json_option(sub)

    sub = command("reindex", "rebuild the list of jobs and experiments from their folders (the record); the "
                  "list is rebuilt by itself when it is found broken or missing", cmd_reindex)
    json_option(sub)

    sub = command("experiments", "list experiments (hyperparameter searches), newest first", cmd_experiments)
    sub.add_argument("--status", choices=EXPERIMENT_STATUSES, help="only experiments with this status")
    project_filter(sub, "experiments")
    sub.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                     help=f"at most N experiments, 1 to 1000 (default: {DEFAULT_LIMIT})")
    json_option(sub)

    def command_with_actions(name: str, summary: str, epilog: str):
        """``clusterlab NAME ACTION ...``: the function that adds one ACTION (its handler, the location options)."""
        group = commands.add_parser(name, help=summary, description=summary, epilog=epilog, formatter_class=formatter)
        actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

        def action(action_name: str, action_summary: str, handler) -> argparse.ArgumentParser:
            sub = actions.add_parser(action_name, help=action_summary, description=action_summary, epilog=epilog,
                                     formatter_class=formatter)
            sub.set_defaults(handler=handler)
            add_location_options(sub, on_subcommand=True)
            return sub
        return action

    action = command_with_actions(
        "experiment", "create, show and manage an experiment: a hyperparameter search over jobs of one template",
        EXPERIMENT_EPILOG)

    def experiment_id(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("id", metavar="ID", help="the experiment id (see: clusterlab experiments)")

    sub = action("create", "start an experiment; prints its id", cmd_experiment_create)
    sub.add_argument("template", metavar="TEMPLATE", help="a training (or script) template id")
    sub.add_argument("--name", required=True, help="the experiment's name: letters, digits and underscores")
    param_option(sub)
    sub.add_argument("--search", type=key_spec, action="append", metavar="KEY=SPEC",
                     help="a searched parameter (repeatable): a,b,c (values, read by the template's type), "
                          "a JSON array, uniform:MIN:MAX or loguniform:MIN:MAX, optionally followed by "
                          ":step=S and/or :count=N; KEY may be PARAM.NAME inside an object parameter "
                          "(python-script's options.lr)")
    sub.add_argument("--searcher", choices=("grid", "random", "tpe"), help="how trials are picked (default: tpe)")
    sub.add_argument("--early-stopping", choices=("none", "asha", "hyperband"),
                     help="stop poor trials early (default: none)")
    sub.add_argument("--divisor", type=int, metavar="N",
                     help="ASHA's reduction factor: the top 1/N of trials at a rung go on (default: 4)")
    sub.add_argument("--max-rungs", type=int, metavar="N", help="ASHA's rungs (default: 5)")
    sub.add_argument("--metric", metavar="M", help="the metric to optimize (default: the template's first)")
    goal = sub.add_mutually_exclusive_group()
    goal.add_argument("--maximize", action="store_const", const=True, dest="maximize",
                      help="larger is better (default: the metric's declared goal)")
    goal.add_argument("--minimize", action="store_const", const=False, dest="maximize", help="smaller is better")
    sub.add_argument("--max-trials", type=int, metavar="N", help="trials in all (default: a grid's size, else 16)")
    sub.add_argument("--max-concurrent", type=int, metavar="N", dest="max_concurrent_trials",
                     help="trials running at once (default: 4)")
    sub.add_argument("--max-restarts", type=int, metavar="N",
                     help="restarts of a trial killed from outside (default: 5)")
    sub.add_argument("--profile", help="each trial's instance size (default: by the job form's rule)")
    sub.add_argument("--hours", type=float, help="each trial's wall time in hours (default: the size's)")
    input_options(sub, "every trial's input, pinned once when the experiment is created")
    json_option(sub)

    sub = action("show", "show an experiment and its trials, best first", cmd_experiment_show)
    experiment_id(sub)
    json_option(sub)

    sub = action("cancel", "cancel a running experiment and its running trials", cmd_experiment_cancel)
    experiment_id(sub)
    json_option(sub)

    sub = action("delete", "delete an ended experiment, its trials' records and folders", cmd_experiment_delete)
    experiment_id(sub)

    sub = action("resume", "start an experiment's controller again if it is not running", cmd_experiment_resume)
    experiment_id(sub)
    json_option(sub)

    sub = action("rerun-best", "submit the best trial's parameters again, with changes; prints the new job id",
                 cmd_experiment_rerun_best)
    experiment_id(sub)
    param_option(sub)
    sub.add_argument("--name", help="the new job's name (default: the best trial's)")
    sub.add_argument("--profile", help="another instance size (default: the trial's)")
    sub.add_argument("--hours", type=float, help="another wall time in hours (default: the trial's)")
    follow_option(sub)
    json_option(sub)

    sub = action("wait", "wait until an experiment ends, a line per change; exit 0 if it completed",
                 cmd_experiment_wait)
    experiment_id(sub)
    sub.add_argument("--interval", type=float, default=2, metavar="S", help="seconds between looks (default: 2)")

    sub = action("csv", "print every trial as CSV: number, job, status, parameters, metric, epoch",
                 cmd_experiment_csv)
    experiment_id(sub)

    data_action = command_with_actions(
        "data", "make, list, show and delete datasets: a folder's files frozen as numbered versions", EPILOG)

    sub = data_action("create", "make a new version of a dataset from a folder's files; prints NAME:VERSION",
                      cmd_data_create)
    sub.add_argument("name", metavar="NAME", help="the dataset's name: letters, digits and underscores")
    sub.add_argument("folder", metavar="FOLDER", help="the folder (relative to the current one) inside your "
                                                     "workspace; unchanged files since the last version are not "
                                                     "hashed or stored again")
    sub.add_argument("--description", metavar="D", help="what it is (at most 2000 characters)")
    sub.add_argument("--project", metavar="P", help="the project it belongs to (default: default)")
    sub.add_argument("--site", action="store_true",
                     help="a site dataset every user may read (needs write permission on the site's store)")
    json_option(sub)

    sub = data_action("ls", "list your datasets, then the site's, by name", cmd_data_ls)
    project_filter(sub, "datasets")
    json_option(sub)

    sub = data_action("show", "show a version: size, digest, who made it, which jobs used it", cmd_data_show)
    sub.add_argument("ref", type=dataset_ref, metavar="NAME[:VERSION]", help="the dataset (default: its latest "
                                                                              "version)")
    sub.add_argument("--files", action="store_true", help="also list its files (path, size, sha256)")
    json_option(sub)

    sub = data_action("rm", "delete a version (refused while an unfinished job uses it; its number is not reused)",
                      cmd_data_rm)
    sub.add_argument("ref", type=dataset_version_ref, metavar="NAME:VERSION", help="the version to delete")

    sub = command("projects", "list projects with their counts of jobs, experiments and datasets", cmd_projects)
    json_option(sub)

    summary = "show a project: its jobs with their inputs and who used their outputs, experiments, datasets"
    sub = command_with_actions("project", summary, EPILOG)("show", summary, cmd_project_show)
    sub.add_argument("name", metavar="NAME", help="the project's name (see: clusterlab projects)")
    json_option(sub)

    add_studio_commands(command_with_actions, param_option, json_option, key_spec)

    sub = commands.add_parser(
        "demo-data", help="write small synthetic data sets the templates learn well",
        description="Write small synthetic data sets into DIR: shapes/ (image classification), "
                    "shapes-detection/ (object detection, YOLO text labels) and tabular/houses.csv.",
        epilog=EPILOG, formatter_class=formatter)
    sub.add_argument("dir", type=Path, metavar="DIR", help="the folder to write them into")
    sub.set_defaults(handler=None)
    return parser


def cmd_demo_data(args) -> int:
    from .demo_data import generate

    for kind, path in generate(args.dir).items():
        print(f"{kind:<22} {path}")
    return EXIT_OK


def settings_from(args: argparse.Namespace) -> Settings:
    from .service import Settings

    def absolute(path: Path | None) -> Path | None:
        return path.expanduser().absolute() if path is not None else None

    settings = Settings.from_environment(
        jobs_root=absolute(args.jobs_root), workspace=absolute(args.workspace),
        profiles_file=absolute(args.profiles), backend=args.backend,
    )
    extra = [*(args.templates or []), *getattr(args, "templates_after", [])]
    settings.template_paths = [*settings.template_paths, *(absolute(p) for p in extra)]
    return settings


def error_text(e: JobError) -> str:
    """``<field>: <message>``, without the message repeating the field, its last part or the entry it is in
    (``inputs.0.job: inputs.0: no job ...`` reads ``inputs.0.job: no job ...``)."""
    message = e.message
    if e.field:
        parts = e.field.split(".")
        entries = [".".join(parts[:n]) for n in range(len(parts) - 1, 0, -1)]
        for prefix in (e.field, parts[-1], *entries):
            if message.startswith(f"{prefix}: "):
                message = message[len(prefix) + 2:]
                break
        return f"{e.field}: {message}"
    return message


def defer_iri_grammar() -> None:
    """Put off the ~0.8 s that importing jsonschema costs each command.

    jsonschema imports ``rfc3987_syntax`` for its "iri" format, and that module
    builds a parser when imported. A stand-in whose ``is_valid_syntax`` loads the
    real module on first use gives the same answers, paid only if a template
    ever validates an IRI.
    """
    if "rfc3987_syntax" in sys.modules or importlib.util.find_spec("rfc3987_syntax") is None:
        return
    stand_in = types.ModuleType("rfc3987_syntax")
    real = {}

    def is_valid_syntax(*args, **kwargs):
        if not real:  # jsonschema keeps this function: load the real one once
            if sys.modules.get("rfc3987_syntax") is stand_in:
                del sys.modules["rfc3987_syntax"]
            real["is_valid_syntax"] = importlib.import_module("rfc3987_syntax").is_valid_syntax
        return real["is_valid_syntax"](*args, **kwargs)

    stand_in.is_valid_syntax = is_valid_syntax
    sys.modules["rfc3987_syntax"] = stand_in


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")  # logs on a terminal without UTF-8
    args = build_parser().parse_args(argv)  # usage errors exit 2 here, before the slow imports
    if args.command == "demo-data":  # no jobs involved
        return cmd_demo_data(args)
    defer_iri_grammar()
    from .service import JobError, JobService

    try:
        service = JobService(settings_from(args))
        return args.handler(service, args)
    except JobError as e:
        sys.stderr.write(f"clusterlab: error: {error_text(e)}\n")
        return exit_code(e.status)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. clusterlab jobs | head -1
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as e:
        sys.stderr.write(f"clusterlab: error: {e}\n")
        return EXIT_SCHEDULER


if __name__ == "__main__":
    sys.exit(main())
