"""The dataset store and service on real files: versions, manifests, hard links, refusals, inputs.

The REST API over it: tests/test_datasets_api.py; jobs that mount inputs: tests/test_datasets_jobs.py.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import socket
import stat
import subprocess
import threading
from pathlib import Path

import accounts
import pytest
from clusterlab_server.datasets import store as store_module
from clusterlab_server.datasets.service import DatasetService
from clusterlab_server.experiments.store import Experiment, ExperimentStore
from clusterlab_server.service import JobError, JobService, Settings
from clusterlab_server.store import Job

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "hub_config" / "profiles.yaml"
UNPRIVILEGED = "clusterlab-dsowner"


def make_service(root: Path, **settings) -> JobService:
    return JobService(Settings(
        jobs_root=root / "jobs", workspace=root / "workspace", template_paths=[REPO / "templates"],
        profiles_file=PROFILES, site_datasets=root / "site", **settings,
    ))


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)


SHAPES = {
    "train/circle_1.png": b"\x89PNG circle 1" + bytes(range(256)) * 40,
    "train/circle_2.png": b"\x89PNG circle 2" + bytes(range(256)) * 40,
    "train/square_1.jpg": b"\xff\xd8 square 1" + os.urandom(20_000),
    "labels.csv": b"file,label\n" + b"".join(b"train/x%d.png,%d\n" % (i, i % 2) for i in range(20)),
    "README.md": b"shapes for tests\n",
}


@pytest.fixture
def service(tmp_path, monkeypatch):
    # files written a moment ago are "racily clean" (read again next time); these tests' files count as old,
    # but for the test of that guard
    monkeypatch.setattr(store_module, "RACY_NS", 0)
    write_files(tmp_path / "workspace" / "shapes", SHAPES)
    return make_service(tmp_path)


@pytest.fixture
def datasets(service) -> DatasetService:
    return service.datasets


def store_root(service: JobService) -> Path:
    return Path(service.settings.datasets_root)


def everything_under(root: Path) -> dict[int, int]:
    """inode -> bytes on disk (st_blocks) of every file and folder under ``root``."""
    found = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        found[st.st_ino] = st.st_blocks * 512
    return found


def assert_nothing_left(service: JobService, name: str = "shapes") -> None:
    root = store_root(service)
    if not root.exists():
        return
    assert list((root / "staging").iterdir()) == []
    assert [p for p in (root / "objects").rglob("*") if p.is_file()] == []
    assert not (root / "versions" / name).exists() or service.datasets.own.versions(name) == []


# ----- versions -------------------------------------------------------------------------


def test_a_version_is_frozen_with_its_manifest(service, datasets, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    version = datasets.create({"name": "shapes", "folder": "shapes", "description": "toy shapes", "project": "vision"})
    root = store_root(service)
    files_dir = root / "versions" / "shapes" / "1" / "files"
    assert version == {
        "name": "shapes", "version": 1, "digest": version["digest"], "files": 5,
        "bytes": sum(map(len, SHAPES.values())), "new_bytes": sum(map(len, SHAPES.values())),
        "created": version["created"], "creator": "alice", "description": "toy shapes", "project": "vision",
        "shared": False, "source": "shapes", "path": str(files_dir),
    }
    assert datetime.datetime.fromisoformat(version["created"]).utcoffset() == datetime.timedelta(0)

    manifest = datasets.manifest("shapes", 1)
    expected_files = [{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                      for p, d in sorted(SHAPES.items())]
    assert manifest["files"] == expected_files
    assert manifest["digest"] == "sha256:" + hashlib.sha256(
        json.dumps(expected_files, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert {k: manifest[k] for k in ("name", "version", "creator", "description", "project", "source", "count",
                                     "bytes")} == {
        "name": "shapes", "version": 1, "creator": "alice", "description": "toy shapes", "project": "vision",
        "source": "shapes", "count": 5, "bytes": version["bytes"]}
    assert json.loads((files_dir.parent / "manifest.json").read_text()) == manifest

    # every file is a hard link to its 0444 object; the version's folders are 0555; the store is the user's
    for entry in expected_files:
        linked = (files_dir / entry["path"]).stat()
        obj = (root / "objects" / entry["sha256"][:2] / entry["sha256"][2:]).stat()
        assert linked.st_ino == obj.st_ino and obj.st_nlink == 2
        assert stat.S_IMODE(obj.st_mode) == 0o444
        assert (files_dir / entry["path"]).read_bytes() == SHAPES[entry["path"]]
    for folder in (files_dir.parent, files_dir, files_dir / "train"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o555
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert (root / "versions" / "shapes" / "next").read_text().strip() == "2"


def test_version_2_stores_only_the_changed_file_and_reads_only_it(service, datasets, tmp_path, monkeypatch):
    datasets.create({"name": "shapes", "folder": "shapes"})
    root = store_root(service)
    before = everything_under(root)
    changed = os.urandom(200_000)
    (tmp_path / "workspace" / "shapes" / "train" / "circle_2.png").write_bytes(changed)

    read = []
    real_add = store_module.DatasetStore._add
    monkeypatch.setattr(store_module.DatasetStore, "_add",
                        lambda self, rel, *a: read.append(rel) or real_add(self, rel, *a))
    version = datasets.create({"name": "shapes", "folder": "shapes"})
    assert read == ["train/circle_2.png"]  # the stat cache vouches for the others
    assert version["version"] == 2 and version["new_bytes"] == len(changed)
    assert version["digest"] != datasets.version("shapes", 1)["digest"]

    after = everything_under(root)
    new_disk = sum(blocks for ino, blocks in after.items() if ino not in before)
    # the changed file's blocks, and the new version's folders, manifest and summary (a few blocks each)
    assert len(changed) <= new_disk <= len(changed) + 16 * 4096
    assert sum(after.values()) - sum(before.values()) <= len(changed) + 16 * 4096

    unchanged = datasets.file("shapes", 1, "train/circle_1.png").stat()
    assert unchanged.st_ino == datasets.file("shapes", 2, "train/circle_1.png").stat().st_ino
    assert unchanged.st_nlink == 3  # the object, and a link in each version
    assert datasets.file("shapes", 1, "train/circle_2.png").read_bytes() == SHAPES["train/circle_2.png"]
    assert datasets.file("shapes", 2, "train/circle_2.png").read_bytes() == changed


def test_a_file_changed_within_the_clock_tick_it_was_read_in_is_read_again(tmp_path, monkeypatch):
    """git's racily-clean guard: a stat taken just after a write is not trusted by the next version."""
    write_files(tmp_path / "workspace" / "fresh", {"a.txt": b"one", "b.txt": b"two"})
    service = make_service(tmp_path)
    os.utime(tmp_path / "workspace" / "fresh" / "b.txt", ns=(0, 0))  # ctime is now all the same
    monkeypatch.setattr(store_module, "RACY_NS", 60 * 10**9)  # "just now": the last minute
    service.datasets.create({"name": "fresh", "folder": "fresh"})
    assert service.datasets.own.read_cache("fresh") == {}  # not vouched for: the next version reads them again
    monkeypatch.setattr(store_module, "RACY_NS", 0)
    service.datasets.create({"name": "fresh", "folder": "fresh"})
    assert len(service.datasets.own.read_cache("fresh")) == 2


