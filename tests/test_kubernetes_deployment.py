"""The Kubernetes deployment (hub_config/kubernetes/) agrees with Kubernetes and with our code.

What is checked here, with no cluster: every object of rbac.yaml against the
official Kubernetes schemas (kubernetes-validate, strict, 1.30 and the newest it
ships); the hub's ClusterRole against the requests a real start, restart, stop
and user deletion make (against the API STAND-IN, tests/kube_api_stand_in.py)
plus the rights it hands out in each user's Role, exactly; values.yaml against
our own code (the spawner's entry point, the traits it sets, the profiles file
it mounts, per-user namespaces on, no shared service account); the
Dockerfile's base images pinned and in step with the chart version.

What is not: the values against the Zero to JupyterHub chart itself. No package
registry these machines reach ships the chart or helm, so that check runs only
where ``Z2JH_CHART`` names an unpacked chart (``helm pull jupyterhub/jupyterhub
--version 4.4.2 --untar``): the values are then validated against the chart's
values.schema.json, and, with ``helm`` on PATH, every rendered object against
the Kubernetes schemas.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from traitlets.config import Config

REPO = Path(__file__).resolve().parents[1]
HERE = REPO / "hub_config" / "kubernetes"
PROFILES = REPO / "hub_config" / "profiles.yaml"
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((HERE / "values.yaml").read_text())


@pytest.fixture(scope="module")
def rbac() -> dict[str, dict]:
    objects = [o for o in yaml.safe_load_all((HERE / "rbac.yaml").read_text()) if o]
    by_kind = {o["kind"]: o for o in objects}
    assert len(by_kind) == len(objects) == 2, "one ClusterRole and its ClusterRoleBinding, for the hub"
    return by_kind


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def chart_version_in(text: str) -> set[str]:
    return set(re.findall(r"jupyterhub/jupyterhub --version (\d+\.\d+\.\d+)", text))


# ----- rbac.yaml: what the hub may do, and nothing more ------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rbac_objects_are_valid_kubernetes(rbac, version):
    for obj in rbac.values():
        kubernetes_validate.validate(obj, version, strict=True)


def granted(rules: list[dict]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


# What the hub asks of the API server to start, stop and forget users' servers with
# per-user namespaces (KubeSpawner 7.1 and ClusterLab's spawner), as (group, resource, verb).
HUB_REQUESTS = {
    ("", "namespaces", "create"), ("", "namespaces", "get"), ("", "namespaces", "update"),
    ("", "pods", "create"), ("", "pods", "delete"), ("", "pods", "list"), ("", "pods", "watch"),
    ("", "events", "list"), ("", "events", "watch"),
    ("", "persistentvolumeclaims", "create"), ("", "persistentvolumeclaims", "get"),
    ("", "persistentvolumeclaims", "delete"),
    ("", "serviceaccounts", "create"),
    ("rbac.authorization.k8s.io", "roles", "create"), ("rbac.authorization.k8s.io", "roles", "get"),
    ("rbac.authorization.k8s.io", "roles", "update"),
    ("rbac.authorization.k8s.io", "rolebindings", "create"), ("rbac.authorization.k8s.io", "rolebindings", "get"),
    ("rbac.authorization.k8s.io", "rolebindings", "update"),
    ("networking.k8s.io", "networkpolicies", "create"), ("networking.k8s.io", "networkpolicies", "get"),
    ("networking.k8s.io", "networkpolicies", "update"),
}


def test_the_hub_holds_exactly_what_it_asks_for_and_what_it_hands_out(rbac):
    from clusterlab_spawner.kubernetes import JOB_SERVICE_API_CALLS

    rights = granted(rbac["ClusterRole"]["rules"])
    # Kubernetes lets the hub create the users' Role only if it holds every right in it
    hands_out = set(JOB_SERVICE_API_CALLS.values())
    assert rights == HUB_REQUESTS | hands_out
    # nothing that reads Secrets, escalates, impersonates or names everything
    assert not {r for r in rights if r[1] == "secrets" or r[2] in ("escalate", "bind", "impersonate")}
    assert "*" not in str(rbac["ClusterRole"]["rules"])


async def test_the_hub_requests_are_the_table(tmp_path, monkeypatch):
    """Every request of a real start, restart (mending a changed Role), stop and user deletion
    against the API STAND-IN (tests/kube_api_stand_in.py), as RBAC sees it, is in HUB_REQUESTS."""
    import kubernetes_asyncio.config.kube_config as kube_config
    from clusterlab_spawner.kubernetes import KubeClusterSpawner
    from kube_api_stand_in import KubeAPIStandIn

    class User:  # a name KubeSpawner 6 slugged otherwise: KubeSpawner 7 looks for the old volume name
        name, id, url, spawners = "Alice", 1, "/user/Alice/", {}

    async with KubeAPIStandIn(namespace="clusterlab", workdir=tmp_path) as stand_in:
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", stand_in.kubeconfig_path)
        monkeypatch.setattr(KubeClusterSpawner, "_wait_until_answering", lambda self, url: asyncio.sleep(0))
        spawner = KubeClusterSpawner(_mock=True, user=User(), profiles_file=str(PROFILES), hub_namespace="clusterlab",
                                     user_namespace_template="clusterlab-{username}", k8s_api_host=stand_in.url)
        spawner.load_state({"pod_name": spawner.pod_name})  # a server last started by KubeSpawner 6
        ns = spawner.namespace
        try:
            spawner.user_options = {"profile": "cpu-small"}
            await spawner.start()
            await spawner.stop(now=True)
            spawner.clear_state()
            # someone changes all that the spawner keeps in step: the next start puts it back
            for kind, name in (("Role", "clusterlab-jobs"), ("RoleBinding", "clusterlab-jobs"),
                               ("NetworkPolicy", "clusterlab-user"), ("Namespace", ns)):
                obj = stand_in.get(kind, name, ns)
                if kind == "Namespace":
                    del obj["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
                elif kind == "Role":
                    obj["rules"][0]["verbs"].append("get")
                elif kind == "RoleBinding":
                    obj["subjects"].append({"kind": "ServiceAccount", "name": "default", "namespace": ns})
                else:
                    obj["spec"]["ingress"][0]["from"].append({"namespaceSelector": {}})
                stand_in.replace_from_outside(obj)
            spawner.user_options = {"profile": "cpu-small"}
            await spawner.start()
            await spawner.stop(now=True)
            await spawner.delete_forever()
        finally:
            await KubeClusterSpawner._stop_all_reflectors()
        asked = {r.rights for r in stand_in.requests if r.rights}
    assert asked == HUB_REQUESTS


def test_the_binding_gives_the_cluster_role_to_the_charts_hub_account(rbac):
    role, binding = rbac["ClusterRole"], rbac["ClusterRoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]
    }
    # the chart's hub service account, in the release's namespace (a subject must name it)
    [subject] = binding["subjects"]
    assert subject["kind"] == "ServiceAccount" and subject["name"] == "hub"
    namespace = subject["namespace"]
    readme = (HERE / "README.md").read_text()
    assert f"--namespace {namespace}" in readme and f"create namespace {namespace}" in readme


def test_no_shared_service_account_for_the_users(values):
    # each server runs as its own namespace's account, set by the spawner: a chart
    # setting would replace it, and rbac.yaml no longer creates a shared one
    assert "serviceAccountName" not in values["singleuser"]
    spawner = values["hub"]["config"]["KubeClusterSpawner"]
    assert spawner["enable_user_namespaces"] is True and spawner["pod_security_level"] == "baseline"
    assert "service_account" not in spawner and "automount_service_account_token" not in spawner
    # baseline refuses the chart's privileged init container; the hub admits user pods from their namespaces
    assert values["singleuser"]["cloudMetadata"]["blockWithIptables"] is False
    assert values["hub"]["networkPolicy"]["interNamespaceAccessLabels"] == "accept"


# ----- values.yaml: what it names exists in our code ----------------------------------------


def test_hub_uses_our_spawner_and_authenticator_entry_points(values):
    entry_points = pyproject()["project"]["entry-points"]
    jupyterhub = values["hub"]["config"]["JupyterHub"]
    assert jupyterhub["spawner_class"] == "clusterlab-kubernetes"
    assert entry_points["jupyterhub.spawners"]["clusterlab-kubernetes"] == (
        "clusterlab_spawner.kubernetes:KubeClusterSpawner"
    )
    assert jupyterhub["authenticator_class"] in entry_points["jupyterhub.authenticators"]


def configurable_classes() -> dict[str, type]:
    from clusterlab_spawner.auth import ClusterLabAuthenticator
    from clusterlab_spawner.kubernetes import KubeClusterSpawner
    from clusterlab_spawner.spawner import ClusterSpawner
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import Authenticator

    return {cls.__name__: cls for cls in
            (JupyterHub, Authenticator, ClusterLabAuthenticator, ClusterSpawner, KubeClusterSpawner)}


def test_hub_config_sets_only_real_traits(values):
    classes = configurable_classes()
    for section, settings in values["hub"]["config"].items():
        # the chart refuses lower-case sections (chart >= 4.3): traitlets would ignore them
        assert section[0].isupper() and isinstance(settings, dict)
        traits = classes[section].class_traits(config=True)
        for name, value in settings.items():
            assert name in traits, f"hub.config.{section}.{name} is no configurable trait"
            # the trait's own check, as when the hub loads it: this also resolves
            # spawner_class and authenticator_class through the installed entry points
            traits[name].validate(None, value)
    assert classes["KubeClusterSpawner"].job_backend == "kubernetes"


def test_extra_config_checks_the_profiles_and_reads_the_admin_password(values, monkeypatch, tmp_path):
    snippet = values["hub"]["extraConfig"]["clusterlab.py"]
    hub_config = values["hub"]["config"]

    def run(profiles: Path) -> Config:
        # as the chart does: hub.config first, then each extraConfig snippet with `c` in scope
        c = Config(yaml.safe_load(yaml.safe_dump(hub_config)))
        c.ClusterSpawner.profiles_file = str(profiles)  # the mount path, here
        exec(compile(snippet, "clusterlab.py", "exec"), {"c": c})
        return c

    monkeypatch.setenv("CLUSTERLAB_ADMIN_PASSWORD", "s3cret")
    assert run(PROFILES).ClusterLabAuthenticator.admin_password == "s3cret"

    from clusterlab_spawner.profiles import ProfileError

    broken = tmp_path / "profiles.yaml"
    broken.write_text(PROFILES.read_text().replace("max_hours: 12", "max_hours: 1"))
    with pytest.raises(ProfileError, match="cpu-small.*default_hours"):
        run(broken)


def test_profiles_are_mounted_where_hub_and_servers_read_them(values):
    path = values["hub"]["config"]["ClusterSpawner"]["profiles_file"]
    for part in ("hub", "singleuser"):
        mounted = values[part]["extraFiles"]["clusterlab-profiles"]
        assert mounted == {"mountPath": path}, "the content comes from --set-file, never a copy"
    # every --set-file in the guide and in the values file's header loads a file of this checkout
    for doc in (HERE / "README.md", HERE / "values.yaml"):
        set_files = re.findall(r"--set-file (\w+)\.extraFiles\.([\w-]+)\.stringData=(\S+)", doc.read_text())
        assert {part for part, _, _ in set_files} == {"hub", "singleuser"}, doc
        for part, key, file in set_files:
            assert key in values[part]["extraFiles"]
            assert (REPO / file).resolve() == PROFILES


def test_hub_env_and_server_env_are_where_the_code_reads_them(values):
    assert values["hub"]["extraEnv"]["CLUSTERLAB_BACKEND"] == "kubernetes"
    admin = values["hub"]["extraEnv"]["CLUSTERLAB_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert admin["optional"] is True  # without the Secret, a random password is written
    # The spawner gives each server what its job service reads (namespace, home
    # volume, image, backend); values.yaml must not set them, since the spawner's win.
    spawner = (REPO / "spawner" / "clusterlab_spawner" / "kubernetes.py").read_text()
    jobs = (REPO / "server_extension" / "clusterlab_server" / "backends" / "kubernetes.py").read_text()
    read = set(re.findall(r"env\.get\(\"(CLUSTERLAB_K8S_\w+)\"[,)]", jobs))
    # CLUSTERLAB_K8S_USER: the backend gives it to its own jobs (an experiment's controller reads it there)
    assert '"CLUSTERLAB_K8S_USER": self.user' in jobs
    read -= {"CLUSTERLAB_K8S_USER"}
    assert read and all(name in spawner for name in read), read
    server_env = values["singleuser"].get("extraEnv") or {}
    assert not {"CLUSTERLAB_JOB_BACKEND", "CLUSTERLAB_K8S_NAMESPACE", "CLUSTERLAB_K8S_HOME_PVC"} & set(server_env)


def test_home_volume_is_the_spawners_and_shared_with_jobs(values):
    # chart storage would mount a second volume on the home folder the spawner mounts
    assert values["singleuser"]["storage"]["type"] == "none"
    spawner = values["hub"]["config"]["KubeClusterSpawner"]
    assert spawner["storage_access_modes"] == ["ReadWriteMany"]  # jobs run on other nodes
    # one volume per user (the spawner's default), which the user's jobs mount too
    assert "pvc_name_template" not in spawner and "home_volume" not in spawner


def test_user_servers_may_reach_the_api_server(values):
    ports = {p["port"] for rule in values["singleuser"]["networkPolicy"]["egress"] for p in rule["ports"]}
    assert {443, 6443} <= ports


# ----- the images -----------------------------------------------------------------------------


def dockerfile_images() -> tuple[dict[str, str], list[str]]:
    """Stage name -> base image, and every image copied from (COPY --from=<image>)."""
    stages, copied = {}, []
    for line in (HERE / "Dockerfile").read_text().splitlines():
        if m := re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$", line, re.IGNORECASE):
            stages[m.group(2) or f"#{len(stages)}"] = m.group(1)
        elif m := re.match(r"COPY\s+.*--from=(\S+)", line):
            copied.append(m.group(1))
    return stages, copied


def test_dockerfile_images_are_pinned():
    stages, copied = dockerfile_images()
    assert {"wheel", "hub", "singleuser"} <= set(stages)
    images = list(stages.values()) + [c for c in copied if c not in stages]
    assert len(images) >= 4
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag and tag not in ("", "latest"), f"{image} is not pinned"
        assert not re.fullmatch(r"\d+(\.\d+)?", tag), f"{image}: pin a full version, not a major"


def test_hub_image_chart_and_guide_name_the_same_versions(values):
    stages, _ = dockerfile_images()
    assert stages["hub"].startswith("quay.io/jupyterhub/k8s-hub:")
    hub_base_tag = stages["hub"].rpartition(":")[2]
    for doc in (HERE / "README.md", HERE / "values.yaml"):
        assert chart_version_in(doc.read_text()) == {hub_base_tag}, doc
    version = pyproject()["project"]["version"]
    readme = (HERE / "README.md").read_text()
    for part in ("hub", "singleuser"):
        image = values[part]["image"]
        assert image["tag"] == version
        assert f"--target {part}" in readme and f"-t {image['name']}:{image['tag']}" in readme


def test_image_build_context_leaves_out_local_builds():
    ignored = (HERE / "Dockerfile.dockerignore").read_text().split()
    # the lab extension is built from its sources in the image, not copied from a checkout
    assert {".venv", "node_modules", "labextension/node_modules",
            "server_extension/clusterlab_server/labextension"} <= set(ignored)


# ----- against the chart itself, where one is at hand ---------------------------------------
# Collected only when Z2JH_CHART names an unpacked chart: none can be had here, and
# CI allows no skipped tests.

CHART = os.environ.get("Z2JH_CHART")


def helm_merge(base, override):
    """Helm's merge of values files: maps merge, everything else is replaced, null deletes."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return override
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = helm_merge(base.get(key), value)
    return merged


