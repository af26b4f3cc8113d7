"""The Kubernetes backend: JupyterLab in a pod, through KubeSpawner.

A profile becomes the pod's settings in one pure function,
:func:`pod_settings`: requests and limits for cpu and memory, the GPU as an
extended resource (``nvidia.com/gpu``), the profile's image, node selector and
tolerations, a memory-backed ``/dev/shm`` (PyTorch data loaders share tensors
through it; a container's default is 64 MiB), the user's persistent volume as
the home folder, and the wall time as the pod's ``activeDeadlineSeconds``.

Only the validated :class:`~.options.Choice` reaches the pod: this spawner
replaces KubeSpawner's own ``profile_list`` and ``user_options`` handling
(``load_user_options``), so a key such as ``image`` or
``profile-option-...`` in ``user_options`` is refused by ClusterSpawner's
validation, and never read.

Isolation: each user gets a namespace of their own (KubeSpawner's
``enable_user_namespaces``, on by default here), which is the boundary between
users. Before the pod starts, the spawner makes sure the namespace holds what
the user's job service needs, built by pure functions
(:func:`user_rbac_objects`, :func:`user_network_policy`): a ServiceAccount
(``clusterlab-jobs``) whose token the user's server holds, a Role granting
exactly the API calls of the job service (:data:`JOB_SERVICE_API_CALLS`) in
that namespace only, a RoleBinding of the one to the other, and a NetworkPolicy
that lets only the hub's namespace and the namespace itself reach its pods.
The namespace is labelled for Pod Security admission (``baseline``), since a
user who may create Jobs may otherwise create a privileged pod. The user's
home volume is created in the same namespace, so no other user's Job can
mount it.
"""

from __future__ import annotations

import asyncio
import copy

from kubernetes_asyncio.client.rest import ApiException
from kubespawner import KubeSpawner
from kubespawner.clients import shared_client
from traitlets import Bool, Enum, Float, TraitError, Unicode, default, validate

from .options import Choice, OptionsError, validate_user_options
from .spawner import ClusterSpawner


def _mebibytes(gb: float) -> str:
    """GB (GiB) as a quantity in whole Mi, so that fractions of a GiB stay exact and valid."""
    return f"{int(round(gb * 1024))}Mi"


def pod_settings(
    choice: Choice,
    *,
    image: str,
    node_selector: dict | None = None,
    tolerations: list | None = None,
    volumes: list | None = None,
    volume_mounts: list | None = None,
    extra_pod_config: dict | None = None,
    gpu_resource: str = "nvidia.com/gpu",
    guarantee_fraction: float = 1.0,
    shm_fraction: float = 0.5,
    home_claim: str = "",
    home_mount_path: str = "/home/jovyan",
    enforce_wall_time: bool = True,
    site_datasets_claim: str = "",
    site_datasets_path: str = "/etc/clusterlab/datasets",
) -> dict:
    """A choice and the site's settings -> the KubeSpawner traits of the pod.

    The keyword arguments other than the choice are the site's own settings
    (the spawner's configuration); the profile adds to them (node selector,
    tolerations, volumes) or replaces them (image). ``home_claim`` is the PVC
    name (a KubeSpawner template such as ``{pvc_name}`` is fine); '' mounts
    no home volume. ``site_datasets_claim``: the site's shared datasets, mounted
    read-only at ``site_datasets_path`` (the server lists them; its jobs mount them).
    """
    profile = choice.profile
    kube = profile.kubernetes
    cpus = float(profile.cpus)
    memory = profile.memory_bytes
    settings: dict = {
        "cpu_limit": cpus,
        "cpu_guarantee": cpus * guarantee_fraction,
        "mem_limit": memory,
        "mem_guarantee": int(memory * guarantee_fraction),
        "image": kube.get("image") or image,
        "node_selector": {**(node_selector or {}), **kube.get("node_selector", {})},
        "tolerations": [*(tolerations or []), *copy.deepcopy(kube.get("tolerations", []))],
        # extended resources cannot be overcommitted: requests equal limits
        "extra_resource_limits": {gpu_resource: str(profile.gpus)} if profile.gpus else {},
        "extra_resource_guarantees": {gpu_resource: str(profile.gpus)} if profile.gpus else {},
    }
    pod_volumes = [
        *(volumes or []),
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": _mebibytes(profile.shm_gb(shm_fraction))}},
    ]
    mounts = [*(volume_mounts or []), {"name": "dshm", "mountPath": "/dev/shm"}]
    if home_claim:
        pod_volumes.append({"name": "home", "persistentVolumeClaim": {"claimName": home_claim}})
        mounts.append({"name": "home", "mountPath": home_mount_path})
    if site_datasets_claim:
        pod_volumes.append({"name": "site-datasets",
                            "persistentVolumeClaim": {"claimName": site_datasets_claim, "readOnly": True}})
        mounts.append({"name": "site-datasets", "mountPath": site_datasets_path, "readOnly": True})
    settings.update(volumes=pod_volumes, volume_mounts=mounts)
    pod_config = dict(extra_pod_config or {})
    if enforce_wall_time:
        # the kubelet ends the pod when the hours asked for are over, as Slurm's --time does
        pod_config["activeDeadlineSeconds"] = choice.seconds
    settings["extra_pod_config"] = pod_config
    return settings


