"""Experiments on the ``kubernetes`` backend, against the API STAND-IN (tests/kube_api_stand_in.py).

The stand-in is an aiohttp fake of the API server on loopback, not Kubernetes:
it stores Jobs and gives each a pod, but nothing runs in a pod. So the
controller pod itself cannot run here: its Job is created (and checked), and
the test drives the controller IN-PROCESS (``Controller(folder).step()``, what
that pod runs in a loop), while it plays the trials' pods (writes their
``metrics.jsonl`` and ``exit_code`` on the "volume") and the Job controller
(``set_job_status``, a pod OOM-killed or evicted).

Checked: trials are batch/v1 Jobs labelled for the user, one list of Jobs per
controller round, statuses flow back, a pruned trial's Job is deleted, and a
trial that Kubernetes killed (OOMKilled, evicted) is started again as a Job of
a new name (the old one is kept until its TTL) and resumes, while the user's own
exit status is not retried.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clusterlab_server.backends import kubernetes as kj
from clusterlab_server.experiments.controller import Controller
from clusterlab_server.experiments.service import ExperimentService
from clusterlab_server.service import JobError, JobService, Settings
from clusterlab_server.store import Job
from experiment_helpers import fake_request, write_fake_trainer
from test_jobs_kubernetes import IMAGE, NS, PROFILES, REPO, a_job, home, stand_in  # noqa: F401 - fixtures

USER_LABELS = {"app": "clusterlab", "clusterlab/user": "ada"}


@pytest.fixture
def lab(home, monkeypatch):  # noqa: F811 - the fixture imported above
    monkeypatch.setenv("CLUSTERLAB_K8S_SERVICE_ACCOUNT", "clusterlab-jobs")  # as the spawner sets it
    write_fake_trainer(home / "work")
    jobs = JobService(Settings(
        jobs_root=home / ".clusterlab" / "jobs", workspace=home / "work", template_paths=[REPO / "templates"],
        profiles_file=REPO / "hub_config" / "profiles.yaml", backend="kubernetes",
    ))
    experiments = ExperimentService(jobs, poll_interval=0)
    experiments.controllers = []  # the in-process controllers of the test (start), each with its own client
    yield experiments
    for controller in experiments.controllers:
        controller.jobs.backend.close()
    jobs.backend.close()


def start(lab: ExperimentService, name: str, search: dict, **fields) -> tuple[dict, Controller]:
    created = lab.create(fake_request(name, search, profile="cpu-small", **fields))
    controller = Controller(Path(lab.get_row(created["id"]).folder))
    lab.controllers.append(controller)
    return created, controller


def trials(lab: ExperimentService, experiment_id: str) -> list[Job]:
    return sorted((j for j in lab.jobs.store.of_experiment(experiment_id) if j.kind == "job"), key=lambda j: j.trial)


def play_epochs(job: Job, values: dict[int, float], epochs: int) -> None:
    """What the trial's pod writes to its output on the volume: one metrics line per epoch."""
    with open(Path(job.folder) / "output" / "metrics.jsonl", "a") as out:
        for epoch, value in values.items():
            out.write(json.dumps({"step": epoch, "epoch": epoch, "epochs": epochs, "time": 0,
                                  "metrics": {"val_accuracy": value}}) + "\n")


def play_end(stand_in, job: Job, code: int = 0) -> None:  # noqa: F811
    (Path(job.folder) / "exit_code").write_text(f"{code}\n")  # job.sh's last word
    stand_in.set_job_status(job.scheduler_id, "succeeded" if code == 0 else "failed")


def kill_pod(stand_in, job: Job, status: dict) -> None:  # noqa: F811
    """Kubernetes ends the trial's pod (no exit_code on the volume) and its Job fails (backoffLimit 0)."""
    stand_in.set_job_status(job.scheduler_id, "failed")
    [pod] = stand_in.job_pods(job.scheduler_id)
    terminated = status.pop("terminated", None)
    pod["status"].update(status)
    if terminated is not None:
        pod["status"]["containerStatuses"][0]["state"] = {"terminated": terminated}
    stand_in.replace_from_outside(pod)


def oom_killed() -> dict:
    return {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}


