"""AI Studio's chain as the REST API and the CLI see it: one method decides each step, both call it.

label (a labelling, labelled in Label Studio) -> export (a dataset version, ``labelling`` in its record)
-> train (a grid experiment of the matching training template on that version) -> validate (the matching
inference template on a labelled version, which writes a report) -> register (a model version in the
registry) -> publish (a push to a git repository). Each link is recorded where the next step can find it:
the dataset version names its labelling, the experiment's parameters name the dataset version, a
validation names its trial, a model version names all of them. :meth:`StudioService.chains` reads them
back for the AI Studio page. Everything lives under ``<jobs root>/studio/`` (0700): the user's own.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from ..datasets.service import creator
from ..datasets.store import replace_file
from ..service import JobError, JobService, check_name, check_project, new_id, private_folder
from ..store import Job, utcnow
from . import export
from .label_studio import LabelStudioError
from .labellings import KINDS, PICTURE_SUFFIXES, LabellingStore, check_classes, check_kind, pictures_in
from .models import ModelRegistry
from .publish import check_branch, check_repository, push

TRAINING = {"classification": "image-classification-train", "detection": "object-detection-train"}
INFERENCE = {"image-classification-train": "image-classification-infer",
             "object-detection-train": "object-detection-infer"}
KIND_OF_TEMPLATE = {template: kind for kind, template in TRAINING.items()}
# the grid "Train a grid" searches unless the request names its own: two learning rates either side of the
# templates' default (0.001), so the chain compares trials at the cost of two
DEFAULT_SEARCH = {"learning_rate": [0.0005, 0.002]}
LABELLING_FIELDS = {"name", "kind", "classes", "images", "project", "description"}
EXPORT_FIELDS = {"dataset", "val_fraction", "seed", "description"}
EXPERIMENT_FIELDS = {"dataset", "name", "project", "params", "search", "searcher", "max_trials",
                     "max_concurrent_trials", "profile", "hours", "early_stopping"}
VALIDATION_FIELDS = {"job", "experiment", "dataset", "profile", "hours"}
REGISTER_FIELDS = {"name", "job", "experiment", "validation", "description"}
PUBLISH_FIELDS = {"repository", "branch"}
MAX_DESCRIPTION = 2000


def check_fields(request: Any, allowed: set[str], what: str) -> dict:
    if not isinstance(request, dict):
        raise JobError(400, f"the body must be a JSON object: {what}", "")
    unknown = sorted(set(request) - allowed)
    if unknown:
        raise JobError(400, f"unknown field {unknown[0]!r} (known: {', '.join(sorted(allowed))})", unknown[0])
    return request


def check_description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise JobError(400, f"description must be text of at most {MAX_DESCRIPTION} characters", "description")
    return value


def _state_of(status: str) -> str:
    """A job's or an experiment's status as a step's state."""
    return {"completed": "done", "queued": "running", "running": "running"}.get(status, "failed")


