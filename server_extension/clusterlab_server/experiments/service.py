"""Experiments as the REST API and the CLI see them: create, list, show, cancel, delete, results.

An experiment is a row of its own (:mod:`.store`), a folder under
``<jobs root>/experiments/<id>/`` (the checked request, the Optuna journal, the
controller's log) and jobs: its trials, and its controller, a job of the
smallest CPU size that runs :mod:`.controller`. Everything shown here is read
from the job store and the trials' ``metrics.jsonl``; this side never opens the
study, whose only writer is the controller.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from clusterlab_spawner.options import Choice

from ..registry import Template
from ..service import JobError, JobService, check_page, check_project, new_id, private_folder
from ..datasets.store import remove_tree
from ..store import FINAL, Job, dumps, iso, utcnow
from .spec import ExperimentSpec, trial_name, validate_experiment
from .store import EXPERIMENT_STATUSES, STATE_FILE, Experiment, ExperimentStore, settings_to_json

CONTROLLER_TEMPLATE = "experiment-controller"


def controller_template() -> Template:
    """What a controller job runs: this package's controller, as a template of no parameters."""
    return Template(
        id=CONTROLLER_TEMPLATE, name="Experiment controller", kind="script", category="general",
        description="Runs an experiment's trials (ClusterLab)", entry=("{python}", "-m", f"{__package__}.controller"),
        parameters={"type": "object", "properties": {}}, folder=Path(__file__).resolve().parent,
    )


