"""The Kubernetes API STAND-IN (tests/kube_api_stand_in.py) answers the real client.

These tests check the fake, not ClusterLab: that kubernetes_asyncio, the
client KubeSpawner and the jobs backend use, can create, list, watch, read
logs of and delete pods and batch/v1 Jobs through it, that what it
returns deserializes into the client's models, that objects stay in their
namespaces, and that a service account's token gets only what its
RoleBindings grant (the stand-in's small RBAC, not Kubernetes').
"""

from __future__ import annotations

import asyncio

import pytest
from kubernetes_asyncio import client, config, watch

from kube_api_stand_in import KubeAPIStandIn, label_selector_matches

NS = "clusterlab-test"


@pytest.fixture
async def stand_in(tmp_path):
    async with KubeAPIStandIn(namespace=NS, workdir=tmp_path) as server:
        yield server


@pytest.fixture
async def api(stand_in):
    configuration = client.Configuration()
    await config.load_kube_config(config_file=stand_in.kubeconfig_path, client_configuration=configuration)
    async with client.ApiClient(configuration) as api_client:
        yield api_client


def pod_manifest(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"component": "singleuser-server", "hub.jupyter.org/username": "ada"}},
        "spec": {"containers": [{"name": "notebook", "image": "quay.io/jupyter/base-notebook:latest"}]},
    }


def job_manifest(name: str) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"clusterlab/user": "ada"}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"clusterlab/user": "ada"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "job", "image": "python:3.11", "command": ["python", "-c", "print(1)"]}],
                },
            },
        },
    }


async def test_pod_create_list_get_delete(stand_in, api):
    core = client.CoreV1Api(api)
    created = await core.create_namespaced_pod(NS, pod_manifest("jupyter-ada"))
    assert created.metadata.uid and created.metadata.resource_version and created.metadata.creation_timestamp

    pods = await core.list_namespaced_pod(NS, label_selector="component=singleuser-server")
    assert [p.metadata.name for p in pods.items] == ["jupyter-ada"]
    assert not (await core.list_namespaced_pod(NS, label_selector="component=other")).items

    pod = await core.read_namespaced_pod("jupyter-ada", NS)
    assert pod.status.phase == "Running" and pod.status.pod_ip == "127.0.0.1"
    assert pod.status.container_statuses[0].state.running.started_at
    assert pod.status.container_statuses[0].image == "quay.io/jupyter/base-notebook:latest"

    await core.delete_namespaced_pod("jupyter-ada", NS, body=client.V1DeleteOptions(grace_period_seconds=1))
    assert not (await core.list_namespaced_pod(NS)).items
    with pytest.raises(client.ApiException) as e:
        await core.read_namespaced_pod("jupyter-ada", NS)
    assert e.value.status == 404
    assert stand_in.created("Pod")[0]["spec"]["containers"][0]["image"] == "quay.io/jupyter/base-notebook:latest"


async def test_a_watch_streams_changes_after_a_list(stand_in, api):
    core = client.CoreV1Api(api)
    listed = await core.list_namespaced_pod(NS, label_selector="component=singleuser-server")
    seen = []

    async def follow():
        w = watch.Watch()
        async with w.stream(core.list_namespaced_pod, namespace=NS, label_selector="component=singleuser-server",
                            resource_version=listed.metadata.resource_version, timeout_seconds=5) as stream:
            async for event in stream:
                pod = event["raw_object"]
                seen.append((event["type"], pod["metadata"]["name"], pod["status"]["phase"]))
                if event["type"] == "DELETED":
                    return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.1)
    await core.create_namespaced_pod(NS, pod_manifest("jupyter-ada"))
    stand_in.delete_from_outside("Pod", "jupyter-ada")
    await asyncio.wait_for(task, 5)
    assert seen == [("ADDED", "jupyter-ada", "Pending"), ("MODIFIED", "jupyter-ada", "Running"),
                    ("DELETED", "jupyter-ada", "Running")]
    assert len(stand_in.requests_for("GET", "pods", watch=True)) == 1


