"""Jobs as Kubernetes ``batch/v1`` Jobs: a pure manifest builder, then one thin client.

:func:`make_job` is the whole of this backend's knowledge (as ``make_pod`` is
KubeSpawner's, in its ``objects.py``): a validated size and a few paths in, a
plain Job dict out, tested against the official schemas without a cluster.

The Job's pod runs the same ``job.sh`` the service writes for every backend,
from the user's own persistent volume (``claim-<user>``), mounted at the same
path as in the user's server, so every path in the script holds in the pod:

- the command is an argument list; the script and log paths travel as
  positional arguments (``$0``, ``$1``), never inside the shell text, and no
  user text is in it at all (the job's name only goes into an annotation);
- the output goes to ``log.txt`` in the job folder *and* to the pod's stdout
  (``tee``), so ``kubectl logs`` and the pod log API show it too; with
  ``pipefail`` the container exits with the script's own status;
- the script writes ``exit_code`` and a cancel leaves a ``cancelled`` mark, as
  on the other backends, so how a job ended is known even after Kubernetes has
  deleted the Job (``ttlSecondsAfterFinished``).

:class:`KubernetesBackend` talks to the API server with kubernetes_asyncio on
one private event-loop thread (the backend API is synchronous and is called
both from worker threads and from the server's own event loop): one create per
job, one list of the user's Jobs per poll (label selector), plus one list of
their pods only in the polls that need a pod's words (why a job waits, the
node it runs on, why it failed), delete with propagation, and the pod's log.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import json
import math
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from clusterlab_spawner.availability import Availability
from clusterlab_spawner.options import Choice
from clusterlab_spawner.profiles import Profile

from .common import KILLED_BY_SIGNAL, BackendError, ended_status
from ..store import Job, utcnow

JOB_PREFIX = "clusterlab-"
CONTAINER = "job"
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_TTL_SECONDS = 24 * 3600  # a finished Job stays this long for kubectl; its folder keeps the record
SHM_FRACTION = 0.5  # /dev/shm's size, unless the profile sets kubernetes.shm_gb (as for the user's server)

# Runs ``job.sh`` ($0) with its output appended to ``log.txt`` ($1) and copied to the
# pod's stdout. ``pipefail``: the container's exit status is the script's (or tee's, if
# the log cannot be written). As PID 1, bash would ignore the kubelet's SIGTERM (on a
# deletion or the deadline): the trap passes it on to the script and its children.
RUNNER = (
    'set -o pipefail; trap "trap - TERM; kill -TERM 0; wait" TERM; '
    '/bin/bash "$0" 2>&1 | tee -a "$1" & wait $!'
)

# the server's environment that is wrong in another pod: its host name, its API
# address, its own GPU grant and size (KubeSpawner's CPU_/MEM_ variables)
DROPPED_ENV = re.compile(
    r"^(HOSTNAME|KUBERNETES_.*|CUDA_VISIBLE_DEVICES|NVIDIA_VISIBLE_DEVICES|(CPU|MEM)_(LIMIT|GUARANTEE))$"
)
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
JOB_ID = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# ----- the pure part ------------------------------------------------------------------------


def label_value(text: str) -> str:
    """``text`` itself when Kubernetes takes it as a label value, else a safe, unique stand-in."""
    if len(text) <= 63 and LABEL_VALUE.match(text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.")[:54].rstrip("-_.")
    return f"{safe}-{digest}" if safe else f"x-{digest}"


def job_name(job_id: str, run: int = 0) -> str:
    """The Job's name: ``clusterlab-<id>`` (ids are ``20261125-110852-c2cab9``: DNS-1123 already);
    ``clusterlab-<id>-r<run>`` for the ``run``-th start again of the same job (a restart after a kill)."""
    name = JOB_PREFIX + job_id + (f"-r{run}" if run else "")
    if not JOB_ID.match(job_id) or len(name) > 63:
        raise ValueError(f"job id {job_id[:80]!r} cannot name a Kubernetes Job")
    return name


def next_run(job: Job) -> int:
    """Which start of ``job`` a submit is: 0 the first; a restart (``scheduler_id`` still names the Job of the
    run before, whose name Kubernetes keeps until its TTL) the one after it, so that the names never collide."""
    before = job.scheduler_id or ""
    base = JOB_PREFIX + job.id
    if not before.startswith(base):
        return 0
    rest = before[len(base):]
    if rest == "":
        return 1
    found = re.fullmatch(r"-r(\d+)", rest)
    return int(found.group(1)) + 1 if found else 0


def memory_quantity(memory_gb: float) -> str:
    """GiB as a Kubernetes quantity: ``16Gi``, or ``1536Mi`` for 1.5."""
    if float(memory_gb).is_integer():
        return f"{int(memory_gb)}Gi"
    return f"{math.ceil(memory_gb * 1024)}Mi"


def shm_quantity(profile: Profile) -> str:
    """The memory-backed /dev/shm: the profile's ``kubernetes.shm_gb``, else half its memory (in Mi)."""
    return f"{max(1, round(profile.shm_gb(SHM_FRACTION) * 1024))}Mi"


