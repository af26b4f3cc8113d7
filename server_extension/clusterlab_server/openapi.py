"""The OpenAPI 3 description of the REST API (served at ``/clusterlab/api/openapi.json``).

Kept next to the handlers and checked by schemathesis in the tests: every
documented path and answer is exercised with generated input.
"""

from __future__ import annotations

from .service import NAME_RULE
from .store import STATUSES

ERROR = {
    "type": "object",
    "required": ["error", "field"],
    "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
}

# jupyter_server's own refusal (no or a wrong token, a write without XSRF), before any handler runs
JUPYTER_ERROR = {
    "type": "object",
    "required": ["message"],
    "properties": {"message": {"type": "string"}, "reason": {"type": ["string", "null"]}},
}

METRICS = {"type": "object", "additionalProperties": {"type": "number"},
           "description": "metric name -> value (values that are not finite numbers are left out)"}

PROGRESS = {
    "type": ["object", "null"],
    "description": "from the latest complete line of output/metrics.jsonl; null before the first",
    "required": ["epoch", "epochs", "fraction", "metrics"],
    "properties": {
        "epoch": {"type": "integer"},
        "epochs": {"type": "integer"},
        "fraction": {"type": "number", "minimum": 0, "maximum": 1, "description": "epoch / epochs"},
        "metrics": METRICS,
    },
}

METRICS_POINT = {
    "type": "object",
    "required": ["step", "epoch", "epochs", "time", "metrics"],
    "properties": {
        "step": {"type": "integer"},
        "epoch": {"type": "integer"},
        "epochs": {"type": "integer"},
        "time": {"type": "number", "description": "seconds since the epoch (Unix time)"},
        "metrics": METRICS,
    },
}

AVAILABILITY = {
    "type": "object",
    "required": ["state", "reason"],
    "properties": {
        "state": {"type": "string", "enum": ["free", "queue", "impossible"],
                  "description": "starts now, waits in the queue, or can never start here"},
        "reason": {"type": "string", "description": "why it queues or never starts, in words; empty when free"},
    },
}

PROFILE = {
    "type": "object",
    "required": ["id", "display_name", "description", "cpus", "memory_gb", "gpus", "max_hours",
                 "default_hours", "summary", "availability"],
    "properties": {
        "id": {"type": "string"},
        "display_name": {"type": "string"},
        "description": {"type": "string"},
        "cpus": {"type": "integer"},
        "memory_gb": {"type": "number"},
        "gpus": {"type": "integer"},
        "max_hours": {"type": "number"},
        "default_hours": {"type": "number"},
        "summary": {"type": "string"},
        "availability": AVAILABILITY,
    },
}

NAME = {"type": "string", "pattern": NAME_RULE.pattern, "maxLength": 100}
PROJECT_NAME = {**NAME, "description": "the project it belongs to (default: default)"}
DIGEST = {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$",
          "description": "sha256 of the manifest's files list: the same digest, the same files"}

INPUT_ENTRY = {
    "oneOf": [
        {"type": "object", "required": ["dataset"], "additionalProperties": False,
         "description": "a version of a dataset (absent: the latest, pinned when the job is submitted)",
         "properties": {"dataset": NAME, "version": {"type": "integer", "minimum": 1},
                        "as": {**NAME, "description": "the folder it is seen in: input/<as> (default: its name)"}}},
        {"type": "object", "required": ["job"], "additionalProperties": False,
         "description": "an ended job's output/ (frozen the first time it is an input)",
         "properties": {"job": {"type": "string"},
                        "as": {**NAME, "description": "the folder it is seen in: input/<as> (default: the job's "
                                                      "name)"}}},
    ],
}
INPUTS = {"type": "array", "maxItems": 16, "items": INPUT_ENTRY,
          "description": "dataset versions and earlier jobs' outputs, seen read-only at <job folder>/input/<as>"}

RESOLVED_INPUT = {
    "type": "object",
    "required": ["as", "digest", "files", "bytes", "path"],
    "description": "an input as the job got it: pinned by number and digest",
    "properties": {
        "as": {"type": "string"},
        "dataset": {"type": "string"}, "version": {"type": "integer"}, "shared": {"type": "boolean"},
        "job": {"type": "string"}, "job_name": {"type": "string"},
        "digest": DIGEST, "files": {"type": "integer"}, "bytes": {"type": "integer"},
        "path": {"type": "string", "description": "where its files are (read-only)"},
        "param": {"type": "string", "description": "the parameter that named it (its value in params is the ref)"},
    },
}