async def test_job_create_status_log_delete(stand_in, api):
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    job = await batch.create_namespaced_job(NS, job_manifest("clusterlab-ada-1"))
    assert job.status.active == 1 and job.status.start_time
    assert job.spec.template.metadata.labels["job-name"] == "clusterlab-ada-1"

    [pod] = (await core.list_namespaced_pod(NS, label_selector="job-name=clusterlab-ada-1")).items
    assert pod.metadata.labels["batch.kubernetes.io/job-name"] == "clusterlab-ada-1"
    assert pod.metadata.owner_references[0].uid == job.metadata.uid
    assert pod.status.phase == "Pending"

    stand_in.set_job_status("clusterlab-ada-1", "running")
    stand_in.set_job_log("clusterlab-ada-1", "epoch 1\nepoch 2\n")
    jobs = await batch.list_namespaced_job(NS, label_selector="clusterlab/user=ada")
    assert [(j.metadata.name, j.status.active, j.status.ready) for j in jobs.items] == [("clusterlab-ada-1", 1, 1)]
    assert (await core.read_namespaced_pod(pod.metadata.name, NS)).status.phase == "Running"
    assert await core.read_namespaced_pod_log(pod.metadata.name, NS) == "epoch 1\nepoch 2\n"
    assert await core.read_namespaced_pod_log(pod.metadata.name, NS, tail_lines=1) == "epoch 2\n"

    stand_in.set_job_status("clusterlab-ada-1", "succeeded")
    done = await batch.read_namespaced_job("clusterlab-ada-1", NS)
    assert done.status.succeeded == 1 and not done.status.active and done.status.completion_time
    assert {c.type for c in done.status.conditions} == {"Complete", "SuccessCriteriaMet"}

    await batch.delete_namespaced_job("clusterlab-ada-1", NS, propagation_policy="Foreground")
    assert not (await batch.list_namespaced_job(NS)).items
    assert not (await core.list_namespaced_pod(NS)).items  # the Job's pod went with it
    assert len(stand_in.requests_for("GET", "jobs")) == 2  # one list per question asked
    assert stand_in.created("Job")[0]["spec"]["backoffLimit"] == 0


async def test_job_failed_and_propagation_in_the_body(stand_in, api):
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(NS, job_manifest("clusterlab-ada-2"))
    stand_in.set_job_status("clusterlab-ada-2", "failed")
    failed = await batch.read_namespaced_job("clusterlab-ada-2", NS)
    assert failed.status.failed == 1 and failed.status.conditions[-1].type == "Failed"
    body = client.V1DeleteOptions(propagation_policy="Background")
    await batch.delete_namespaced_job("clusterlab-ada-2", NS, body=body)
    assert stand_in.objects("pods") == []
    with pytest.raises(client.ApiException) as e:
        await batch.delete_namespaced_job("clusterlab-ada-2", NS)
    assert e.value.status == 404


def test_runs_in_a_thread_for_sync_code(tmp_path):
    with KubeAPIStandIn(namespace=NS, workdir=tmp_path) as stand_in:

        async def create_and_list():
            configuration = client.Configuration()
            await config.load_kube_config(config_file=stand_in.kubeconfig_path, client_configuration=configuration)
            async with client.ApiClient(configuration) as api_client:
                batch = client.BatchV1Api(api_client)
                await batch.create_namespaced_job(NS, job_manifest("clusterlab-ada-3"))
                stand_in.set_job_status("clusterlab-ada-3", "running")  # from this thread, not the server's
                return (await batch.list_namespaced_job(NS)).items

        [job] = asyncio.run(create_and_list())
        assert job.status.ready == 1
        assert stand_in.get("Job", "clusterlab-ada-3")["status"]["active"] == 1


