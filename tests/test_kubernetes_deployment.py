"""The Kubernetes deployment (hub_config/kubernetes/) agrees with Kubernetes and with our code.

What is checked here, with no cluster: every object of rbac.yaml against the
official Kubernetes schemas (kubernetes-validate, strict, 1.30 and the newest it
ships); the Role against the API calls the job service really makes; values.yaml
against our own code (the spawner's entry point, the traits it sets, the
profiles file it mounts, the service account rbac.yaml creates); the
Dockerfile's base images pinned and in step with the chart version.

What is not: the values against the Zero to JupyterHub chart itself. No package
registry these machines reach ships the chart or helm, so that check runs only
where ``Z2JH_CHART`` names an unpacked chart (``helm pull jupyterhub/jupyterhub
--version 4.4.2 --untar``): the values are then validated against the chart's
values.schema.json, and, with ``helm`` on PATH, every rendered object against
the Kubernetes schemas.
"""

from __future__ import annotations

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
    assert len(by_kind) == len(objects) == 3, "one ServiceAccount, one Role, one RoleBinding"
    return by_kind


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def chart_version_in(text: str) -> set[str]:
    return set(re.findall(r"jupyterhub/jupyterhub --version (\d+\.\d+\.\d+)", text))


# ----- rbac.yaml ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rbac_objects_are_valid_kubernetes(rbac, version):
    for obj in rbac.values():
        kubernetes_validate.validate(obj, version, strict=True)


def test_role_grants_exactly_what_the_job_service_needs(rbac):
    rules = {
        (group, resource): sorted(rule["verbs"])
        for rule in rbac["Role"]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert rules == {
        ("batch", "jobs"): sorted(["create", "get", "list", "watch", "delete"]),
        ("", "pods"): sorted(["get", "list", "watch"]),
        ("", "pods/log"): sorted(["get", "list", "watch"]),
    }


# what each kubernetes_asyncio method the job service calls needs from RBAC
API_CALLS = {
    "create_namespaced_job": ("batch", "jobs", "create"),
    "read_namespaced_job": ("batch", "jobs", "get"),
    "list_namespaced_job": ("batch", "jobs", "list"),
    "delete_namespaced_job": ("batch", "jobs", "delete"),
    "read_namespaced_pod": ("", "pods", "get"),
    "list_namespaced_pod": ("", "pods", "list"),
    "read_namespaced_pod_log": ("", "pods/log", "get"),
}


def test_role_covers_every_api_call_of_the_job_service(rbac):
    source = REPO / "server_extension" / "clusterlab_server" / "kubernetes_jobs.py"
    calls = set(re.findall(r"_call\(\s*\"\w+Api\",\s*\"(\w+)\"", source.read_text()))
    assert calls, "found no API call in kubernetes_jobs.py: has its _call(...) form changed?"
    unknown = calls - API_CALLS.keys()
    assert not unknown, f"new API calls {unknown}: add them to API_CALLS and, if needed, to rbac.yaml"
    granted = {
        (group, resource, verb)
        for rule in rbac["Role"]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert {API_CALLS[c] for c in calls} <= granted


def test_binding_gives_the_role_to_the_account_user_servers_run_as(rbac, values):
    account, role, binding = rbac["ServiceAccount"], rbac["Role"], rbac["RoleBinding"]
    assert account["metadata"]["name"] == values["singleuser"]["serviceAccountName"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]
    }
    namespace = account["metadata"]["namespace"]
    # a ServiceAccount subject must name its namespace: `kubectl apply -n` does not fill it in
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": namespace}
    ]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == namespace
    readme = (HERE / "README.md").read_text()
    assert f"--namespace {namespace}" in readme and f"create namespace {namespace}" in readme


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
    jobs = (REPO / "server_extension" / "clusterlab_server" / "kubernetes_jobs.py").read_text()
    read = set(re.findall(r"env\.get\(\"(CLUSTERLAB_K8S_\w+)\"\)", jobs))
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
