"""A STAND-IN for the Kubernetes API server, on loopback, for tests.

This is not Kubernetes. No real API server can run on the machines these tests
run on (see NOTES-kubernetes.md: no kube-apiserver, k3s or kwok package, no
container engine for kind or minikube), so the Kubernetes code paths are
exercised against this small aiohttp fake of the REST API instead. It serves
just what ClusterLab's Kubernetes code uses, with objects shaped like the real
ones, so that the real clients (KubeSpawner 7.1.0, kubernetes_asyncio) run
unchanged against it:

- core/v1 pods, persistentvolumeclaims, events, services, secrets, configmaps,
  serviceaccounts, batch/v1 jobs, rbac.authorization.k8s.io/v1 roles and
  rolebindings, networking.k8s.io/v1 networkpolicies, and the cluster-scoped
  core/v1 namespaces: create (POST), list (GET, with ``labelSelector``,
  ``fieldSelector`` and ``watch=true`` streaming from a ``resourceVersion``),
  get, replace (PUT, with the ``resourceVersion`` check: 409 when stale),
  delete; ``GET .../pods/{name}/log``;
- objects live in namespaces: a request names one and sees only its objects
  (a list without one sees all), and creating in a namespace that does not
  exist is refused (404) as the real server does. The stand-in's own
  ``namespace`` and ``default`` exist from the start;
- RBAC, for service-account tokens only (:meth:`KubeAPIStandIn.token_for`,
  :meth:`KubeAPIStandIn.kubeconfig_for`): such a request is allowed when a
  RoleBinding in the request's namespace binds that account to a Role whose
  rules grant the verb on the resource (``pods/log`` included), else 403 with
  the real server's words. Requests across all namespaces are refused to them
  (there are no ClusterRoles here). The kubeconfig's own token is an
  administrator's: it may do anything;
- a created pod is scheduled at once: phase Running (or ``pod_phase``), podIP
  127.0.0.1, a running container status per container, and the events a
  kubelet would emit (Scheduled, Pulled, Created, Started);
- a created Job gets one pod (labels ``job-name``, ``batch.kubernetes.io/job-name``,
  ``controller-uid``, an ownerReference) and the status a Job controller would
  write; :meth:`KubeAPIStandIn.set_job_status` moves it to pending, running,
  succeeded or failed, with the matching pod phase; deleting a Job deletes its
  pods (any ``propagationPolicy`` but Orphan, from the query or the body).

What it does not do: authentication (any token that is not a service
account's is an administrator's), ClusterRoles, admission (Pod Security
labels are stored, not enforced), NetworkPolicies (stored, not enforced),
scheduling onto real nodes, defaulting beyond the fields set below, PATCH, or
running anything. Every request is recorded in :attr:`KubeAPIStandIn.requests`
so tests can count list calls and read the manifests that were sent.

Use it from async tests (``await stand_in.start()`` / ``await stand_in.stop()``,
or ``async with``) or from sync code (``stand_in.start_in_thread()`` /
``stand_in.stop_thread()``, or ``with``): then it runs on its own event loop
in a background thread, and the test's own methods (``set_job_status``...) are
safe to call from any thread.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime
import json
import re
import secrets
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

# plural -> (kind, apiVersion); the group/version in the path must match
RESOURCES: dict[str, tuple[str, str]] = {
    "pods": ("Pod", "v1"),
    "persistentvolumeclaims": ("PersistentVolumeClaim", "v1"),
    "events": ("Event", "v1"),
    "services": ("Service", "v1"),
    "secrets": ("Secret", "v1"),
    "configmaps": ("ConfigMap", "v1"),
    "serviceaccounts": ("ServiceAccount", "v1"),
    "namespaces": ("Namespace", "v1"),
    "jobs": ("Job", "batch/v1"),
    "roles": ("Role", "rbac.authorization.k8s.io/v1"),
    "rolebindings": ("RoleBinding", "rbac.authorization.k8s.io/v1"),
    "networkpolicies": ("NetworkPolicy", "networking.k8s.io/v1"),
}
CLUSTER_SCOPED = {"namespaces"}  # stored under the namespace ""
SA_TOKEN_PREFIX = "stand-in-sa:"  # + namespace:name
KIND_TO_PLURAL = {kind.lower(): plural for plural, (kind, _) in RESOURCES.items()}
VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}

JOB_STATES = ("pending", "running", "succeeded", "failed")

_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[a-z0-9.-]+)/(?P<version>v[0-9a-z]+))"
    r"(?:/namespaces/(?P<ns>[a-z0-9-]+))?/(?P<plural>[a-z]+)"
    r"(?:/(?P<name>[a-z0-9.-]+)(?:/(?P<sub>[a-z]+))?)?$"
)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plural(kind: str) -> str:
    kind = kind.lower()
    if kind in RESOURCES:
        return kind
    if kind in KIND_TO_PLURAL:
        return KIND_TO_PLURAL[kind]
    raise KeyError(f"the stand-in does not serve {kind!r}")


# ----- selectors ---------------------------------------------------------------------


def _split_selector(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def label_selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    """Kubernetes label selector syntax: a=b, a==b, a!=b, a, !a, a in (x,y), a notin (x,y)."""
    for term in _split_selector(selector or ""):
        m = re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term)
        if m:
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            inside = key in labels and labels[key] in values
            if (op == "in") != inside:
                return False
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in re.split(r"==?", term, maxsplit=1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_selector_matches(selector: str | None, obj: dict) -> bool:
    """Field selectors: dotted paths with = / == / != (e.g. involvedObject.kind=Pod)."""
    for term in _split_selector(selector or ""):
        negate = "!=" in term
        path, value = (s.strip() for s in re.split(r"!=|==?", term, maxsplit=1))
        found: Any = obj
        for part in path.split("."):
            found = found.get(part) if isinstance(found, dict) else None
        if (str(found) == value if found is not None else value == "") == negate:
            return False
    return True


# ----- the recorded request --------------------------------------------------------------


@dataclasses.dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any = None

    @property
    def watch(self) -> bool:
        return self.query.get("watch") in ("true", "1", "True")

    @property
    def rights(self) -> tuple[str, str, str] | None:
        """What RBAC checks for this request: (API group, resource, verb); None off the resource paths."""
        return rights_of(self.method, self.path, self.query)


def rights_of(method: str, path: str, query: dict) -> tuple[str, str, str] | None:
    m = _PATH.match(path)
    if not m:
        return None
    plural, name, sub = m.group("plural"), m.group("name"), m.group("sub")
    if method == "GET":
        verb = "get" if name else ("watch" if query.get("watch") in ("true", "1", "True") else "list")
    else:
        verb = VERBS.get(method, method.lower())
    return (m.group("group") or "", f"{plural}/{sub}" if sub else plural, verb)


def _status(code: int, reason: str, message: str, details: dict | None = None) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return web.json_response(body, status=code)


class KubeAPIStandIn:
    """A stand-in Kubernetes API server on 127.0.0.1 (see the module docstring)."""

    def __init__(self, namespace: str = "default", workdir: str | Path | None = None):
        self.namespace = namespace
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="kube-stand-in-")
        self.workdir = Path(workdir or self._tmp.name)
        self.requests: list[RecordedRequest] = []
        #: phase given to pods created directly (not by a Job): "Running" or "Pending"
        self.pod_phase = "Running"
        self._objects: dict[tuple[str, str, str], dict] = {}  # (plural, ns, name) -> object
        self._created: dict[str, list[dict]] = {}  # plural -> bodies as POSTed
        self._logs: dict[tuple[str, str], str] = {}  # (ns, pod) -> text
        self._history: list[tuple[int, str, str, dict]] = []  # (rv, type, plural, object)
        self._rv = 1000
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Condition | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.url = ""
        self.kubeconfig_path = ""
        for name in dict.fromkeys([namespace, "default"]):
            self._store("namespaces", "", {"metadata": {"name": name}})

    # ----- lifecycle -----------------------------------------------------------------

    async def start(self) -> KubeAPIStandIn:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Condition()
        app = web.Application(client_max_size=16 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.kubeconfig_path = str(self._write_kubeconfig())
        return self

    async def stop(self) -> None:
        self._stopping = True
        await self._notify_async()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self) -> KubeAPIStandIn:
        """Serve from a background thread with its own event loop (for sync tests)."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as e:  # noqa: BLE001 (handed to the caller)
                errors.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="kube-api-stand-in", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop_thread(self) -> None:
        if self._thread and self._loop:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.stop()

    def __enter__(self):
        return self.start_in_thread()

    def __exit__(self, *exc):
        self.stop_thread()

    def token_for(self, namespace: str, service_account: str) -> str:
        """The token of a service account: what a pod running as it would hold."""
        return f"{SA_TOKEN_PREFIX}{namespace}:{service_account}"

    def kubeconfig_for(self, namespace: str, service_account: str) -> str:
        """A kubeconfig that talks as a service account, its namespace the default (as in its pod)."""
        return str(self._write_kubeconfig(self.token_for(namespace, service_account), namespace,
                                          f"kubeconfig-{namespace}-{service_account}"))

    def _write_kubeconfig(self, token: str = "stand-in-token", namespace: str | None = None,
                          filename: str = "kubeconfig") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "stand-in", "user": {"token": token}}],
            "contexts": [
                {"name": "stand-in",
                 "context": {"cluster": "stand-in", "user": "stand-in", "namespace": namespace or self.namespace}}
            ],
            "current-context": "stand-in",
        }
        path = self.workdir / filename
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        return path

    # ----- what tests read --------------------------------------------------------------

    def created(self, kind: str) -> list[dict]:
        """Bodies POSTed for a kind ("Pod", "pods", "Job"...), as sent, in order."""
        with self._lock:
            return copy.deepcopy(self._created.get(_plural(kind), []))

    def objects(self, kind: str, namespace: str | None = None) -> list[dict]:
        """The stored objects of a kind now (as the server would return them)."""
        plural = _plural(kind)
        with self._lock:
            return [
                copy.deepcopy(o) for (p, ns, _), o in self._objects.items()
                if p == plural and (namespace is None or ns == namespace)
            ]

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict | None:
        plural = _plural(kind)
        ns = "" if plural in CLUSTER_SCOPED else namespace or self.namespace
        with self._lock:
            obj = self._objects.get((plural, ns, name))
            return copy.deepcopy(obj)

    def requests_for(
        self, method: str, kind: str, *, watch: bool | None = None, name: str | None = None
    ) -> list[RecordedRequest]:
        """Recorded requests on a kind's collection (name=None) or one object."""
        plural = _plural(kind)
        found = []
        for r in list(self.requests):
            m = _PATH.match(r.path)
            if not m or r.method != method or m.group("plural") != plural or m.group("sub"):
                continue
            if name is not None and m.group("name") != name:
                continue
            if name is None and method == "GET" and m.group("name"):
                continue
            if watch is not None and r.watch != watch:
                continue
            found.append(r)
        return found

    # ----- what tests change ------------------------------------------------------------

    def set_pod_log(self, pod: str, text: str, namespace: str | None = None) -> None:
        with self._lock:
            self._logs[(namespace or self.namespace, pod)] = text

    def job_pods(self, job: str, namespace: str | None = None) -> list[dict]:
        ns = namespace or self.namespace
        return [p for p in self.objects("pods", ns) if p["metadata"].get("labels", {}).get("job-name") == job]

    def set_job_log(self, job: str, text: str, namespace: str | None = None) -> None:
        """The log of the Job's pod(s)."""
        for pod in self.job_pods(job, namespace):
            self.set_pod_log(pod["metadata"]["name"], text, namespace)

    def set_pod_phase(self, name: str, phase: str, namespace: str | None = None) -> None:
        """Move a pod to Pending, Running, Succeeded or Failed (with matching container states)."""
        ns = namespace or self.namespace
        with self._lock:
            pod = self._objects[("pods", ns, name)]
            _pod_status(pod, phase)
            self._modified("pods", pod)

    def set_job_status(self, name: str, state: str, namespace: str | None = None) -> None:
        """Write the status a Job controller would: pending, running, succeeded or failed."""
        if state not in JOB_STATES:
            raise ValueError(f"state must be one of {JOB_STATES}, not {state!r}")
        ns = namespace or self.namespace
        with self._lock:
            job = self._objects[("jobs", ns, name)]
            status = job["status"] = {"startTime": job["status"].get("startTime") or now()}
            phase = {"pending": "Pending", "running": "Running", "succeeded": "Succeeded", "failed": "Failed"}[state]
            if state in ("pending", "running"):
                status.update(active=1, ready=1 if state == "running" else 0, terminating=0)
            else:
                stamp = now()
                status.update(ready=0, terminating=0)
                if state == "succeeded":
                    status.update(succeeded=1, completionTime=stamp)
                    why = ("CompletionsReached", "Reached expected number of succeeded pods")
                    conditions = [("SuccessCriteriaMet", *why), ("Complete", *why)]
                else:
                    status.update(failed=1)
                    why = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
                    conditions = [("FailureTarget", *why), ("Failed", *why)]
                status["conditions"] = [
                    {"type": t, "status": "True", "reason": r, "message": m,
                     "lastProbeTime": stamp, "lastTransitionTime": stamp}
                    for t, r, m in conditions
                ]
            self._modified("jobs", job)
            for (p, pns, _), pod in list(self._objects.items()):
                if p == "pods" and pns == ns and pod["metadata"].get("labels", {}).get("job-name") == name:
                    _pod_status(pod, phase)
                    self._modified("pods", pod)

    def add(self, manifest: dict) -> dict:
        """Create an object as an administrator would (``kubectl create -f``); a namespace by its kind."""
        plural = _plural(manifest["kind"])
        ns = "" if plural in CLUSTER_SCOPED else manifest["metadata"].get("namespace") or self.namespace
        with self._lock:
            if ns and ("namespaces", "", ns) not in self._objects:
                raise KeyError(f"namespace {ns!r} does not exist")
            obj = self._store(plural, ns, manifest)
            self._after_create(plural, obj)
            return copy.deepcopy(obj)

    def replace_from_outside(self, manifest: dict) -> None:
        """Replace a stored object as someone else would (``kubectl replace``): watchers see MODIFIED."""
        plural = _plural(manifest["kind"])
        meta = manifest["metadata"]
        ns = "" if plural in CLUSTER_SCOPED else meta.get("namespace") or self.namespace
        body = copy.deepcopy(manifest)
        body["metadata"].pop("resourceVersion", None)
        with self._lock:
            response = self._replace(plural, ns, meta["name"], body)
        if response.status != 200:
            raise ValueError(f"the stand-in refused the replacement: {response.text}")

    def delete_from_outside(self, kind: str, name: str, namespace: str | None = None) -> None:
        """Delete an object as someone else would (kubectl delete): watchers see DELETED."""
        with self._lock:
            self._delete(_plural(kind), namespace or self.namespace, name, cascade=True)

    # ----- storage and change notification ----------------------------------------------

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _record(self, type_: str, plural: str, obj: dict) -> None:
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._history.append((self._rv, type_, plural, copy.deepcopy(obj)))
        self._notify()

    def _modified(self, plural: str, obj: dict) -> None:
        self._record("MODIFIED", plural, obj)

    def _notify(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.create_task(self._notify_async())
        else:
            asyncio.run_coroutine_threadsafe(self._notify_async(), loop)

    async def _notify_async(self) -> None:
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()

    def _store(self, plural: str, ns: str, body: dict) -> dict:
        kind, api_version = RESOURCES[plural]
        obj = copy.deepcopy(body)
        obj["kind"], obj["apiVersion"] = kind, api_version
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        if plural in CLUSTER_SCOPED:
            meta.pop("namespace", None)
            if plural == "namespaces":  # what the API server adds to every namespace
                meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
                obj["spec"], obj["status"] = {"finalizers": ["kubernetes"]}, {"phase": "Active"}
        else:
            meta["namespace"] = ns
        self._objects[(plural, ns, meta["name"])] = obj
        return obj

    def _delete(self, plural: str, ns: str, name: str, cascade: bool) -> dict | None:
        obj = self._objects.pop((plural, ns, name), None)
        if obj is None:
            return None
        obj["metadata"]["deletionTimestamp"] = now()
        self._record("DELETED", plural, obj)
        if cascade:
            uid = obj["metadata"]["uid"]
            for (p, pns, pname), child in list(self._objects.items()):
                owners = child["metadata"].get("ownerReferences", [])
                if pns == ns and any(o.get("uid") == uid for o in owners):
                    self._delete(p, pns, pname, cascade=True)
        return obj

    # ----- creation side effects: what controllers and kubelets would do ----------------

    def _after_create(self, plural: str, obj: dict) -> None:
        if plural == "pods":
            _pod_status(obj, "Pending")
            self._record("ADDED", plural, obj)
            self._pod_events(obj)
            if obj["metadata"].get("labels", {}).get("job-name") is None and self.pod_phase != "Pending":
                _pod_status(obj, self.pod_phase)
                self._modified(plural, obj)
        elif plural == "persistentvolumeclaims":
            spec = obj.setdefault("spec", {})
            spec.setdefault("volumeMode", "Filesystem")
            spec.setdefault("storageClassName", "standard")
            spec["volumeName"] = f"pvc-{obj['metadata']['uid']}"
            requested = spec.get("resources", {}).get("requests", {})
            obj["status"] = {"phase": "Bound", "accessModes": spec.get("accessModes", []), "capacity": dict(requested)}
            self._record("ADDED", plural, obj)
        elif plural == "jobs":
            self._job_defaults(obj)
            self._record("ADDED", plural, obj)
            self._job_pod(obj)
        else:
            self._record("ADDED", plural, obj)

    def _job_defaults(self, job: dict) -> None:
        meta, spec = job["metadata"], job.setdefault("spec", {})
        uid, name = meta["uid"], meta["name"]
        controller = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                      "controller-uid": uid, "job-name": name}
        labels = meta.setdefault("labels", {})
        for key, value in controller.items():
            labels.setdefault(key, value)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completions", 1)
        spec.setdefault("parallelism", 1)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
        spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
        template = spec.setdefault("template", {})
        template.setdefault("metadata", {}).setdefault("labels", {}).update(controller)
        job["status"] = {"startTime": now(), "active": 1, "ready": 0, "terminating": 0,
                         "uncountedTerminatedPods": {}}

    def _job_pod(self, job: dict) -> None:
        meta = job["metadata"]
        template = copy.deepcopy(job["spec"].get("template", {}))
        pod = {
            "metadata": {
                "name": f"{meta['name']}-{secrets.token_hex(3)[:5]}",
                "labels": template.get("metadata", {}).get("labels", {}),
                "annotations": template.get("metadata", {}).get("annotations", {}),
                "ownerReferences": [{
                    "apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"],
                    "controller": True, "blockOwnerDeletion": True,
                }],
            },
            "spec": template.get("spec", {}),
        }
        stored = self._store("pods", meta["namespace"], pod)
        self._after_create("pods", stored)

    def _pod_events(self, pod: dict) -> None:
        meta = pod["metadata"]
        involved = {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"],
                    "uid": meta["uid"], "apiVersion": "v1"}
        where = f"{meta['namespace']}/{meta['name']}"
        steps = [("Scheduled", "default-scheduler", f"Successfully assigned {where} to stand-in-node")]
        for c in pod.get("spec", {}).get("containers", []):
            steps += [
                ("Pulled", "kubelet", f'Container image "{c.get("image")}" already present on machine'),
                ("Created", "kubelet", f"Created container {c.get('name')}"),
                ("Started", "kubelet", f"Started container {c.get('name')}"),
            ]
        for reason, component, message in steps:
            stamp = now()
            event = {
                "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}"},
                "involvedObject": involved, "reason": reason, "message": message, "type": "Normal",
                "source": {"component": component, **({"host": "stand-in-node"} if component == "kubelet" else {})},
                "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
                "reportingComponent": component, "reportingInstance": "stand-in-node",
            }
            self._after_create("events", self._store("events", meta["namespace"], event))

    # ----- HTTP -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = None
        if request.can_read_body:
            raw = await request.read()
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    return _status(400, "BadRequest", "the stand-in takes JSON bodies only")
        query = dict(request.query)
        with self._lock:
            self.requests.append(RecordedRequest(request.method, request.path, query, copy.deepcopy(body)))
        if request.path == "/version":
            return web.json_response(
                {"major": "1", "minor": "33", "gitVersion": "v1.33.0-stand-in", "platform": "linux/amd64"}
            )
        m = _PATH.match(request.path)
        if not m:
            return _status(404, "NotFound", f"the stand-in does not serve {request.path}")
        plural, ns, name, sub = m.group("plural"), m.group("ns"), m.group("name"), m.group("sub")
        group_version = m.group("core") or f"{m.group('group')}/{m.group('version')}"
        if plural not in RESOURCES or RESOURCES[plural][1] != group_version:
            return _status(404, "NotFound", f"the server could not find the requested resource ({plural})")
        # a namespace in the path of a namespace, or none for one pod: no such path
        if (ns and plural in CLUSTER_SCOPED) or (not ns and name and plural not in CLUSTER_SCOPED):
            return _status(404, "NotFound", f"the server could not find the requested resource ({request.path})")
        forbidden = self._forbidden(request, plural, ns, name, query)
        if forbidden is not None:
            return forbidden
        key_ns = "" if plural in CLUSTER_SCOPED else ns
        if name is None:
            if request.method == "GET":
                if query.get("watch") in ("true", "1", "True"):
                    return await self._watch(request, plural, ns, query)
                return self._list(plural, ns, query)
            if request.method == "POST" and (ns or plural in CLUSTER_SCOPED):
                return self._create(plural, key_ns, body)
        else:
            if sub == "log" and plural == "pods" and request.method == "GET":
                return self._log(ns, name, query)
            if sub is None and request.method == "GET":
                with self._lock:
                    obj = self._objects.get((plural, key_ns, name))
                if obj is None:
                    return self._not_found(plural, name)
                return web.json_response(obj)
            if sub is None and request.method == "PUT":
                return self._replace(plural, key_ns, name, body)
            if sub is None and request.method == "DELETE":
                return self._delete_request(plural, key_ns, name, query, body)
        return _status(405, "MethodNotAllowed", f"the stand-in does not support {request.method} {request.path}")

    # ----- RBAC, for service accounts ----------------------------------------------------------

    def _forbidden(self, request: web.Request, plural: str, ns: str | None, name: str | None,
                   query: dict) -> web.Response | None:
        """403 when a service account's token asks for what no Role bound to it in ``ns`` grants."""
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not token.startswith(SA_TOKEN_PREFIX):
            return None  # the administrator's kubeconfig
        sa_ns, _, sa_name = token[len(SA_TOKEN_PREFIX):].partition(":")
        group, resource, verb = rights_of(request.method, request.path, query)
        if ns and self._granted(ns, sa_ns, sa_name, group, resource, verb):
            return None
        who = f"system:serviceaccount:{sa_ns}:{sa_name}"
        what = f"{plural}.{group}" if group else plural
        where = f' in the namespace "{ns}"' if ns else " at the cluster scope"
        named = f' "{name}"' if name else ""
        return _status(403, "Forbidden",
                       f'{what}{named} is forbidden: User "{who}" '
                       f'cannot {verb} resource "{resource}" in API group "{group}"{where}',
                       {"name": name or "", "group": group, "kind": plural})

    def _granted(self, ns: str, sa_ns: str, sa_name: str, group: str, resource: str, verb: str) -> bool:
        subject = {"kind": "ServiceAccount", "name": sa_name, "namespace": sa_ns}
        with self._lock:
            for (p, bns, _), binding in self._objects.items():
                if p != "rolebindings" or bns != ns:
                    continue
                if not any({k: s.get(k) for k in subject} == subject for s in binding.get("subjects") or []):
                    continue
                ref = binding.get("roleRef") or {}
                role = self._objects.get(("roles", ns, ref.get("name"))) if ref.get("kind") == "Role" else None
                for rule in (role or {}).get("rules") or []:
                    if (group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", [])) \
                            and (resource in rule.get("resources", []) or "*" in rule.get("resources", [])) \
                            and (verb in rule.get("verbs", []) or "*" in rule.get("verbs", [])):
                        return True
        return False

    def _replace(self, plural: str, ns: str, name: str, body: Any) -> web.Response:
        if not isinstance(body, dict) or (body.get("metadata") or {}).get("name") != name:
            return _status(400, "BadRequest", "the name of the object does not match the name on the URL")
        with self._lock:
            old = self._objects.get((plural, ns, name))
            if old is None:
                return self._not_found(plural, name)
            sent_rv = body["metadata"].get("resourceVersion")
            if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
                return _status(409, "Conflict", f'Operation cannot be fulfilled on {plural} "{name}": the object '
                               "has been modified; please apply your changes to the latest version and try again",
                               {"name": name, "kind": plural})
            if plural == "rolebindings" and body.get("roleRef") != old.get("roleRef"):
                return _status(422, "Invalid", f'RoleBinding.rbac.authorization.k8s.io "{name}" is invalid: '
                               "roleRef: Invalid value: cannot change roleRef")
            obj = copy.deepcopy(body)
            obj["kind"], obj["apiVersion"] = RESOURCES[plural]
            meta = obj["metadata"]
            for key in ("uid", "creationTimestamp"):
                meta[key] = old["metadata"][key]
            meta["generation"] = old["metadata"].get("generation", 1) + 1
            if plural in CLUSTER_SCOPED:
                meta.pop("namespace", None)
                if plural == "namespaces":
                    meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
                    obj.setdefault("status", old.get("status"))
            else:
                meta["namespace"] = ns
            self._objects[(plural, ns, name)] = obj
            self._modified(plural, obj)
            return web.json_response(copy.deepcopy(obj))

    def _not_found(self, plural: str, name: str) -> web.Response:
        api_version = RESOURCES[plural][1]
        group = api_version.split("/")[0] if "/" in api_version else ""
        return _status(404, "NotFound", f'{plural}{"." + group if group else ""} "{name}" not found',
                       {"name": name, "group": group, "kind": plural})

    def _create(self, plural: str, ns: str, body: Any) -> web.Response:
        if not isinstance(body, dict):
            return _status(400, "BadRequest", "the body must be a JSON object")
        kind, api_version = RESOURCES[plural]
        if body.get("kind") not in (None, kind) or body.get("apiVersion") not in (None, api_version):
            sent = f"{body.get('apiVersion')}/{body.get('kind')}"
            return _status(400, "BadRequest", f"the body is a {sent}, not a {api_version}/{kind}")
        meta = body.get("metadata") or {}
        if not (meta.get("name") or meta.get("generateName")):
            return _status(422, "Invalid", f"{kind} is invalid: metadata.name: Required value")
        if meta.get("namespace") not in (None, ns):
            return _status(400, "BadRequest",
                           "the namespace of the provided object does not match the namespace sent on the request")
        with self._lock:
            if ns and ("namespaces", "", ns) not in self._objects:
                return _status(404, "NotFound", f'namespaces "{ns}" not found',
                               {"name": ns, "kind": "namespaces"})
            if meta.get("name") and (plural, ns, meta["name"]) in self._objects:
                return _status(409, "AlreadyExists", f'{plural} "{meta["name"]}" already exists',
                               {"name": meta["name"], "kind": plural})
            self._created.setdefault(plural, []).append(copy.deepcopy(body))
            obj = self._store(plural, ns, body)
            self._after_create(plural, obj)
            return web.json_response(copy.deepcopy(self._objects[(plural, ns, obj["metadata"]["name"])]), status=201)

    def _matching(self, plural: str, ns: str | None, query: dict) -> list[dict]:
        labels, fields = query.get("labelSelector"), query.get("fieldSelector")
        return [
            o for (p, ons, _), o in self._objects.items()
            if p == plural and (ns is None or ons == ns)
            and label_selector_matches(labels, o["metadata"].get("labels") or {})
            and field_selector_matches(fields, o)
        ]

    def _list(self, plural: str, ns: str | None, query: dict) -> web.Response:
        kind, api_version = RESOURCES[plural]
        with self._lock:
            items = copy.deepcopy(self._matching(plural, ns, query))
            rv = str(self._rv)
        for item in items:  # list items carry no kind/apiVersion in the real API
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return web.json_response(
            {"kind": f"{kind}List", "apiVersion": api_version, "metadata": {"resourceVersion": rv}, "items": items}
        )

    async def _watch(self, request: web.Request, plural: str, ns: str | None, query: dict) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        labels, fields = query.get("labelSelector"), query.get("fieldSelector")
        timeout = float(query.get("timeoutSeconds") or 1800)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        start_rv = query.get("resourceVersion") or "0"
        pending: list[tuple[str, dict]] = []
        with self._lock:
            if start_rv == "0":
                pending = [("ADDED", copy.deepcopy(o)) for o in self._matching(plural, ns, query)]
                seen = self._rv
            else:
                seen = int(start_rv)
        try:
            while not self._stopping:
                with self._lock:
                    for rv, type_, p, obj in self._history:
                        if rv > seen and p == plural and (ns is None or obj["metadata"]["namespace"] == ns) \
                                and label_selector_matches(labels, obj["metadata"].get("labels") or {}) \
                                and field_selector_matches(fields, obj):
                            pending.append((type_, copy.deepcopy(obj)))
                    seen = self._rv
                for type_, obj in pending:
                    await response.write((json.dumps({"type": type_, "object": obj}) + "\n").encode())
                pending = []
                left = deadline - loop.time()
                if left <= 0:
                    break
                async with self._changed:
                    try:
                        await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
                    except asyncio.TimeoutError:
                        pass
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    def _log(self, ns: str, name: str, query: dict) -> web.Response:
        with self._lock:
            if ("pods", ns, name) not in self._objects:
                return self._not_found("pods", name)
            text = self._logs.get((ns, name), "")
        tail = query.get("tailLines")
        if tail:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(tail):]) if int(tail) > 0 else ""
        return web.Response(text=text, content_type="text/plain")

    def _delete_request(self, plural: str, ns: str, name: str, query: dict, body: Any) -> web.Response:
        policy = query.get("propagationPolicy") or (body or {}).get("propagationPolicy") or (
            "Orphan" if plural == "jobs" else "Background"  # batch/v1 Jobs orphan their pods by default
        )
        with self._lock:
            obj = self._delete(plural, ns, name, cascade=policy != "Orphan")
        if obj is None:
            return self._not_found(plural, name)
        if plural == "pods":
            return web.json_response(obj)
        return _status(200, "", "", {"name": name, "kind": plural, "uid": obj["metadata"]["uid"]})