# What each kubernetes_asyncio call of the job service (clusterlab_server/backends/kubernetes.py)
# needs from RBAC: (API group, resource, verb). The user's Role grants exactly these;
# tests/test_kube_isolation.py checks the table against the calls in that file.
JOB_SERVICE_API_CALLS: dict[str, tuple[str, str, str]] = {
    "create_namespaced_job": ("batch", "jobs", "create"),
    "list_namespaced_job": ("batch", "jobs", "list"),
    "delete_namespaced_job": ("batch", "jobs", "delete"),
    "list_namespaced_pod": ("", "pods", "list"),
    "read_namespaced_pod_log": ("", "pods/log", "get"),
}

JOBS_ROLE = "clusterlab-jobs"  # the Role and the RoleBinding in each user's namespace
LABELS = {"app.kubernetes.io/name": "clusterlab", "app.kubernetes.io/managed-by": "clusterlab-hub"}


def job_service_rules() -> list[dict]:
    """:data:`JOB_SERVICE_API_CALLS` as RBAC rules: one rule per API group and resource, verbs sorted."""
    verbs: dict[tuple[str, str], set[str]] = {}
    for group, resource, verb in JOB_SERVICE_API_CALLS.values():
        verbs.setdefault((group, resource), set()).add(verb)
    return [{"apiGroups": [group], "resources": [resource], "verbs": sorted(v)}
            for (group, resource), v in sorted(verbs.items())]


def user_rbac_objects(namespace: str, service_account: str) -> list[dict]:
    """The ServiceAccount, Role and RoleBinding that let a user's server run jobs in ``namespace``.

    Pure: plain dicts, as the API server takes them. The Role's rules are
    :func:`job_service_rules` and nothing more; the binding names the account
    with its namespace (a ServiceAccount subject must).
    """
    meta = {"namespace": namespace, "labels": dict(LABELS)}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": service_account, **copy.deepcopy(meta)}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": JOBS_ROLE, **copy.deepcopy(meta)}, "rules": job_service_rules()},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": JOBS_ROLE, **copy.deepcopy(meta)},
         "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": JOBS_ROLE}},
    ]


def user_network_policy(namespace: str, hub_namespace: str) -> dict:
    """Ingress to every pod of a user's namespace only from the hub's namespace and from itself.

    The chart's own singleuser NetworkPolicy lives in the hub's namespace and
    does not reach pods in other namespaces: without this one, any pod could
    connect to a user's server or jobs. Egress is left as the cluster has it.
    """
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "clusterlab-user", "namespace": namespace, "labels": dict(LABELS)},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": hub_namespace}}},
                {"podSelector": {}},  # the user's own pods: the server and its jobs
            ]}],
        },
    }