def test_a_file_the_stat_cache_names_whose_object_is_gone_is_copied_again(service, datasets, tmp_path):
    datasets.create({"name": "shapes", "folder": "shapes"})
    write_files(tmp_path / "workspace" / "other", {"only.txt": b"only here"})
    datasets.create({"name": "other", "folder": "other"})
    (tmp_path / "workspace" / "other" / "only.txt").write_bytes(b"changed")
    datasets.create({"name": "other", "folder": "other"})
    datasets.delete("other", 1)  # its object goes; the cache of "other" no longer names it anyway
    cache = datasets.own.read_cache("shapes")
    datasets.delete("shapes", 1)  # every object of shapes goes, its stat cache stays
    assert cache and datasets.own.read_cache("shapes") == cache
    version = datasets.create({"name": "shapes", "folder": "shapes"})
    assert version["version"] == 2 and version["new_bytes"] == version["bytes"]
    assert datasets.file("shapes", 2, "README.md").read_bytes() == SHAPES["README.md"]


def test_version_numbers_are_never_reused_and_the_last_one_gone_takes_the_dataset(service, datasets):
    for _ in range(2):
        datasets.create({"name": "shapes", "folder": "shapes"})
    datasets.delete("shapes", 2)
    assert datasets.create({"name": "shapes", "folder": "shapes"})["version"] == 3
    assert [v["version"] for v in datasets.get("shapes")["versions"]] == [3, 1]
    datasets.delete("shapes", 1)
    datasets.delete("shapes", 3)
    assert datasets.list() == []
    with pytest.raises(JobError) as gone:
        datasets.get("shapes")
    assert (gone.value.status, gone.value.field) == (404, "name")
    assert datasets.create({"name": "shapes", "folder": "shapes"})["version"] == 4