def test_helm_merge_is_helms():
    chart = {"a": {"b": 1, "c": [1, 2], "d": "x"}, "e": 2}
    ours = {"a": {"c": [3], "d": None, "f": {"g": 1}}}
    assert helm_merge(chart, ours) == {"a": {"b": 1, "c": [3], "f": {"g": 1}}, "e": 2}


def with_profiles(values: dict) -> dict:
    values = yaml.safe_load(yaml.safe_dump(values))
    for part in ("hub", "singleuser"):
        values[part]["extraFiles"]["clusterlab-profiles"]["stringData"] = PROFILES.read_text()
    return values


if CHART:

    def test_values_match_the_charts_schema(values):
        chart = Path(CHART)
        schema = yaml.safe_load((chart / "values.schema.json").read_text())
        merged = helm_merge(yaml.safe_load((chart / "values.yaml").read_text()), with_profiles(values))
        jsonschema.validate(merged, schema)

    @pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
    def test_rendered_chart_is_valid_kubernetes(version):
        assert shutil.which("helm"), "Z2JH_CHART is set: helm must be on PATH to render it"
        rendered = subprocess.run(
            ["helm", "template", "clusterlab", CHART, "--namespace", "clusterlab",
             "-f", str(HERE / "values.yaml"),
             "--set-file", f"hub.extraFiles.clusterlab-profiles.stringData={PROFILES}",
             "--set-file", f"singleuser.extraFiles.clusterlab-profiles.stringData={PROFILES}"],
            capture_output=True, text=True, check=True,
        ).stdout
        objects = [o for o in yaml.safe_load_all(rendered) if o]
        assert objects
        for obj in objects:
            kubernetes_validate.validate(obj, version, strict=True)
