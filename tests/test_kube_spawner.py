"""The Kubernetes backend of the hub's spawner (spawner/clusterlab_spawner/kubernetes.py).

- KubeSpawner's real pod manifest for every profile, validated against the
  official Kubernetes schemas (kubernetes-validate, strict) for 1.30 and the
  newest version it ships, with the resources, image, node selector,
  tolerations, /dev/shm and home volume checked;
- smuggling through user_options refused, naming the field, with no pod made;
- the real KubeSpawner start/poll/stop against the Kubernetes API STAND-IN
  (tests/kube_api_stand_in.py: an aiohttp fake on loopback, because no real
  API server can run here), and against a real cluster when KUBECONFIG points
  at one and CLUSTERLAB_TEST_REAL_KUBERNETES=1.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import kubernetes_asyncio.config.kube_config as kube_config
import kubernetes_validate
import kubernetes_validate.utils
import pytest
from aiohttp import web
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from tornado.web import HTTPError

from clusterlab_spawner.kubernetes import KubeClusterSpawner, pod_settings
from clusterlab_spawner.options import Choice
from clusterlab_spawner.profiles import ProfileError, load_profiles, parse_profiles
from kube_api_stand_in import KubeAPIStandIn

REPO = Path(__file__).resolve().parents[1]
PROFILE_FILES = [REPO / "hub_config" / "profiles.yaml", REPO / "tests" / "data" / "slurm-profiles.yaml"]
NS = "clusterlab-test"
KUBE_VERSIONS = sorted({"1.30.0", kubernetes_validate.utils.latest_version()})
REAL = os.environ.get("CLUSTERLAB_TEST_REAL_KUBERNETES") == "1" and bool(os.environ.get("KUBECONFIG"))


class User:
    """What ClusterSpawner and KubeSpawner read of a hub user."""

    def __init__(self, name="ada"):
        self.name = name
        self.id = 7
        self.url = f"/user/{name}/"
        self.spawners = {}


@pytest.fixture
def dummy_kubeconfig(tmp_path, monkeypatch):
    """KubeSpawner reads a kubeconfig even when it builds manifests offline."""
    stand_in = KubeAPIStandIn(namespace=NS, workdir=tmp_path)
    stand_in.url = "http://127.0.0.1:9"  # never contacted
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(stand_in._write_kubeconfig()))


def profiles_of(path):
    return [(path, p) for p in load_profiles(path)]


# every size a server may have (a size of several nodes is for jobs, never a JupyterLab)
ALL_PROFILES = [item for path in PROFILE_FILES for item in profiles_of(path) if not item[1].multi_node]


def new_spawner(profiles_file=PROFILE_FILES[0], **kwargs) -> KubeClusterSpawner:
    kwargs.setdefault("namespace", NS)
    return KubeClusterSpawner(_mock=True, user=User(), profiles_file=str(profiles_file), **kwargs)


async def as_dict(obj) -> dict:
    """A kubernetes_asyncio model as the JSON the API server receives."""
    async with ApiClient() as api:
        return api.sanitize_for_serialization(obj)


async def manifest_for(spawner: KubeClusterSpawner, options: dict) -> dict:
    spawner.user_options = options
    await spawner.load_user_options()
    return await as_dict(await spawner.get_pod_manifest())


def quantity(value) -> float:
    """A Kubernetes quantity as a number of base units (enough for cpu and Mi/Gi memory)."""
    text = str(value)
    for suffix, factor in (("Ki", 1024), ("Mi", 1024**2), ("Gi", 1024**3), ("m", 0.001)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


# ----- (1) the real manifest, for every profile, valid for the versions we claim ---------------


@pytest.mark.parametrize(("path", "profile"), ALL_PROFILES, ids=[f"{p.parent.name}/{q.id}" for p, q in ALL_PROFILES])
async def test_pod_manifest_of_every_profile_is_valid_and_sized(dummy_kubeconfig, path, profile):
    spawner = new_spawner(path, image="registry.example.org/clusterlab/singleuser:1.0")
    manifest = await manifest_for(spawner, {"profile": profile.id})
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)

    spec = manifest["spec"]
    [container] = [c for c in spec["containers"] if c["name"] == "notebook"]
    resources = container["resources"]
    for side in ("requests", "limits"):
        assert quantity(resources[side]["cpu"]) == profile.cpus
        assert quantity(resources[side]["memory"]) == profile.memory_bytes
        if profile.gpus:
            assert resources[side]["nvidia.com/gpu"] == str(profile.gpus)
        else:
            assert "nvidia.com/gpu" not in resources[side]
    kube = profile.kubernetes
    assert container["image"] == kube.get("image", "registry.example.org/clusterlab/singleuser:1.0")
    assert (spec.get("nodeSelector") or {}) == kube.get("node_selector", {})
    assert (spec.get("tolerations") or []) == kube.get("tolerations", [])
    assert spec["activeDeadlineSeconds"] == int(profile.default_hours * 3600)

    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    shm = volumes["dshm"]["emptyDir"]
    assert shm["medium"] == "Memory" and mounts["dshm"] == "/dev/shm"
    assert quantity(shm["sizeLimit"]) == pytest.approx(kube.get("shm_gb", profile.memory_gb / 2) * 1024**3)
    assert volumes["home"]["persistentVolumeClaim"]["claimName"] == "claim-ada"
    assert mounts["home"] == "/home/jovyan"


async def test_the_sites_datasets_are_a_read_only_volume_of_the_server_and_named_to_its_jobs(dummy_kubeconfig):
    spawner = new_spawner(image="registry.example.org/clusterlab/singleuser:1.0",
                          site_datasets_claim="clusterlab-datasets", site_datasets_path="/srv/datasets")
    manifest = await manifest_for(spawner, {"profile": "cpu-small"})
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)
    spec = manifest["spec"]
    [container] = [c for c in spec["containers"] if c["name"] == "notebook"]
    assert {"name": "site-datasets", "mountPath": "/srv/datasets", "readOnly": True} in container["volumeMounts"]
    assert {"name": "site-datasets", "persistentVolumeClaim": {"claimName": "clusterlab-datasets",
                                                                "readOnly": True}} in spec["volumes"]
    env = spawner.get_env()
    assert env["CLUSTERLAB_K8S_SITE_DATASETS_PVC"] == "clusterlab-datasets"
    assert env["CLUSTERLAB_SITE_DATASETS"] == "/srv/datasets"
    assert "CLUSTERLAB_K8S_SITE_DATASETS_PVC" not in new_spawner().get_env()  # none unless the site has one


async def test_pvc_manifest_is_valid(dummy_kubeconfig):
    pvc = await as_dict(new_spawner().get_pvc_manifest())
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(pvc, version, strict=True)
    assert pvc["metadata"]["name"] == "claim-ada"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"


def test_pod_settings_is_pure_and_adds_to_the_site(tmp_path):
    profile = next(p for p in load_profiles(PROFILE_FILES[0]) if p.gpus)
    site = {"image": "site:1", "node_selector": {"zone": "a"}, "tolerations": [{"key": "site", "operator": "Exists"}],
            "volumes": [{"name": "data", "emptyDir": {}}], "volume_mounts": [{"name": "data", "mountPath": "/data"}]}
    settings = pod_settings(Choice(profile, 2), **site, guarantee_fraction=0.5, home_claim="")
    assert settings["node_selector"] == {"zone": "a", **profile.kubernetes["node_selector"]}
    assert settings["tolerations"][0] == site["tolerations"][0] and len(settings["tolerations"]) == 2
    assert settings["cpu_guarantee"] == profile.cpus / 2 and settings["cpu_limit"] == profile.cpus
    assert [v["name"] for v in settings["volumes"]] == ["data", "dshm"]  # no home volume asked for
    assert settings["extra_pod_config"] == {"activeDeadlineSeconds": 7200}
    assert site["node_selector"] == {"zone": "a"}  # inputs untouched


async def test_a_second_start_does_not_keep_the_first_profile(dummy_kubeconfig):
    spawner = new_spawner()
    gpu = await manifest_for(spawner, {"profile": "gpu-1"})
    cpu = await manifest_for(spawner, {"profile": "cpu-small"})
    assert "nvidia.com/gpu" in gpu["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in cpu["spec"]["containers"][0]["resources"]["limits"]
    assert not cpu["spec"].get("tolerations") and not cpu["spec"].get("nodeSelector")
    assert [v["name"] for v in cpu["spec"]["volumes"]].count("dshm") == 1


def test_kubespawner_profile_list_is_refused(dummy_kubeconfig):
    with pytest.raises(Exception, match="profiles.yaml"):
        new_spawner(profile_list=[{"display_name": "evil", "kubespawner_override": {"image": "evil"}}])


# ----- (2) smuggling through user_options ----------------------------------------------------------

SMUGGLED = [
    ({"profile": "cpu-small", "image": "evil"}, "image"),
    ({"profile": "cpu-small", "extra_resource_limits": {"nvidia.com/gpu": "8"}}, "extra_resource_limits"),
    ({"profile": "cpu-small", "profile-option-cpu-small--image": "evil"}, "profile-option-cpu-small--image"),
    ({"profile": "evil-kubespawner-slug"}, "profile"),
    ({"profile": "cpu-small", "hours": 1000}, "hours"),
]


@pytest.mark.parametrize(("options", "field"), SMUGGLED, ids=[f for _, f in SMUGGLED])
async def test_smuggled_options_are_refused_before_any_pod(dummy_kubeconfig, options, field):
    spawner = new_spawner()
    spawner.user_options = options
    with pytest.raises(HTTPError) as e:
        await spawner.start()  # refused before KubeSpawner talks to any API server
    assert e.value.status_code == 400
    assert f"({field})" in e.value.log_message
    with pytest.raises(HTTPError):  # nor can KubeSpawner's own entry point read them
        await spawner.load_user_options()
    assert spawner.image == "quay.io/jupyterhub/singleuser:latest"
    assert spawner.extra_resource_limits == {}


# ----- (3), (4) the real start/poll/stop, against the stand-in or a real cluster -------------------


class StandInCluster:
    """Talks to the stand-in; ``pods()`` reads what was really created."""

    name = "stand-in"

    def __init__(self, stand_in):
        self.stand_in = stand_in
        self.namespace = NS
        self.host = stand_in.url


class RealCluster:
    name = "real"
    stand_in = None

    def __init__(self):
        self.namespace = os.environ.get("CLUSTERLAB_K8S_NAMESPACE", "default")
        self.host = None


# The real-cluster variant exists only when one is named (KUBECONFIG and
# CLUSTERLAB_TEST_REAL_KUBERNETES=1; namespace: CLUSTERLAB_K8S_NAMESPACE, default
# 'default'): none can run on our machines, and CI allows no skips.
@pytest.fixture(params=["stand-in", "real"] if REAL else ["stand-in"])
async def cluster(request, tmp_path, monkeypatch):
    if request.param == "real":
        yield RealCluster()
    else:
        async with KubeAPIStandIn(namespace=NS, workdir=tmp_path) as stand_in:
            monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", stand_in.kubeconfig_path)
            yield StandInCluster(stand_in)
    await KubeClusterSpawner._stop_all_reflectors()  # they are per class; the next test has a new loop


@pytest.fixture
async def answering_port():
    """A server on 127.0.0.1 that plays the JupyterLab the stand-in's pod would run (podIP 127.0.0.1)."""
    async def answer(request):
        return web.Response(text="JupyterLab stand-in")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield site._server.sockets[0].getsockname()[1]
    await runner.cleanup()