def labels_for(user: str, job_id: str = "") -> dict[str, str]:
    labels = {"app": "clusterlab", "clusterlab/user": label_value(user)}
    if job_id:
        labels["clusterlab/job-id"] = job_id
    return labels


def user_selector(user: str) -> str:
    """The label selector of every Job (and pod) of ``user``: one list call finds them all."""
    return ",".join(f"{key}={value}" for key, value in labels_for(user).items())


def job_env(env: dict[str, str]) -> list[dict[str, str]]:
    """The service's environment for the job, less what only holds in the server's own pod."""
    return [{"name": key, "value": str(value)} for key, value in sorted(env.items())
            if ENV_NAME.match(key) and not DROPPED_ENV.match(key)]


def make_job(
    job: Job,
    choice: Choice,
    *,
    user: str,
    namespace: str,
    image: str,
    pvc_name: str,
    home: str,
    script: str,
    log_path: str,
    env: dict[str, str] | None = None,
    uid: int | None = None,
    gid: int | None = None,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    run: int = 0,
    service_account: str = "",
    input_mounts: list[dict] | None = None,
    extra_volumes: list[dict] | None = None,
) -> dict[str, Any]:
    """A ``batch/v1`` Job that runs ``script`` for ``job`` with the size of ``choice``.

    ``image``: the profile's ``kubernetes.image`` wins over it. ``pvc_name`` is
    mounted at ``home`` (the job folder must be under it). ``uid``/``gid``: whom
    the pod runs as (the user's server's own ids). The wall time is the pod's
    ``activeDeadlineSeconds``: it counts from when the pod starts on a node, as
    Slurm's time limit does, not from submission (a Job-level deadline would
    also count the time spent waiting for room). ``run``: which start of the
    job this is (0 the first, 1.. its restarts), in the Job's name.
    """
    profile: Profile = choice.profile
    kube = profile.kubernetes or {}
    name = job_name(job.id, run)
    labels = labels_for(user, job.id)
    annotations = {"clusterlab/job-name": job.name, "clusterlab/template": job.template,
                   "clusterlab/profile": profile.id}
    memory = memory_quantity(profile.memory_gb)
    requests = {"cpu": str(profile.cpus), "memory": memory}
    limits = dict(requests)
    if profile.gpus:
        limits["nvidia.com/gpu"] = str(profile.gpus)  # extended resources: the limit is the request

    security: dict[str, Any] = {}
    if uid is not None:
        security.update(runAsUser=uid, runAsNonRoot=uid != 0)
    if gid is not None:
        security.update(runAsGroup=gid, fsGroup=gid, fsGroupChangePolicy="OnRootMismatch")

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": max(1, choice.seconds),
        # a job has no business with the API server; an experiment's controller submits its trials there,
        # with the user's server's own account (the Role of its namespace), and nothing more
        "automountServiceAccountToken": bool(service_account),
        "enableServiceLinks": False,
        "securityContext": security,
        "containers": [{
            "name": CONTAINER,
            "image": kube.get("image") or image,
            "command": ["/bin/bash", "-c", RUNNER, script, log_path],
            "workingDir": home,
            "env": job_env(env or {}),
            "resources": {"requests": requests, "limits": limits},
            "securityContext": {"allowPrivilegeEscalation": False},
            "volumeMounts": [
                {"name": "home", "mountPath": home},
                {"name": "dshm", "mountPath": "/dev/shm"},
                # the job's inputs, read-only at input/<as>/ (a dataset version or an earlier job's output)
                *(input_mounts or []),
            ],
        }],
        "volumes": [
            {"name": "home", "persistentVolumeClaim": {"claimName": pvc_name}},
            # PyTorch data loaders share batches through /dev/shm (a container's default is 64 MB);
            # its pages count against the memory limit
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_quantity(profile)}},
            *(extra_volumes or []),
        ],
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    if kube.get("node_selector"):
        pod_spec["nodeSelector"] = dict(kube["node_selector"])
    if kube.get("tolerations"):
        pod_spec["tolerations"] = [dict(t) for t in kube["tolerations"]]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
        "spec": {
            "backoffLimit": 0,  # a failed job is reported, not silently run again
            "ttlSecondsAfterFinished": ttl_seconds,
            "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec},
        },
    }