JOB = {
    "type": "object",
    "required": ["id", "name", "template", "params", "profile", "hours", "status", "submit_time", "progress",
                 "output_path", "tensorboard"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "template": {"type": "string"},
        "template_version": {"type": "string"},
        "params": {"type": "object"},
        "profile": {"type": "string"},
        "hours": {"type": "number"},
        "backend": {"type": "string", "enum": ["local", "slurm", "kubernetes"]},
        "folder": {"type": "string"},
        "status": {"type": "string", "enum": list(STATUSES)},
        "scheduler_id": {"type": "string"},
        "reason": {"type": "string", "description": "why it waits or how it ended, in words"},
        "node": {"type": "string"},
        "exit_code": {"type": ["integer", "null"]},
        "rerun_of": {"type": ["string", "null"]},
        "submit_time": {"type": "string", "format": "date-time"},
        "start_time": {"type": ["string", "null"], "format": "date-time"},
        "end_time": {"type": ["string", "null"], "format": "date-time"},
        "progress": PROGRESS,
        "output_path": {
            "type": ["string", "null"],
            "description": "the job's output folder relative to the server's root (for the file browser); "
                           "null when the jobs live outside it",
        },
        "tensorboard": {"type": "boolean", "description": "whether it has written TensorBoard events"},
        "experiment_id": {"type": ["string", "null"], "description": "the experiment of which it is a trial"},
        "trial": {"type": ["integer", "null"], "description": "its trial number in that experiment"},
        "restarts": {"type": "integer", "description": "restarts after ends not its own (killed, node failure)"},
        "max_restarts": {"type": "integer"},
        "expected_start": {"type": ["string", "null"], "format": "date-time",
                           "description": "while queued: when the scheduler expects it to start (Slurm's "
                                          "backfill estimate); null when it has none or the job is not waiting"},
        "requeues": {"type": "integer", "description": "times the scheduler itself requeued it after a node "
                                                       "failed under it (Slurm's --requeue); not counted in restarts"},
        "restart_history": {"type": "array", "items": {
            "type": "object", "required": ["time", "reason"],
            "properties": {"time": {"type": "string", "format": "date-time"}, "reason": {"type": "string"}}}},
        "project": {"type": "string"},
        "inputs": {"type": "array", "items": RESOLVED_INPUT},
    },
}

SEARCH_ENTRY = {
    "oneOf": [
        {"type": "array", "minItems": 1, "description": "values (a grid, or categorical choices)",
         "items": {"type": ["string", "number", "integer", "boolean", "null"]}},
        {"type": "object", "required": ["min", "max"], "additionalProperties": False,
         "description": "a range of a number or integer parameter",
         "properties": {"min": {"type": "number"}, "max": {"type": "number"}, "log": {"type": "boolean"},
                        "step": {"type": "number"}, "count": {"type": "integer", "minimum": 1}}},
    ],
}

EXPERIMENT_REQUEST = {
    "type": "object",
    "required": ["template", "name", "search"],
    "additionalProperties": False,
    "properties": {
        "template": {"type": "string"},
        "name": {"type": "string", "pattern": NAME_RULE.pattern, "maxLength": 100},
        "params": {"type": "object", "description": "fixed parameters"},
        "search": {"type": "object", "minProperties": 1, "additionalProperties": SEARCH_ENTRY,
                   "description": "parameter (or object.key) -> values or a range"},
        "searcher": {"type": "string", "enum": ["grid", "random", "tpe"]},
        "early_stopping": {"type": "string", "enum": ["none", "asha", "hyperband"]},
        "divisor": {"type": "integer", "minimum": 2, "maximum": 10},
        "max_rungs": {"type": "integer", "minimum": 1, "maximum": 10},
        "metric": {"type": "string"},
        "maximize": {"type": "boolean"},
        "max_trials": {"type": "integer", "minimum": 1, "maximum": 1000},
        "max_concurrent_trials": {"type": "integer", "minimum": 1},
        "max_restarts": {"type": "integer", "minimum": 0, "maximum": 20},
        "profile": {"type": "string"},
        "hours": {"type": "number", "exclusiveMinimum": 0},
        "inputs": {**INPUTS, "description": "every trial's inputs (dataset versions pinned when it is created)"},
        "project": PROJECT_NAME,
    },
}