def test_label_selectors():
    labels = {"app": "jupyterhub", "component": "singleuser-server"}
    assert label_selector_matches("app=jupyterhub,component==singleuser-server", labels)
    assert label_selector_matches("component in (singleuser-server, other),!missing", labels)
    assert not label_selector_matches("component notin (singleuser-server)", labels)
    assert not label_selector_matches("app!=jupyterhub", labels)
    assert not label_selector_matches("missing", labels)


async def test_namespaces_hold_their_own_objects(stand_in, api):
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    with pytest.raises(client.ApiException) as e:  # as the real server: no namespace, no object in it
        await core.create_namespaced_pod("nowhere", pod_manifest("jupyter-ada"))
    assert e.value.status == 404
    created = await core.create_namespace({"metadata": {"name": "clusterlab-ada", "labels": {"a": "b"}}})
    assert created.metadata.labels == {"a": "b", "kubernetes.io/metadata.name": "clusterlab-ada"}
    with pytest.raises(client.ApiException) as e:
        await core.create_namespace({"metadata": {"name": "clusterlab-ada"}})
    assert e.value.status == 409
    assert (await core.read_namespace("clusterlab-ada")).status.phase == "Active"

    await core.create_namespaced_pod("clusterlab-ada", pod_manifest("jupyter-ada"))
    assert not (await core.list_namespaced_pod(NS)).items
    with pytest.raises(client.ApiException) as e:
        await core.read_namespaced_pod("jupyter-ada", NS)
    assert e.value.status == 404
    assert [p.metadata.namespace for p in (await core.list_pod_for_all_namespaces()).items] == ["clusterlab-ada"]

    role = {"metadata": {"name": "r"}, "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list"]}]}
    stored = await rbac.create_namespaced_role("clusterlab-ada", role)
    role["rules"][0]["verbs"] = ["list", "create"]
    role["metadata"]["resourceVersion"] = stored.metadata.resource_version
    replaced = await rbac.replace_namespaced_role("r", "clusterlab-ada", role)
    assert replaced.rules[0].verbs == ["list", "create"] and replaced.metadata.generation == 2
    with pytest.raises(client.ApiException) as e:  # a stale resourceVersion
        await rbac.replace_namespaced_role("r", "clusterlab-ada", role)
    assert e.value.status == 409


async def test_a_service_account_may_do_what_its_role_binding_grants(stand_in, api):
    stand_in.add({"kind": "Namespace", "metadata": {"name": "ns-a"}})
    stand_in.add({"kind": "Role", "metadata": {"name": "jobs", "namespace": "ns-a"},
                  "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list"]},
                            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]})
    stand_in.add({"kind": "RoleBinding", "metadata": {"name": "jobs", "namespace": "ns-a"},
                  "subjects": [{"kind": "ServiceAccount", "name": "runner", "namespace": "ns-a"}],
                  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "jobs"}})
    stand_in.add({**pod_manifest("p"), "metadata": {"name": "p", "namespace": "ns-a"}})
    configuration = client.Configuration()
    await config.load_kube_config(config_file=stand_in.kubeconfig_for("ns-a", "runner"),
                                  client_configuration=configuration)
    async with client.ApiClient(configuration) as as_runner:
        batch, core = client.BatchV1Api(as_runner), client.CoreV1Api(as_runner)
        assert not (await batch.list_namespaced_job("ns-a")).items
        assert await core.read_namespaced_pod_log("p", "ns-a") == ""
        for call in (batch.list_namespaced_job(NS), batch.create_namespaced_job("ns-a", job_manifest("j")),
                     core.read_namespaced_pod("p", "ns-a"), batch.list_job_for_all_namespaces()):
            with pytest.raises(client.ApiException) as e:
                await call
            assert e.value.status == 403
            assert "system:serviceaccount:ns-a:runner" in e.value.body
    # the kubeconfig's own token is an administrator's
    assert (await client.BatchV1Api(api).list_job_for_all_namespaces()).items == []
