"""AI Studio's part of the OpenAPI document (:func:`..openapi.openapi_document` merges it in)."""

from __future__ import annotations

from .labellings import KINDS

STEPS = ["label", "export", "train", "validate", "register", "publish"]
NAME = {"type": "string", "pattern": "^[A-Za-z0-9_]+$", "maxLength": 100}
NULLABLE_TEXT = {"type": ["string", "null"]}
DATASET_VERSION_REF = {"type": ["object", "null"], "required": ["name", "version"],
                       "properties": {"name": {"type": "string"}, "version": {"type": "integer"}}}

LABELLING_REQUEST = {
    "type": "object", "required": ["name", "classes", "images"],
    "properties": {
        "name": NAME,
        "kind": {"type": "string", "enum": list(KINDS), "default": "classification"},
        "classes": {"type": "array", "items": {"type": "string"},
                    "description": "class names: two or more for classification, one or more for detection"},
        "images": {"type": "string", "description": "a folder of pictures in the workspace, or a dataset "
                                                    "(name or name:version)"},
        "project": NAME,
        "description": {"type": "string", "maxLength": 2000},
    },
}

LABELLING = {
    "type": "object",
    "required": ["id", "name", "kind", "classes", "project", "source", "images", "labelled", "created", "exports",
                 "url", "label_studio_project"],
    "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "kind": {"type": "string", "enum": list(KINDS)},
        "classes": {"type": "array", "items": {"type": "string"}}, "project": {"type": "string"},
        "source": {"type": "string"}, "images": {"type": "integer", "description": "pictures to label"},
        "labelled": {"type": "integer", "description": "labelled, as Label Studio said at the last look"},
        "created": {"type": "string"}, "label_studio_project": {"type": ["integer", "null"]},
        "exports": {"type": "array", "items": {
            "type": "object", "required": ["dataset", "version"],
            "properties": {"dataset": {"type": "string"}, "version": {"type": "integer"}}}},
        "url": {**NULLABLE_TEXT, "description": "its Label Studio page through this server's proxy, while it runs"},
    },
}

EXPORT_REQUEST = {
    "type": "object", "required": ["dataset"],
    "properties": {
        "dataset": NAME,
        "val_fraction": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.2},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1, "default": 0},
        "description": {"type": "string", "maxLength": 2000},
    },
}

STUDIO_EXPERIMENT_REQUEST = {
    "type": "object", "required": ["dataset"],
    "description": "a grid (by default) of the training template matching the version's labelling; the other "
                   "fields as an experiment takes them",
    "properties": {
        "dataset": {"type": "string", "description": "a dataset version exported from a labelling, name:version"},
        "name": NAME, "project": NAME, "params": {"type": "object"}, "search": {"type": "object"},
        "searcher": {"type": "string", "enum": ["grid", "random", "tpe"]},
        "max_trials": {"type": "integer"}, "max_concurrent_trials": {"type": "integer"},
        "profile": {"type": "string"}, "hours": {"type": "number"},
        "early_stopping": {"type": "string", "enum": ["none", "asha", "hyperband"]},
    },
}

EXPERIMENT_CHOICE = {"type": "string", "description": "instead of job: an experiment of yours, whose best trial"}

VALIDATION_REQUEST = {
    "type": "object",
    "properties": {
        "job": {"type": "string", "description": "a completed training job (a trial) of yours"},
        "experiment": EXPERIMENT_CHOICE,
        "dataset": {"type": "string", "description": "a labelled dataset version (default: the one it trained on; "
                                                     "its val/ split is used)"},
        "profile": {"type": "string"}, "hours": {"type": "number"},
    },
}