def test_deleting_a_version_removes_the_contents_no_other_version_holds(service, datasets, tmp_path):
    datasets.create({"name": "shapes", "folder": "shapes"})
    (tmp_path / "workspace" / "shapes" / "README.md").write_bytes(b"a new readme\n")
    datasets.create({"name": "shapes", "folder": "shapes"})
    objects = store_root(service) / "objects"
    old_readme = hashlib.sha256(SHAPES["README.md"]).hexdigest()
    kept = hashlib.sha256(SHAPES["labels.csv"]).hexdigest()
    datasets.delete("shapes", 1)
    assert not (objects / old_readme[:2] / old_readme[2:]).exists()
    assert (objects / kept[:2] / kept[2:]).stat().st_nlink == 2  # still version 2's
    assert len([p for p in objects.rglob("*") if p.is_file()]) == 5
    datasets.delete("shapes", 2)
    assert [p for p in objects.rglob("*") if p.is_file()] == []
    assert list((store_root(service) / "staging").iterdir()) == []
    with pytest.raises(JobError) as unknown:
        datasets.delete("shapes", 2)
    assert (unknown.value.status, unknown.value.field) == (404, "name")


def test_versions_made_at_once_get_numbers_of_their_own(service, datasets):
    made, errors = [], []

    def create():
        try:
            made.append(datasets.create({"name": "shapes", "folder": "shapes"})["version"])
        except Exception as e:  # noqa: BLE001 - reported by the assert below
            errors.append(e)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and sorted(made) == [1, 2, 3, 4]
    assert len({v["digest"] for v in datasets.get("shapes")["versions"]}) == 1


def test_a_symlink_inside_the_folder_is_stored_as_the_file_it_points_to(service, datasets, tmp_path):
    folder = tmp_path / "workspace" / "shapes"
    (folder / "latest.png").symlink_to("train/circle_1.png")
    (folder / "all_train").symlink_to("train", target_is_directory=True)
    datasets.create({"name": "shapes", "folder": "shapes"})
    paths = {f["path"]: f["sha256"] for f in datasets.manifest("shapes", 1)["files"]}
    assert paths["latest.png"] == paths["train/circle_1.png"] == paths["all_train/circle_1.png"]
    stored = datasets.file("shapes", 1, "latest.png")
    assert not os.path.islink(Path(datasets.version("shapes", 1)["path"]) / "latest.png")
    assert stored.read_bytes() == SHAPES["train/circle_1.png"]


# ----- a version is read-only, for its owner too -------------------------------------------


WRITE_ATTEMPTS = """
import sys
results = []
for attempt in (lambda: open(sys.argv[1], "ab"), lambda: open(sys.argv[2] + "/new.txt", "x"),
                lambda: open(sys.argv[3] + "/new.txt", "x")):
    try:
        attempt().close()
        results.append("written")
    except PermissionError:
        results.append("PermissionError")
print(" ".join(results))
"""


