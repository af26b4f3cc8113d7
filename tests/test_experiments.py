"""Experiments on the local backend, for real: the controller and every trial are real processes.

A grid over the learning rate of image-classification-train on the demo data,
early stopping (ASHA) and TPE over a fast fake trainer (a python-script that
reports a metric depending on its options.lr), and what happens when things
die: the controller killed, the JupyterLab that created the experiment
stopped, a trial killed (restarted from its checkpoint), a trial's own bug (not
retried). Hostile requests are refused by ExperimentService.create and by the
REST API of a real server alike, with nothing created. The Slurm side is
tests/test_experiments_slurm.py's, on the same helpers (experiment_helpers.py).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
import time
from pathlib import Path

import jsonschema
import optuna
import pytest
from clusterlab_server.experiments.controller import STUDY_FILE
from clusterlab_server.experiments.service import ExperimentService
from clusterlab_server.service import JobError, JobService, Settings
from clusterlab_server.store import JobStore
from experiment_helpers import (
    DEMO_PARAMS, FAKE_SCRIPT, HOSTILE, describe, fake_request, hostile_request, kill_local_job, metrics_lines,
    stop_everything, wait_experiment_end, wait_for, write_fake_trainer,
)
from jupyter_server_process import JupyterServer
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from template_jobs import PROFILES, REPO, kill_after_epochs, make_service


def make_lab(jobs_root: Path, workspace: Path, extra_roots=()) -> ExperimentService:
    """A job service and an experiment service over ``jobs_root``, as a JupyterLab (or the CLI) makes them."""
    jobs = JobService(Settings(
        jobs_root=jobs_root, workspace=workspace, template_paths=[REPO / "templates"],
        profiles_file=PROFILES, backend="local", extra_roots=list(extra_roots),
    ))
    return ExperimentService(jobs, poll_interval=0.5)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, demo_data):
    """One store for the module's experiments: a workspace with the fake trainer, and the demo data
    (a link into the session's demo workspace, which is an extra root); the jobs in the workspace,
    as in a user's home (~/.clusterlab/jobs), so that the best model has a path there."""
    root = tmp_path_factory.mktemp("experiments")
    workspace = root / "workspace"
    write_fake_trainer(workspace)
    (workspace / "demo").symlink_to(demo_data / "demo")
    experiments = make_lab(workspace / ".clusterlab" / "jobs", workspace, extra_roots=[demo_data])
    yield experiments
    stop_everything(experiments, root)


def trial_jobs(experiments: ExperimentService, experiment_id: str):
    return [j for j in experiments.jobs.store.of_experiment(experiment_id) if j.kind == "job"]


def final_value(job, metric: str = "val_accuracy") -> float:
    return metrics_lines(job.folder)[-1]["metrics"][metric]


def study_trials(experiments: ExperimentService, experiment_id: str):
    """The controller's Optuna study, read back from its journal once the experiment is over."""
    folder = Path(experiments.get_row(experiment_id).folder)
    storage = JournalStorage(JournalFileBackend(str(folder / STUDY_FILE)))
    return optuna.load_study(study_name=experiment_id, storage=storage).get_trials(deepcopy=False)


# ----- real training: a grid on the demo data ---------------------------------------------------------


def test_a_grid_over_the_learning_rate_on_demo_data(lab):
    rates = [0.001, 0.003, 0.01, 0.03]
    created = lab.create({
        "template": "image-classification-train", "name": "lr_grid", "params": dict(DEMO_PARAMS),
        "search": {"learning_rate": rates}, "searcher": "grid", "metric": "val_accuracy",
        "max_concurrent_trials": 2,
    })
    assert created["status"] == "running" and created["max_trials"] == 4 and created["maximize"] is True
    assert created["controller"]["status"] in ("queued", "running")

    done = wait_experiment_end(lab, created["id"], timeout=150)
    assert done["status"] == "completed", describe(lab, created["id"])
    trials = done["trials"]
    assert sorted(t["trial"] for t in trials) == [0, 1, 2, 3]
    assert all(t["status"] == "completed" for t in trials), trials
    assert sorted(t["params"]["learning_rate"] for t in trials) == rates  # each grid point once
    assert done["counts"]["completed"] == 4 and done["counts"]["trials"] == 4

    # the best is the best of the trials' final val_accuracy, as their own metrics.jsonl say
    jobs = trial_jobs(lab, created["id"])
    finals = {job.id: final_value(job) for job in jobs}
    assert all(len(metrics_lines(job.folder)) == 2 for job in jobs)
    best = done["best"]
    assert best["value"] == pytest.approx(max(finals.values()))
    assert finals[best["job_id"]] == pytest.approx(best["value"])
    best_job = lab.jobs.get(best["job_id"])
    assert best["params"] == {"learning_rate": best_job.params["learning_rate"]} and best["epoch"] == 2
    assert best["model_path"] and (lab.jobs.settings.workspace / best["model_path"]).exists()

    # trials are ordinary jobs: listed, marked with their experiment and number; the controller is not listed
    listed, total = lab.jobs.list(experiment_id=created["id"])
    assert total == 4 and {j.trial for j in listed} == {0, 1, 2, 3}
    assert all(j.experiment_id == created["id"] and j.template == "image-classification-train" for j in listed)
    everything = {j.id for j in lab.jobs.list(limit=1000)[0]}
    assert {j.id for j in listed} <= everything and f"{created['id']}-controller" not in everything
    assert all(j.to_json()["trial"] is not None for j in listed)

    rows = list(csv.DictReader(io.StringIO(lab.trials_csv(created["id"]))))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    assert sorted(float(r["learning_rate"]) for r in rows) == rates
    assert float(next(r for r in rows if r["job_id"] == best["job_id"])["val_accuracy"]) == pytest.approx(
        best["value"])

    rerun = lab.rerun_best(created["id"], {"params": {"epochs": 3}})
    try:
        assert rerun.params["learning_rate"] == best["params"]["learning_rate"] and rerun.params["epochs"] == 3
        assert rerun.rerun_of == best["job_id"] and rerun.experiment_id is None and rerun.name == "lr_grid_best"
        assert {k: v for k, v in rerun.params.items() if k != "epochs"} == {
            k: v for k, v in best_job.params.items() if k != "epochs"}
    finally:
        lab.jobs.cancel(rerun.id)


# ----- the fake trainer: early stopping, TPE, a user's error ------------------------------------------


def test_asha_prunes_the_worst_trials_at_a_rung(lab):
    rates = [float(f"{10 ** (-4 + i * 0.5):.6g}") for i in range(9)]  # 1e-4 .. 1, 0.01 among them
    created = lab.create(fake_request(
        "asha", {"options.lr": rates}, epochs=9, delay=0.25, searcher="grid", early_stopping="asha",
        divisor=3, max_rungs=3, max_concurrent_trials=3))
    assert created["max_trials"] == 9 and created["epochs"] == 9
    done = wait_experiment_end(lab, created["id"], timeout=90)
    assert done["status"] == "completed", describe(lab, created["id"])

    jobs = {job.trial: job for job in trial_jobs(lab, created["id"])}
    assert sorted(jobs) == list(range(9))
    epochs = {n: len(metrics_lines(job.folder)) for n, job in jobs.items()}
    pruned = [n for n, job in jobs.items() if job.status == "pruned"]
    completed = [n for n, job in jobs.items() if job.status == "completed"]
    assert pruned and completed and len(pruned) + len(completed) == 9, describe(lab, created["id"])
    for n in pruned:
        assert "stopped early at epoch" in jobs[n].reason and "of 9" in jobs[n].reason, jobs[n].reason
        assert epochs[n] < 9, (n, epochs[n])
    assert all(epochs[n] == 9 for n in completed)
    assert sum(epochs.values()) < 9 * 9
    assert done["counts"]["pruned"] == len(pruned)
    # the best rate is never among the pruned (it leads at every epoch), and it is the best
    assert done["best"]["params"] == {"options.lr": 0.01}
    # a pruned trial's job is final with its own status, and Optuna was told so
    states = {t.number: t.state for t in study_trials(lab, created["id"])}
    assert {n for n, s in states.items() if s == optuna.trial.TrialState.PRUNED} == set(pruned)


def test_tpe_over_a_log_range_stays_inside_it(lab):
    created = lab.create(fake_request(
        "tpe", {"options.lr": {"min": 1e-4, "max": 1e-1, "log": True}, "options.momentum": {"min": 0.5, "max": 0.9},
                "options.opt": ["adam", "sgd"]},
        epochs=2, delay=0.05, searcher="tpe", max_trials=6, max_concurrent_trials=2))
    assert created["search"]["options.lr"] == {"min": 1e-4, "max": 1e-1, "log": True}
    done = wait_experiment_end(lab, created["id"], timeout=90)
    assert done["status"] == "completed", describe(lab, created["id"])
    assert done["counts"] == {**done["counts"], "trials": 6, "completed": 6}
    schema = lab.jobs.template("python-script").parameters
    for trial in done["trials"]:
        lr, momentum = trial["params"]["options.lr"], trial["params"]["options.momentum"]
        assert 1e-4 <= lr <= 1e-1 and 0.5 <= momentum <= 0.9 and trial["params"]["options.opt"] in ("adam", "sgd")
        job = lab.jobs.get(trial["job_id"])
        jsonschema.validate(job.params, schema)  # the whole job's parameters, as the template defines them
        assert job.params["options"]["epochs"] == 2 and job.params["script"] == FAKE_SCRIPT
    assert len({t["params"]["options.lr"] for t in done["trials"]}) == 6  # sampled, not repeated


def test_a_trial_that_raises_fails_and_is_not_retried(lab):
    created = lab.create(fake_request("bug", {"options.fail": [True, False]}, epochs=2, delay=0.05,
                                      searcher="grid", max_concurrent_trials=2))
    done = wait_experiment_end(lab, created["id"], timeout=60)
    by_fail = {lab.jobs.get(t["job_id"]).params["options"]["fail"]: lab.jobs.get(t["job_id"]) for t in done["trials"]}
    bad, good = by_fail[True], by_fail[False]
    assert bad.status == "failed" and bad.exit_code == 1 and bad.restarts == 0 and bad.restart_history == []
    assert bad.reason == "exited with status 1"
    assert "a bug in the user's script" in lab.jobs.log(bad.id)["text"]
    assert good.status == "completed"
    assert done["status"] == "completed" and done["counts"]["failed"] == 1  # one trial completed: it did


# ----- things that die -------------------------------------------------------------------------------


def test_a_killed_controller_is_restarted_and_resumes_without_losing_or_repeating_a_trial(lab):
    created = lab.create(fake_request("resumed", {"options.lr": {"min": 1e-4, "max": 1.0, "log": True}},
                                      epochs=3, delay=0.2, searcher="random", max_trials=8,
                                      max_concurrent_trials=2))
    experiment_id = created["id"]
    controller_id = f"{experiment_id}-controller"
    wait_for("3 trials", lambda: len(trial_jobs(lab, experiment_id)) >= 3, 60)
    controller = lab.jobs.store.get(controller_id)
    assert controller.kind == "controller" and controller.status == "running"
    kill_local_job(controller)
    wait_for("the controller gone", lambda: lab.jobs.backend._process(controller.scheduler_id) is None, 10)

    lab.jobs.refresh()  # what any poller does: the controller ended without an exit status -> restarted
    restarted = lab.jobs.store.get(controller_id)
    assert restarted.restarts == 1 and restarted.status in ("queued", "running"), restarted.to_json()
    assert restarted.scheduler_id != controller.scheduler_id
    assert "exit status" in restarted.restart_history[0]["reason"]

    done = wait_experiment_end(lab, experiment_id, timeout=120)
    assert done["status"] == "completed", describe(lab, experiment_id)
    numbers = [t["trial"] for t in done["trials"]]
    assert sorted(numbers) == list(range(8)), numbers  # none lost, none launched twice
    assert done["counts"]["trials"] == 8 == done["max_trials"]
    assert all(t["status"] == "completed" for t in done["trials"])
    assert len({t["params"]["options.lr"] for t in done["trials"]}) == 8
    assert done["controller"]["restarts"] == 1
    assert len(study_trials(lab, experiment_id)) == 8
    assert "restart 1 of at most" in (Path(lab.get_row(experiment_id).folder) / "log.txt").read_text()


def test_a_killed_trial_restarts_from_its_checkpoint(lab):
    created = lab.create({
        "template": "image-classification-train", "name": "killed_trial",
        "params": {**DEMO_PARAMS, "epochs": 4}, "search": {"learning_rate": [0.01]}, "searcher": "grid",
        "metric": "val_accuracy", "max_concurrent_trials": 1,
    })
    job = wait_for("the trial", lambda: trial_jobs(lab, created["id"]), 30)[0]
    kill_after_epochs(lab.jobs, job, 2)
    done = wait_experiment_end(lab, created["id"], timeout=120)
    assert done["status"] == "completed", describe(lab, created["id"])
    trial = lab.jobs.get(job.id)
    assert trial.status == "completed" and trial.restarts == 1, trial.to_json()
    assert len(trial.restart_history) == 1 and "exit status" in trial.restart_history[0]["reason"]
    record = json.loads((Path(trial.folder) / "job.json").read_text())  # the folder's record says so too
    assert record["restarts"] == 1 and record["restart_history"] == trial.restart_history
    assert [line["epoch"] for line in metrics_lines(trial.folder)] == [1, 2, 3, 4]
    assert done["trials"][0]["restarts"] == 1 and done["trials"][0]["epoch"] == 4


def test_an_experiment_outlives_the_jupyterlab_that_created_it(tmp_path):
    server = JupyterServer(tmp_path)
    write_fake_trainer(server.workspace)
    server.start()
    try:
        answer = server.call("POST", "experiments", json=fake_request(
            "outlives", {"options.lr": [0.0001, 0.001, 0.01, 0.1, 1.0, 0.003]}, epochs=4, delay=0.5,
            searcher="grid", max_concurrent_trials=2))
        assert answer.status_code == 201, answer.text
        experiment_id = answer.json()["id"]
        wait_for("a running trial", lambda: server.call("GET", f"experiments/{experiment_id}").json()["counts"]
                 ["running"] >= 1, 60)
    finally:
        server.stop(kill_jobs=False)  # the JupyterLab goes; its experiment does not

    # no server from here: the store, read as the CLI would
    experiments = ExperimentService(make_service(tmp_path, server.workspace), poll_interval=0.5)
    try:
        launched_before = len(trial_jobs(experiments, experiment_id))
        assert launched_before < 6
        done = wait_experiment_end(experiments, experiment_id, timeout=120)
        assert done["status"] == "completed", describe(experiments, experiment_id)
        assert sorted(t["trial"] for t in done["trials"]) == list(range(6))
        assert all(t["status"] == "completed" for t in done["trials"])
        assert done["controller"]["status"] == "completed" and done["controller"]["restarts"] == 0
    finally:
        stop_everything(experiments, tmp_path)


# ----- cancel, delete --------------------------------------------------------------------------------


def test_cancel_stops_everything_and_delete_removes_it(lab):
    created = lab.create(fake_request("cancelled", {"options.lr": {"min": 1e-3, "max": 1e-1, "log": True}},
                                      epochs=100, delay=0.5, searcher="random", max_trials=6,
                                      max_concurrent_trials=2))
    experiment_id = created["id"]
    wait_for("2 running trials", lambda: lab.get(experiment_id)["counts"]["running"] >= 2, 60,
             refresh=lab.jobs.refresh)
    with pytest.raises(JobError) as running:
        lab.delete(experiment_id)
    assert running.value.status == 409 and "cancel it first" in running.value.message

    cancelled = lab.cancel(experiment_id)
    assert cancelled["status"] == "cancelled" and cancelled["reason"] == "cancelled by the user"
    lab.jobs.refresh()
    jobs = lab.jobs.store.of_experiment(experiment_id)
    assert all(j.final for j in jobs), [(j.id, j.status) for j in jobs]
    assert lab.jobs.store.get(f"{experiment_id}-controller").status == "cancelled"
    assert all(lab.jobs.backend._process(j.scheduler_id) is None for j in jobs)  # the processes too
    count = len(jobs)
    time.sleep(2.5)  # five of the controller's polls, had it survived
    lab.jobs.refresh()
    assert len(lab.jobs.store.of_experiment(experiment_id)) == count
    assert lab.get(experiment_id)["status"] == "cancelled"
    with pytest.raises(JobError) as again:
        lab.cancel(experiment_id)
    assert again.value.status == 409

    folders = [Path(j.folder) for j in jobs]
    assert all(f.exists() for f in folders)
    lab.delete(experiment_id)
    assert not any(f.exists() for f in folders)
    assert lab.jobs.store.of_experiment(experiment_id) == []
    with pytest.raises(JobError) as gone:
        lab.get(experiment_id)
    assert gone.value.status == 404


# ----- hostile requests: one function decides, for the service and the API -------------------------


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory, demo_data):
    """A real server whose workspace holds the demo data, and an in-process service on a store of its own."""
    root = tmp_path_factory.mktemp("hostile")
    server = JupyterServer(root / "server")
    shutil.copytree(demo_data / "demo" / "shapes", server.workspace / "demo" / "shapes")
    server.start()
    local = make_lab(root / "local" / "jobs", demo_data)
    yield server, local
    server.stop()
    stop_everything(local, root)