def spawner_on(cluster, port) -> KubeClusterSpawner:
    kwargs = dict(namespace=cluster.namespace, start_timeout=300, http_timeout=30)
    if cluster.host:
        kwargs["k8s_api_host"] = cluster.host
    if cluster.stand_in:
        kwargs["port"] = port
    else:
        # a real pod: a command that keeps serving without a hub to talk to (its args are ignored)
        kwargs["cmd"] = ["sh", "-c", "exec python3 -m http.server 8888"]
        kwargs["http_timeout"] = 5  # the test process may not reach pod IPs; the pod's state is what counts
        kwargs["user"] = User(f"clusterlab-test-{os.getpid()}")
        # the named namespace, with no objects beyond pod and volume: the rights this test had
        # before per-user namespaces (tests/test_kube_isolation.py covers those on the stand-in)
        kwargs.update(enable_user_namespaces=False, service_account=None)
    user = kwargs.pop("user", User())
    return KubeClusterSpawner(_mock=True, user=user, profiles_file=str(PROFILE_FILES[0]), **kwargs)


async def read_pod(spawner) -> dict | None:
    try:
        pod = await spawner.api.read_namespaced_pod(spawner.pod_name, spawner.namespace)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise
    return await as_dict(pod)


async def poll_until_stopped(spawner, seconds=30):
    deadline = asyncio.get_running_loop().time() + seconds
    while (status := await spawner.poll()) is None:
        assert asyncio.get_running_loop().time() < deadline, "poll never said stopped"
        await asyncio.sleep(0.1)
    return status