def test_a_version_cannot_be_written_by_its_owner(tmp_path, monkeypatch):
    """Writing into a version's file, or creating a file in its folders, fails with PermissionError.

    Permission bits do not stop root (as CI runs): there the attempt runs as an unprivileged account that
    owns the store."""
    monkeypatch.setattr(store_module, "RACY_NS", 0)
    write_files(tmp_path / "workspace" / "shapes", SHAPES)
    if os.geteuid() == 0:
        account = accounts.ensure(UNPRIVILEGED)
        datasets_root = Path(account.pw_dir) / f"datasets-{os.getpid()}"
    else:
        datasets_root = tmp_path / "datasets"
    service = make_service(tmp_path, datasets_root=datasets_root)
    version = service.datasets.create({"name": "shapes", "folder": "shapes"})
    files = Path(version["path"])
    args = [str(files / "train" / "circle_1.png"), str(files / "train"), str(files.parent)]
    try:
        if os.geteuid() == 0:
            accounts.give(UNPRIVILEGED, datasets_root)
            done = subprocess.run(["/usr/bin/python3", "-c", WRITE_ATTEMPTS, *args], user=account.pw_uid,
                                  group=account.pw_gid, extra_groups=[], capture_output=True, text=True,
                                  check=True, cwd="/")
            assert done.stdout.split() == ["PermissionError"] * 3
        else:
            with pytest.raises(PermissionError):
                open(args[0], "ab")
            with pytest.raises(PermissionError):
                open(args[1] + "/new.txt", "x")
            with pytest.raises(PermissionError):
                open(args[2] + "/new.txt", "x")
        assert (files / "train" / "circle_1.png").read_bytes() == SHAPES["train/circle_1.png"]
    finally:
        store_module.remove_tree(datasets_root)


# ----- refusals: a JobError naming the field, and nothing left in the store ----------------------


@pytest.mark.parametrize("request_, status, field, message", [
    ({"name": "bad name", "folder": "shapes"}, 400, "name", "letters, digits or underscores"),
    ({"name": "a" * 101, "folder": "shapes"}, 400, "name", "1-100"),
    ({"folder": "shapes"}, 400, "name", "name must be"),
    ({"name": "shapes"}, 400, "folder", "folder must be"),
    ({"name": "shapes", "folder": 3}, 400, "folder", "folder must be"),
    ({"name": "shapes", "folder": "missing"}, 400, "folder", "does not exist"),
    ({"name": "shapes", "folder": "/etc"}, 400, "folder", "outside your workspace"),
    ({"name": "shapes", "folder": "../.."}, 400, "folder", "outside your workspace"),
    ({"name": "shapes", "folder": "shapes/README.md"}, 400, "folder", "is not a folder"),
    ({"name": "shapes", "folder": "empty"}, 400, "folder", "holds no files"),
    ({"name": "shapes", "folder": "shapes", "description": 5}, 400, "description", "at most 2000"),
    ({"name": "shapes", "folder": "shapes", "description": "x" * 2001}, 400, "description", "at most 2000"),
    ({"name": "shapes", "folder": "shapes", "project": "a/b"}, 400, "project", "letters"),
    ({"name": "shapes", "folder": "shapes", "colour": "red"}, 400, "colour", "unknown field"),
    (["shapes"], 400, "", "JSON object"),
])
def test_a_bad_request_is_refused_naming_its_field(service, datasets, tmp_path, request_, status, field, message):
    (tmp_path / "workspace" / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(JobError) as refused:
        datasets.create(request_)
    assert (refused.value.status, refused.value.field) == (status, field)
    assert message in refused.value.message
    assert_nothing_left(service)


def link_out(folder: Path, outside: Path):
    outside.write_text("secret")
    (folder / "train" / "leak.png").symlink_to(outside)


def link_out_of_a_linked_folder(folder: Path, outside: Path):
    outside.mkdir()
    (outside / "x.txt").write_text("x")
    (folder / "more").symlink_to(outside, target_is_directory=True)


def dangling(folder: Path, outside: Path):
    (folder / "train" / "gone.png").symlink_to(folder / "nowhere.png")


def loop(folder: Path, outside: Path):
    (folder / "train" / "again").symlink_to("..", target_is_directory=True)


def fifo(folder: Path, outside: Path):
    os.mkfifo(folder / "train" / "pipe")


def unix_socket(folder: Path, outside: Path):
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(folder / "train" / "sock"))
    s.close()