TRIAL = {
    "type": "object",
    "required": ["trial", "job_id", "status", "params", "value", "epoch", "curve", "restarts"],
    "properties": {
        "trial": {"type": "integer"}, "job_id": {"type": "string"}, "name": {"type": "string"},
        "status": {"type": "string", "enum": list(STATUSES)}, "reason": {"type": "string"},
        "params": {"type": "object", "description": "the searched parameters' values"},
        "value": {"type": ["number", "null"], "description": "the metric at its latest epoch"},
        "epoch": {"type": ["integer", "null"]}, "epochs": {"type": ["integer", "null"]},
        "restarts": {"type": "integer"}, "tensorboard": {"type": "boolean"},
        "curve": {"type": "array", "items": {"type": "array", "items": {"type": "number"}},
                  "description": "[epoch, metric] per epoch"},
    },
}

EXPERIMENT = {
    "type": "object",
    "required": ["id", "name", "template", "status", "search", "searcher", "metric", "maximize", "max_trials",
                 "max_concurrent_trials", "counts", "best", "created"],
    "properties": {
        **{key: value for key, value in EXPERIMENT_REQUEST["properties"].items()},
        "id": {"type": "string"},
        "epochs": {"type": "integer", "description": "the most epochs a trial trains (0: not known)"},
        "status": {"type": "string", "enum": ["running", "completed", "failed", "cancelled"]},
        "reason": {"type": "string"},
        "notes": {"type": "array", "items": {"type": "string"}},
        "created": {"type": "string", "format": "date-time"},
        "ended": {"type": ["string", "null"], "format": "date-time"},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "best": {"type": ["object", "null"], "properties": {
            "trial": {"type": "integer"}, "job_id": {"type": "string"}, "params": {"type": "object"},
            "value": {"type": "number"}, "epoch": {"type": ["integer", "null"]},
            "model_path": {"type": ["string", "null"]}}},
        "controller": {"type": ["object", "null"]},
        "trials": {"type": "array", "items": TRIAL},
        "project": {"type": "string"},
        "inputs": {**INPUTS, "description": "the inputs every trial lists, pinned when the experiment was created"},
        "uses": {"type": "array", "items": RESOLVED_INPUT,
                 "description": "all the trials mount: these inputs and those its parameters name, resolved"},
    },
}

TEMPLATE = {
    "type": "object",
    "required": ["id", "name", "kind", "category", "parameters"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "version": {"type": "string"},
        "kind": {"type": "string", "enum": ["training", "inference", "script", "notebook"]},
        "category": {"type": "string"},
        "description": {"type": "string"},
        "icon": {"type": "string"},
        "default_profile": {"type": "string"},
        "parameters": {"type": "object", "description": "a JSON Schema object"},
        "metrics": {"type": "object", "description": "metric name -> {title, goal: maximize | minimize}"},
        "any_metric": {"type": "boolean", "description": "an experiment may name any metric (a script's own)"},
    },
}

SUBMIT = {
    "type": "object",
    "required": ["template", "name"],
    "additionalProperties": False,
    "properties": {
        "template": {"type": "string"},
        "name": {"type": "string", "pattern": NAME_RULE.pattern, "maxLength": 100},
        "params": {"type": "object"},
        "profile": {"type": "string", "description": "a size whose availability is not impossible (else 400); "
                    "absent: the template's default if it can run here, else the first size that can"},
        "hours": {"type": "number", "exclusiveMinimum": 0},
        "max_restarts": {"type": "integer", "minimum": 0, "maximum": 20,
                         "description": "restarts after ends not its own (a kill, a node failure); default 5"},
        "inputs": INPUTS,
        "project": PROJECT_NAME,
    },
}