# ----- reading what Kubernetes says -----------------------------------------------------------

WAITING_WORDS = {
    "ContainerCreating": "starting: pulling the image and mounting the home volume",
    "PodInitializing": "starting: pulling the image and mounting the home volume",
    "ImagePullBackOff": "the image cannot be pulled (ImagePullBackOff)",
    "ErrImagePull": "the image cannot be pulled (ErrImagePull)",
    "InvalidImageName": "the image name is not valid (InvalidImageName)",
    "CreateContainerConfigError": "Kubernetes cannot set up the container (CreateContainerConfigError)",
    "CreateContainerError": "Kubernetes cannot create the container (CreateContainerError)",
}


def _condition(obj: dict, kind: str) -> dict | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def _finished(k8s_job: dict) -> tuple[str, dict | None]:
    """("succeeded" | "failed" | "", the condition that says so)."""
    for kind in ("Complete", "SuccessCriteriaMet"):
        if (condition := _condition(k8s_job, kind)) is not None:
            return "succeeded", condition
    for kind in ("Failed", "FailureTarget"):
        if (condition := _condition(k8s_job, kind)) is not None:
            return "failed", condition
    return "", None


def _container_state(pod: dict) -> dict:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return status.get("state") or {}
    return {}


def waiting_reason(pod: dict | None) -> str:
    """Why a pod has not started, in words."""
    if pod is None:
        return "waiting for Kubernetes to create its pod"
    scheduled = next((c for c in (pod.get("status") or {}).get("conditions") or []
                      if c.get("type") == "PodScheduled"), None)
    if scheduled is not None and scheduled.get("status") == "False":
        message = (scheduled.get("message") or "").strip()
        if scheduled.get("reason") == "Unschedulable":
            return "waiting for a node with room" + (f" ({message})" if message else "")
        return f"waiting to be scheduled ({scheduled.get('reason') or 'Kubernetes'})"
    waiting = _container_state(pod).get("waiting") or {}
    reason = waiting.get("reason") or ""
    if reason:
        words = WAITING_WORDS.get(reason, f"Kubernetes: {reason}")
        message = (waiting.get("message") or "").strip()
        return f"{words}: {message}" if message and reason not in ("ContainerCreating", "PodInitializing") else words
    if not (pod.get("spec") or {}).get("nodeName"):
        return "waiting to be scheduled"
    return "starting"


def pod_job_name(pod: dict) -> str:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    name = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")
    if not name and labels.get("clusterlab/job-id"):
        name = JOB_PREFIX + labels["clusterlab/job-id"]
    return name or ""


# a pod's status.reason when Kubernetes itself ended it: not the job's doing, so it is started again
POD_DISRUPTIONS = {
    "Evicted": "evicted from its node",
    "NodeLost": "its node was lost",
    "Shutdown": "its node shut down",
    "Terminated": "its node shut down",
    "Preempting": "preempted by a pod of higher priority",
}


def disruption(pod: dict | None) -> str:
    """Why Kubernetes ended the pod from outside (evicted, its node lost or shut down, preempted), in words;
    '' when it did not."""
    status = (pod or {}).get("status") or {}
    message = (status.get("message") or "").strip()
    words = POD_DISRUPTIONS.get(status.get("reason") or "")
    if words is None:
        target = _condition(pod or {}, "DisruptionTarget")  # the pod's own condition (Kubernetes 1.26+)
        if target is None:
            return ""
        words, message = f"ended by Kubernetes ({target.get('reason') or 'DisruptionTarget'})", (
            target.get("message") or "").strip()
    return f"{words}: {message}"[:500] if message else words