def test_trials_are_kubernetes_jobs_of_the_user_and_their_statuses_flow_back(lab, stand_in):  # noqa: F811
    created, controller = start(lab, "kube_grid", {"options.lr": [0.001, 0.01, 0.1]}, searcher="grid",
                                epochs=2, max_concurrent_trials=3)
    # the controller is a Job too, of the smallest CPU size (its pod never runs on the stand-in)
    [controller_job] = stand_in.created("Job")
    assert controller_job["metadata"]["name"] == f"clusterlab-{created['id']}-controller"
    assert controller_job["metadata"]["labels"] == {**USER_LABELS, "clusterlab/job-id": f"{created['id']}-controller"}
    resources = controller_job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "1", "memory": "2Gi"} and "nvidia.com/gpu" not in resources["limits"]

    assert controller.step()
    jobs = trials(lab, created["id"])
    assert [j.trial for j in jobs] == [0, 1, 2]
    for job in jobs:
        k8s = stand_in.get("Job", job.scheduler_id, NS)
        assert k8s["apiVersion"] == "batch/v1" and k8s["kind"] == "Job"
        assert job.scheduler_id == f"clusterlab-{job.id}" and job.backend == "kubernetes"
        assert {k: k8s["metadata"]["labels"][k] for k in (*USER_LABELS, "clusterlab/job-id")} == {
            **USER_LABELS, "clusterlab/job-id": job.id}
        assert k8s["metadata"]["annotations"]["clusterlab/job-name"] == f"kube_grid_t{job.trial}"
        assert k8s["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "1"
    assert {j.status for j in jobs} == {"queued"}

    for job in jobs:
        stand_in.set_job_status(job.scheduler_id, "running")
    before = len(stand_in.requests_for("GET", "Job"))
    assert controller.step()
    assert len(stand_in.requests_for("GET", "Job")) == before + 1  # one list of the user's Jobs per round
    assert all(request.query["labelSelector"] == "app=clusterlab,clusterlab/user=ada"
               for request in stand_in.requests_for("GET", "Job"))
    assert {(lab.jobs.get(j.id).status, lab.jobs.get(j.id).node) for j in jobs} == {("running", "stand-in-node")}

    quality = {0.001: 0.5, 0.01: 0.9, 0.1: 0.3}
    for job in jobs:
        lr = job.params["options"]["lr"]
        play_epochs(job, {1: quality[lr] - 0.1, 2: quality[lr]}, 2)
        play_end(stand_in, job)
    assert not controller.step()  # every trial told its end: the experiment is over
    done = lab.get(created["id"])
    assert done["status"] == "completed" and done["counts"]["completed"] == 3
    assert done["best"]["params"] == {"options.lr": 0.01} and done["best"]["value"] == 0.9
    assert {lab.jobs.get(j.id).exit_code for j in jobs} == {0}


def test_a_pruned_trial_has_its_job_deleted(lab, stand_in):  # noqa: F811
    created, controller = start(lab, "kube_asha", {"options.lr": [0.01, 0.002, 0.001, 0.0005]}, searcher="grid",
                                epochs=4, early_stopping="asha", divisor=2, max_rungs=2, max_concurrent_trials=4)
    assert controller.step()
    jobs = {j.params["options"]["lr"]: j for j in trials(lab, created["id"])}
    for job in jobs.values():
        stand_in.set_job_status(job.scheduler_id, "running")
    best = jobs[0.01]
    play_epochs(best, {1: 0.8, 2: 0.85}, 4)  # the best reaches the rung (epoch 2) first
    assert controller.step()
    # all below it at the rung, arriving one round after another, best first (ASHA's verdict depends on the
    # order of arrival: the 4th to arrive continues if among the top half of all 4)
    for lr in (0.002, 0.001, 0.0005):
        play_epochs(jobs[lr], {1: lr * 10, 2: lr * 20}, 4)
        assert controller.step()

    for lr, job in jobs.items():
        job = lab.jobs.get(job.id)
        if lr == 0.01:
            assert job.status == "running"
            continue
        assert job.status == "pruned" and job.reason.startswith("stopped early at epoch 2 of 4"), job.to_json()
        [delete] = stand_in.requests_for("DELETE", "Job", name=job.scheduler_id)
        assert (delete.query.get("propagationPolicy") or (delete.body or {}).get("propagationPolicy")) == "Foreground"
        assert stand_in.get("Job", job.scheduler_id, NS) is None and not stand_in.job_pods(job.scheduler_id)
    assert stand_in.get("Job", best.scheduler_id, NS) is not None

    play_epochs(best, {3: 0.9, 4: 0.95}, 4)
    play_end(stand_in, best)
    assert not controller.step()
    done = lab.get(created["id"])
    assert (done["status"], done["counts"]["pruned"], done["counts"]["completed"]) == ("completed", 3, 1)
    assert done["best"]["params"] == {"options.lr": 0.01}


def test_a_trial_killed_by_kubernetes_restarts_as_a_new_job_and_resumes(lab, stand_in):  # noqa: F811
    created, controller = start(lab, "kube_kill", {"options.lr": [0.01]}, searcher="grid", epochs=6,
                                max_concurrent_trials=1)
    assert controller.step()
    [job] = trials(lab, created["id"])
    first = job.scheduler_id
    stand_in.set_job_status(first, "running")
    play_epochs(job, {1: 0.5, 2: 0.6}, 6)
    assert controller.step()

    kill_pod(stand_in, job, oom_killed())  # the container at its memory limit: the kernel's SIGKILL
    assert controller.step()
    job = lab.jobs.get(job.id)
    assert (job.status, job.restarts, job.scheduler_id) == ("queued", 1, f"{first}-r1"), job.to_json()
    assert job.restart_history[0]["reason"] == "out of memory: killed at its memory limit (OOMKilled)"
    created_jobs = [m["metadata"]["name"] for m in stand_in.created("Job")]
    assert created_jobs[-2:] == [first, f"{first}-r1"]  # a Job of its own name: no collision with the old one
    assert stand_in.get("Job", first, NS) is not None  # which stays (failed) until its TTL
    again = stand_in.get("Job", f"{first}-r1", NS)
    assert again["metadata"]["labels"]["clusterlab/job-id"] == job.id
    assert again["spec"]["template"]["spec"]["containers"][0]["command"][3] == str(Path(job.folder) / "job.sh")

    stand_in.set_job_status(job.scheduler_id, "running")
    play_epochs(job, {3: 0.7}, 6)
    assert controller.step()
    kill_pod(stand_in, lab.jobs.get(job.id),
             {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."})
    assert controller.step()
    job = lab.jobs.get(job.id)
    assert (job.restarts, job.scheduler_id) == (2, f"{first}-r2"), job.to_json()
    assert job.restart_history[1]["reason"] == "evicted from its node: The node was low on resource: memory."

    stand_in.set_job_status(job.scheduler_id, "running")
    play_epochs(job, {4: 0.8, 5: 0.85, 6: 0.9}, 6)
    play_end(stand_in, job)
    assert not controller.step()
    done = lab.get(created["id"])
    assert done["status"] == "completed" and done["trials"][0]["restarts"] == 2 and done["best"]["epoch"] == 6
    assert lab.jobs.get(job.id).status == "completed"


def test_the_users_own_exit_status_is_not_retried(lab, stand_in):  # noqa: F811
    created, controller = start(lab, "kube_bug", {"options.lr": [0.01]}, searcher="grid", epochs=3,
                                max_concurrent_trials=1)
    assert controller.step()
    [job] = trials(lab, created["id"])
    stand_in.set_job_status(job.scheduler_id, "failed")  # the container exits 1, its mark not (yet) on our volume
    assert not controller.step()
    job = lab.jobs.get(job.id)
    assert (job.status, job.exit_code, job.restarts, job.reason) == ("failed", 1, 0, "exited with status 1")
    assert len(stand_in.created("Job")) == 2  # the controller's and the trial's: nothing started again
    assert lab.get(created["id"])["status"] == "failed"


def terminated(**state) -> dict:
    return {"containerStatuses": [{"name": "job", "image": IMAGE, "state": {"terminated": state}}]}


@pytest.mark.parametrize("pod_status, reason, restartable", [
    (terminated(exitCode=137, reason="OOMKilled"), "out of memory: killed at its memory limit (OOMKilled)", True),
    ({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}, "evicted from its node: low on memory",
     True),
    ({"phase": "Failed", "reason": "NodeLost", "message": ""}, "its node was lost", True),
    ({"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True",
                                          "reason": "DeletionByTaintManager", "message": "node unreachable"}]},
     "ended by Kubernetes (DeletionByTaintManager): node unreachable", True),
    (terminated(exitCode=137, reason="Error"), "killed by signal 9", True),
    (terminated(exitCode=2, reason="Error"), "exited with status 2", False),
    ({"phase": "Failed", "reason": "DeadlineExceeded"}, "wall time reached", False),
], ids=["oom", "evicted", "node-lost", "disruption", "signal", "own-exit", "wall-time"])
def test_which_ends_kubernetes_inflicted_are_restartable(tmp_path, pod_status, reason, restartable):
    job = a_job(PROFILES[0], folder=str(tmp_path))
    Path(job.folder).mkdir()
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}
    change = kj.job_change(job, failed, {"spec": {"nodeName": "n1"}, "status": pod_status}, True)
    assert change["status"] == "failed" and change["reason"].startswith(reason)
    assert change.get("restartable", False) is restartable
    (Path(job.folder) / "exit_code").write_text("3\n")  # the user's own status on the volume wins
    change = kj.job_change(job, failed, {"status": {"phase": "Failed"}}, True)
    assert (change["reason"], change.get("restartable", False)) == ("exited with status 3", False)