# a rerun changes any of a submission's fields but its template; all are optional
RERUN = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **{key: value for key, value in SUBMIT["properties"].items() if key != "template"},
        "params": {"type": "object", "description": "changed parameters; the others are the original job's"},
        "profile": {"type": "string", "description": "another size, not impossible here (else 400); absent: "
                    "the original job's, which must still be able to run here"},
        "inputs": {**INPUTS, "description": "replaces the original job's inputs; absent: the same versions"},
    },
}

DATASET_REQUEST = {
    "type": "object",
    "required": ["name", "folder"],
    "additionalProperties": False,
    "properties": {
        "name": NAME,
        "folder": {"type": "string", "description": "workspace-relative or absolute, inside the user's roots; "
                                                    "its files become the new version"},
        "description": {"type": "string", "maxLength": 2000},
        "project": PROJECT_NAME,
    },
}

USED_BY = {
    "type": "array",
    "description": "every job that had it among its inputs, and under which name",
    "items": {"type": "object", "required": ["id", "name", "status", "as"],
              "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                             "status": {"type": "string", "enum": list(STATUSES)}, "as": {"type": "string"}}},
}

VERSION = {
    "type": "object",
    "required": ["name", "version", "digest", "files", "bytes", "new_bytes", "created", "creator", "description",
                 "project", "shared", "source", "path"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "integer", "minimum": 1},
        "digest": DIGEST,
        "files": {"type": "integer", "description": "how many files"},
        "bytes": {"type": "integer", "description": "their size in all"},
        "new_bytes": {"type": "integer", "description": "what this version stored anew (unchanged files cost "
                                                       "nothing)"},
        "created": {"type": "string", "format": "date-time"},
        "creator": {"type": "string", "description": "the Unix user who made it"},
        "description": {"type": "string"},
        "project": {"type": "string"},
        "shared": {"type": "boolean", "description": "a site dataset (read-only to users)"},
        "source": {"type": "string", "description": "the folder it was made from"},
        "path": {"type": "string", "description": "where its files are (read-only)"},
        "used_by": USED_BY,
    },
}

DATASET = {
    "type": "object",
    "required": ["name", "shared", "description", "project", "latest", "versions"],
    "properties": {
        "name": {"type": "string"},
        "shared": {"type": "boolean"},
        "description": {"type": "string"},
        "project": {"type": "string"},
        "latest": {"type": "integer", "description": "the newest version's number"},
        "versions": {"type": "array", "items": {"$ref": "#/components/schemas/DatasetVersion"},
                     "description": "newest first"},
    },
}

MANIFEST = {
    "type": "object",
    "required": ["name", "version", "created", "creator", "description", "project", "source", "count", "bytes",
                 "digest", "files"],
    "properties": {
        "name": {"type": "string"}, "version": {"type": "integer"},
        "created": {"type": "string", "format": "date-time"}, "creator": {"type": "string"},
        "description": {"type": "string"}, "project": {"type": "string"}, "source": {"type": "string"},
        "count": {"type": "integer"}, "bytes": {"type": "integer"}, "digest": DIGEST,
        "files": {"type": "array", "description": "sorted by path", "items": {
            "type": "object", "required": ["path", "size", "sha256"],
            "properties": {"path": {"type": "string", "description": "posix, relative to the version's files/"},
                           "size": {"type": "integer"}, "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}},
    },
}

PREVIEW = {
    "type": "object",
    "required": ["images", "table"],
    "properties": {
        "images": {"type": "array", "description": "the first pictures by path (png, jpg, gif, webp)", "items": {
            "type": "object", "required": ["path", "size"],
            "properties": {"path": {"type": "string"}, "size": {"type": "integer"}}}},
        "table": {"type": ["object", "null"], "description": "the first rows of the first .csv or .tsv; null: none",
                  "required": ["path", "header", "rows"],
                  "properties": {"path": {"type": "string"}, "header": {"type": "array", "items": {"type": "string"}},
                                 "rows": {"type": "array", "maxItems": 5,
                                          "items": {"type": "array", "items": {"type": "string"}}}}},
    },
}

PROJECT_SUMMARY = {
    "type": "object",
    "required": ["name", "jobs", "experiments", "datasets"],
    "properties": {"name": {"type": "string"}, "jobs": {"type": "integer"}, "experiments": {"type": "integer"},
                   "datasets": {"type": "integer"}},
}

PROJECT = {
    "type": "object",
    "required": ["name", "jobs", "experiments", "datasets"],
    "properties": {
        "name": {"type": "string"},
        "jobs": {"type": "array", "items": {"allOf": [
            {"$ref": "#/components/schemas/Job"},
            {"type": "object", "required": ["used_by"], "properties": {"used_by": {
                "type": "array", "items": {"type": "string"},
                "description": "the ids of the jobs whose inputs name this job"}}},
        ]}},
        "experiments": {"type": "array", "items": {"$ref": "#/components/schemas/Experiment"}},
        "datasets": {"type": "array", "items": {"$ref": "#/components/schemas/Dataset"}},
    },
}

# what a dataset's file is served as (handlers.FILE_TYPES); the rest is application/octet-stream
FILE_CONTENT_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "text/csv",
                      "text/tab-separated-values", "text/plain", "application/octet-stream"]

TENSORBOARD_REQUEST = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "jobs": {"type": "array", "items": {"type": "string"}, "maxItems": 1000,
                 "description": "job ids, one run each (named <job name>-<job id>); none or empty: all jobs"},
    },
}