class ExperimentService:
    def __init__(self, jobs: JobService, max_concurrent_trials: int | None = None, poll_interval: float = 2.0):
        self.jobs = jobs
        self.store = ExperimentStore(jobs.store.engine)
        self.quota = jobs.settings.max_concurrent_trials if max_concurrent_trials is None else max_concurrent_trials
        self.poll_interval = poll_interval

    @property
    def root(self) -> Path:
        return self.jobs.settings.jobs_root / "experiments"

    # ----- creating -------------------------------------------------------------------

    def validate(self, request: Any) -> ExperimentSpec:
        return validate_experiment(self.jobs, request, self.quota)

    def create(self, request: Any) -> dict:
        """Check the whole request, then make the folder, the row and the controller job (or none of them)."""
        spec = self.validate(request)
        experiment_id = new_id()
        private_folder(self.root)
        folder = self.root / experiment_id
        folder.mkdir(mode=0o700)
        (folder / "output").mkdir()
        state = {"id": experiment_id, "spec": spec.to_json(), "settings": settings_to_json(self.jobs.settings),
                 "poll_interval": self.poll_interval}
        (folder / STATE_FILE).write_text(dumps(state))
        row = Experiment(id=experiment_id, name=spec.name, template=spec.template, spec=spec.to_json(),
                         folder=str(folder), status="running", created=utcnow(), project=spec.project)
        self.store.add(row)
        try:
            self._launch_controller(row, spec)
        except BaseException:
            self.store.delete(experiment_id)
            remove_tree(folder)
            raise
        return self.experiment_json(self.get_row(experiment_id))

    def controller_profile(self):
        """The smallest CPU size: the controller only waits and asks the scheduler."""
        sizes = [p for p in self.jobs.profiles.values() if not p.gpus]
        if not sizes:
            sizes = list(self.jobs.profiles.values())
        return min(sizes, key=lambda p: (p.cpus, p.memory_gb))

    def _launch_controller(self, row: Experiment, spec: ExperimentSpec) -> Job:
        profile = self.controller_profile()
        choice = Choice(profile, profile.max_hours)
        folder = Path(row.folder)
        job = Job(
            id=f"{row.id}-controller", name=f"{spec.name[:85]}_controller", template=CONTROLLER_TEMPLATE,
            template_version="1", params={}, profile=profile.id, hours=choice.hours,
            backend=self.jobs.backend.name, folder=str(folder), status="queued", submit_time=utcnow(),
            kind="controller", experiment_id=row.id, restarts=0, restart_history=[],
        )
        (folder / "job.sh").write_text(self.jobs.job_script(job, folder, controller_template(), choice))
        return self.jobs.launch(job)

    # ----- reading --------------------------------------------------------------------

    def get_row(self, experiment_id: Any) -> Experiment:
        row = self.store.get(experiment_id) if isinstance(experiment_id, str) else None
        if row is None:
            raise JobError(404, f"no experiment {str(experiment_id)[:64]!r}", "id")
        return row

    def list(self, status: str | None = None, limit: int = 100, offset: int = 0,
             project: str | None = None) -> tuple[list[dict], int]:
        if status and status not in EXPERIMENT_STATUSES:
            raise JobError(400, f"status must be one of {', '.join(EXPERIMENT_STATUSES)}", "status")
        check_page(limit, offset)
        if project is not None:
            check_project(project)
        rows, total = self.store.list(status, limit, offset, project=project)
        return [self.experiment_json(row) for row in rows], total

    def get(self, experiment_id: Any) -> dict:
        return self.experiment_json(self.get_row(experiment_id), with_trials=True)

    def _jobs(self, row: Experiment) -> tuple[Job | None, list[Job]]:
        jobs = self.jobs.store.of_experiment(row.id)
        controller = next((j for j in jobs if j.kind == "controller"), None)
        return controller, [j for j in jobs if j.kind == "job"]

    def trial_json(self, spec: ExperimentSpec, job: Job) -> dict:
        points = self.jobs.metrics_files.points(Path(job.folder) / "output" / "metrics.jsonl")
        curve = [[p["epoch"], p["metrics"][spec.metric]] for p in points
                 if isinstance(p.get("epoch"), int) and isinstance((p.get("metrics") or {}).get(spec.metric),
                                                                    (int, float))]
        params = {}
        for key in spec.search:
            top, _, sub = key.partition(".")
            params[key] = (job.params.get(top) or {}).get(sub) if sub else job.params.get(top)
        epochs = next((p.get("epochs") for p in reversed(points) if isinstance(p.get("epochs"), int)), None)
        return {
            "trial": job.trial, "job_id": job.id, "name": job.name, "status": job.status, "reason": job.reason,
            "params": params, "value": curve[-1][1] if curve else None, "epoch": curve[-1][0] if curve else None,
            "epochs": epochs, "restarts": job.restarts or 0, "curve": curve,
            "tensorboard": (Path(job.folder) / "output" / "tensorboard").is_dir(),
        }

    def best(self, spec: ExperimentSpec, trials: list[dict], jobs: dict[str, Job]) -> dict | None:
        """The completed trial with the best final metric (the value Optuna was told)."""
        done = [t for t in trials if t["status"] == "completed" and t["value"] is not None]
        if not done:
            return None
        best = (max if spec.maximize else min)(done, key=lambda t: t["value"])
        model = Path(jobs[best["job_id"]].folder) / "output" / "model.pt"
        return {"trial": best["trial"], "job_id": best["job_id"], "params": best["params"], "value": best["value"],
                "epoch": best["epoch"], "model_path": self.model_path(model) if model.exists() else None}

    def model_path(self, model: Path) -> str:
        """As an inference job's ``model`` parameter takes it: relative to the workspace when inside it."""
        return self.jobs.in_workspace(model) or str(model)

    def experiment_json(self, row: Experiment, with_trials: bool = False) -> dict:
        spec = ExperimentSpec.from_json(row.spec)
        controller, jobs = self._jobs(row)
        status, reason = row.status, row.reason
        if status == "running" and controller is not None and controller.final:
            status, reason = "failed", (f"its controller ended ({controller.reason or controller.status}); "
                                        f"`clusterlab experiment resume {row.id}` starts it again")
        trials = [self.trial_json(spec, job) for job in jobs]
        counts = {"trials": len(trials), **{s: 0 for s in ("queued", "running", *FINAL)}}
        for trial in trials:
            counts[trial["status"]] += 1
        public = {k: v for k, v in spec.to_json().items()}
        public["search"] = {k: ({kk: vv for kk, vv in v.items() if kk != "integer"} if isinstance(v, dict) else v)
                            for k, v in spec.search.items()}
        answer = {
            "id": row.id, **public, "status": status, "reason": reason, "created": iso(row.created),
            "ended": iso(row.ended), "counts": counts,
            "best": self.best(spec, trials, {j.id: j for j in jobs}),
            "controller": None if controller is None else {
                "job_id": controller.id, "status": controller.status, "restarts": controller.restarts or 0,
                "reason": controller.reason},
        }
        if with_trials:
            answer["trials"] = trials
        return answer

    # ----- acting ---------------------------------------------------------------------

    def cancel(self, experiment_id: Any) -> dict:
        """Stop launching (the controller sees the status), stop the controller, then every unfinished trial."""
        row = self.get_row(experiment_id)
        if row.final:
            raise JobError(409, f"experiment {row.id} has already ended ({row.status})", "id")
        self.store.update(row.id, status="cancelled", reason="cancelled by the user", ended=utcnow())
        controller, _ = self._jobs(row)
        if controller is not None and not controller.final:
            self.jobs.cancel(controller.id)
        for job in self._jobs(row)[1]:  # read again: the controller may have added one as it stopped
            if not job.final:
                try:
                    self.jobs.cancel(job.id)
                except JobError as e:
                    if e.status != 409:  # 409: it ended meanwhile
                        raise
        return self.get(row.id)

    def resume(self, experiment_id: Any) -> dict:
        """Start the controller again when it is not running (it resumes from its journal and the jobs)."""
        row = self.get_row(experiment_id)
        if row.status in ("cancelled", "completed"):
            raise JobError(409, f"experiment {row.id} has ended ({row.status}): there is nothing to resume", "id")
        controller, _ = self._jobs(row)
        if controller is not None and not controller.final:
            raise JobError(409, f"experiment {row.id}'s controller is {controller.status}", "id")
        self.store.update(row.id, status="running", reason="", ended=None)
        self.jobs.restart(controller, "resumed by the user", count=False)
        return self.get(row.id)

    def delete(self, experiment_id: Any) -> None:
        """An ended experiment goes, with its trials' records and folders."""
        row = self.get_row(experiment_id)
        controller, trials = self._jobs(row)
        if not row.final or any(not j.final for j in trials):
            raise JobError(409, f"experiment {row.id} is still running: cancel it first", "id")
        if controller is not None and not controller.final:
            raise JobError(409, f"experiment {row.id} has ended ({row.status}) but its controller is still "
                           "finishing: try again in a few seconds", "id")
        for job in trials:
            remove_tree(job.folder)
        self.jobs.store.delete([j.id for j in trials] + ([controller.id] if controller else []))
        remove_tree(row.folder)
        self.store.delete(row.id)

    def rerun_best(self, experiment_id: Any, changes: Any) -> Job:
        """A new job with the best trial's parameters, ``changes`` applied (e.g. more epochs)."""
        row = self.get_row(experiment_id)
        found = self.experiment_json(row)["best"]
        if found is None:
            raise JobError(409, f"experiment {row.id} has no completed trial yet", "id")
        if not isinstance(changes, dict):
            raise JobError(400, "the body must be a JSON object", "")
        changes = {"name": f"{row.name[:90]}_best", **changes}
        return self.jobs.rerun(found["job_id"], changes)

    def trials_csv(self, experiment_id: Any) -> str:
        experiment = self.get(experiment_id)
        keys = list(experiment["search"])
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["trial", "job_id", "status", *keys, experiment["metric"], "epoch", "epochs", "restarts",
                         "reason"])
        for trial in experiment["trials"]:
            writer.writerow([trial["trial"], trial["job_id"], trial["status"],
                             *(json.dumps(trial["params"][k]) if isinstance(trial["params"][k], (dict, list))
                               else trial["params"][k] for k in keys),
                             trial["value"], trial["epoch"], trial["epochs"], trial["restarts"], trial["reason"]])
        return out.getvalue()


__all__ = ["ExperimentService", "trial_name"]
