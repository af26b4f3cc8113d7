"""Experiments on the real Slurm of `make slurm`: the controller and every trial are Slurm jobs.

As tests/test_jobs_slurm.py does, the job service runs here (as root) and submits
with sbatch; the single test node has two cores, so a controller job (cpu-small,
one core) leaves one core to the trials, which then run one at a time. Where the
point is what the controller does with several trials at once (ASHA over eight
trials, the scheduler calls of one round), the controller is driven in-process
(``Controller(folder).step()``), which is exactly what its Slurm job runs in a
loop, and the trials get both cores.

Everything runs the fast fake trainer of experiment_helpers.py (a python-script
reporting a val_accuracy that depends on options.lr, best at 0.01), on cpu-small
(partition cpu). About 40 seconds in all.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil
import pytest
from clusterlab_server.experiments.controller import Controller
from clusterlab_server.experiments.service import ExperimentService
from clusterlab_server.service import JobService, Settings
from experiment_helpers import describe, fake_request, metrics_lines, wait_experiment_end, wait_for, write_fake_trainer
from test_hub_slurm import scontrol_job
from test_jobs_service import PROFILES, REPO

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def lab(slurm, tmp_path_factory):
    """One job store for the module, on the Slurm backend, its controllers polling every half second."""
    root = tmp_path_factory.mktemp("experiments-slurm")
    workspace = root / "workspace"
    write_fake_trainer(workspace)
    jobs = JobService(Settings(
        jobs_root=root / "jobs", workspace=workspace, template_paths=[REPO / "templates"],
        profiles_file=PROFILES, backend="slurm",
    ))
    experiments = ExperimentService(jobs, poll_interval=0.5)
    yield experiments
    # nothing of the module's stays in the queue: its controllers first (they would submit more), then trials
    for row in experiments.store.list("running", 1000, 0)[0]:
        experiments.store.update(row.id, status="cancelled", reason="test teardown")
    unfinished = jobs.store.unfinished()
    unfinished.sort(key=lambda job: job.kind != "controller")
    for job in unfinished:
        subprocess.run(["scancel", job.scheduler_id], capture_output=True, check=False)


def in_process(experiments: ExperimentService, monkeypatch) -> None:
    """Create experiments without their controller job: the test steps the controller itself."""
    monkeypatch.setattr(experiments, "_launch_controller", lambda row, spec: None)


def trial_jobs(experiments: ExperimentService, experiment_id: str):
    return sorted((j for j in experiments.jobs.store.of_experiment(experiment_id) if j.kind == "job"),
                  key=lambda j: j.trial)


def in_squeue(scheduler_id: str) -> str:
    """The job's state as squeue shows it ('' when squeue does not list it)."""
    out = subprocess.run(["squeue", "--noheader", "--states=all", f"--jobs={scheduler_id}", "--format=%i|%T"],
                         capture_output=True, text=True, check=False).stdout
    return next((line.split("|")[1] for line in out.splitlines() if line.split("|")[0] == scheduler_id), "")


