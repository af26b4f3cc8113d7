"""An experiment's controller: Optuna's ask-and-tell over ordinary jobs.

It runs as a job itself (``python -m clusterlab_server.experiments.controller``
in the experiment's folder, started by :mod:`.service`), so it outlives the
JupyterLab that created it. Each round (:meth:`Controller.step`):

1. one look at the scheduler for all of the user's jobs (``JobService.refresh``:
   trials included, and the restarts of trials killed from outside);
2. for each running trial, the epochs its ``output/metrics.jsonl`` gained are
   reported to Optuna; when the pruner says so, the trial's job is stopped
   (status ``pruned``) and told PRUNED; an ended trial is told its final
   metric (or FAIL);
3. new trials are asked and submitted while fewer than ``max_concurrent_trials``
   run and fewer than ``max_trials`` were asked.

It is the only writer of the study (a journal file in the experiment's folder),
and a flock on that folder keeps a second controller idle. Everything it knows
is in that journal and in the job store, so a controller started again (killed,
its node rebooted) resumes: a trial Optuna asked for is looked up among the
jobs by its number before it is submitted, so none is launched twice.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import FrozenTrial, TrialState

from ..service import JobError, JobService
from ..store import Job, utcnow
from .spec import ExperimentSpec, trial_name
from .store import STATE_FILE, ExperimentStore, settings_from_json

log = logging.getLogger("clusterlab.experiments")

STUDY_FILE = "study.journal"
LOCK_FILE = "controller.lock"


def distributions(spec: ExperimentSpec) -> dict:
    """Optuna's distribution for each searched parameter."""
    found = {}
    for key, entry in spec.search.items():
        if isinstance(entry, list) or spec.searcher == "grid":
            values = entry if isinstance(entry, list) else spec.grid()[key]
            found[key] = CategoricalDistribution(values)
        elif entry.get("integer"):
            found[key] = IntDistribution(entry["min"], entry["max"], log=entry["log"], step=entry.get("step", 1))
        else:
            found[key] = FloatDistribution(entry["min"], entry["max"], log=entry["log"], step=entry.get("step"))
    return found


class AskAndTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler, told results outside ``optimize()``.

    Its ``after_trial`` calls ``study.stop()`` once the grid is used up, which raises
    RuntimeError outside an optimize loop (Optuna 5.0). The controller never asks more
    than the grid's points (``max_trials`` is capped to the grid size), so there is
    nothing to stop.
    """

    def after_trial(self, study, trial, state, values) -> None:
        pass


def make_sampler(spec: ExperimentSpec, seed: int):
    if spec.searcher == "grid":
        return AskAndTellGridSampler(spec.grid(), seed=seed)
    if spec.searcher == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: trials running at once are not all drawn at the same spot
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True,
                                      n_startup_trials=min(10, spec.max_trials // 2 or 1))


def make_pruner(spec: ExperimentSpec):
    """ASHA as Determined names it: ``divisor`` is the reduction factor, the shortest trial ``min_resource`` epochs."""
    if spec.early_stopping == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=spec.min_resource, reduction_factor=spec.divisor)
    if spec.early_stopping == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=spec.min_resource, max_resource=spec.epochs or "auto",
                                              reduction_factor=spec.divisor)
    return optuna.pruners.NopPruner()


def open_study(folder: Path, experiment_id: str, spec: ExperimentSpec) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our log says what happens, in the trials' words
    storage = JournalStorage(JournalFileBackend(str(folder / STUDY_FILE),
                                                lock_obj=JournalFileOpenLock(str(folder / STUDY_FILE))))
    seed = int(experiment_id.rsplit("-", 1)[-1], 16)
    study = optuna.create_study(
        study_name=experiment_id, storage=storage, sampler=make_sampler(spec, seed), pruner=make_pruner(spec),
        direction="maximize" if spec.maximize else "minimize", load_if_exists=True,
    )
    asked = len(study.get_trials(deepcopy=False))
    if asked:
        # a controller started again: a sampler seeded as the first one was would draw the first trials' values again
        study.sampler = make_sampler(spec, seed + asked)
    return study


class Controller:
    def __init__(self, folder: Path, poll_interval: float | None = None):
        self.folder = folder
        state = json.loads((folder / STATE_FILE).read_text())
        self.experiment_id: str = state["id"]
        self.spec = ExperimentSpec.from_json(state["spec"])
        self.jobs = JobService(settings_from_json(state["settings"]))
        self.experiments = ExperimentStore(self.jobs.store.engine)
        self.poll_interval = poll_interval if poll_interval is not None else state.get("poll_interval", 2.0)
        self.study = open_study(folder, self.experiment_id, self.spec)
        self.distributions = distributions(self.spec)
        self.stopping = False

    # ----- one round ------------------------------------------------------------------

    def running(self) -> bool:
        row = self.experiments.get(self.experiment_id)
        return row is not None and row.status == "running"

    def step(self) -> bool:
        """One round; False once the experiment is over (done, or cancelled)."""
        if not self.running():
            return False
        self.jobs.refresh()
        trials = {job.trial: job for job in self.jobs.store.of_experiment(self.experiment_id) if job.kind == "job"}
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            job = trials.get(frozen.number)
            if job is None:
                self._submit(frozen)  # asked before a restart of the controller, never submitted
            else:
                self._follow(frozen, job)
        trials_asked = self.study.get_trials(deepcopy=False)  # once: each look may read the journal again
        asked, running = len(trials_asked), sum(t.state == TrialState.RUNNING for t in trials_asked)
        while not self.stopping and running < self.spec.max_concurrent_trials and asked < self.spec.max_trials:
            if not self.running():
                return False
            running += self._submit(self.study.ask(self.distributions))
            asked += 1
        if asked >= self.spec.max_trials and not running:
            self._finish()
            return False
        return True

    def _submit(self, frozen: FrozenTrial | optuna.Trial) -> bool:
        """Submit the trial's job; False when it was refused (the trial is told FAIL)."""
        request = {
            "template": self.spec.template, "name": trial_name(self.spec, frozen.number),
            "params": self.spec.trial_params(frozen.params), "profile": self.spec.profile,
            "hours": self.spec.hours, "max_restarts": self.spec.max_restarts,
            "inputs": self.spec.inputs, "project": self.spec.project,
        }
        try:
            job = self.jobs.submit(request, experiment=(self.experiment_id, frozen.number))
        except JobError as e:
            log.warning("trial %d could not be submitted: %s", frozen.number, e.message)
            self.study.tell(frozen.number, state=TrialState.FAIL)
            return False
        log.info("trial %d: job %s with %s", frozen.number, job.id, json.dumps(frozen.params))
        if not self.running():  # cancelled while it was being submitted
            self.jobs.cancel(job.id)
        return True

    def _follow(self, frozen: FrozenTrial, job: Job) -> None:
        """Report the epochs the trial wrote since the last round; prune it, or tell how it ended."""
        trial = optuna.Trial(self.study, frozen._trial_id)
        reported = set(frozen.intermediate_values)
        last = None
        for point in self.jobs.metrics_files.points(Path(job.folder) / "output" / "metrics.jsonl"):
            value = (point.get("metrics") or {}).get(self.spec.metric)
            epoch = point.get("epoch")
            if not isinstance(epoch, int) or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            last = (epoch, point.get("epochs"), float(value))
            if epoch in reported:
                continue
            trial.report(float(value), epoch)
            reported.add(epoch)
            # a trial at its last epoch has done its work: it completes, it is not stopped early
            if not job.final and epoch != point.get("epochs") and trial.should_prune():
                self._prune(job, epoch, point.get("epochs"), float(value))
                return
        if job.status == "pruned":
            self.study.tell(frozen.number, state=TrialState.PRUNED)
        elif job.status == "completed" and last is not None:
            log.info("trial %d: completed, %s %.4g at epoch %d", frozen.number, self.spec.metric, last[2], last[0])
            self.study.tell(frozen.number, last[2])
        elif job.final:
            log.info("trial %d: %s (%s)", frozen.number, job.status, job.reason or "no %s reported" % self.spec.metric)
            self.study.tell(frozen.number, state=TrialState.FAIL)

    def _prune(self, job: Job, epoch: int, epochs, value: float) -> None:
        total = f" of {epochs}" if isinstance(epochs, int) else ""
        why = (f"stopped early at epoch {epoch}{total}: {self.spec.metric} {value:.4g} was not among the best "
               f"1/{self.spec.divisor} of the trials at this point")
        try:
            self.jobs.prune(job.id, why)
        except JobError:  # it ended meanwhile: it counts as it ended
            return
        log.info("trial %d: %s", job.trial, why)
        self.study.tell(job.trial, state=TrialState.PRUNED)

    def _finish(self) -> None:
        trials = self.study.get_trials(deepcopy=False)
        done = sum(t.state == TrialState.COMPLETE for t in trials)
        if done:
            status, reason = "completed", ""
        else:
            pruned = sum(t.state == TrialState.PRUNED for t in trials)
            status, reason = "failed", f"no trial completed ({len(trials) - pruned} failed, {pruned} pruned)"
        self.experiments.update(self.experiment_id, only_if_running=True, status=status, reason=reason,
                                ended=utcnow())

    # ----- the process ----------------------------------------------------------------

    def run(self) -> int:
        with open(self.folder / LOCK_FILE, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print("another controller of this experiment is running: this one stops", flush=True)
                return 0
            print(f"controller of experiment {self.experiment_id} ({self.spec.name}), pid {os.getpid()}", flush=True)
            while not self.stopping:
                try:
                    if not self.step():
                        break
                except JobError as e:  # e.g. the scheduler not answering: try again next round
                    log.warning("round failed: %s", e.message)
                self._sleep(self.poll_interval)
            print("controller: the experiment is over" if not self.stopping else "controller: stopped", flush=True)
            return 0

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.2, seconds))

    def stop(self, *_args) -> None:
        """SIGTERM: finish the round (no trial half-submitted), then exit."""
        self.stopping = True


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    folder = Path(os.environ.get("CLUSTERLAB_JOB_DIR") or sys.argv[1])
    controller = Controller(folder)
    signal.signal(signal.SIGTERM, controller.stop)
    signal.signal(signal.SIGINT, controller.stop)
    return controller.run()


if __name__ == "__main__":
    sys.exit(main())