VALIDATION = {
    "type": "object",
    "required": ["id", "job", "inference_job", "dataset", "status", "error", "report", "project", "created"],
    "properties": {
        "id": {"type": "string"}, "job": {"type": "string"}, "inference_job": {"type": "string"},
        "experiment": NULLABLE_TEXT, "trial": {"type": ["integer", "null"]}, "dataset": DATASET_VERSION_REF,
        "status": {"type": "string", "enum": ["running", "done", "failed"]}, "error": NULLABLE_TEXT,
        "project": {"type": "string"}, "created": {"type": "string"},
        "report": {"type": ["object", "null"], "description": "the inference job's output/report/report.json, "
                                                              "with path (its report.md)",
                   "properties": {"kind": {"type": "string"}, "path": {"type": "string"}}},
    },
}

REGISTER_REQUEST = {
    "type": "object", "required": ["name"],
    "properties": {
        "name": NAME, "job": {"type": "string", "description": "a completed training job (a trial) of yours"},
        "experiment": EXPERIMENT_CHOICE,
        "validation": {"type": "string", "description": "its validation (default: its latest done one, if any)"},
        "description": {"type": "string", "maxLength": 2000},
    },
}

PUBLISHED = {
    "type": ["object", "null"], "required": ["repository", "branch", "commit", "tag", "at"],
    "properties": {"repository": {"type": "string"}, "branch": {"type": "string"}, "commit": {"type": "string"},
                   "tag": {"type": "string"}, "at": {"type": "string"}},
}

MODEL_VERSION = {
    "type": "object",
    "required": ["model", "version", "job", "template", "parameters", "dataset", "validation", "metrics", "created",
                 "published", "model_file"],
    "properties": {
        "model": {"type": "string"}, "version": {"type": "integer"}, "job": {"type": "string"},
        "template": {"type": "string"}, "parameters": {"type": "object"}, "dataset": DATASET_VERSION_REF,
        "validation": NULLABLE_TEXT, "metrics": {"type": "object"}, "created": {"type": "string"},
        "published": PUBLISHED, "model_file": {"type": "string"},
    },
}

PUBLISH_REQUEST = {
    "type": "object", "required": ["repository"],
    "properties": {
        "repository": {"type": "string", "description": "https://..., ssh://... (or user@host:path) or file:///... "
                                                        "(a path inside your folders)"},
        "branch": {"type": "string", "description": "default: the repository's default branch, else main"},
    },
}

CHAIN = {
    "type": "object", "required": ["labelling", "steps"],
    "properties": {
        "labelling": {"$ref": "#/components/schemas/Labelling"},
        "steps": {"type": "array", "minItems": 6, "maxItems": 6, "items": {
            "type": "object", "required": ["step", "state", "detail", "ref"],
            "properties": {"step": {"type": "string", "enum": STEPS},
                           "state": {"type": "string", "enum": ["todo", "running", "done", "failed"]},
                           "detail": {"type": "string"}, "ref": {"type": ["object", "null"]}}}},
    },
}

SCHEMAS = {"Labelling": LABELLING, "Validation": VALIDATION, "ModelVersion": MODEL_VERSION}