@pytest.mark.parametrize("make, message", [
    (link_out, "train/leak.png is a symbolic link to"),
    (link_out_of_a_linked_folder, "more is a symbolic link to"),
    (dangling, "which does not exist"),
    (loop, "train/again is a symbolic link to"),
    (fifo, "train/pipe is a named pipe"),
    (unix_socket, "train/sock is a socket"),
])
def test_what_a_dataset_cannot_hold_is_refused_and_nothing_is_left(service, datasets, tmp_path, make, message):
    datasets.create({"name": "other", "folder": "shapes"})  # a store that has objects already
    objects_before = sorted(p for p in (store_root(service) / "objects").rglob("*") if p.is_file())
    make(tmp_path / "workspace" / "shapes", tmp_path / "outside")
    # one new file, so that a refusal also has an object of its own to take back
    (tmp_path / "workspace" / "shapes" / "zzz_new.txt").write_text("new contents")
    with pytest.raises(JobError) as refused:
        datasets.create({"name": "shapes", "folder": "shapes"})
    assert (refused.value.status, refused.value.field) == (400, "folder")
    assert message in refused.value.message
    if make is link_out:
        assert "outside the folder" in refused.value.message
    root = store_root(service)
    assert list((root / "staging").iterdir()) == []
    assert sorted(p for p in (root / "objects").rglob("*") if p.is_file()) == objects_before
    assert datasets.own.versions("shapes") == []


def test_the_quota_refuses_a_version_early_and_leaves_nothing(service, datasets, tmp_path, monkeypatch):
    datasets.create({"name": "shapes", "folder": "shapes"})
    used = datasets.own.usage()
    assert used == sum(map(len, SHAPES.values()))
    write_files(tmp_path / "workspace" / "big", {
        "a_small.txt": b"small", "b_big.bin": os.urandom(300_000), "c_never_read.bin": os.urandom(300_000),
        "copy_of_readme.md": SHAPES["README.md"]})
    service.settings.datasets_quota_bytes = used + 100_000
    read = []
    real_add = store_module.DatasetStore._add
    monkeypatch.setattr(store_module.DatasetStore, "_add",
                        lambda self, rel, *a: read.append(rel) or real_add(self, rel, *a))
    with pytest.raises(JobError) as refused:
        datasets.create({"name": "big", "folder": "big"})
    assert (refused.value.status, refused.value.field) == (413, "folder")
    assert "b_big.bin" in refused.value.message and "quota" in refused.value.message
    assert read == ["a_small.txt", "b_big.bin"]  # stopped there
    assert_nothing_left_but(service, used)

    # contents the store holds already cost nothing: a copy of shapes fits however full the store is
    service.settings.datasets_quota_bytes = used
    write_files(tmp_path / "workspace" / "same", SHAPES)
    assert datasets.create({"name": "same", "folder": "same"})["new_bytes"] == 0


def assert_nothing_left_but(service: JobService, used: int) -> None:
    root = store_root(service)
    assert list((root / "staging").iterdir()) == []
    assert service.datasets.own.usage() == used
    assert service.datasets.own.versions("big") == []


# ----- site datasets ------------------------------------------------------------------------------


def test_site_datasets_are_shared_listed_after_the_users_and_cannot_be_deleted(service, datasets, tmp_path):
    site_version = datasets.create({"name": "mnist", "folder": "shapes", "description": "site copy"}, site=True)
    assert site_version["shared"] is True and site_version["path"].startswith(str(tmp_path / "site"))
    site = tmp_path / "site"
    assert stat.S_IMODE(site.stat().st_mode) == 0o755
    for path in site.rglob("*"):
        if path.is_relative_to(site / "cache") or path.is_relative_to(site / "staging"):
            continue
        assert path.stat().st_mode & 0o444 == 0o444, path  # everyone reads
    datasets.create({"name": "shapes", "folder": "shapes"})
    assert [(d["name"], d["shared"]) for d in datasets.list()] == [("shapes", False), ("mnist", True)]
    assert datasets.get("mnist")["versions"][0]["description"] == "site copy"

    with pytest.raises(JobError) as taken:
        datasets.create({"name": "mnist", "folder": "shapes"})
    assert (taken.value.status, taken.value.field) == (409, "name")
    with pytest.raises(JobError) as shared:
        datasets.delete("mnist", 1)
    assert (shared.value.status, shared.value.field) == (403, "name")
    assert datasets.resolve_input({"dataset": "mnist"}, "inputs.0")["shared"] is True