class StudioService:
    def __init__(self, jobs: JobService, experiments, base_url: str = "/", label_studio_idle_timeout: float = 900):
        self.jobs = jobs
        self.experiments = experiments
        self.base_url = base_url
        self.label_studio_idle_timeout = label_studio_idle_timeout
        self.root = jobs.settings.jobs_root / "studio"
        self.labellings = LabellingStore(self.root / "labellings")
        self.models = ModelRegistry(self.root / "models")
        self._label_studio = None

    @property
    def datasets(self):
        return self.jobs.datasets

    @property
    def label_studio(self):
        """The user's Label Studio (started on first use; the CLI and the server share one)."""
        if self._label_studio is None:
            from .label_studio import LabelStudio

            private_folder(self.root)
            self._label_studio = LabelStudio(self.root / "label-studio", self.labellings.root,
                                             base_url=self.base_url, idle_timeout=self.label_studio_idle_timeout)
        return self._label_studio

    def shutdown(self) -> None:
        """With the server: its Label Studio stops too (one the CLI started stops when idle)."""
        if self._label_studio is not None:
            self._label_studio.stop()

    # ----- label ------------------------------------------------------------------------------------

    def create_labelling(self, request: Any) -> dict:
        request = check_fields(request, LABELLING_FIELDS, "name, kind, classes, images")
        name = check_name(request.get("name"))
        kind = check_kind(request.get("kind", "classification"))
        classes = check_classes(request.get("classes"), kind)
        project = check_project(request.get("project"))
        description = check_description(request.get("description"))
        source, frozen = self._pictures_folder(request.get("images"))
        pictures = pictures_in(source)
        if not pictures:
            raise JobError(400, f"images: no pictures ({', '.join(PICTURE_SUFFIXES)}) in {request['images']}",
                           "images")
        private_folder(self.root)
        record = {"name": name, "kind": kind, "classes": classes, "project": project, "description": description,
                  "source": request["images"], "created": utcnow().isoformat(), "creator": creator()}
        return self.labelling_json(self.labellings.create(record, source, pictures, link=frozen))

    def _pictures_folder(self, value: Any) -> tuple[Path, bool]:
        """The folder of ``images`` (a dataset version's files, or a folder of the user's), and whether it is
        frozen already (a version)."""
        if not isinstance(value, str) or not value:
            raise JobError(400, "images must be a folder of pictures in your workspace, or a dataset (name or "
                           "name:version)", "images")
        ref = self.datasets.parse_ref(value)
        if ref is not None and "dataset" in ref:
            try:
                version = self.datasets.version(ref["dataset"], ref["version"] or self._latest(ref["dataset"]))
                return Path(version["path"]), True
            except JobError as e:
                try:  # a folder of the workspace may look like a dataset's name
                    return self._user_folder(value), False
                except JobError:
                    raise JobError(e.status, f"images: {value!r} is neither a dataset ({e.message}) nor a folder "
                                   "in your workspace", "images") from None
        return self._user_folder(value), False

    def _latest(self, name: str) -> int:
        return self.datasets.get(name)["latest"]

    def _user_folder(self, value: str) -> Path:
        try:
            folder = self.jobs.resolve_path(value)
        except ValueError as e:
            raise JobError(400, f"images: {e}", "images") from None
        if not folder.is_dir():
            raise JobError(400, f"images: {value} is not a folder", "images")
        return folder

    def labelling_json(self, record: dict, url: str | None = None) -> dict:
        public = {k: v for k, v in record.items() if k not in ("pictures",)}
        return {**public, "images": len(record["pictures"]), "url": url}

    def list_labellings(self, project: Any = None) -> list[dict]:
        project = None if project is None else check_project(project)
        return [self.labelling_json(r) for r in self.labellings.list() if project in (None, r["project"])]

    def get_labelling(self, labelling_id: Any) -> dict:
        """A labelling, with its count of labelled pictures asked of Label Studio when it runs."""
        record = self.labellings.get(labelling_id)
        url = None
        if record["label_studio_project"] is not None and self.label_studio.status()["running"]:
            labels = self._labels(record)
            if len(labels) != record["labelled"]:
                record = self.labellings.update(record["id"], labelled=len(labels))
            url = self.label_studio.page_url(record["label_studio_project"])
        return self.labelling_json(record, url)

    def open_labelling(self, labelling_id: Any) -> dict:
        """Start the user's Label Studio if need be, make the labelling's project there once: with ``url``."""
        record = self.labellings.get(labelling_id)
        studio = self.label_studio
        try:
            studio.ensure_running()
            title = record["name"] if len(record["name"]) >= 3 else f"{record['name']} pictures"  # 3 at least
            project = studio.ensure_project({
                "id": record["id"], "name": title, "kind": record["kind"], "classes": record["classes"],
                "images": [f"{record['id']}/images/{p}" for p in record["pictures"]]})
        except (OSError, RuntimeError, ValueError, LabelStudioError) as e:
            raise JobError(502, f"labelling: Label Studio did not start: {e}", "labelling") from None
        if project != record["label_studio_project"]:
            record = self.labellings.update(record["id"], label_studio_project=project)
        return self.labelling_json(record, studio.page_url(project))

    def delete_labelling(self, labelling_id: Any) -> None:
        """The labelling and its frozen pictures go; versions exported from it stay (they hold their own)."""
        record = self.labellings.get(labelling_id)
        project = record["label_studio_project"]
        if project is not None and self.label_studio.status()["running"]:
            try:
                self.label_studio.api("DELETE", f"/api/projects/{project}/")
            except Exception:  # its project is Label Studio's to keep if it will not let go
                pass
        self.labellings.delete(record["id"])

    def _labels(self, record: dict) -> dict:
        """Picture path -> class (classification) or -> pixel boxes (detection), from Label Studio."""
        if record["label_studio_project"] is None:
            return {}
        prefix = f"{record['id']}/images/"
        studio = self.label_studio
        try:
            studio.ensure_running()
            found = studio.annotations(record["label_studio_project"])
        except (OSError, RuntimeError, ValueError, LabelStudioError) as e:
            raise JobError(502, f"labelling: Label Studio did not answer: {e}", "labelling") from None
        labels = {}
        classes = set(record["classes"])
        for path, label in found.items():
            path = path[len(prefix):] if path.startswith(prefix) else path
            if path not in record["pictures"]:
                continue
            if record["kind"] == "classification":
                if label in classes:
                    labels[path] = label
            else:
                labels[path] = [box for box in label if box.get("class") in classes]
        return labels

    # ----- export -----------------------------------------------------------------------------------

    def export(self, labelling_id: Any, request: Any) -> dict:
        """The labelling's labels as a new version of ``request["dataset"]`` (the dataset version's JSON)."""
        record = self.labellings.get(labelling_id)
        request = check_fields(request, EXPORT_FIELDS, "dataset, val_fraction, seed")
        name = check_name(request.get("dataset"), "dataset")
        fraction = request.get("val_fraction", 0.2)
        if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not math.isfinite(fraction) \
                or not 0 < fraction < 1:
            raise JobError(400, "val_fraction must be a number between 0 and 1, not 0 or 1: the part of the "
                           "labelled pictures kept for validation", "val_fraction")
        seed = request.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31:
            raise JobError(400, "seed must be a whole number from 0 to 2147483647", "seed")
        description = check_description(request.get("description"))
        if record["label_studio_project"] is None:
            raise JobError(409, "labelling: nothing is labelled yet: open it in Label Studio and label some "
                           "pictures first", "labelling")
        labels = self._labels(record)
        sets = self._split(record, labels, fraction, seed)
        scratch = self.root / f".export-{new_id()}"
        scratch.mkdir(mode=0o700)
        try:
            images = self.labellings.images(record["id"])
            if record["kind"] == "classification":
                counts = export.write_classification(scratch, images, labels, sets)
            else:
                counts = export.write_detection(scratch, images, labels, record["classes"], sets)
            export.write_labels_file(scratch, labels)
            origin = {"labelling": {"id": record["id"], "name": record["name"], "kind": record["kind"],
                                    "classes": record["classes"], "labelled": len(labels),
                                    "images": len(record["pictures"]), "val_fraction": fraction, "seed": seed,
                                    "split": counts}}
            version = self.datasets.create_from(name, scratch, description or f"labels of {record['name']}",
                                                record["project"], origin)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        exports = [*record["exports"], {"dataset": name, "version": version["version"],
                                        "created": version["created"]}]
        self.labellings.update(record["id"], exports=exports, labelled=len(labels))
        return version

    @staticmethod
    def _split(record: dict, labels: dict, fraction: float, seed: int) -> dict[str, list[str]]:
        if not labels:
            raise JobError(400, f"labelling: none of its {len(record['pictures'])} pictures is labelled yet",
                           "labelling")
        if record["kind"] == "classification":
            used = sorted(set(labels.values()))
            if len(used) < 2:
                raise JobError(400, f"labelling: only {used[0]!r} has labelled pictures; a classifier needs "
                               "pictures of two classes or more", "labelling")
            sets = export.classification_split(labels, fraction, seed)
        else:
            train, val = export.split(list(labels), fraction, seed)
            sets = {"train": train, "val": val}
        if not sets["val"] or not sets["train"]:
            raise JobError(400, f"val_fraction: {fraction} of {len(labels)} labelled pictures leaves the "
                           f"{'validation' if not sets['val'] else 'training'} split empty: label more "
                           "pictures", "val_fraction")
        return sets

    # ----- train ------------------------------------------------------------------------------------

    def labelled_version(self, value: Any, field: str = "dataset") -> tuple[dict, dict]:
        """(the dataset version JSON ``value`` names, its labelling record); 400 unless it came from one."""
        ref = self.datasets.parse_ref(value) if isinstance(value, str) else None
        if ref is None or "dataset" not in ref:
            raise JobError(400, f"{field} must name a dataset version, e.g. shapes:2", field)
        try:
            version = self.datasets.version(ref["dataset"], ref["version"] or self._latest(ref["dataset"]))
        except JobError as e:
            raise JobError(e.status, f"{field}: {e.message}", field) from None
        return version, version.get("labelling") or {}

    def start_experiment(self, request: Any) -> dict:
        """A grid experiment of the training template that matches the version's labelling."""
        request = check_fields(request, EXPERIMENT_FIELDS, "dataset")
        version, labelling = self.labelled_version(request.get("dataset"))
        ref = f"{version['name']}:{version['version']}"
        if labelling.get("kind") not in KINDS:
            raise JobError(400, f"dataset: {ref} was not exported from a labelling, so AI Studio does not know "
                           "which template trains on it: start an experiment from the Experiments panel", "dataset")
        params = request.get("params", {})
        if not isinstance(params, dict):
            raise JobError(400, "params must be an object of the template's parameters", "params")
        if "dataset" in params:
            raise JobError(400, "params.dataset: the dataset is the request's dataset field", "params.dataset")
        experiment = {
            "template": TRAINING[labelling["kind"]],
            "name": request.get("name", f"{version['name']}_v{version['version']}_grid"[:100]),
            "params": {**params, "dataset": ref},
            "search": request.get("search", DEFAULT_SEARCH),
            "searcher": request.get("searcher", "grid"),
            "project": request.get("project", version.get("project")),
            **{k: request[k] for k in ("max_trials", "max_concurrent_trials", "profile", "hours", "early_stopping")
               if k in request},
        }
        return self.experiments.create(experiment)

    # ----- validate ---------------------------------------------------------------------------------

    @property
    def _validations(self) -> Path:
        return self.root / "validations"

    def _trained_job(self, value: Any, field: str = "job") -> Job:
        """A completed job of a training template that AI Studio knows, with its model.pt: the user's own."""
        try:
            job = self.jobs.get(value)
        except JobError as e:
            raise JobError(404, f"{field}: {e.message} among your jobs", field) from None
        if job.template not in INFERENCE:
            raise JobError(400, f"{field}: job {job.id} ran {job.template}; AI Studio validates and registers "
                           f"models of {', '.join(INFERENCE)}", field)
        if job.status != "completed":
            raise JobError(409, f"{field}: job {job.id} is {job.status}, not completed", field)
        if not (Path(job.folder) / "output" / "model.pt").is_file():
            raise JobError(409, f"{field}: job {job.id} left no output/model.pt", field)
        return job

    def _chosen_job(self, request: dict) -> Job:
        """``job``, or the best trial of ``experiment`` (one of the two)."""
        if ("job" in request) == ("experiment" in request):
            raise JobError(400, "job: name a trial's job, or an experiment whose best trial to take", "job")
        if "job" in request:
            return self._trained_job(request["job"])
        try:
            best = self.experiments.get(request["experiment"])["best"]
        except JobError as e:
            raise JobError(e.status, f"experiment: {e.message}", "experiment") from None
        if best is None:
            raise JobError(409, f"experiment: {request['experiment']} has no completed trial yet", "experiment")
        return self._trained_job(best["job_id"], "experiment")

    def trained_on(self, job: Job) -> dict | None:
        """``{"name", "version"}`` of the dataset version a training job read, when it read one."""
        ref = self.datasets.parse_ref(job.params.get("dataset"))
        if ref is not None and "dataset" in ref and ref["version"] is not None:
            return {"name": ref["dataset"], "version": ref["version"]}
        entry = next((e for e in job.inputs or [] if e.get("as") == "dataset" and "dataset" in e), None)
        return None if entry is None else {"name": entry["dataset"], "version": entry["version"]}

    def validate(self, request: Any) -> dict:
        """Run the inference template matching the trial on a labelled dataset version; its report follows."""
        request = check_fields(request, VALIDATION_FIELDS, "job (or experiment), dataset")
        job = self._chosen_job(request)
        dataset = request.get("dataset")
        if dataset is None:
            trained = self.trained_on(job)
            if trained is None:
                raise JobError(400, "dataset: name the labelled dataset version to validate on", "dataset")
            dataset = f"{trained['name']}:{trained['version']}"
        version, _ = self.labelled_version(dataset)
        self._check_labels(version, KIND_OF_TEMPLATE[job.template])
        ref = f"{version['name']}:{version['version']}"
        submission = {"template": INFERENCE[job.template], "name": f"validate_{job.name}"[:100],
                      "params": {"model": f"job:{job.id}", "input": ref}, "project": job.project,
                      **{k: request[k] for k in ("profile", "hours") if k in request}}
        inference = self.jobs.submit(submission)
        record = {"id": new_id(), "job": job.id, "job_name": job.name, "experiment": job.experiment_id,
                  "trial": job.trial, "dataset": {"name": version["name"], "version": version["version"]},
                  "inference_job": inference.id, "project": job.project, "created": utcnow().isoformat()}
        private_folder(self._validations)
        replace_file(self._validations / f"{record['id']}.json", json.dumps(record, indent=1) + "\n", 0o600)
        return self.validation_json(record)

    @staticmethod
    def _check_labels(version: dict, kind: str) -> None:
        files = Path(version["path"])
        ref = f"{version['name']}:{version['version']}"
        if kind == "classification":
            top = files / "val" if (files / "val").is_dir() else files
            if not any(entry.is_dir() for entry in top.iterdir()):
                raise JobError(400, f"dataset: {ref} holds no labels to compare with: a classification's are "
                               "class folders (val/<class>/)", "dataset")
        elif not ((files / "classes.txt").is_file() and (files / "labels").is_dir()):
            raise JobError(400, f"dataset: {ref} holds no labels to compare with: a detection's are classes.txt "
                           "and labels/ (YOLO)", "dataset")

    def validation_json(self, record: dict) -> dict:
        status, error, report = "running", None, None
        try:
            inference = self.jobs.get(record["inference_job"])
        except JobError:
            inference = None
            status, error = "failed", f"its inference job {record['inference_job']} was deleted"
        if inference is not None and inference.final:
            folder = Path(inference.folder) / "output" / "report"
            if inference.status != "completed":
                status, error = "failed", f"its inference job {inference.id} {inference.status}: " \
                                          f"{inference.reason or 'see its log'}"
            elif not (folder / "report.json").is_file():
                status, error = "failed", f"its inference job {inference.id} wrote no report (output/report/)"
            else:
                report = json.loads((folder / "report.json").read_text())
                report["path"] = self.jobs.in_workspace(folder / "report.md") or str(folder / "report.md")
                report["folder"] = str(folder)
                status = "done"
        return {**record, "status": status, "error": error, "report": report}

    def _validation_records(self) -> list[dict]:
        if not self._validations.is_dir():
            return []
        found = []
        for entry in sorted(os.listdir(self._validations), reverse=True):
            if entry.endswith(".json"):
                try:
                    found.append(json.loads((self._validations / entry).read_text()))
                except (OSError, ValueError):
                    continue
        return found

    def list_validations(self, project: Any = None) -> list[dict]:
        project = None if project is None else check_project(project)
        return [self.validation_json(r) for r in self._validation_records() if project in (None, r["project"])]

    def get_validation(self, validation_id: Any, field: str = "id") -> dict:
        if not isinstance(validation_id, str) or not validation_id.replace("-", "").isalnum():
            raise JobError(404, f"no validation {str(validation_id)[:64]!r}", field)
        try:
            record = json.loads((self._validations / f"{validation_id}.json").read_text())
        except (FileNotFoundError, NotADirectoryError):
            raise JobError(404, f"no validation {validation_id}", field) from None
        return self.validation_json(record)

    # ----- register and publish ---------------------------------------------------------------------

    def register(self, request: Any) -> dict:
        """A new version of model ``name`` from a trial's model (and its validation's report)."""
        request = check_fields(request, REGISTER_FIELDS, "name, job (or experiment)")
        name = check_name(request.get("name"))
        job = self._chosen_job(request)
        description = check_description(request.get("description"))
        validation = self._validation_of(job, request.get("validation"))
        dataset = self.trained_on(job)
        labelling = None
        if dataset is not None:
            try:
                labelling = self.datasets.version(dataset["name"], dataset["version"]).get("labelling")
            except JobError:  # the version was deleted since
                pass
        output = Path(job.folder) / "output"
        files = {"model.pt": output / "model.pt"}
        if validation is not None:
            files["report"] = Path(validation["report"]["folder"])
        points = self.jobs.metrics_files.points(output / "metrics.jsonl")
        record = {
            "created": utcnow().isoformat(), "creator": creator(), "description": description, "job": job.id,
            "job_name": job.name, "experiment": job.experiment_id, "trial": job.trial, "project": job.project,
            "template": job.template, "parameters": job.params, "dataset": dataset,
            "labelling": None if labelling is None else {k: labelling.get(k) for k in ("id", "name", "kind",
                                                                                       "classes")},
            "validation": None if validation is None else validation["id"],
            "validation_summary": None if validation is None else _summary(validation["report"]),
            "metrics": points[-1]["metrics"] if points else {},
            "published": None,
        }
        return self._version_json(self.models.add(name, record, files))

    def _validation_of(self, job: Job, value: Any) -> dict | None:
        """The validation named (it must be of ``job`` and done), else the latest done one of ``job``, if any."""
        if value is None:
            done = [v for v in (self.validation_json(r) for r in self._validation_records() if r["job"] == job.id)
                    if v["status"] == "done"]
            return done[0] if done else None
        validation = self.get_validation(value, "validation")
        if validation["job"] != job.id:
            raise JobError(400, f"validation: {validation['id']} validated job {validation['job']}, not {job.id}",
                           "validation")
        if validation["status"] != "done":
            raise JobError(409, f"validation: {validation['id']} is {validation['status']}"
                           f"{': ' + validation['error'] if validation['error'] else ''}", "validation")
        return validation

    def _version_json(self, record: dict) -> dict:
        folder = self.models.folder(record["model"], record["version"])
        return {**record, "folder": str(folder), "model_file": str(folder / "model.pt")}

    def list_models(self) -> list[dict]:
        return [{"name": m["name"], "versions": [self._version_json(v) for v in m["versions"]]}
                for m in map(self.models.model, self.models.names())]

    def get_model(self, name: Any) -> dict:
        found = self.models.model(name)
        return {"name": found["name"], "versions": [self._version_json(v) for v in found["versions"]]}

    def get_model_version(self, name: Any, version: Any) -> dict:
        return self._version_json(self.models.get(name, version))

    def publish(self, name: Any, version: Any, request: Any) -> dict:
        """Push the version to the repository, then (only then) mark it published there."""
        record = self.models.get(name, version)
        request = check_fields(request, PUBLISH_FIELDS, "repository")
        url = check_repository(request.get("repository"), self.jobs.resolve_path)
        branch = check_branch(request.get("branch"))
        folder = self.models.folder(record["model"], record["version"])
        staging = self.root / f".publish-{new_id()}"
        staging.mkdir(mode=0o700, parents=True)
        try:
            card = staging / "README.md"
            card.write_text(model_card(record))
            metadata = staging / "model.json"
            metadata.write_text(json.dumps({k: v for k, v in record.items() if k != "published"}, indent=1) + "\n")
            files = {"README.md": card, "model.json": metadata, "model.pt": folder / "model.pt"}
            if (folder / "report").is_dir():
                files["report"] = folder / "report"
            who = record.get("creator") or getpass.getuser()
            pushed = push(url, branch, f"{record['model']}-v{record['version']}", files,
                          f"{record['model']} version {record['version']}\n\nPublished from ClusterLab AI Studio: "
                          f"job {record['job']}.\n", f"{who} <{who}@clusterlab>")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        published = {"repository": url, **pushed, "at": utcnow().isoformat()}
        return self._version_json(self.models.update(record["model"], record["version"], published=published))

    # ----- the chains -------------------------------------------------------------------------------

    def chains(self, project: Any = None) -> list[dict]:
        """One chain per labelling of the project: its six steps, each with its state and what it holds."""
        labellings = self.list_labellings(project)
        validations = [self.validation_json(r) for r in self._validation_records()]
        versions = [v for m in self.list_models() for v in m["versions"]]
        experiments = self.experiments.list(limit=1000)[0] if labellings else []
        running = self.label_studio.status()["running"] if any(
            r["label_studio_project"] is not None for r in labellings) else False
        return [self._chain(labelling, experiments, validations, versions, running) for labelling in labellings]

    def _chain(self, labelling: dict, experiments: list, validations: list, versions: list, studio_on: bool) -> dict:
        if studio_on and labelling["label_studio_project"] is not None:
            try:
                labelling = self.get_labelling(labelling["id"])
            except JobError:  # Label Studio stopped meanwhile: the count of the last look
                pass
        steps = []
        labelled, total = labelling["labelled"], labelling["images"]
        steps.append(_step("label", "done" if total and labelled >= total else "running" if labelled else "todo",
                           f"{labelled} of {total} pictures labelled", {"labelling": labelling["id"]}))
        exports = labelling["exports"]
        refs = {f"{e['dataset']}:{e['version']}" for e in exports}
        latest = exports[-1] if exports else None
        steps.append(_step("export", "done" if latest else "todo",
                           f"{latest['dataset']}:{latest['version']}" if latest else "labels not exported yet",
                           {"dataset": latest["dataset"], "version": latest["version"]} if latest else None))
        trains = [e for e in experiments if (e.get("params") or {}).get("dataset") in refs]
        experiment = trains[0] if trains else None  # newest first
        if experiment is None:
            steps.append(_step("train", "todo", "no experiment on the exported labels yet", None))
        else:
            best = experiment.get("best")
            said = f"experiment {experiment['name']}: {experiment['counts']['trials']} trials"
            if best:
                said += f", best {experiment['metric']} {best['value']:.4g} (trial {best['trial']})"
            steps.append(_step("train", _state_of(experiment["status"]), said,
                               {"experiment": experiment["id"], "best_job": best["job_id"] if best else None}))
        trial_jobs = {j.id for e in trains for j in self.jobs.store.of_experiment(e["id"])}
        checked = [v for v in validations if v["job"] in trial_jobs]
        validation = checked[0] if checked else None
        if validation is None:
            steps.append(_step("validate", "todo", "no trial validated yet", None))
        else:
            steps.append(_step("validate", _state_of({"done": "completed", "running": "running"}.get(
                validation["status"], "failed")), _validation_text(validation), {"validation": validation["id"]}))
        registered = [v for v in versions if v["job"] in trial_jobs]
        model = registered[0] if registered else None
        steps.append(_step("register", "done" if model else "todo",
                           f"{model['model']} version {model['version']}" if model else "no model version yet",
                           {"model": model["model"], "version": model["version"]} if model else None))
        shipped = next((v for v in registered if v["published"]), None)
        steps.append(_step("publish", "done" if shipped else "todo",
                           f"{shipped['model']} v{shipped['version']} at {shipped['published']['repository']}"
                           if shipped else "not published yet",
                           {"model": shipped["model"], "version": shipped["version"]} if shipped else None))
        return {"labelling": labelling, "steps": steps}


