"""One user's server, jobs and home volume out of another's reach, on Kubernetes.

Each user gets a namespace of their own; the spawner puts in it the service
account the user's server runs as, a Role that grants exactly the job
service's API calls, their binding, and a NetworkPolicy (spawner/
clusterlab_spawner/kubernetes.py). Checked here:

- the objects, as built by pure functions, valid for Kubernetes 1.30 and the
  newest version kubernetes-validate ships (strict);
- the Role grants exactly what backends/kubernetes.py calls: one table
  (JOB_SERVICE_API_CALLS), checked against the calls in that file;
- the real KubeSpawner start, for alice and bob, against the API STAND-IN
  (tests/kube_api_stand_in.py, an aiohttp fake on loopback, not Kubernetes):
  a namespace each, with its objects, the pod running as the account with its
  token, the home volume in the user's namespace, the env naming it; a second
  start changes nothing and mends a Role someone widened;
- with alice's token, the stand-in's RBAC (RoleBindings to Roles, as the real
  server evaluates them) lets her run jobs in her namespace and refuses every
  request into bob's. The stand-in does not enforce Pod Security or
  NetworkPolicies: those are only checked to be there.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import kubernetes_asyncio.config.kube_config as kube_config
import kubernetes_validate
import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client import ApiClient
from kubespawner.objects import make_namespace

from clusterlab_spawner.kubernetes import (
    JOB_SERVICE_API_CALLS,
    JOBS_ROLE,
    KubeClusterSpawner,
    job_service_rules,
    namespace_labels,
    user_network_policy,
    user_rbac_objects,
)
from kube_api_stand_in import KubeAPIStandIn

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "hub_config" / "profiles.yaml"
JOBS_SOURCE = REPO / "server_extension" / "clusterlab_server" / "backends" / "kubernetes.py"
KUBE_VERSIONS = sorted({"1.30.0", kubernetes_validate.latest_version()})
HUB_NS = "clusterlab"
SA = "clusterlab-jobs"


class User:
    def __init__(self, name):
        self.name = name
        self.id = {"alice": 1, "bob": 2}.get(name, 3)
        self.url = f"/user/{name}/"
        self.spawners = {}


def granted(rules: list[dict]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


# ----- the objects, pure -------------------------------------------------------------------------


def test_the_job_service_calls_are_the_table():
    calls = set(re.findall(r"_call\(\s*\"\w+Api\",\s*\"(\w+)\"", JOBS_SOURCE.read_text()))
    assert calls, "found no API call in backends/kubernetes.py: has its _call(...) form changed?"
    # both ways: a new call needs a row (and so a rule); a row no call uses is a right too many
    assert calls == set(JOB_SERVICE_API_CALLS)


def test_the_role_grants_exactly_the_job_service_calls():
    role = next(o for o in user_rbac_objects("clusterlab-alice", SA) if o["kind"] == "Role")
    assert granted(role["rules"]) == set(JOB_SERVICE_API_CALLS.values())
    assert granted(role["rules"]) == {
        ("batch", "jobs", "create"), ("batch", "jobs", "list"), ("batch", "jobs", "delete"),
        ("", "pods", "list"), ("", "pods/log", "get"),
    }
    assert not any("*" in str(rule) for rule in role["rules"])


@pytest.mark.parametrize("version", KUBE_VERSIONS)
async def test_the_namespace_objects_are_valid_kubernetes(version):
    objects = [*user_rbac_objects("clusterlab-alice", SA), user_network_policy("clusterlab-alice", HUB_NS)]
    labels = {k: v.format(username="alice") for k, v in namespace_labels("baseline").items()}
    async with ApiClient() as api:
        objects.append(api.sanitize_for_serialization(make_namespace("clusterlab-alice", labels=labels)))
    objects[-1].update(apiVersion="v1", kind="Namespace")
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_binding_gives_the_role_to_the_account_of_the_same_namespace():
    account, role, binding = user_rbac_objects("clusterlab-bob", SA)
    assert (account["kind"], role["kind"], binding["kind"]) == ("ServiceAccount", "Role", "RoleBinding")
    assert {o["metadata"]["namespace"] for o in (account, role, binding)} == {"clusterlab-bob"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SA, "namespace": "clusterlab-bob"}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": JOBS_ROLE}


def test_the_network_policy_admits_only_the_hub_and_the_namespace_itself():
    policy = user_network_policy("clusterlab-bob", HUB_NS)
    assert policy["spec"]["podSelector"] == {} and policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": HUB_NS}}},
        {"podSelector": {}},
    ]


# ----- the real start, against the stand-in -----------------------------------------------------


@pytest.fixture
async def stand_in(tmp_path, monkeypatch):
    async with KubeAPIStandIn(namespace=HUB_NS, workdir=tmp_path) as server:
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", server.kubeconfig_path)
        yield server
    await KubeClusterSpawner._stop_all_reflectors()  # per class; the next test has a new loop


def spawner_for(name: str, stand_in, **kwargs) -> KubeClusterSpawner:
    # In a pod the hub's namespace comes from its service account's files, which a
    # test process has not: KubeSpawner's {hubnamespace} would be "user" here, so the
    # test names the hub's namespace (HUB_NS) as a site could.
    kwargs.setdefault("user_namespace_template", HUB_NS + "-{username}")
    # k8s_api_host: KubeSpawner loads its client configuration once per host (lru_cache)
    spawner = KubeClusterSpawner(_mock=True, user=User(name), profiles_file=str(PROFILES), hub_namespace=HUB_NS,
                                 k8s_api_host=stand_in.url, start_timeout=60, http_timeout=5, **kwargs)
    spawner.user_options = {"profile": "cpu-small", "hours": 1}
    return spawner


async def test_per_user_namespaces_are_the_default(stand_in):
    spawner = KubeClusterSpawner(_mock=True, user=User("alice"), profiles_file=str(PROFILES),
                                 k8s_api_host=stand_in.url)
    assert spawner.enable_user_namespaces is True
    assert spawner.user_namespace_template == "{hubnamespace}-{username}"
    assert (spawner.service_account, spawner.automount_service_account_token) == (SA, True)
    assert spawner.pod_security_level == "baseline" and spawner.isolate_user_network is True
    # KubeSpawner's own rule: a hub in "default" gives "user-<name>"
    assert spawner.namespace == f"{spawner._namespace_default().replace('default', 'user')}-alice"


@pytest.fixture(autouse=True)
def _answering(monkeypatch):
    async def answers(self, url):
        return None  # the stand-in's pods run nothing; test_kube_spawner checks the wait

    monkeypatch.setattr(KubeClusterSpawner, "_wait_until_answering", answers)


def pod_env(pod: dict) -> dict[str, str]:
    [container] = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
    return {e["name"]: e.get("value") for e in container.get("env", [])}


async def test_alice_and_bob_get_a_namespace_each(stand_in):
    alice, bob = spawner_for("alice", stand_in), spawner_for("bob", stand_in)
    await alice.start()
    await bob.start()
    try:
        assert (alice.namespace, bob.namespace) == ("clusterlab-alice", "clusterlab-bob")
        for spawner in (alice, bob):
            ns, name = spawner.namespace, spawner.user.name
            namespace = stand_in.get("Namespace", ns)
            assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
            assert namespace["metadata"]["labels"]["clusterlab/user"] == name
            for manifest in [*user_rbac_objects(ns, SA), user_network_policy(ns, HUB_NS)]:
                stored = stand_in.get(manifest["kind"], manifest["metadata"]["name"], ns)
                assert stored is not None, (manifest["kind"], ns)
                for field in ("rules", "subjects", "roleRef", "spec"):
                    assert stored.get(field) == manifest.get(field)
            [pod] = stand_in.objects("Pod", ns)
            assert pod["metadata"]["name"] == f"jupyter-{name}"
            assert pod["spec"]["serviceAccountName"] == SA
            assert pod["spec"]["automountServiceAccountToken"] is True
            [pvc] = stand_in.objects("PersistentVolumeClaim", ns)
            assert pvc["metadata"]["name"] == f"claim-{name}"
            volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
            assert volumes["home"]["persistentVolumeClaim"]["claimName"] == f"claim-{name}"
            env = pod_env(pod)
            assert env["CLUSTERLAB_K8S_NAMESPACE"] == ns == spawner.get_env()["CLUSTERLAB_K8S_NAMESPACE"]
            assert env["CLUSTERLAB_K8S_HOME_PVC"] == f"claim-{name}"
        # nothing of a user's in the hub's namespace or in the other's
        assert not stand_in.objects("Pod", HUB_NS) and not stand_in.objects("PersistentVolumeClaim", HUB_NS)
        assert [p["metadata"]["name"] for p in stand_in.objects("Pod", "clusterlab-bob")] == ["jupyter-bob"]
    finally:
        await alice.stop(now=True)
        await bob.stop(now=True)


async def test_a_second_start_changes_nothing_and_mends_a_widened_role(stand_in):
    alice = spawner_for("alice", stand_in)
    await alice.start()
    await alice.stop(now=True)
    creates = {kind: len(stand_in.created(kind)) for kind in ("ServiceAccount", "Role", "RoleBinding", "NetworkPolicy")}
    assert creates == dict.fromkeys(creates, 1)

    alice.clear_state()
    await alice.start()  # everything exists: 409s, read, nothing replaced
    await alice.stop(now=True)
    assert not [r for r in stand_in.requests if r.method == "PUT"]
    assert {kind: len(stand_in.objects(kind, "clusterlab-alice")) for kind in creates} == dict.fromkeys(creates, 1)

    # someone widens the Role, and strips the namespace's Pod Security label: the next start mends both
    role = stand_in.get("Role", JOBS_ROLE, "clusterlab-alice")
    role["rules"].append({"apiGroups": [""], "resources": ["persistentvolumeclaims", "secrets"], "verbs": ["*"]})
    stand_in.replace_from_outside(role)
    namespace = stand_in.get("Namespace", "clusterlab-alice")
    del namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
    stand_in.replace_from_outside(namespace)
    alice.clear_state()
    await alice.start()
    await alice.stop(now=True)
    assert stand_in.get("Role", JOBS_ROLE, "clusterlab-alice")["rules"] == job_service_rules()
    labels = stand_in.get("Namespace", "clusterlab-alice")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"


async def test_a_server_from_the_shared_namespace_past_moves_to_its_own(stand_in):
    alice = spawner_for("alice", stand_in)
    # state recorded before per-user namespaces: the hub's namespace, its volume known to exist
    alice.load_state({"namespace": HUB_NS, "pvc_name": "claim-alice", "kubespawner_version": "7.1.0"})
    assert alice.namespace == HUB_NS
    await alice.start()
    try:
        assert alice.namespace == "clusterlab-alice"
        assert [p["metadata"]["name"] for p in stand_in.objects("PersistentVolumeClaim", "clusterlab-alice")] == [
            "claim-alice"]
        assert not stand_in.objects("Pod", HUB_NS)
    finally:
        await alice.stop(now=True)


async def test_one_shared_namespace_is_a_switch_and_says_what_it_costs(stand_in, caplog):
    alice = spawner_for("alice", stand_in, enable_user_namespaces=False, namespace=HUB_NS)
    with caplog.at_level(logging.WARNING):
        await alice.start()
    try:
        assert alice.namespace == HUB_NS and stand_in.objects("Pod", HUB_NS)
        assert any("enable_user_namespaces is False" in r.getMessage()
                   and "other users' Jobs" in r.getMessage() and r.levelno == logging.WARNING
                   for r in caplog.records)
        # jobs still work there: the same account and Role, but no NetworkPolicy over the hub's own pods
        assert stand_in.get("Role", JOBS_ROLE, HUB_NS)["rules"] == job_service_rules()
        assert not stand_in.objects("NetworkPolicy") and not stand_in.created("Namespace")
    finally:
        await alice.stop(now=True)


# ----- with alice's token ---------------------------------------------------------------------


def job(name: str, claim: str) -> dict:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "job", "image": "busybox:1.36", "command": ["cat", "/home/secret"]}],
            "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": claim}}],
        }}},
    }


async def test_alices_token_reaches_her_jobs_and_nothing_of_bobs(stand_in):
    alice, bob = spawner_for("alice", stand_in), spawner_for("bob", stand_in)
    await alice.start()
    await bob.start()
    try:
        stand_in.add({**job("clusterlab-bobs", "claim-bob"), "metadata": {
            "name": "clusterlab-bobs", "namespace": "clusterlab-bob", "labels": {"clusterlab/user": "bob"}}})
        configuration = client.Configuration()
        await config.load_kube_config(config_file=stand_in.kubeconfig_for("clusterlab-alice", SA),
                                      client_configuration=configuration)
        async with client.ApiClient(configuration) as api:
            batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
            # her own namespace: what the job service does
            await batch.create_namespaced_job("clusterlab-alice", job("clusterlab-mine", "claim-alice"))
            assert [j.metadata.name for j in (await batch.list_namespaced_job("clusterlab-alice")).items] == [
                "clusterlab-mine"]
            assert (await core.list_namespaced_pod("clusterlab-alice")).items
            await batch.delete_namespaced_job("clusterlab-mine", "clusterlab-alice", propagation_policy="Foreground")

            refused = [
                batch.list_namespaced_job("clusterlab-bob"),
                batch.delete_namespaced_job("clusterlab-bobs", "clusterlab-bob"),
                batch.create_namespaced_job("clusterlab-bob", job("clusterlab-steal", "claim-bob")),
                core.list_namespaced_pod("clusterlab-bob"),
                core.read_namespaced_pod_log("jupyter-bob", "clusterlab-bob"),
                batch.list_job_for_all_namespaces(),
                core.list_pod_for_all_namespaces(),
                # within her namespace, nothing beyond running jobs
                core.read_namespaced_persistent_volume_claim("claim-alice", "clusterlab-alice"),
                core.list_namespaced_secret("clusterlab-alice"),
                client.RbacAuthorizationV1Api(api).list_namespaced_role("clusterlab-alice"),
            ]
            for call in refused:
                with pytest.raises(client.ApiException) as e:
                    await call
                assert e.value.status == 403, call
        assert stand_in.get("Job", "clusterlab-bobs", "clusterlab-bob") is not None
        # a Job of hers names claims of her namespace only, where bob's is not
        assert [c["metadata"]["name"] for c in stand_in.objects("PersistentVolumeClaim", "clusterlab-alice")] == [
            "claim-alice"]
    finally:
        await alice.stop(now=True)
        await bob.stop(now=True)