def test_site_datasets_need_write_permission_on_the_site_root(service, datasets, tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root may write anywhere: the check is the kernel's, as an admin's account sees it
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == site else real_access(path, mode))
    with pytest.raises(JobError) as refused:
        datasets.create({"name": "mnist", "folder": "shapes"}, site=True)
    assert (refused.value.status, refused.value.field) == (403, "site")
    assert list(site.iterdir()) == []


# ----- in use -------------------------------------------------------------------------------


def fake_job(service: JobService, status: str, inputs: list | None = None, output: dict | None = None,
             name: str = "train_1") -> Job:
    job_id = f"20260101-000000-{os.urandom(3).hex()}"
    folder = Path(service.settings.jobs_root) / job_id
    (folder / "output").mkdir(parents=True)
    write_files(folder / "output", output or {})
    job = Job(id=job_id, name=name, template="python-script", template_version="1", params={}, profile="cpu-small",
              hours=1.0, backend="local", folder=str(folder), status=status, inputs=inputs or [])
    service.store.add(job)
    return job


def test_a_version_an_unfinished_job_uses_cannot_be_deleted(service, datasets):
    datasets.create({"name": "shapes", "folder": "shapes"})
    datasets.create({"name": "shapes", "folder": "shapes"})
    pinned = datasets.resolve_input({"dataset": "shapes", "version": 1, "as": "data"}, "inputs.0")
    running = fake_job(service, "running", [pinned])
    done = fake_job(service, "completed", [pinned], name="train_0")
    assert {(u["id"], u["status"], u["as"]) for u in datasets.version("shapes", 1)["used_by"]} == {
        (running.id, "running", "data"), (done.id, "completed", "data")}
    assert datasets.used_by("shapes", 2) == []
    with pytest.raises(JobError) as refused:
        datasets.delete("shapes", 1)
    assert (refused.value.status, refused.value.field) == (409, "version")
    assert running.id in refused.value.message and done.id not in refused.value.message
    datasets.delete("shapes", 2)  # another version: free to go
    service.store.update(running.id, status="failed")
    datasets.delete("shapes", 1)


def test_a_version_a_running_experiment_uses_cannot_be_deleted(service, datasets):
    datasets.create({"name": "shapes", "folder": "shapes"})
    pinned = datasets.resolve_input({"dataset": "shapes"}, "inputs.0")
    experiments = ExperimentStore(service.store.engine)
    experiments.add(Experiment(id="exp-1", name="search", template="python-script", spec={"uses": [pinned]},
                               folder="/nowhere", status="running"))
    with pytest.raises(JobError) as refused:
        datasets.delete("shapes", 1)
    assert (refused.value.status, refused.value.field) == (409, "version")
    assert "experiment exp-1" in refused.value.message
    experiments.update("exp-1", status="completed")
    datasets.delete("shapes", 1)


# ----- job outputs as inputs ------------------------------------------------------------------