def namespace_labels(pod_security: str) -> dict[str, str]:
    """Labels of a user's namespace: ours, and Pod Security admission's level ('' for none)."""
    labels = {**LABELS, "clusterlab/user": "{username}"}  # KubeSpawner expands {username}
    if pod_security:
        labels["pod-security.kubernetes.io/enforce"] = pod_security
    return labels


class KubeClusterSpawner(ClusterSpawner, KubeSpawner):
    """ClusterSpawner on Kubernetes: the chosen profile becomes the pod's spec."""

    queues_when_busy = True  # a pod that does not fit stays Pending until it does
    job_backend = "kubernetes"

    gpu_resource_name = Unicode(
        "nvidia.com/gpu",
        config=True,
        help="The extended resource a profile's GPUs are asked as (NVIDIA's device plugin: nvidia.com/gpu).",
    )

    guarantee_fraction = Float(
        1.0,
        config=True,
        help="""Requests as a fraction of the profile's cores and memory.

        1 (the default): requests equal limits, so a pod gets its whole size
        (QoS Guaranteed, as a Slurm allocation would). Lower lets more pods
        share a node, at the risk of contention. GPUs are always requested whole.
        """,
    )

    shm_fraction = Float(
        0.5,
        config=True,
        help="""Size of the memory-backed /dev/shm as a fraction of the profile's memory,
        unless the profile sets ``kubernetes.shm_gb``. Its pages count against
        the pod's memory limit.""",
    )

    home_mount_path = Unicode(
        "/home/jovyan",
        config=True,
        help="Where the user's persistent volume (named by pvc_name_template) is mounted: the home folder.",
    )

    home_volume = Bool(
        True,
        config=True,
        help="""Give each user a persistent volume for the home folder: created on the
        first start (storage_capacity, storage_class), shared by all of the
        user's servers, kept when servers stop.""",
    )

    enforce_wall_time = Bool(
        True,
        config=True,
        help="End the pod when the hours asked for are over (the pod's activeDeadlineSeconds).",
    )

    site_datasets_claim = Unicode(
        "",
        config=True,
        help="""A ReadOnlyMany claim holding the site's shared datasets (docs/datasets.md): mounted
        read-only at site_datasets_path in every user's server and in the job pods that use one.
        Empty: no site datasets on Kubernetes.""",
    )

    site_datasets_path = Unicode(
        "/etc/clusterlab/datasets",
        config=True,
        help="Where the site's datasets are mounted (CLUSTERLAB_SITE_DATASETS in the server).",
    )

    # ----- isolation: a namespace per user -----------------------------------------------

    @default("enable_user_namespaces")
    def _enable_user_namespaces_default(self):
        # KubeSpawner's default is one shared namespace; here, a user's namespace is
        # the boundary that keeps one user's jobs and home volume from another's
        return True

    @default("user_namespace_template")
    def _user_namespace_template_default(self):
        return "{hubnamespace}-{username}"

    @default("user_namespace_labels")
    def _user_namespace_labels_default(self):
        return namespace_labels(self.pod_security_level)

    @default("service_account")
    def _service_account_default(self):
        return "clusterlab-jobs"

    @default("automount_service_account_token")
    def _automount_default(self):
        # the job service uses the token, whose account may only run jobs in the user's namespace;
        # with no account named, no token (not the namespace's default account's)
        return bool(self.service_account)

    pod_security_level = Enum(
        ["baseline", "restricted", "privileged", ""],
        default_value="baseline",
        config=True,
        help="""Pod Security admission level enforced in each user's namespace (its
        ``pod-security.kubernetes.io/enforce`` label, set when the namespace is
        made and restored on each start).

        A user may create Jobs in their namespace through the API, so without
        it they could run a privileged pod or mount a node's folders and reach
        other users' files. ``baseline`` forbids that; the Zero to JupyterHub
        chart's cloud-metadata init container is privileged, so
        ``singleuser.cloudMetadata.blockWithIptables`` must be false with it.
        ``restricted`` also needs the pods' security contexts to meet it;
        '' leaves the namespace unlabelled (the cluster's default applies).
        """,
    )

    isolate_user_network = Bool(
        True,
        config=True,
        help="""Create a NetworkPolicy in each user's namespace that admits traffic only
        from the hub's namespace (hub and proxy) and from the namespace itself.""",
    )

    hub_namespace = Unicode(
        config=True,
        help="The hub's own namespace (default: the one its service account is in), the only one "
        "whose pods may reach a user's namespace.",
    )

    @default("hub_namespace")
    def _hub_namespace_default(self):
        return self._namespace_default()  # KubeSpawner's: the service account's namespace

    def user_objects(self) -> list[dict]:
        """What the user's namespace must hold before the pod starts (pure, given the traits)."""
        objects = user_rbac_objects(self.namespace, self.service_account) if self.service_account else []
        if self.enable_user_namespaces and self.isolate_user_network:
            objects.append(user_network_policy(self.namespace, self.hub_namespace))
        return objects

    async def _start(self):
        if self.enable_user_namespaces:
            # the namespace recorded in the state may be from a shared-namespace past:
            # a server always starts in the user's own
            namespace = self._expand_user_properties(self.user_namespace_template)
            if namespace != self.namespace:
                self.log.info("Moving %s from namespace %s to %s", self.user.name, self.namespace, namespace)
                self.namespace = namespace
                self._pvc_exists = False  # the home volume is made in the new namespace
            await self._ensure_namespace()
        else:
            self.log.warning(
                "KubeClusterSpawner.enable_user_namespaces is False: every user's server and jobs share "
                "namespace %s and its job service account, so any user can list, read the logs of and delete "
                "other users' Jobs there, and create Jobs that mount other users' home volumes. "
                "Use this only where users trust each other.", self.namespace)
        for manifest in self.user_objects():
            await self._ensure_object(manifest)
        self._namespace_ready = True
        try:
            return await super()._start()
        finally:
            self._namespace_ready = False

    async def _ensure_namespace(self):
        """Create the user's namespace, or restore its Pod Security label if it exists without it."""
        if getattr(self, "_namespace_ready", False):
            return  # done by _start, before KubeSpawner's own _start asks again
        await super()._ensure_namespace()  # 409, already there, is fine
        wanted = {k: v for k, v in self._expand_all(self.user_namespace_labels).items()
                  if k.startswith("pod-security.kubernetes.io/")}
        if not wanted:
            return
        namespace = await self._api_call(self.api.read_namespace(self.namespace))
        labels = namespace.metadata.labels or {}
        if any(labels.get(k) != v for k, v in wanted.items()):
            self.log.warning("Setting %s on namespace %s (it had %s)", wanted, self.namespace,
                             {k: labels.get(k) for k in wanted})
            namespace.metadata.labels = {**labels, **wanted}
            await self._api_call(self.api.replace_namespace(self.namespace, namespace))

    async def _api_call(self, coroutine):
        return await asyncio.wait_for(coroutine, self.k8s_api_request_timeout)

    async def _ensure_object(self, manifest: dict) -> None:
        """Create ``manifest`` in its namespace; if it exists, replace it where its content differs."""
        kind, meta = manifest["kind"], manifest["metadata"]
        api, suffix = {
            "ServiceAccount": ("CoreV1Api", "namespaced_service_account"),
            "Role": ("RbacAuthorizationV1Api", "namespaced_role"),
            "RoleBinding": ("RbacAuthorizationV1Api", "namespaced_role_binding"),
            "NetworkPolicy": ("NetworkingV1Api", "namespaced_network_policy"),
        }[kind]
        client = shared_client(api)
        try:
            await self._api_call(getattr(client, f"create_{suffix}")(meta["namespace"], manifest))
            self.log.info("Created %s %s/%s", kind, meta["namespace"], meta["name"])
            return
        except ApiException as e:
            if e.status != 409:
                raise
        if kind == "ServiceAccount":
            return  # nothing of ours in it to keep in step
        existing = client.api_client.sanitize_for_serialization(
            await self._api_call(getattr(client, f"read_{suffix}")(meta["name"], meta["namespace"])))
        fields = {"Role": ["rules"], "RoleBinding": ["subjects", "roleRef"], "NetworkPolicy": ["spec"]}[kind]
        if all(existing.get(f) == manifest[f] for f in fields):
            return
        self.log.warning("Replacing %s %s/%s: it differed from ClusterLab's", kind, meta["namespace"], meta["name"])
        replacement = {**manifest, "metadata": {**manifest["metadata"],
                                                "resourceVersion": existing["metadata"]["resourceVersion"]}}
        await self._api_call(getattr(client, f"replace_{suffix}")(meta["name"], meta["namespace"], replacement))

    # one volume per user, shared by their named servers (KubeSpawner's default is per server)
    @default("pvc_name_template")
    def _pvc_name_template_default(self):
        return "claim-{username}"

    @default("storage_pvc_ensure")
    def _storage_pvc_ensure_default(self):
        return self.home_volume

    @default("storage_capacity")
    def _storage_capacity_default(self):
        return "10Gi"

    @validate("profile_list")
    def _no_profile_list(self, proposal):
        if proposal.value:
            raise TraitError(
                "KubeClusterSpawner takes its sizes from profiles.yaml (ClusterSpawner.profiles_file); "
                "KubeSpawner.profile_list must stay empty"
            )
        return proposal.value

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # the site's own settings, to which each start adds its profile's
        self._site_settings = {
            "image": self.image,
            "node_selector": dict(self.node_selector),
            "tolerations": list(self._sorted_dict_values(self.tolerations)),
            "volumes": list(self._sorted_dict_values(self.volumes)),
            "volume_mounts": list(self._sorted_dict_values(self.volume_mounts)),
            "extra_pod_config": dict(self.extra_pod_config),
        }

    # the options form is ClusterSpawner's (and run_options_from_form), not KubeSpawner's profile_list form
    @default("options_form")
    def _options_form_default(self):
        return ClusterSpawner._options_form_default(self)

    def settings_for(self, choice: Choice) -> dict:
        """The pod's KubeSpawner traits for a choice (pure: see pod_settings)."""
        return pod_settings(
            choice,
            **self._site_settings,
            gpu_resource=self.gpu_resource_name,
            guarantee_fraction=self.guarantee_fraction,
            shm_fraction=self.shm_fraction,
            home_claim="{pvc_name}" if self.home_volume else "",
            home_mount_path=self.home_mount_path,
            enforce_wall_time=self.enforce_wall_time,
            site_datasets_claim=self.site_datasets_claim,
            site_datasets_path=self.site_datasets_path,
        )

    async def load_user_options(self):
        """Apply the validated profile; raw user_options are never read beyond validation.

        Replaces KubeSpawner's, which would apply ``profile_list`` overrides
        chosen by keys of ``user_options``.
        """
        try:
            choice = validate_user_options(self.user_options or {}, self.profiles)
        except OptionsError as e:
            raise self._options_http_error(e) from None
        for name, value in self.settings_for(choice).items():
            setattr(self, name, value)

    def get_env(self):
        env = super().get_env()
        # where the user's jobs go: the server's own namespace (the user's, with per-user
        # namespaces: the only one its service account may use) and the same home volume
        env.update(CLUSTERLAB_K8S_NAMESPACE=self.namespace, CLUSTERLAB_K8S_IMAGE=self.image)
        if self.service_account:  # an experiment's controller pod runs as it (and only that pod)
            env.update(CLUSTERLAB_K8S_SERVICE_ACCOUNT=self.service_account)
        if self.home_volume:
            env.update(CLUSTERLAB_K8S_HOME_PVC=self.pvc_name, CLUSTERLAB_K8S_HOME_PATH=self.home_mount_path)
        if self.site_datasets_claim:
            env.update(CLUSTERLAB_K8S_SITE_DATASETS_PVC=self.site_datasets_claim,
                       CLUSTERLAB_SITE_DATASETS=self.site_datasets_path)
        return env