def run_in_process(controller: Controller, experiments: ExperimentService, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while controller.step():
        assert time.monotonic() < deadline, describe(experiments, controller.experiment_id)
        time.sleep(0.3)


def test_a_grid_runs_its_controller_and_every_trial_as_slurm_jobs(lab):
    rates = [0.001, 0.003, 0.01, 0.03]
    created = lab.create(fake_request("slurm_grid", {"options.lr": rates}, epochs=3, delay=0.2, searcher="grid",
                                      profile="cpu-small", max_concurrent_trials=2))
    controller = lab.jobs.store.get(created["controller"]["job_id"])
    assert controller.kind == "controller" and controller.backend == "slurm" and controller.scheduler_id.isdigit()
    facts = scontrol_job(controller.scheduler_id)
    assert facts["NumCPUs"] == "1" and facts["Partition"] == "cpu"  # the smallest CPU size: cpu-small
    assert facts["JobName"].endswith("-slurm_grid_controller")
    assert in_squeue(controller.scheduler_id) in ("PENDING", "RUNNING", "COMPLETING")

    done = wait_experiment_end(lab, created["id"], timeout=90)
    assert done["status"] == "completed", describe(lab, created["id"])
    assert done["counts"]["completed"] == 4 and done["counts"]["trials"] == 4
    jobs = trial_jobs(lab, created["id"])
    assert sorted(j.params["options"]["lr"] for j in jobs) == rates  # each grid point once
    for job in jobs:  # each trial a Slurm batch job of its own, cpu-small, that ran to its end
        assert job.backend == "slurm" and job.scheduler_id.isdigit() and job.exit_code == 0
        facts = scontrol_job(job.scheduler_id)
        assert facts["JobState"] == "COMPLETED" and facts["NumCPUs"] == "1" and facts["Partition"] == "cpu"
        assert [line["epoch"] for line in metrics_lines(job.folder)] == [1, 2, 3]
    assert len({j.scheduler_id for j in jobs} | {controller.scheduler_id}) == 5

    finals = {j.id: metrics_lines(j.folder)[-1]["metrics"]["val_accuracy"] for j in jobs}
    best = done["best"]
    assert best["value"] == pytest.approx(max(finals.values())) and best["params"] == {"options.lr": 0.01}
    # the controller's job ended by itself once the grid was done
    controller = wait_for("the controller's end", lambda: lab.jobs.get(controller.id).final and
                          lab.jobs.get(controller.id), 30, refresh=lab.jobs.refresh)
    assert controller.status == "completed", lab.jobs.log(controller.id)["text"][-3000:]
    assert "the experiment is over" in lab.jobs.log(controller.id)["text"]


def test_asha_prunes_the_worst_trials_and_scancels_their_jobs(lab, monkeypatch):
    """Eight learning rates, ASHA halving at epochs 2 and 4 of 8: a trial below the best half at a rung stops."""
    in_process(lab, monkeypatch)
    rates = [0.01, 0.005, 0.002, 0.001, 0.0005, 0.0002, 0.0001, 0.00005]  # val_accuracy falls as lr does
    created = lab.create(fake_request("slurm_asha", {"options.lr": rates}, epochs=8, delay=0.4, searcher="grid",
                                      early_stopping="asha", divisor=2, max_rungs=3, profile="cpu-small",
                                      max_concurrent_trials=2))
    assert created["max_trials"] == 8
    run_in_process(Controller(Path(lab.get_row(created["id"]).folder)), lab, timeout=150)

    # the last pruned one may still be COMPLETING in Slurm (scancelled, its processes going): wait for its end
    done = wait_experiment_end(lab, created["id"], timeout=30)
    assert done["status"] == "completed", describe(lab, created["id"])
    jobs = trial_jobs(lab, created["id"])
    assert len(jobs) == 8 and {j.status for j in jobs} <= {"completed", "pruned"}
    pruned = [j for j in jobs if j.status == "pruned"]
    assert pruned, describe(lab, created["id"])
    by_lr = {j.params["options"]["lr"]: j for j in jobs}
    assert by_lr[0.01].status == "completed"  # the best at every rung is never pruned
    assert done["best"]["params"] == {"options.lr": 0.01}
    for job in pruned:
        assert job.reason.startswith("stopped early at epoch ") and job.exit_code != 0
        assert len(metrics_lines(job.folder)) < 8
        # its Slurm job was scancelled (not left to run), and a better trial was ahead of it at that epoch
        assert scontrol_job(job.scheduler_id)["JobState"] in ("CANCELLED", "COMPLETING"), job.to_json()
        epoch = int(job.reason.split()[4])
        value = metrics_lines(job.folder)[epoch - 1]["metrics"]["val_accuracy"]
        assert value < metrics_lines(by_lr[0.01].folder)[epoch - 1]["metrics"]["val_accuracy"]
    assert done["counts"]["pruned"] == len(pruned) and done["counts"]["completed"] == 8 - len(pruned)


def test_one_controller_round_is_one_squeue_for_all_trials(lab, monkeypatch):
    in_process(lab, monkeypatch)
    created = lab.create(fake_request("slurm_calls", {"options.lr": [0.01, 0.001, 0.003, 0.03]}, epochs=3,
                                      delay=30, searcher="grid", profile="cpu-small", max_concurrent_trials=4))
    controller = Controller(Path(lab.get_row(created["id"]).folder))
    backend = controller.jobs.backend
    try:
        before = backend.commands_run
        assert controller.step()
        first = backend.commands_run - before
        assert 5 <= first <= 6  # one squeue, four sbatch (and at most one sinfo, checking the size)
        jobs = trial_jobs(lab, created["id"])
        assert len(jobs) == 4
        wait_for("two trials running (the node's two cores)",
                 lambda: sum(lab.jobs.get(j.id).status == "running" for j in jobs) == 2, 30,
                 refresh=lab.jobs.refresh)
        for _ in range(3):
            before = backend.commands_run
            assert controller.step()
            assert backend.commands_run - before == 1  # one squeue for the four trials, whatever they are doing
        statuses = [s.status for s in controller.jobs.store.of_experiment(created["id"])]
        assert sorted(statuses) == ["queued", "queued", "running", "running"]
    finally:
        lab.cancel(created["id"])
    done = wait_experiment_end(lab, created["id"], timeout=30)  # scancelled: COMPLETING, then gone
    assert done["status"] == "cancelled" and done["counts"]["cancelled"] == 4, describe(lab, created["id"])


def trainer_processes(job) -> list[psutil.Process]:
    """The fake trainer's Python of ``job``, on the (single) node: the one running in its output folder."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        if proc.info["cwd"] == str(Path(job.folder) / "output") and any(
                word.endswith("fake_trainer.py") for word in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_a_trial_killed_on_slurm_restarts_from_its_checkpoint(lab):
    """Killed twice: its program by the node (SIGKILL, as the OOM killer does: job.sh writes 137), then the
    whole job, its batch shell too (no exit status at all; Slurm says FAILED). Each time the job service
    sbatches it again on its folder, and the trainer continues after the epochs it had."""
    created = lab.create(fake_request("slurm_kill", {"options.lr": [0.01]}, epochs=6, delay=0.6, searcher="grid",
                                      profile="cpu-small", max_concurrent_trials=1))
    job = wait_for("the trial", lambda: trial_jobs(lab, created["id"]), 30)[0]
    wait_for("two epochs", lambda: len(metrics_lines(job.folder)) >= 2, 60)
    first_id = lab.jobs.get(job.id).scheduler_id
    for proc in wait_for("the trainer's process", lambda: trainer_processes(job), 10):
        proc.kill()

    wait_for("the restart", lambda: lab.jobs.get(job.id).restarts == 1, 30, refresh=lab.jobs.refresh)
    wait_for("four epochs", lambda: len(metrics_lines(job.folder)) >= 4, 60)
    second_id = lab.jobs.get(job.id).scheduler_id
    assert second_id != first_id and scontrol_job(first_id)["JobState"] == "FAILED"
    # the whole job, batch shell too (what a node's health check or a reboot does): no exit status at all
    for proc in wait_for("the trainer's process", lambda: trainer_processes(job), 10):
        shell = proc.parent()
        proc.kill()
        if shell is not None and "slurm_script" in " ".join(shell.cmdline()):
            shell.kill()

    done = wait_experiment_end(lab, created["id"], timeout=60)
    assert done["status"] == "completed", describe(lab, created["id"])
    trial = lab.jobs.get(job.id)
    assert trial.status == "completed" and trial.restarts == 2, trial.to_json()
    assert trial.scheduler_id not in (first_id, second_id)
    assert scontrol_job(trial.scheduler_id)["JobState"] == "COMPLETED"
    reasons = [entry["reason"] for entry in trial.restart_history]
    assert reasons[0] == "killed by signal 9" and reasons[1].startswith(("Slurm says ", "killed by")), reasons
    epochs = [line["epoch"] for line in metrics_lines(trial.folder)]
    assert epochs == [1, 2, 3, 4, 5, 6]  # continued after the epochs it had, none twice
    log = lab.jobs.log(trial.id)["text"]
    assert "restart 1 of at most 5" in log and "restart 2 of at most 5" in log
    assert done["trials"][0]["restarts"] == 2 and done["best"]["epoch"] == 6