def test_a_jobs_output_is_frozen_once_and_reused(service, datasets):
    job = fake_job(service, "completed", output={"model.pt": b"weights" * 100, "metrics.jsonl": b"{}\n"})
    resolved = datasets.resolve_input({"job": job.id}, "inputs.0")
    root = store_root(service)
    assert resolved == {"as": "train_1", "job": job.id, "job_name": "train_1", "digest": resolved["digest"],
                        "files": 2, "bytes": 703, "path": str(root / "outputs" / job.id / "files")}
    assert (Path(resolved["path"]) / "model.pt").read_bytes() == b"weights" * 100
    assert stat.S_IMODE((Path(resolved["path"]) / "model.pt").stat().st_mode) == 0o444

    (Path(job.folder) / "output" / "model.pt").write_bytes(b"changed later")
    again = datasets.resolve_input({"job": job.id, "as": "model"}, "inputs.1")
    assert again == {**resolved, "as": "model"}  # the frozen copy, not the folder as it is now
    assert (Path(again["path"]) / "model.pt").read_bytes() == b"weights" * 100


@pytest.mark.parametrize("status, output, message", [
    ("running", {"model.pt": b"w"}, "has not ended (running)"),
    ("queued", {"model.pt": b"w"}, "has not ended (queued)"),
    ("completed", {}, "has no output"),
])
def test_a_job_that_cannot_be_an_input_is_refused(service, datasets, status, output, message):
    job = fake_job(service, status, output=output)
    with pytest.raises(JobError) as refused:
        datasets.resolve_input({"job": job.id}, "inputs.2")
    assert (refused.value.status, refused.value.field) == (400, "inputs.2.job")
    assert message in refused.value.message
    assert not (store_root(service) / "outputs" / job.id).exists()


def test_a_jobs_output_with_a_link_out_is_refused(service, datasets, tmp_path):
    job = fake_job(service, "completed", output={"model.pt": b"w"})
    (Path(job.folder) / "output" / "data").symlink_to(tmp_path / "workspace" / "shapes", target_is_directory=True)
    with pytest.raises(JobError) as refused:
        datasets.resolve_input({"job": job.id}, "inputs.0")
    assert (refused.value.status, refused.value.field) == (400, "inputs.0.job")
    assert "data is a symbolic link" in refused.value.message
    assert_nothing_left(service)


# ----- input entries ------------------------------------------------------------------------


def test_references_parse_as_datasets_or_jobs():
    parse = DatasetService.parse_ref
    assert parse("shapes") == {"dataset": "shapes", "version": None}
    assert parse("shapes:12") == {"dataset": "shapes", "version": 12}
    assert parse("job:20260101-000000-abcdef") == {"job": "20260101-000000-abcdef"}
    for not_a_ref in ("data/train", "shapes:0", "shapes:x", "shapes:2:3", "job:", "job:../x", "", "a b", None, 3):
        assert parse(not_a_ref) is None, not_a_ref


@pytest.mark.parametrize("entry, field, message", [
    ({"dataset": "shapes", "as": "../x"}, "inputs.0.as", "letters"),
    ({"dataset": "shapes", "as": "a/b"}, "inputs.0.as", "letters"),
    ({"dataset": "shapes", "version": 0}, "inputs.0.version", "version number"),
    ({"dataset": "shapes", "version": True}, "inputs.0.version", "version number"),
    ({"dataset": "shapes", "version": "1"}, "inputs.0.version", "version number"),
    ({"dataset": "shapes", "version": 9}, "inputs.0.version", "has no version 9"),
    ({"dataset": "nosuch"}, "inputs.0.dataset", "no dataset"),
    ({"dataset": "bad name"}, "inputs.0.dataset", "letters"),
    ({"dataset": "shapes", "path": "/etc"}, "inputs.0.path", "unknown field"),
    ({"job": "x", "version": 1}, "inputs.0.version", "unknown field"),
    ({"job": "nosuch"}, "inputs.0.job", "no job 'nosuch'"),
    ({"job": "../../etc"}, "inputs.0.job", "no job"),
    ({"dataset": "shapes", "job": "x"}, "inputs.0", "either a dataset or a job"),
    ({}, "inputs.0", "either a dataset or a job"),
    ("data/train", "inputs.0", "names no dataset"),
    (["shapes"], "inputs.0", "must be"),
])
def test_a_bad_input_entry_is_refused_naming_its_field(service, datasets, entry, field, message):
    datasets.create({"name": "shapes", "folder": "shapes"})
    with pytest.raises(JobError) as refused:
        datasets.check_input(entry, "inputs.0")
    assert (refused.value.status, refused.value.field) == (400, field)
    assert message in refused.value.message