def job_change(job: Job, k8s_job: dict | None, pod: dict | None, pods_known: bool) -> dict:
    """What our record of ``job`` becomes, from its Kubernetes Job and (if listed) its pod.

    ``pods_known``: the pods were listed in this poll (``pod`` None then means none exists).
    ``restartable`` (the job service starts it again): an end Kubernetes inflicted (OOMKilled,
    evicted, its node lost, a signal), never the user's own exit status, the wall time, or
    someone deleting the Job.
    """
    if k8s_job is None or (k8s_job.get("metadata") or {}).get("deletionTimestamp"):
        change = ended_status(Path(job.folder), "deleted from Kubernetes before it ended")
        if change["exit_code"] is None:
            change.pop("restartable", None)  # deleted by someone (kubectl delete): their decision
        return change
    node = ((pod or {}).get("spec") or {}).get("nodeName") or ""
    outcome, condition = _finished(k8s_job)
    if outcome:
        change = ended_status(Path(job.folder))
        if node:
            change["node"] = node  # where it ran, even if we never saw it running
        if change["status"] in ("cancelled", "pruned"):
            return change
        if outcome == "succeeded" and change["exit_code"] is None:
            # the volume as this server sees it has no mark yet; the container's status is the script's
            change.update(status="completed", exit_code=0, reason="")
            return change
        if outcome == "failed":
            terminated = _container_state(pod or {}).get("terminated") or {}
            reasons = {condition.get("reason"), ((pod or {}).get("status") or {}).get("reason")}
            if "DeadlineExceeded" in reasons:
                change.update(status="failed", reason=f"wall time reached ({job.hours:g} h)")
                change.pop("restartable", None)  # the hours asked for, as Slurm's TIMEOUT
            elif terminated.get("reason") == "OOMKilled":
                change.update(status="failed", reason="out of memory: killed at its memory limit (OOMKilled)",
                              restartable=True)
            elif disruption(pod):
                change.update(status="failed", reason=disruption(pod), restartable=True)
            elif change["exit_code"] is None:
                code = terminated.get("exitCode")
                if isinstance(code, int) and code != 0:
                    # the volume as this server sees it has no mark yet: the container's status is the script's
                    change["exit_code"] = code
                    if code > KILLED_BY_SIGNAL:
                        change.update(reason=f"killed by signal {code - KILLED_BY_SIGNAL}", restartable=True)
                    else:
                        change["reason"] = f"exited with status {code}"
                        change.pop("restartable", None)  # the user's own error
                else:
                    why = condition.get("message") or condition.get("reason") or "the pod failed"
                    change["reason"] = f"Kubernetes: {why}"
        return change
    if not pods_known:
        return {}  # still running as we last saw it
    phase = ((pod or {}).get("status") or {}).get("phase")
    if phase == "Running":
        return {"status": "running", "node": node, "reason": "", "start_time": job.start_time or utcnow()}
    if pod is None or phase == "Pending":
        return {"status": "queued", "reason": waiting_reason(pod)[:500]}
    return {}  # the pod has ended and the Job will say how on the next poll


def needs_pod(job: Job, k8s_job: dict | None) -> bool:
    """Only a pod says why a job waits, where it runs and why it failed."""
    if k8s_job is None:
        return False
    outcome, _ = _finished(k8s_job)
    if outcome == "failed":
        return True
    return not outcome and (job.status != "running" or not job.node)


# ----- the client ---------------------------------------------------------------------------


def _default_namespace() -> str:
    try:
        return NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        return "default"


def _default_pvc(user: str) -> str:
    try:  # KubeSpawner's default claim name for a user's default server: claim-{user_server}
        from kubespawner.slugs import safe_slug

        return f"claim-{safe_slug(user)}"
    except ImportError:
        return f"claim-{label_value(user).lower()}"


