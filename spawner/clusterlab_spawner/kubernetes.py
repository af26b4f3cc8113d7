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
"""

from __future__ import annotations

import copy

from kubespawner import KubeSpawner
from traitlets import Bool, Float, TraitError, Unicode, default, validate

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
) -> dict:
    """A choice and the site's settings -> the KubeSpawner traits of the pod.

    The keyword arguments other than the choice are the site's own settings
    (the spawner's configuration); the profile adds to them (node selector,
    tolerations, volumes) or replaces them (image). ``home_claim`` is the PVC
    name (a KubeSpawner template such as ``{pvc_name}`` is fine); '' mounts
    no home volume.
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
    shm_gb = kube.get("shm_gb") or profile.memory_gb * shm_fraction
    pod_volumes = [
        *(volumes or []),
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": _mebibytes(shm_gb)}},
    ]
    mounts = [*(volume_mounts or []), {"name": "dshm", "mountPath": "/dev/shm"}]
    if home_claim:
        pod_volumes.append({"name": "home", "persistentVolumeClaim": {"claimName": home_claim}})
        mounts.append({"name": "home", "mountPath": home_mount_path})
    settings.update(volumes=pod_volumes, volume_mounts=mounts)
    pod_config = dict(extra_pod_config or {})
    if enforce_wall_time:
        # the kubelet ends the pod when the hours asked for are over, as Slurm's --time does
        pod_config["activeDeadlineSeconds"] = choice.seconds
    settings["extra_pod_config"] = pod_config
    return settings


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
        # where the user's jobs go: the same namespace and the same home volume
        env.update(CLUSTERLAB_K8S_NAMESPACE=self.namespace, CLUSTERLAB_K8S_IMAGE=self.image)
        if self.home_volume:
            env.update(CLUSTERLAB_K8S_HOME_PVC=self.pvc_name, CLUSTERLAB_K8S_HOME_PATH=self.home_mount_path)
        return env