def studio_paths(json, errors, project_filter: dict) -> dict:
    """The paths, built with the main document's helpers (``json(schema, description)``, ``errors(*codes)``)."""
    labelling, validation = {"$ref": "#/components/schemas/Labelling"}, {"$ref": "#/components/schemas/Validation"}
    version = {"$ref": "#/components/schemas/ModelVersion"}
    model = {"type": "object", "required": ["name", "versions"],
             "properties": {"name": {"type": "string"}, "versions": {"type": "array", "items": version}}}
    labelling_id = {"name": "labelling_id", "in": "path", "required": True, "schema": {"type": "string"}}
    model_name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    model_version = {"name": "version", "in": "path", "required": True,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}}

    def body(schema: dict) -> dict:
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    return {
        "/studio/labellings": {
            "get": {"summary": "AI Studio: labellings, newest first", "parameters": [project_filter],
                    "responses": {"200": json({"type": "object", "required": ["labellings"],
                                               "properties": {"labellings": {"type": "array", "items": labelling}}},
                                              "labellings"), **errors(400)}},
            "post": {"summary": "AI Studio: a new labelling of a folder's (or a dataset version's) pictures, frozen",
                     "requestBody": body(LABELLING_REQUEST),
                     "responses": {"201": json(labelling, "the labelling"), **errors(400, 404, 413)}},
        },
        "/studio/labellings/{labelling_id}": {
            "parameters": [labelling_id],
            "get": {"summary": "A labelling, with how many of its pictures are labelled",
                    "responses": {"200": json(labelling, "the labelling"), **errors(404, 502)}},
            "delete": {"summary": "Delete a labelling (the dataset versions exported from it stay)",
                       "responses": {"204": {"description": "deleted"}, **errors(404)}},
        },
        "/studio/labellings/{labelling_id}/open": {"post": {
            "summary": "Start the user's Label Studio (if need be) with the labelling's project: its page's url",
            "parameters": [labelling_id],
            "responses": {"200": json(labelling, "the labelling, with url"), **errors(404, 502)}}},
        "/studio/labellings/{labelling_id}/export": {"post": {
            "summary": "The labels as a new dataset version, split into train/ and val/ (seeded)",
            "parameters": [labelling_id], "requestBody": body(EXPORT_REQUEST),
            "responses": {"201": json({"$ref": "#/components/schemas/DatasetVersion"}, "the new version"),
                          **errors(400, 404, 409, 413, 502)}}},
        "/studio/experiments": {"post": {
            "summary": "Train a grid: an experiment of the matching training template on an exported version",
            "requestBody": body(STUDIO_EXPERIMENT_REQUEST),
            "responses": {"201": json({"$ref": "#/components/schemas/Experiment"}, "the experiment"),
                          **errors(400, 404, 413, 502)}}},
        "/studio/validations": {
            "get": {"summary": "Validations, newest first", "parameters": [project_filter],
                    "responses": {"200": json({"type": "object", "required": ["validations"],
                                               "properties": {"validations": {"type": "array", "items": validation}}},
                                              "validations"), **errors(400)}},
            "post": {"summary": "Validate a trial's model: the matching inference template on a labelled version, "
                                "which writes a report",
                     "requestBody": body(VALIDATION_REQUEST),
                     "responses": {"201": json(validation, "the validation"), **errors(400, 404, 409, 413, 502)}},
        },
        "/studio/validations/{validation_id}": {"get": {
            "summary": "A validation: its state and, once done, its report",
            "parameters": [{"name": "validation_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": json(validation, "the validation"), **errors(404)}}},
        "/studio/models": {
            "get": {"summary": "The model registry: every model with its versions, newest first",
                    "responses": {"200": json({"type": "object", "required": ["models"],
                                               "properties": {"models": {"type": "array", "items": model}}},
                                              "the models")}},
            "post": {"summary": "Register a trial's model as the next version of a named model",
                     "requestBody": body(REGISTER_REQUEST),
                     "responses": {"201": json(version, "the new version"), **errors(400, 404, 409)}},
        },
        "/studio/models/{name}": {"get": {
            "summary": "A model and its versions", "parameters": [model_name],
            "responses": {"200": json(model, "the model"), **errors(400, 404)}}},
        "/studio/models/{name}/{version}": {"get": {
            "summary": "One version of a model", "parameters": [model_name, model_version],
            "responses": {"200": json(version, "the version"), **errors(400, 404)}}},
        "/studio/models/{name}/{version}/publish": {"post": {
            "summary": "Push the version to a git repository with its model card; marked published only once the "
                       "push went through",
            "parameters": [model_name, model_version], "requestBody": body(PUBLISH_REQUEST),
            "responses": {"200": json(version, "the version, published"),
                          **errors(400, 404, 409, 502, e409="the repository has this version's tag already",
                                   e502="the push failed")}}},
        "/studio/chains": {"get": {
            "summary": "AI Studio's page: one chain per labelling, its six steps and the state of each",
            "parameters": [project_filter],
            "responses": {"200": json({"type": "object", "required": ["chains"],
                                       "properties": {"chains": {"type": "array", "items": CHAIN}}}, "the chains"),
                          **errors(400)}}},
    }