def _pod_status(pod: dict, phase: str) -> None:
    stamp = now()
    containers = pod.get("spec", {}).get("containers", [])
    running, ended = phase == "Running", phase in ("Succeeded", "Failed")
    statuses = []
    for c in containers:
        if running:
            state = {"running": {"startedAt": stamp}}
        elif ended:
            code = 0 if phase == "Succeeded" else 1
            state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                    "startedAt": pod.get("status", {}).get("startTime", stamp), "finishedAt": stamp}}
        else:
            state = {"waiting": {"reason": "ContainerCreating"}}
        statuses.append({
            "name": c.get("name", ""), "image": c.get("image", ""),
            "imageID": f"docker-pullable://{c.get('image', '')}@sha256:{'0' * 64}",
            "containerID": f"containerd://{secrets.token_hex(32)}" if running or ended else None,
            "ready": running, "started": running, "restartCount": 0, "state": state,
        })
    ready = "True" if running else "False"
    pod["status"] = {
        "phase": phase,
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}],
        "qosClass": "Burstable",
        "startTime": pod.get("status", {}).get("startTime", stamp),
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
            {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
            {"type": "ContainersReady", "status": ready, "lastTransitionTime": stamp},
            {"type": "Ready", "status": ready, "lastTransitionTime": stamp},
        ],
        "containerStatuses": statuses,
    }
    pod.setdefault("spec", {}).setdefault("nodeName", "stand-in-node")