TENSORBOARD = {
    "type": "object",
    "required": ["running", "url", "port", "pid", "jobs", "runs", "idle_timeout"],
    "properties": {
        "running": {"type": "boolean"},
        "url": {"type": ["string", "null"],
                "description": "where the browser opens it: <base_url>proxy/<port>/<private prefix>/"},
        "port": {"type": ["integer", "null"]},
        "pid": {"type": ["integer", "null"]},
        "jobs": {"type": "array", "items": {"type": "string"}},
        "runs": {"type": "array", "items": {
            "type": "object", "required": ["job", "run"],
            "properties": {"job": {"type": "string"}, "run": {"type": "string"}},
        }},
        "idle_timeout": {"type": "number", "description": "seconds without use before it stops (0: never)"},
    },
}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int, **words: str) -> dict:
    """Error answers; ``e409="in use"`` says what a code means for this operation."""
    said = {400: "bad input", 404: "not found", 409: "already ended", 413: "too large", 502: "scheduler error",
            **{int(key[1:]): text for key, text in words.items()}}
    return {str(code): _json({"$ref": "#/components/schemas/Error"}, said[code]) for code in codes}


OFFSET = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
EXPERIMENT_ID = {"name": "experiment_id", "in": "path", "required": True, "schema": {"type": "string"}}
DATASET_NAME = {"name": "name", "in": "path", "required": True, "schema": NAME}
VERSION_NUMBER = {"name": "version", "in": "path", "required": True,
                  "schema": {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}}
PROJECT_FILTER = {"name": "project", "in": "query", "schema": NAME, "description": "only those of this project"}


def _with_forbidden(paths: dict) -> dict:
    """Every operation may also answer jupyter_server's 403 to a request without a valid token.

    One whose service refuses with 403 too (a site dataset) documents either body.
    """
    for item in paths.values():
        for key, operation in item.items():
            if key != "parameters":
                operation["responses"].setdefault("403", {"$ref": "#/components/responses/Forbidden"})
    return paths


def _forbidden_or(description: str) -> dict:
    return _json({"oneOf": [{"$ref": "#/components/schemas/Error"}, {"$ref": "#/components/schemas/JupyterError"}]},
                 f"{description}, or no valid token (jupyter_server's answer)")