def _step(step: str, state: str, detail: str, ref: dict | None) -> dict:
    return {"step": step, "state": state, "detail": detail, "ref": ref}


def _summary(report: dict) -> dict:
    keys = ("kind", "images", "accuracy", "map50")
    return {k: report[k] for k in keys if k in report}


def _validation_text(validation: dict) -> str:
    if validation["status"] != "done":
        return validation["error"] or f"validating {validation['job_name']}"
    report = validation["report"]
    score = f"accuracy {report['accuracy']:.3f}" if "accuracy" in report else f"mAP@0.5 {report.get('map50', 0):.3f}"
    return f"{validation['job_name']} on {validation['dataset']['name']}:{validation['dataset']['version']}: {score}"


def model_card(record: dict) -> str:
    """The published version's README: what it is, what made it, how well it did, how to use it."""
    lines = [f"# {record['model']}, version {record['version']}", ""]
    if record.get("description"):
        lines += [record["description"], ""]
    kind = (record.get("labelling") or {}).get("kind") or KIND_OF_TEMPLATE.get(record["template"], "")
    lines += [f"A {kind} model trained by ClusterLab's `{record['template']}` template "
              f"(job `{record['job']}`{', trial ' + str(record['trial']) if record.get('trial') is not None else ''}"
              f"{' of experiment `' + record['experiment'] + '`' if record.get('experiment') else ''}), "
              f"registered {record['created'][:10]} by {record.get('creator') or 'its owner'}.", ""]
    dataset, labelling = record.get("dataset"), record.get("labelling")
    lines += ["## Data", ""]
    if dataset:
        lines.append(f"- dataset version: `{dataset['name']}:{dataset['version']}`")
    if labelling:
        lines.append(f"- labelled in AI Studio: labelling `{labelling['name']}` (`{labelling['id']}`)")
        lines.append(f"- classes: {', '.join(f'`{c}`' for c in labelling.get('classes') or [])}")
    lines += ["", "## Parameters", "", "| parameter | value |", "|---|---|"]
    lines += [f"| {key} | `{json.dumps(value)}` |" for key, value in sorted(record["parameters"].items())]
    if record.get("metrics"):
        lines += ["", "## Training metrics (last epoch)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {key} | {value:.4g} |" for key, value in sorted(record["metrics"].items())
                  if isinstance(value, (int, float))]
    summary = record.get("validation_summary")
    lines += ["", "## Validation", ""]
    if summary:
        score = (f"accuracy **{summary['accuracy']:.4f}**" if "accuracy" in summary
                 else f"mAP@0.5 **{summary.get('map50', 0):.4f}**")
        lines += [f"On {summary.get('images', '?')} held-out pictures: {score}. The full report, per class, with "
                  "pictures: [report/report.md](report/report.md).", ""]
    else:
        lines += ["Not validated in AI Studio.", ""]
    infer = INFERENCE.get(record["template"], "")
    lines += ["## Use", "", "`model.pt` is a PyTorch checkpoint that ClusterLab's "
              f"`{infer}` template loads:", "", "```", f"clusterlab submit {infer} --name use_{record['model']} "
              f"-p model=model.pt -p input=<folder of pictures>", "```", "",
              "`model.json` holds this version's whole record.", ""]
    return "\n".join(lines)