class KubernetesBackend:
    """Jobs as ``batch/v1`` Jobs in the user's namespace, on the user's home volume.

    Every setting has a default from the environment the hub gives a server it
    spawns on Kubernetes (``ClusterKubeSpawner.get_env``):
    ``CLUSTERLAB_K8S_NAMESPACE`` (else the service account's namespace),
    ``CLUSTERLAB_K8S_HOME_PVC`` (else KubeSpawner's ``claim-<user>``),
    ``CLUSTERLAB_K8S_HOME_PATH`` (else ``HOME``), the image:
    ``CLUSTERLAB_JOB_IMAGE`` (a site's choice for jobs), else
    ``CLUSTERLAB_K8S_IMAGE`` or ``JUPYTER_IMAGE_SPEC`` (the server's own
    image; a profile's ``kubernetes.image`` wins over all), and
    ``JUPYTERHUB_USER``. The API server: in-cluster when
    ``KUBERNETES_SERVICE_HOST`` is set, else the kubeconfig (``KUBECONFIG``).
    """

    name = "kubernetes"
    mounts_inputs = True  # inputs are read-only subPath mounts of the volumes, not links in the job folder

    def __init__(self, profiles_file: Path, *, namespace: str | None = None, user: str | None = None,
                 image: str | None = None, pvc_name: str | None = None, home: str | None = None,
                 kubeconfig: str | None = None, ttl_seconds: int = DEFAULT_TTL_SECONDS,
                 timeout: float = 30):
        env = os.environ
        self.profiles_file = Path(profiles_file)
        # CLUSTERLAB_K8S_USER: inside a job (an experiment's controller), whose jobs these are
        self.user = user or env.get("CLUSTERLAB_K8S_USER") or env.get("JUPYTERHUB_USER") or getpass.getuser()
        # the user's server's account, which the spawner names: an experiment's controller pod runs as it
        self.service_account = env.get("CLUSTERLAB_K8S_SERVICE_ACCOUNT", "")
        self.namespace = namespace or env.get("CLUSTERLAB_K8S_NAMESPACE") or _default_namespace()
        self.image = (image or env.get("CLUSTERLAB_JOB_IMAGE") or env.get("CLUSTERLAB_K8S_IMAGE")
                      or env.get("JUPYTER_IMAGE_SPEC") or "")
        self.pvc_name = pvc_name or env.get("CLUSTERLAB_K8S_HOME_PVC") or _default_pvc(self.user)
        self.home = home or env.get("CLUSTERLAB_K8S_HOME_PATH") or env.get("HOME") or str(Path.home())
        # the site's shared datasets: a read-only volume (ReadOnlyMany claim) holding CLUSTERLAB_SITE_DATASETS
        self.site_datasets_pvc = env.get("CLUSTERLAB_K8S_SITE_DATASETS_PVC", "")
        self.site_datasets = env.get("CLUSTERLAB_SITE_DATASETS", "/etc/clusterlab/datasets")
        self.kubeconfig = kubeconfig or env.get("KUBECONFIG") or None
        self.ttl_seconds = ttl_seconds
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._api = None
        self._api_task: asyncio.Future | None = None
        self._lock = threading.Lock()

    # -- the private loop: every API call runs on it, whichever thread asks ------------------

    def _run(self, coroutine):
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="clusterlab-kubernetes", daemon=True).start()
        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(coroutine, self.timeout), self._loop).result()

    async def _client(self):
        # on the one loop: the first caller starts the set-up, the others await the same task
        if self._api_task is None:
            self._api_task = asyncio.ensure_future(self._make_client())
        try:
            return await asyncio.shield(self._api_task)
        except Exception:
            if self._api_task.done():
                self._api_task = None  # a bad kubeconfig may be mended: try again next time
            raise

    async def _make_client(self):
        from kubernetes_asyncio import client, config

        configuration = client.Configuration()
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            await config.load_kube_config(config_file=self.kubeconfig, client_configuration=configuration)
        self._api = client.ApiClient(configuration)
        return self._api

    async def _call(self, api_class: str, method: str, *args, **kwargs) -> Any:
        """One API call; the answer as plain JSON (camelCase keys), as ``kubectl get -o json`` shows it."""
        from kubernetes_asyncio import client

        api = await self._client()
        result = await getattr(getattr(client, api_class)(api), method)(*args, **kwargs)
        return api.sanitize_for_serialization(result)

    def close(self) -> None:
        """Close the connection pool and stop the loop thread (tests; a server just exits)."""
        if self._loop is None:
            return
        if self._api is not None:
            self._run(self._api.close())
        self._api, self._api_task = None, None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop = None

    def _failure(self, doing: str, error: Exception) -> str:
        """What went wrong, in one line: the API server's refusal, or why it could not be asked."""
        from kubernetes_asyncio.client.exceptions import ApiException

        if isinstance(error, ApiException):
            try:
                message = json.loads(error.body or "{}").get("message", "")
            except (ValueError, AttributeError):
                message = ""
            return f"Kubernetes refused to {doing}: {error.status} {error.reason}" + (f": {message}" if message else "")
        where = ("in-cluster" if os.environ.get("KUBERNETES_SERVICE_HOST")
                 else f"kubeconfig {self.kubeconfig or '~/.kube/config'}")
        what = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        return f"cannot reach the Kubernetes API server ({where}) to {doing}: {what}"

    # -- the backend API ---------------------------------------------------------------------

    def availability(self, profiles: Iterable[Profile]) -> Availability:
        reason = "Kubernetes schedules it when a node has room"
        profiles = list(profiles)
        impossible = {p.id: f"needs {p.nodes} nodes: distributed jobs across nodes are not supported on "
                      "Kubernetes yet (README: Distributed training)" for p in profiles if p.multi_node}
        return Availability(None, None, None, None, blocked={p.id: reason for p in profiles if p.id not in impossible},
                            impossible=impossible)

    def launcher(self, choice) -> list[str]:
        return []  # one container; several-node sizes are refused here (availability says so)

    def directives(self, job: Job, log_path: Path, choice) -> list[str]:
        return []  # the size is in the Job's manifest, not in the script

    def manifest(self, job: Job, script: Path, log_path: Path, env: dict, run: int = 0) -> dict:
        """The Job for ``job``, from its validated profile and hours (as recorded by the service);
        ``run``: which start of the job (its restarts get Jobs of their own names)."""
        from clusterlab_spawner.profiles import load_profiles

        profiles = {p.id: p for p in load_profiles(self.profiles_file)}
        if job.profile not in profiles:
            raise BackendError(f"profile {job.profile!r} is not in {self.profiles_file}")
        choice = Choice(profiles[job.profile], job.hours)
        image = choice.profile.kubernetes.get("image") or self.image
        if not image:
            raise BackendError("no image for the job: set CLUSTERLAB_JOB_IMAGE (or the profile's kubernetes.image)")
        home = self.home.rstrip("/") or "/"
        if not Path(script).is_relative_to(home):
            raise BackendError(f"the job folder {Path(script).parent} is not under the home volume's {home}")
        service_account = ""
        if job.kind == "controller":
            if not self.service_account:
                raise BackendError("an experiment's controller runs as your server's service account, which is "
                                   "not known here: the spawner sets CLUSTERLAB_K8S_SERVICE_ACCOUNT")
            service_account = self.service_account
        env = {**env, "CLUSTERLAB_K8S_USER": self.user}
        mounts, volumes = self.input_mounts(job, Path(script).parent, home)
        return make_job(job, choice, user=self.user, namespace=self.namespace, image=image,
                        pvc_name=self.pvc_name, home=home, script=str(script), log_path=str(log_path),
                        env=env, uid=os.getuid(), gid=os.getgid(), ttl_seconds=self.ttl_seconds, run=run,
                        service_account=service_account, input_mounts=mounts, extra_volumes=volumes)

    def input_mounts(self, job: Job, folder: Path, home: str) -> tuple[list[dict], list[dict]]:
        """Each input as a read-only subPath mount at ``<job folder>/input/<as>``: of the home volume (the
        user's datasets and job outputs), or of the site's datasets volume; BackendError for one on neither."""
        mounts, volumes = [], []
        site = self.site_datasets.rstrip("/") or "/"
        for entry in job.inputs or []:
            path, target = Path(entry["path"]), str(folder / "input" / entry["as"])
            if path.is_relative_to(home):
                mounts.append({"name": "home", "mountPath": target, "subPath": path.relative_to(home).as_posix(),
                               "readOnly": True})
            elif path.is_relative_to(site) and self.site_datasets_pvc:
                if not volumes:
                    volumes.append({"name": "site-datasets", "persistentVolumeClaim": {
                        "claimName": self.site_datasets_pvc, "readOnly": True}})
                mounts.append({"name": "site-datasets", "mountPath": target,
                               "subPath": path.relative_to(site).as_posix(), "readOnly": True})
            else:
                raise BackendError(f"input {entry['as']}: {path} is on no volume a job's pod mounts (the home "
                                   f"volume at {home}; site datasets need CLUSTERLAB_K8S_SITE_DATASETS_PVC)")
        return mounts, volumes

    def submit(self, job: Job, script: Path, log_path: Path, env: dict) -> str:
        manifest = self.manifest(job, script, log_path, env, run=next_run(job))
        try:
            self._run(self._call("BatchV1Api", "create_namespaced_job", self.namespace, manifest))
        except Exception as e:  # noqa: BLE001 - every failure is the scheduler refusing
            raise BackendError(self._failure("create the job", e)) from None
        return manifest["metadata"]["name"]

    async def _observe(self, jobs: list[Job]) -> tuple[dict[str, dict], dict[str, dict] | None]:
        selector = user_selector(self.user)
        listed = await self._call("BatchV1Api", "list_namespaced_job", self.namespace, label_selector=selector)
        k8s_jobs = {item["metadata"]["name"]: item for item in listed.get("items") or []}
        pods = None
        if any(needs_pod(job, k8s_jobs.get(job.scheduler_id)) for job in jobs):
            listed = await self._call("CoreV1Api", "list_namespaced_pod", self.namespace, label_selector=selector)
            pods = {}
            for pod in sorted(listed.get("items") or [], key=lambda p: p["metadata"].get("creationTimestamp") or ""):
                pods[pod_job_name(pod)] = pod  # the newest pod of a Job wins
        return k8s_jobs, pods

    def statuses(self, jobs: list[Job]) -> dict[str, dict]:
        """One list of the user's Jobs (and of their pods when one must be read); a failing API changes nothing."""
        if not jobs:
            return {}
        try:
            k8s_jobs, pods = self._run(self._observe(jobs))
        except Exception:  # noqa: BLE001 - the API server not answering: keep what we knew
            return {}
        changes = {}
        for job in jobs:
            k8s_job = k8s_jobs.get(job.scheduler_id)
            pod = pods.get(job.scheduler_id) if pods is not None else None
            change = job_change(job, k8s_job, pod, pods is not None)
            if any(getattr(job, key) != value for key, value in change.items() if key != "start_time"):
                changes[job.id] = change
        return changes

    def cancel(self, job: Job) -> None:
        """Delete the Job and, in the foreground, its pod (the service has left the ``cancelled`` mark)."""
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            self._run(self._call("BatchV1Api", "delete_namespaced_job", job.scheduler_id, self.namespace,
                                 propagation_policy="Foreground"))
        except ApiException as e:
            if e.status != 404:  # already gone: nothing to cancel
                raise BackendError(self._failure("delete the job", e)) from None
        except Exception as e:  # noqa: BLE001
            raise BackendError(self._failure("delete the job", e)) from None

    async def _pod_log(self, job: Job, limit_bytes: int) -> str:
        selector = f"job-name={job.scheduler_id}"  # the label the Job controller gives its pods
        listed = await self._call("CoreV1Api", "list_namespaced_pod", self.namespace, label_selector=selector)
        items = sorted(listed.get("items") or [], key=lambda p: p["metadata"].get("creationTimestamp") or "")
        if not items:
            return ""
        return await self._call("CoreV1Api", "read_namespaced_pod_log", items[-1]["metadata"]["name"],
                                self.namespace, container=CONTAINER, limit_bytes=limit_bytes)

    def log_text(self, job: Job, limit_bytes: int) -> str:
        """The pod's log (its stdout: the same text the job appends to ``log.txt``); '' when there is none."""
        if job.status == "queued":
            return ""  # a pod that has not started has no log
        try:
            return self._run(self._pod_log(job, limit_bytes)) or ""
        except Exception:  # noqa: BLE001 - no pod (any more), or the API not answering
            return ""