def openapi_document(base_url: str = "/") -> dict:
    from .studio.openapi import SCHEMAS as STUDIO_SCHEMAS, studio_paths

    job_ref = {"$ref": "#/components/schemas/Job"}
    experiment_ref = {"$ref": "#/components/schemas/Experiment"}
    version_ref = {"$ref": "#/components/schemas/DatasetVersion"}
    dataset_ref = {"$ref": "#/components/schemas/Dataset"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ClusterLab job service",
            "version": "1",
            "description": "Templates, instance sizes, cluster jobs, experiments, datasets, projects and AI "
                           "Studio (labellings, validations, the model registry) of one user, inside their "
                           "JupyterLab.",
        },
        "servers": [{"url": base_url.rstrip("/") + "/clusterlab/api"}],
        "components": {
            "schemas": {"Error": ERROR, "JupyterError": JUPYTER_ERROR, "Job": JOB, "Template": TEMPLATE,
                        "Experiment": EXPERIMENT, "Dataset": DATASET, "DatasetVersion": VERSION,
                        **STUDIO_SCHEMAS},
            "responses": {"Forbidden": _json({"$ref": "#/components/schemas/JupyterError"},
                                             "no valid token (jupyter_server's answer)")},
            "securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": "Authorization"}},
        },
        "security": [{"token": []}],
        "paths": _with_forbidden({
            "/templates": {"get": {
                "summary": "The templates this user may run, and the template files that were skipped",
                "responses": {"200": _json({
                    "type": "object", "required": ["templates", "problems"],
                    "properties": {"templates": {"type": "array", "items": {"$ref": "#/components/schemas/Template"}},
                                   "problems": {"type": "array", "items": {"type": "string"}}},
                }, "templates")},
            }},
            "/templates/{template_id}": {"get": {
                "summary": "One template with its parameters' JSON Schema",
                "parameters": [{"name": "template_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json({"$ref": "#/components/schemas/Template"}, "the template"),
                              **_errors(404)},
            }},
            "/profiles": {"get": {
                "summary": "Instance sizes a job may ask for",
                "parameters": [{"name": "template", "in": "query", "schema": {"type": "string"},
                                "description": "also say which size a job of this template gets when it names none"}],
                "responses": {"200": _json({
                    "type": "object", "required": ["profiles", "backend"],
                    "properties": {"profiles": {"type": "array", "items": PROFILE},
                                   "backend": {"type": "string"},
                                   "default": {"type": "object", "required": ["id", "why"],
                                               "properties": {"id": {"type": "string"}, "why": {"type": "string"}}}},
                }, "sizes, each with whether a job of it starts now"), **_errors(400)},
            }},
            "/jobs": {
                "get": {
                    "summary": "Jobs, newest first",
                    "parameters": [
                        {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(STATUSES)}},
                        {"name": "template", "in": "query", "schema": {"type": "string"}},
                        PROJECT_FILTER,
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                        {"name": "offset", "in": "query", "schema": OFFSET},
                    ],
                    "responses": {"200": _json({
                        "type": "object", "required": ["jobs", "total"],
                        "properties": {"jobs": {"type": "array", "items": job_ref}, "total": {"type": "integer"}},
                    }, "a page of jobs"), **_errors(400)},
                },
                "post": {
                    "summary": "Submit a job: a template, a name, parameters and a size",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": SUBMIT}}},
                    "responses": {"201": _json(job_ref, "the new job"), **_errors(400, 413, 502)},
                },
            },
            "/jobs/{job_id}": {
                "parameters": [JOB_ID],
                "get": {"summary": "One job", "responses": {"200": _json(job_ref, "the job"), **_errors(404)}},
                "delete": {"summary": "Cancel a job",
                           "responses": {"200": _json(job_ref, "the cancelled job"), **_errors(404, 409, 502)}},
            },
            "/jobs/{job_id}/log": {"get": {
                "summary": "The job's log from a byte offset; follow=1 waits up to 20 s for more",
                "parameters": [
                    JOB_ID,
                    {"name": "offset", "in": "query", "schema": OFFSET},
                    {"name": "follow", "in": "query", "schema": {"type": "string", "enum": ["0", "1"]}},
                ],
                "responses": {"200": _json({
                    "type": "object", "required": ["id", "offset", "text", "status", "done"],
                    "properties": {"id": {"type": "string"}, "offset": {"type": "integer"}, "text": {"type": "string"},
                                   "status": {"type": "string"}, "done": {"type": "boolean"}},
                }, "a piece of the log"), **_errors(400, 404)},
            }},
            "/jobs/{job_id}/metrics": {"get": {
                "summary": "Every complete line of the job's metrics.jsonl, oldest first (for its charts)",
                "parameters": [JOB_ID],
                "responses": {"200": _json({
                    "type": "object", "required": ["points"],
                    "properties": {"points": {"type": "array", "items": METRICS_POINT}},
                }, "the points; empty before the first"), **_errors(404)},
            }},
            "/jobs/{job_id}/rerun": {"post": {
                "summary": "Run a job again, with some parameters changed",
                "parameters": [JOB_ID],
                "requestBody": {"required": True, "content": {"application/json": {"schema": RERUN}}},
                "responses": {"201": _json(job_ref, "the new job"), **_errors(400, 404, 413, 502)},
            }},
            "/experiments": {
                "get": {
                    "summary": "Experiments (hyperparameter searches), newest first",
                    "parameters": [
                        {"name": "status", "in": "query",
                         "schema": {"type": "string", "enum": ["running", "completed", "failed", "cancelled"]}},
                        PROJECT_FILTER,
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                        {"name": "offset", "in": "query", "schema": OFFSET},
                    ],
                    "responses": {"200": _json({
                        "type": "object", "required": ["experiments", "total"],
                        "properties": {"experiments": {"type": "array", "items": experiment_ref},
                                       "total": {"type": "integer"}},
                    }, "experiments"), **_errors(400)},
                },
                "post": {
                    "summary": "Start an experiment: trials of a template over a search space, run as jobs",
                    "requestBody": {"required": True,
                                    "content": {"application/json": {"schema": EXPERIMENT_REQUEST}}},
                    "responses": {"201": _json(experiment_ref, "the experiment"), **_errors(400, 404, 413, 502)},
                },
            },
            "/experiments/{experiment_id}": {
                "get": {"summary": "An experiment with its trials", "parameters": [EXPERIMENT_ID],
                        "responses": {"200": _json(experiment_ref, "the experiment"), **_errors(404)}},
                "delete": {"summary": "Delete an ended experiment, its trials' records and folders",
                           "parameters": [EXPERIMENT_ID],
                           "responses": {"204": {"description": "deleted"}, **_errors(404, 409)}},
            },
            "/experiments/{experiment_id}/cancel": {"post": {
                "summary": "Cancel an experiment and its unfinished trials", "parameters": [EXPERIMENT_ID],
                "responses": {"200": _json(experiment_ref, "the experiment"), **_errors(404, 409, 502)},
            }},
            "/experiments/{experiment_id}/resume": {"post": {
                "summary": "Start an experiment's controller again (it resumes where it stopped)",
                "parameters": [EXPERIMENT_ID],
                "responses": {"200": _json(experiment_ref, "the experiment"), **_errors(404, 409, 502)},
            }},
            "/experiments/{experiment_id}/rerun-best": {"post": {
                "summary": "Run the best trial again as a job, with some parameters changed (more epochs)",
                "parameters": [EXPERIMENT_ID],
                "requestBody": {"required": True, "content": {"application/json": {"schema": RERUN}}},
                "responses": {"201": _json(job_ref, "the new job"), **_errors(400, 404, 409, 413, 502)},
            }},
            "/experiments/{experiment_id}/trials.csv": {"get": {
                "summary": "Every trial of an experiment as CSV", "parameters": [EXPERIMENT_ID],
                "responses": {"200": {"description": "one row per trial",
                                      "content": {"text/csv": {"schema": {"type": "string"}}}},
                              **_errors(404)},
            }},
            "/datasets": {
                "get": {
                    "summary": "The user's datasets, then the site's, by name",
                    "parameters": [PROJECT_FILTER],
                    "responses": {"200": _json({
                        "type": "object", "required": ["datasets"],
                        "properties": {"datasets": {"type": "array", "items": dataset_ref}},
                    }, "datasets, each with its versions"), **_errors(400)},
                },
                "post": {
                    "summary": "Make a new version of a dataset (the first makes the dataset) from a folder's files",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": DATASET_REQUEST}}},
                    "responses": {"201": _json(version_ref, "the new version"),
                                  **_errors(400, 409, 413, e409="a site dataset has that name",
                                            e413="too large, or over the user's dataset quota")},
                },
            },
            "/datasets/{name}": {"get": {
                "summary": "A dataset and its versions, newest first", "parameters": [DATASET_NAME],
                "responses": {"200": _json(dataset_ref, "the dataset"), **_errors(400, 404)},
            }},
            "/datasets/{name}/{version}": {
                "parameters": [DATASET_NAME, VERSION_NUMBER],
                "get": {"summary": "One version, and the jobs that used it",
                        "responses": {"200": _json(version_ref, "the version, with used_by"), **_errors(400, 404)}},
                "delete": {
                    "summary": "Delete a version (its number is not used again); refused while an unfinished job "
                               "or experiment has it among its inputs",
                    "responses": {"204": {"description": "deleted"},
                                  "403": _forbidden_or("a site dataset, which users cannot delete"),
                                  **_errors(400, 404, 409, e409="in use by unfinished jobs (named)")},
                },
            },
            "/datasets/{name}/{version}/manifest": {"get": {
                "summary": "A version's manifest: every file with its size and sha256",
                "parameters": [DATASET_NAME, VERSION_NUMBER],
                "responses": {"200": _json(MANIFEST, "manifest.json"), **_errors(400, 404)},
            }},
            "/datasets/{name}/{version}/preview": {"get": {
                "summary": "A version's first pictures and the first rows of its first table",
                "parameters": [DATASET_NAME, VERSION_NUMBER],
                "responses": {"200": _json(PREVIEW, "what the datasets panel shows"), **_errors(400, 404)},
            }},
            "/datasets/{name}/{version}/files/{path}": {"get": {
                "summary": "One file of a version. Pictures, tables and text are served as such, anything else "
                           "(html included) as application/octet-stream, always with nosniff",
                "parameters": [DATASET_NAME, VERSION_NUMBER,
                               {"name": "path", "in": "path", "required": True, "schema": {"type": "string"},
                                "description": "relative to the version's files/, as in its manifest"}],
                "responses": {
                    "200": {"description": "the file's bytes",
                            "headers": {"X-Content-Type-Options": {"required": True,
                                                                   "schema": {"type": "string", "enum": ["nosniff"]}}},
                            "content": {kind: {"schema": {"type": "string", "format": "binary"}}
                                        for kind in FILE_CONTENT_TYPES}},
                    **_errors(400, 404),
                },
            }},
            "/projects": {"get": {
                "summary": "The user's projects with their counts of jobs, experiments and datasets",
                "responses": {"200": _json({
                    "type": "object", "required": ["projects"],
                    "properties": {"projects": {"type": "array", "items": PROJECT_SUMMARY,
                                                "description": "default is always there"}},
                }, "projects")},
            }},
            "/projects/{name}": {"get": {
                "summary": "A project's jobs (each with the jobs that used its output), experiments and datasets",
                "parameters": [{**DATASET_NAME, "description": "the project's name"}],
                "responses": {"200": _json(PROJECT, "the project"), **_errors(400, 404)},
            }},
            "/gpus": {"get": {
                "summary": "The GPUs granted to this server and their use",
                "responses": {"200": _json({
                    "type": "object", "required": ["granted", "gpus", "message"],
                    "properties": {"granted": {"type": "array", "items": {"type": "string"}},
                                   "gpus": {"type": "array", "items": {"type": "object"}},
                                   "message": {"type": "string"}},
                }, "the grant, and nvidia-smi's figures for it")},
            }},
            "/tensorboard": {
                "get": {"summary": "Whether the user's TensorBoard runs, where, and over which jobs",
                        "responses": {"200": _json(TENSORBOARD, "its state")}},
                "post": {
                    "summary": "Start TensorBoard over some jobs (or all), or reuse the one over the same jobs; "
                               "answers once it serves. Posting again keeps it from stopping when idle",
                    "requestBody": {"required": False,
                                    "content": {"application/json": {"schema": TENSORBOARD_REQUEST}}},
                    "responses": {
                        "200": _json(TENSORBOARD, "it runs"), **_errors(400, 404, 413),
                        "502": _json({"$ref": "#/components/schemas/Error"}, "TensorBoard did not start"),
                    },
                },
                "delete": {"summary": "Stop the user's TensorBoard",
                           "responses": {"200": _json(TENSORBOARD, "it is stopped")}},
            },
            "/openapi.json": {"get": {
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "the OpenAPI document")},
            }},
            **studio_paths(_json, _errors, PROJECT_FILTER),
        }),
    }