async def test_start_poll_stop(cluster, answering_port):
    spawner = spawner_on(cluster, answering_port)
    spawner.user_options = {"profile": "cpu-small", "hours": 1}
    url = await spawner.start()
    try:
        assert url.startswith("http://")
        pod = await read_pod(spawner)
        assert pod is not None
        [container] = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
        assert quantity(container["resources"]["limits"]["cpu"]) == 1
        assert quantity(container["resources"]["limits"]["memory"]) == 2 * 1024**3
        assert pod["spec"]["activeDeadlineSeconds"] == 3600
        assert {v["name"] for v in pod["spec"]["volumes"]} >= {"dshm", "home"}
        pvc = await spawner.api.read_namespaced_persistent_volume_claim(spawner.pvc_name, spawner.namespace)
        assert pvc.metadata.name == spawner.pvc_name
        assert await spawner.poll() is None
        if cluster.stand_in:
            assert url == f"http://127.0.0.1:{answering_port}"
            [created] = cluster.stand_in.created("Pod")
            assert created["spec"]["containers"][0]["image"] == "quay.io/jupyterhub/singleuser:latest"
            assert cluster.stand_in.created("PersistentVolumeClaim")[0]["metadata"]["name"] == "claim-ada"
            # one watch per kind serves every poll
            assert len(cluster.stand_in.requests_for("GET", "pods", watch=True)) == 1
        await spawner.stop()
        assert await read_pod(spawner) is None
        assert await spawner.poll() == 1

        # a pod deleted by someone else: poll says stopped
        spawner.clear_state()
        spawner.user_options = {"profile": "cpu-small"}
        await spawner.start()
        assert await spawner.poll() is None
        await spawner.api.delete_namespaced_pod(spawner.pod_name, spawner.namespace, grace_period_seconds=0)
        assert await poll_until_stopped(spawner) == 1
    finally:
        await spawner.stop(now=True)
        if not cluster.stand_in:
            await spawner.delete_forever()  # the test's PVC too


def test_a_profile_may_size_dev_shm_within_its_memory():
    entry = {"id": "gpu-big-shm", "display_name": "x", "cpus": 2, "memory_gb": 8, "gpus": 1,
             "max_hours": 2, "default_hours": 1, "kubernetes": {"shm_gb": 6}}
    [profile] = parse_profiles({"profiles": [entry]})
    shm = next(v for v in pod_settings(Choice(profile, 1), image="i")["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "6144Mi"}
    entry["kubernetes"]["shm_gb"] = 9
    with pytest.raises(ProfileError, match="kubernetes.shm_gb"):
        parse_profiles({"profiles": [entry]})


async def test_the_form_is_clusterlabs_not_kubespawners(dummy_kubeconfig):
    spawner = new_spawner()
    assert spawner.options_form == "clusterlab"
    form = await spawner.get_options_form()
    assert 'value="gpu-4"' in form and "profile-option" not in form
    assert spawner.run_options_from_form({"profile": ["gpu-1"], "hours": ["2"]}) == {"profile": "gpu-1", "hours": 2.0}
    with pytest.raises(HTTPError):
        spawner.run_options_from_form({"profile": ["gpu-1"], "hours": ["99"]})
