"""The job service's ``kubernetes`` backend: Job manifests, and the client against a STAND-IN API server.

No real Kubernetes API server can run here (NOTES-kubernetes.md), so:

- every Job manifest the backend builds, for every size of ``hub_config/profiles.yaml``,
  is checked against the official Kubernetes schemas (kubernetes-validate, strict)
  for 1.30 and the newest version it ships;
- the command that runs ``job.sh`` is run for real with bash (exit status, log);
- the client (kubernetes_asyncio) talks to ``tests/kube_api_stand_in.py``, an aiohttp
  STAND-IN for the API server on loopback, NOT Kubernetes: it creates, lists, deletes
  Jobs and serves pod logs the way the real API answers, and records every request,
  so that the tests can count list calls and read what was sent. Nothing runs the
  job's script there: a test plays the job (writes ``exit_code``) and the Job
  controller (``set_job_status``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
from clusterlab_server.backends import kubernetes as kj
from clusterlab_server.backends import BackendError
from clusterlab_server.service import JobError, JobService, Settings
from clusterlab_server.store import Job
from clusterlab_spawner.options import Choice
from clusterlab_spawner.profiles import load_profiles
from kube_api_stand_in import KubeAPIStandIn
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
PROFILES = load_profiles(REPO / "hub_config" / "profiles.yaml")
NS = "clusterlab-jobs"
IMAGE = "registry.example.org/clusterlab/singleuser:1.0"
VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
HOSTILE = "x; rm -rf ~ $(id) `reboot` \"'\n|&>"


def a_job(profile, name="train_1", job_id="20261125-110852-c2cab9", params=None, folder="/home/ada/.clusterlab/jobs"):
    return Job(id=job_id, name=name, template="python-script", template_version="1", params=params or {},
               profile=profile.id, hours=profile.default_hours, backend="kubernetes",
               folder=f"{folder}/{job_id}", status="queued", scheduler_id=kj.JOB_PREFIX + job_id, node="")


def manifest_for(profile, **overrides):
    job = overrides.pop("job", None) or a_job(profile)
    folder = Path(job.folder)
    values = dict(user="ada", namespace=NS, image=IMAGE, pvc_name="claim-ada", home="/home/ada",
                  script=str(folder / "job.sh"), log_path=str(folder / "log.txt"),
                  env={"PATH": "/opt/conda/bin:/usr/bin", "LANG": "C.UTF-8"}, uid=1000, gid=100)
    values.update(overrides)
    return kj.make_job(job, Choice(profile, job.hours), **values)


def pod_spec(manifest):
    return manifest["spec"]["template"]["spec"]


# ----- the manifests ------------------------------------------------------------------------


def test_the_newest_schema_is_newer_than_1_30():
    assert Version(VERSIONS[-1]) > Version("1.30.0")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("profile", PROFILES, ids=[p.id for p in PROFILES])
def test_every_size_makes_a_job_that_kubernetes_accepts(profile, version):
    kubernetes_validate.validate(manifest_for(profile), version, strict=True)


def test_a_job_asks_for_its_size_and_runs_on_the_users_volume():
    gpu = next(p for p in PROFILES if p.gpus)
    manifest = manifest_for(gpu)
    meta, spec, pod = manifest["metadata"], manifest["spec"], pod_spec(manifest)
    assert meta["name"] == "clusterlab-20261125-110852-c2cab9" and meta["namespace"] == NS
    labels = {"app": "clusterlab", "clusterlab/user": "ada", "clusterlab/job-id": "20261125-110852-c2cab9"}
    assert meta["labels"] == labels and manifest["spec"]["template"]["metadata"]["labels"] == labels
    assert spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] == kj.DEFAULT_TTL_SECONDS
    assert pod["restartPolicy"] == "Never"
    assert pod["activeDeadlineSeconds"] == int(gpu.default_hours * 3600)  # the wall time, from the pod's start
    container = pod["containers"][0]
    assert container["image"] == IMAGE
    memory = f"{gpu.memory_gb:g}Gi"
    assert container["resources"] == {
        "requests": {"cpu": str(gpu.cpus), "memory": memory},
        "limits": {"cpu": str(gpu.cpus), "memory": memory, "nvidia.com/gpu": str(gpu.gpus)},
    }
    assert pod["nodeSelector"] == gpu.kubernetes["node_selector"]
    assert pod["tolerations"] == gpu.kubernetes["tolerations"]
    assert {"name": "home", "persistentVolumeClaim": {"claimName": "claim-ada"}} in pod["volumes"]
    shm = f"{int(gpu.memory_gb * 1024 / 2)}Mi"  # half the memory, as for the user's server
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}} in pod["volumes"]
    assert container["volumeMounts"] == [{"name": "home", "mountPath": "/home/ada"},
                                         {"name": "dshm", "mountPath": "/dev/shm"}]
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["runAsGroup"] == 100
    assert pod["automountServiceAccountToken"] is False


def test_a_cpu_size_asks_for_no_gpu_and_any_node():
    cpu = next(p for p in PROFILES if not p.gpus)
    pod = pod_spec(manifest_for(cpu))
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
    assert "nodeSelector" not in pod and "tolerations" not in pod


def test_a_profile_image_wins_and_odd_sizes_are_quantities():
    profile = PROFILES[0].__class__(id="half", display_name="half", cpus=2, memory_gb=1.5, max_hours=1,
                                    default_hours=0.5, kubernetes={"image": "example.org/other:2", "shm_gb": 0.25})
    manifest = manifest_for(profile)
    container = pod_spec(manifest)["containers"][0]
    assert container["image"] == "example.org/other:2"
    assert container["resources"]["limits"]["memory"] == "1536Mi"
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}} in pod_spec(manifest)["volumes"]
    assert pod_spec(manifest)["activeDeadlineSeconds"] == 1800
    kubernetes_validate.validate(manifest, VERSIONS[-1], strict=True)


def test_the_servers_own_pod_settings_stay_out_of_the_job():
    env = {"PATH": "/usr/bin", "HOSTNAME": "jupyter-ada", "KUBERNETES_SERVICE_HOST": "10.0.0.1",
           "CUDA_VISIBLE_DEVICES": "0", "MEM_LIMIT": "2147483648", "CPU_GUARANTEE": "1.0", "CONDA_DIR": "/opt/conda"}
    names = [e["name"] for e in pod_spec(manifest_for(PROFILES[0], env=env))["containers"][0]["env"]]
    assert names == ["CONDA_DIR", "PATH"]


def test_hostile_names_and_params_never_reach_the_command():
    profile = PROFILES[0]
    job = a_job(profile, name=HOSTILE, params={"script": "$(param-1)", "args": ["`param-2`"]})
    manifest = manifest_for(profile, job=job)
    command = pod_spec(manifest)["containers"][0]["command"]
    folder = Path(job.folder)
    assert command == ["/bin/bash", "-c", kj.RUNNER, str(folder / "job.sh"), str(folder / "log.txt")]
    assert "$0" in kj.RUNNER and "$1" in kj.RUNNER and "/" + "home" not in kj.RUNNER  # paths only as arguments
    text = json.dumps(manifest)
    assert "param-" not in text  # params are not in the manifest at all (the job reads params.json)
    assert manifest["metadata"]["annotations"]["clusterlab/job-name"] == HOSTILE  # the name is only annotated
    assert HOSTILE not in json.dumps([manifest["metadata"]["labels"], pod_spec(manifest)])


def test_names_that_kubernetes_would_refuse():
    with pytest.raises(ValueError):
        kj.job_name("../../etc")
    odd = kj.label_value("Ada.Lovelace@example.org")
    assert odd != "Ada.Lovelace@example.org" and len(odd) <= 63 and kj.LABEL_VALUE.match(odd)
    assert kj.label_value("x" * 100) != kj.label_value("x" * 99)  # truncated, still distinct
    assert kj.label_value("ada") == "ada"


@pytest.mark.parametrize("status", [0, 7])
def test_the_command_keeps_the_scripts_exit_status_and_writes_both_logs(tmp_path, status):
    script, log = tmp_path / "job.sh", tmp_path / "log.txt"
    script.write_text(f"echo out\necho err >&2\nexit {status}\n")
    command = pod_spec(manifest_for(PROFILES[0], script=str(script), log_path=str(log)))["containers"][0]["command"]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == status  # pipefail: not tee's 0
    assert result.stdout == "out\nerr\n"  # the pod's log
    assert log.read_text() == "out\nerr\n"


# ----- reading what Kubernetes says (plain dicts, as the API returns them) -----------------------


def test_why_a_pod_waits_in_words():
    unschedulable = {"status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}}
    assert kj.waiting_reason(unschedulable) == (
        "waiting for a node with room (0/3 nodes are available: 3 Insufficient nvidia.com/gpu.)")
    pulling = {"spec": {"nodeName": "n1"}, "status": {"phase": "Pending", "containerStatuses": [
        {"name": "job", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}}
    assert kj.waiting_reason(pulling) == "the image cannot be pulled (ImagePullBackOff): Back-off pulling image"
    assert kj.waiting_reason(None) == "waiting for Kubernetes to create its pod"


def failed_job(reason):
    return {"metadata": {"name": "clusterlab-x"},
            "status": {"conditions": [{"type": "Failed", "status": "True", "reason": reason, "message": "m"}]}}


def test_the_wall_time_and_the_memory_limit_are_said_so(tmp_path):
    job = a_job(PROFILES[0], folder=str(tmp_path))
    Path(job.folder).mkdir()
    deadline_pod = {"spec": {"nodeName": "n1"}, "status": {"phase": "Failed", "reason": "DeadlineExceeded"}}
    change = kj.job_change(job, failed_job("BackoffLimitExceeded"), deadline_pod, True)
    assert change["status"] == "failed" and change["reason"] == f"wall time reached ({job.hours:g} h)"
    assert change["node"] == "n1"
    assert kj.job_change(job, failed_job("DeadlineExceeded"), None, True)["reason"].startswith("wall time reached")
    oom = {"status": {"phase": "Failed", "containerStatuses": [
        {"name": "job", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}}
    assert "OOMKilled" in kj.job_change(job, failed_job("BackoffLimitExceeded"), oom, True)["reason"]
    (Path(job.folder) / "cancelled").touch()  # a cancel is a cancel, whatever Kubernetes did next
    assert kj.job_change(job, failed_job("DeadlineExceeded"), deadline_pod, True)["status"] == "cancelled"


def test_a_complete_job_whose_mark_is_not_visible_is_completed(tmp_path):
    job = a_job(PROFILES[0], folder=str(tmp_path))
    complete = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    change = kj.job_change(job, complete, None, False)
    assert (change["status"], change["exit_code"]) == ("completed", 0)
    deleting = {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert kj.job_change(job, deleting, None, False)["status"] == "failed"


# ----- the backend against the STAND-IN API server -------------------------------------------------


@pytest.fixture
def stand_in(tmp_path):
    with KubeAPIStandIn(namespace=NS, workdir=tmp_path) as server:
        yield server


@pytest.fixture
def home(tmp_path, monkeypatch, stand_in):
    """A user's home as their server sees it (on Kubernetes: their volume), and the hub's environment."""
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    (home / "work" / "hello.py").write_text("print('hello')\n")
    for key in ("KUBERNETES_SERVICE_HOST", "CLUSTERLAB_K8S_IMAGE", "JUPYTER_IMAGE_SPEC"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {"KUBECONFIG": stand_in.kubeconfig_path, "CLUSTERLAB_K8S_NAMESPACE": NS,
                       "JUPYTERHUB_USER": "ada", "CLUSTERLAB_JOB_IMAGE": IMAGE,
                       "CLUSTERLAB_K8S_HOME_PATH": str(home), "CLUSTERLAB_K8S_HOME_PVC": "claim-ada"}.items():
        monkeypatch.setenv(key, value)
    return home


@pytest.fixture
def service(home):
    service = JobService(Settings(
        jobs_root=home / ".clusterlab" / "jobs", workspace=home / "work",
        template_paths=[REPO / "templates"], profiles_file=REPO / "hub_config" / "profiles.yaml",
        backend="kubernetes",
    ))
    yield service
    service.backend.close()


def submit(service, name="hello", profile="cpu-small"):
    return service.submit({"template": "python-script", "name": name, "params": {"script": "hello.py"},
                           "profile": profile})


def lists(stand_in):
    return len(stand_in.requests_for("GET", "Job")), len(stand_in.requests_for("GET", "Pod"))


def test_submit_creates_the_job_the_builder_made(service, stand_in):
    job = submit(service, profile="gpu-1")
    assert service.backend.name == job.backend == "kubernetes"
    assert job.scheduler_id == f"clusterlab-{job.id}" and job.status == "queued"
    [sent] = stand_in.created("Job")
    folder = Path(job.folder)
    assert sent == service.backend.manifest(job, folder / "job.sh", folder / "log.txt", service._job_environment())
    for version in VERSIONS:
        kubernetes_validate.validate(sent, version, strict=True)
    container = pod_spec(sent)["containers"][0]
    assert container["command"][3:] == [str(folder / "job.sh"), str(folder / "log.txt")]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert stand_in.job_pods(job.scheduler_id)  # the stand-in's "controller" made its pod


@pytest.mark.parametrize("count", [1, 6])
def test_one_list_of_jobs_per_poll_whatever_the_number_of_jobs(service, stand_in, count):
    jobs = [submit(service, name=f"j{i}") for i in range(count)]

    before = lists(stand_in)
    service.refresh()  # all queued, pods pending: one list of Jobs, one of their pods for the words
    assert (lists(stand_in)[0] - before[0], lists(stand_in)[1] - before[1]) == (1, 1)
    assert {service.get(j.id).reason for j in jobs} == {"starting: pulling the image and mounting the home volume"}

    for job in jobs:
        stand_in.set_job_status(job.scheduler_id, "running")
    service.refresh()
    assert {(service.get(j.id).status, service.get(j.id).node) for j in jobs} == {("running", "stand-in-node")}

    before, requests = lists(stand_in), len(stand_in.requests)
    for _ in range(3):  # running as known: exactly one list call per poll, nothing else
        service.refresh()
    assert lists(stand_in) == (before[0] + 3, before[1]) and len(stand_in.requests) == requests + 3
    for request in stand_in.requests_for("GET", "Job"):
        assert request.query["labelSelector"] == "app=clusterlab,clusterlab/user=ada"


def test_running_then_completed_or_failed(service, stand_in):
    ok, bad = submit(service, name="ok"), submit(service, name="bad")
    for job in (ok, bad):
        stand_in.set_job_status(job.scheduler_id, "running")
    service.refresh()
    assert service.get(ok.id).status == "running" and service.get(ok.id).start_time

    (Path(ok.folder) / "exit_code").write_text("0\n")  # what job.sh writes at its end
    stand_in.set_job_status(ok.scheduler_id, "succeeded")
    (Path(bad.folder) / "exit_code").write_text("3\n")
    stand_in.set_job_status(bad.scheduler_id, "failed")
    service.refresh()
    ok, bad = service.get(ok.id), service.get(bad.id)
    assert (ok.status, ok.exit_code, ok.reason) == ("completed", 0, "")
    assert (bad.status, bad.exit_code, bad.reason) == ("failed", 3, "exited with status 3")
    assert bad.node == "stand-in-node" and ok.end_time and bad.end_time

    before = len(stand_in.requests)
    service.refresh()  # nothing unfinished: no call at all
    assert len(stand_in.requests) == before


def test_a_job_killed_without_a_mark_fails_with_the_containers_status(service, stand_in):
    job = submit(service)
    stand_in.set_job_status(job.scheduler_id, "failed")  # the stand-in's container exits 1
    service.refresh()
    job = service.get(job.id)
    assert (job.status, job.exit_code, job.reason) == ("failed", 1, "exited with status 1")


def test_a_job_deleted_behind_our_back_ends(service, stand_in):
    job = submit(service)
    stand_in.delete_from_outside("Job", job.scheduler_id)
    service.refresh()
    job = service.get(job.id)
    assert (job.status, job.reason) == ("failed", "deleted from Kubernetes before it ended")


def test_the_log_comes_from_the_pod_until_log_txt_is_there(service, stand_in):
    job = submit(service)
    stand_in.set_job_log(job.scheduler_id, "ClusterLab job on stand-in-node\nhello\n")
    before = len(stand_in.requests)
    assert service.log(job.id)["text"] == ""  # queued: no pod log to ask for
    assert len(stand_in.requests) == before

    stand_in.set_job_status(job.scheduler_id, "running")
    service.refresh()
    chunk = service.log(job.id)
    assert chunk["text"] == "ClusterLab job on stand-in-node\nhello\n" and chunk["offset"] == len(chunk["text"])
    assert service.log(job.id, offset=chunk["offset"])["text"] == ""
    assert service.log(job.id, offset=6)["text"] == chunk["text"][6:]
    reads = [r for r in stand_in.requests if r.path.endswith("/log")]
    assert len(reads) == 3 and all(r.query.get("container") == "job" for r in reads)

    (Path(job.folder) / "log.txt").write_text("from the volume\n")  # the job's tee wrote it
    assert service.log(job.id)["text"] == "from the volume\n"


def test_cancel_deletes_the_job_and_its_pod_and_the_job_ends_cancelled(service, stand_in):
    job = submit(service)
    stand_in.set_job_status(job.scheduler_id, "running")
    service.refresh()
    job = service.cancel(job.id)
    assert (job.status, job.reason) == ("cancelled", "cancelled by the user")
    assert (Path(job.folder) / "cancelled").exists()
    [delete] = stand_in.requests_for("DELETE", "Job", name=job.scheduler_id)
    policy = delete.query.get("propagationPolicy") or (delete.body or {}).get("propagationPolicy")
    assert policy == "Foreground"
    assert stand_in.get("Job", job.scheduler_id) is None and not stand_in.job_pods(job.scheduler_id)


def test_a_refused_job_leaves_no_folder_and_no_record(service, stand_in):
    service.backend.image = ""
    with pytest.raises(JobError) as e:
        submit(service)
    assert e.value.status == 502 and "CLUSTERLAB_JOB_IMAGE" in e.value.message
    assert not stand_in.created("Job") and service.store.unfinished() == []
    assert [p.name for p in service.settings.jobs_root.iterdir() if not p.name.startswith("jobs.sqlite")] == []

    service.backend.image = IMAGE
    kubeconfig, service.backend.kubeconfig = service.backend.kubeconfig, "/nonexistent/kubeconfig"
    with pytest.raises(JobError) as e:
        submit(service)
    assert e.value.status == 502
    assert e.value.message.startswith("cannot reach the Kubernetes API server (kubeconfig /nonexistent/kubeconfig)")
    service.backend.kubeconfig = kubeconfig  # mended: the next job goes through
    job = submit(service)
    assert job.status == "queued"
    before = service.store.unfinished()

    folder = Path(job.folder)  # the API server's own refusal, in its words: a first start of a Job that exists
    job.scheduler_id = ""  # (this copy only: a restart names its Job anew, clusterlab-<id>-r1)
    with pytest.raises(BackendError) as e:
        service.backend.submit(job, folder / "job.sh", folder / "log.txt", {})
    assert str(e.value) == (f"Kubernetes refused to create the job: 409 Conflict: "
                            f'jobs "clusterlab-{job.id}" already exists')

    stand_in.stop_thread()  # the API server is gone
    with pytest.raises(JobError) as e:
        submit(service)
    assert e.value.status == 502 and e.value.message.startswith("cannot reach the Kubernetes API server")
    assert [j.id for j in service.store.unfinished()] == [j.id for j in before]
    assert [p.name for p in service.settings.jobs_root.iterdir()
            if not p.name.startswith("jobs.sqlite")] == [j.id for j in before]


def test_an_api_server_that_does_not_answer_changes_nothing(service, stand_in):
    job = submit(service)
    stand_in.stop_thread()
    assert service.refresh() == 0 and service.get(job.id).status == "queued"


def test_the_hubs_environment_picks_and_sets_up_the_backend(home, monkeypatch):
    monkeypatch.setenv("CLUSTERLAB_JOB_BACKEND", "kubernetes")
    monkeypatch.delenv("CLUSTERLAB_K8S_HOME_PVC")
    monkeypatch.delenv("CLUSTERLAB_JOB_IMAGE")
    monkeypatch.setenv("JUPYTER_IMAGE_SPEC", "quay.io/example/lab:2")  # what KubeSpawner sets: the server's image
    service = JobService(Settings.from_environment(jobs_root=home / ".clusterlab" / "jobs", workspace=home / "work"))
    backend = service.backend
    assert (backend.name, backend.namespace, backend.user) == ("kubernetes", NS, "ada")
    assert (backend.pvc_name, backend.home, backend.image) == ("claim-ada", str(home), "quay.io/example/lab:2")
    assert backend.kubeconfig == os.environ["KUBECONFIG"]


def test_jobs_go_to_the_namespace_the_spawner_names_as_the_users_own_account(home, stand_in, monkeypatch):
    """With per-user namespaces: the Job lands in CLUSTERLAB_K8S_NAMESPACE, and the user's
    service account (only the Role the spawner makes) is enough for submit, poll, log and cancel."""
    from clusterlab_spawner.kubernetes import user_rbac_objects

    stand_in.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "user-ada"}})
    for manifest in user_rbac_objects("user-ada", "clusterlab-jobs"):
        stand_in.add(manifest)
    monkeypatch.setenv("KUBECONFIG", stand_in.kubeconfig_for("user-ada", "clusterlab-jobs"))
    monkeypatch.setenv("CLUSTERLAB_K8S_NAMESPACE", "user-ada")
    service = JobService(Settings(
        jobs_root=home / ".clusterlab" / "jobs", workspace=home / "work",
        template_paths=[REPO / "templates"], profiles_file=REPO / "hub_config" / "profiles.yaml",
        backend="kubernetes",
    ))
    try:
        job = submit(service)
        [created] = stand_in.objects("Job")
        assert created["metadata"]["namespace"] == "user-ada"
        stand_in.set_job_status(job.scheduler_id, "running", "user-ada")
        service.refresh()
        assert service.get(job.id).status == "running"  # its list calls were allowed
        stand_in.set_job_log(job.scheduler_id, "epoch 1\n", "user-ada")
        assert service.backend.log_text(service.get(job.id), 1000) == "epoch 1\n"
        service.cancel(job.id)
        assert not stand_in.objects("Job", "user-ada")
        # every call it made stayed in the user's namespace
        assert all("/namespaces/user-ada/" in r.path for r in stand_in.requests if r.path.startswith("/api"))
    finally:
        service.backend.close()


# ----- inputs: dataset versions and earlier jobs' outputs, as read-only mounts -------------------------


def test_inputs_are_read_only_subpath_mounts_of_the_home_and_the_site_volumes(service, stand_in, home, tmp_path,
                                                                              monkeypatch):
    site = tmp_path / "site-datasets"
    monkeypatch.setenv("CLUSTERLAB_SITE_DATASETS", str(site))
    monkeypatch.setenv("CLUSTERLAB_K8S_SITE_DATASETS_PVC", "clusterlab-datasets")
    service.settings.site_datasets = site
    (home / "work" / "shapes").mkdir()
    (home / "work" / "shapes" / "a.csv").write_text("x\n1\n")
    mine = service.datasets.create({"name": "shapes", "folder": "shapes"})
    service.datasets.create({"name": "reference", "folder": "shapes"}, site=True)
    service.backend.site_datasets, service.backend.site_datasets_pvc = str(site), "clusterlab-datasets"

    job = service.submit({"template": "python-script", "name": "mounts", "params": {"script": "hello.py"},
                          "inputs": [{"dataset": "shapes", "version": 1, "as": "data"},
                                     {"dataset": "reference", "as": "ref"}]})
    [sent] = stand_in.created("Job")
    for version in VERSIONS:
        kubernetes_validate.validate(sent, version, strict=True)
    spec = pod_spec(sent)
    mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    folder = Path(job.folder)
    data, ref = mounts[str(folder / "input" / "data")], mounts[str(folder / "input" / "ref")]
    assert data == {"name": "home", "mountPath": str(folder / "input" / "data"), "readOnly": True,
                    "subPath": Path(mine["path"]).relative_to(home).as_posix()}
    assert ref["name"] == "site-datasets" and ref["readOnly"] and ref["subPath"] == "versions/reference/1/files"
    assert {"name": "site-datasets", "persistentVolumeClaim": {"claimName": "clusterlab-datasets",
                                                                "readOnly": True}} in spec["volumes"]
    # mount points, not links: the pod sees the volume's folder, read-only
    assert (folder / "input" / "data").is_dir() and not (folder / "input" / "data").is_symlink()


def test_a_site_dataset_on_no_volume_of_the_pod_is_refused_and_leaves_no_job(service, stand_in, tmp_path,
                                                                            monkeypatch, home):
    site = tmp_path / "site-datasets"
    service.settings.site_datasets = site
    service.backend.site_datasets, service.backend.site_datasets_pvc = str(site), ""
    (home / "work" / "shapes").mkdir()
    (home / "work" / "shapes" / "a.csv").write_text("x\n1\n")
    service.datasets.create({"name": "reference", "folder": "shapes"}, site=True)
    with pytest.raises(JobError) as refused:
        service.submit({"template": "python-script", "name": "nowhere", "params": {"script": "hello.py"},
                        "inputs": [{"dataset": "reference"}]})
    assert refused.value.status == 502 and "CLUSTERLAB_K8S_SITE_DATASETS_PVC" in refused.value.message
    assert not stand_in.created("Job") and service.store.list()[1] == 0
    assert [p.name for p in service.settings.jobs_root.iterdir() if not p.name.startswith("jobs.sqlite")] == []