def test_a_job_deleted_behind_our_back_is_not_restarted_and_a_restart_never_reuses_a_name(tmp_path):
    job = a_job(PROFILES[0], folder=str(tmp_path))
    Path(job.folder).mkdir()
    assert "restartable" not in kj.job_change(job, None, None, True)
    assert kj.next_run(Job(id=job.id, scheduler_id="")) == 0
    assert kj.next_run(Job(id=job.id, scheduler_id=f"clusterlab-{job.id}")) == 1
    assert kj.next_run(Job(id=job.id, scheduler_id=f"clusterlab-{job.id}-r7")) == 8
    assert kj.job_name(job.id, 20) == f"clusterlab-{job.id}-r20"
    assert len(kj.job_name(f"{job.id}-controller", 20)) <= 63


def test_the_controller_pod_runs_as_the_servers_account_and_its_trials_are_still_the_users(
        lab, stand_in, monkeypatch):  # noqa: F811
    """The controller's pod submits trials to the API server: it alone gets the user's server's account and
    token; it learns whose jobs they are from CLUSTERLAB_K8S_USER (the hub's JUPYTERHUB_USER is not a job's)."""
    created, _ = start(lab, "kube_account", {"options.lr": [0.01]}, searcher="grid", epochs=1)
    [controller_job] = stand_in.created("Job")
    pod = controller_job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "clusterlab-jobs" and pod["automountServiceAccountToken"] is True
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["CLUSTERLAB_K8S_USER"] == "ada" and "JUPYTERHUB_USER" not in env

    # inside that pod: the job's environment, not the hub's
    monkeypatch.delenv("JUPYTERHUB_USER")
    monkeypatch.setenv("CLUSTERLAB_K8S_USER", env["CLUSTERLAB_K8S_USER"])
    controller = Controller(Path(lab.get_row(created["id"]).folder))
    lab.controllers.append(controller)
    assert controller.step()
    [trial] = trials(lab, created["id"])
    k8s = stand_in.get("Job", trial.scheduler_id, NS)
    assert k8s["metadata"]["labels"]["clusterlab/user"] == "ada"
    trial_pod = k8s["spec"]["template"]["spec"]
    assert trial_pod["automountServiceAccountToken"] is False and "serviceAccountName" not in trial_pod


def test_without_the_servers_account_no_controller_is_started(lab):
    lab.jobs.backend.service_account = ""  # a server the spawner did not tell its account
    with pytest.raises(JobError) as refused:
        lab.create(fake_request("kube_no_account", {"options.lr": [0.01]}, profile="cpu-small", searcher="grid"))
    assert refused.value.status == 502 and "service account" in refused.value.message
    assert lab.list()[1] == 0 and not any((lab.root).iterdir())  # nothing half-made
