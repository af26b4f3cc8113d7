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
        "restart_history": {"type": "array", "items": {
            "type": "object", "required": ["time", "reason"],
            "properties": {"time": {"type": "string", "format": "date-time"}, "reason": {"type": "string"}}}},
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
    },
}

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


def _errors(*codes: int) -> dict:
    words = {400: "bad input", 404: "not found", 409: "already ended", 413: "too large", 502: "scheduler error"}
    return {str(code): _json({"$ref": "#/components/schemas/Error"}, words[code]) for code in codes}


OFFSET = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
EXPERIMENT_ID = {"name": "experiment_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _with_forbidden(paths: dict) -> dict:
    """Every operation may also answer jupyter_server's 403 to a request without a valid token."""
    for item in paths.values():
        for key, operation in item.items():
            if key != "parameters":
                operation["responses"]["403"] = {"$ref": "#/components/responses/Forbidden"}
    return paths


def openapi_document(base_url: str = "/") -> dict:
    job_ref = {"$ref": "#/components/schemas/Job"}
    experiment_ref = {"$ref": "#/components/schemas/Experiment"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ClusterLab job service",
            "version": "1",
            "description": "Templates, instance sizes and cluster jobs of one user, inside their JupyterLab.",
        },
        "servers": [{"url": base_url.rstrip("/") + "/clusterlab/api"}],
        "components": {
            "schemas": {"Error": ERROR, "JupyterError": JUPYTER_ERROR, "Job": JOB, "Template": TEMPLATE,
                        "Experiment": EXPERIMENT},
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
        }),
    }