def assert_nothing_created(experiments: ExperimentService) -> None:
    assert experiments.store.list(None, 1000, 0)[1] == 0
    folder = experiments.root
    assert not folder.exists() or not any(folder.iterdir()), list(folder.iterdir())
    assert experiments.jobs.store.list(limit=1000)[1] == 0
    assert experiments.jobs.store.list(limit=1000, kind="controller")[1] == 0
    assert not [p for p in experiments.jobs.settings.jobs_root.iterdir() if p.name not in (
        "experiments", "jobs.sqlite", "jobs.sqlite-wal", "jobs.sqlite-shm")]


def test_the_valid_request_is_valid(hostile_server):
    _, local = hostile_server
    spec = local.validate(hostile_request({}))
    assert spec.max_trials == 2 and spec.searcher == "grid"


@pytest.mark.parametrize("what, changes, field, words", HOSTILE, ids=[case[0] for case in HOSTILE])
def test_a_hostile_request_is_refused_naming_the_field_and_nothing_is_made(hostile_server, what, changes, field,
                                                                           words):
    server, local = hostile_server
    request = hostile_request(changes)
    with pytest.raises(JobError) as refused:
        local.create(request)
    assert refused.value.status == 400 and refused.value.field == field, refused.value.to_json()
    assert words in refused.value.message, refused.value.message
    assert_nothing_created(local)

    answer = server.call("POST", "experiments", json=request)
    assert answer.status_code == 400, answer.text
    assert answer.json() == refused.value.to_json()  # the same words, from the same function
    assert server.call("GET", "experiments").json()["total"] == 0
    assert server.call("GET", "jobs").json()["total"] == 0
    experiments_folder = server.root / "jobs" / "experiments"
    assert not experiments_folder.exists() or not any(experiments_folder.iterdir())