def test_an_input_is_checked_cheaply_then_pinned(service, datasets):
    datasets.create({"name": "shapes", "folder": "shapes"})
    assert datasets.check_input({"dataset": "shapes"}, "inputs.0") == {"dataset": "shapes", "version": None,
                                                                      "as": "shapes"}
    assert datasets.check_input("shapes:1", "params.data") == {"dataset": "shapes", "version": 1, "as": "shapes"}
    datasets.create({"name": "shapes", "folder": "shapes"})
    resolved = datasets.resolve_input({"dataset": "shapes", "as": "data"}, "inputs.0")
    latest = datasets.version("shapes", 2)
    assert resolved == {"as": "data", "dataset": "shapes", "version": 2, "digest": latest["digest"],
                        "shared": False, "files": 5, "bytes": latest["bytes"], "path": latest["path"]}


# ----- looking inside -----------------------------------------------------------------------


def test_the_preview_shows_the_first_images_and_the_head_of_the_first_table(service, datasets, tmp_path):
    rows = "".join(f"r{i}\t{i}\n" for i in range(30))
    write_files(tmp_path / "workspace" / "shapes", {"b_table.tsv": ("name\tvalue\n" + rows).encode()})
    datasets.create({"name": "shapes", "folder": "shapes"})
    preview = datasets.preview("shapes", 1, limit=2)
    assert preview["images"] == [{"path": "train/circle_1.png", "size": len(SHAPES["train/circle_1.png"])},
                                 {"path": "train/circle_2.png", "size": len(SHAPES["train/circle_2.png"])}]
    assert preview["table"] == {"path": "b_table.tsv", "header": ["name", "value"],
                                "rows": [[f"r{i}", str(i)] for i in range(5)]}
    assert len(datasets.preview("shapes", 1)["images"]) == 3
    with pytest.raises(JobError) as refused:
        datasets.preview("shapes", 1, limit=0)
    assert refused.value.field == "limit"


def test_a_version_without_tables_previews_none(service, datasets, tmp_path):
    write_files(tmp_path / "workspace" / "plain", {"a.txt": b"a"})
    datasets.create({"name": "plain", "folder": "plain"})
    assert datasets.preview("plain", 1) == {"images": [], "table": None}


@pytest.mark.parametrize("path", [
    "../manifest.json", "train/../../manifest.json", "/etc/passwd", "", "train", "nosuch.png", "a\0b",
    "../../../1/files/README.md", "escape.txt",
])
def test_file_never_reaches_outside_the_version(service, datasets, tmp_path, path):
    datasets.create({"name": "shapes", "folder": "shapes"})
    files = Path(datasets.version("shapes", 1)["path"])
    # a link planted in the version (no version is made with one): file() still will not follow it out
    os.chmod(files, 0o755)
    (files / "escape.txt").symlink_to(tmp_path / "workspace" / "shapes" / "README.md")
    os.chmod(files, 0o555)
    with pytest.raises(JobError) as refused:
        datasets.file("shapes", 1, path)
    assert (refused.value.status, refused.value.field) == (404, "path")


def test_file_serves_a_file_of_the_version(service, datasets):
    datasets.create({"name": "shapes", "folder": "shapes"})
    assert datasets.file("shapes", 1, "train/./circle_1.png").read_bytes() == SHAPES["train/circle_1.png"]
    with pytest.raises(JobError) as unknown:
        datasets.file("shapes", 2, "README.md")
    assert (unknown.value.status, unknown.value.field) == (404, "version")


def test_datasets_are_listed_by_project(service, datasets):
    datasets.create({"name": "shapes", "folder": "shapes", "project": "vision"})
    datasets.create({"name": "tables", "folder": "shapes"})
    assert [d["name"] for d in datasets.list(project="vision")] == ["shapes"]
    assert [d["name"] for d in datasets.list(project="default")] == ["tables"]
    assert [d["name"] for d in datasets.list()] == ["shapes", "tables"]