# ----- an old store ----------------------------------------------------------------------------------

OLD_JOBS_TABLE = """
CREATE TABLE jobs (
    id VARCHAR(64) NOT NULL PRIMARY KEY, name VARCHAR(100) NOT NULL, template VARCHAR(60) NOT NULL,
    template_version VARCHAR(40) NOT NULL, params JSON NOT NULL, profile VARCHAR(40) NOT NULL,
    hours FLOAT NOT NULL, backend VARCHAR(20) NOT NULL, folder VARCHAR(1000) NOT NULL,
    status VARCHAR(20) NOT NULL, scheduler_id VARCHAR(100) NOT NULL, reason VARCHAR(500) NOT NULL,
    node VARCHAR(200) NOT NULL, exit_code INTEGER, rerun_of VARCHAR(64), submit_time DATETIME NOT NULL,
    start_time DATETIME, end_time DATETIME
)
"""


def test_a_store_from_before_experiments_opens_and_lists_its_jobs(tmp_path):
    path = tmp_path / "jobs" / "jobs.sqlite"
    path.parent.mkdir()
    with sqlite3.connect(path) as db:
        db.execute(OLD_JOBS_TABLE)
        db.execute("CREATE INDEX ix_jobs_status ON jobs (status)")
        db.execute(
            "INSERT INTO jobs VALUES ('20250101-000000-abcdef', 'old_job', 'python-script', '1', '{\"script\": "
            "\"a.py\"}', 'cpu-small', 1.0, 'local', '/nowhere', 'completed', 'pid:1', '', 'node1', 0, NULL, "
            "'2025-01-01 00:00:00.000000', NULL, '2025-01-01 00:01:00.000000')")
    store = JobStore(path)
    jobs, total = store.list()
    assert total == 1
    job = jobs[0]
    assert job.name == "old_job" and job.status == "completed" and job.kind == "job"
    assert job.restarts == 0 and job.max_restarts == 5 and job.experiment_id is None and job.trial is None
    assert job.to_json()["restart_history"] == []

    workspace = tmp_path / "workspace"
    workspace.mkdir()
    experiments = make_lab(tmp_path / "jobs", workspace)  # the experiments' table is added beside
    assert [j.id for j in experiments.jobs.list()[0]] == ["20250101-000000-abcdef"]
    assert experiments.list() == ([], 0)
    assert not experiments.jobs.store.unfinished()


@pytest.mark.parametrize("kind, change, restarted", [
    ("controller", {"status": "failed", "exit_code": None, "reason": "Slurm: timeout"}, True),  # out of hours
    ("controller", {"status": "failed", "exit_code": 143, "reason": "Slurm: timeout"}, True),
    ("controller", {"status": "failed", "exit_code": 1, "reason": "exited with status 1"}, False),  # a bug of ours
    ("controller", {"status": "completed", "exit_code": 0, "reason": ""}, False),
    ("controller", {"status": "cancelled", "exit_code": None, "reason": "cancelled by the user"}, False),
    ("job", {"status": "failed", "exit_code": None, "reason": "Slurm: timeout"}, False),  # a job's own hours
])
def test_a_controller_out_of_hours_goes_on_in_a_new_one(kind, change, restarted):
    """An experiment may outlast one job's wall time: its controller resumes from its journal in a new job."""
    from clusterlab_server.store import Job

    assert JobService._controller_out_of_time(Job(kind=kind), change) is restarted
