"""AI Studio's parts on their own, in-process and fast: the seeded split, the layouts written, the model
registry's numbering and the publishing URLs' checks (tests/test_studio_chain.py runs the whole chain)."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest
from PIL import Image

from clusterlab_server.service import JobError
from clusterlab_server.studio import export
from clusterlab_server.studio.labellings import check_classes, pictures_in
from clusterlab_server.studio.models import ModelRegistry
from clusterlab_server.studio.publish import check_branch, check_repository, push


def test_the_split_is_the_same_for_the_same_seed_and_moves_with_another():
    paths = [f"p{i:03d}.png" for i in range(50)]
    train, val = export.split(paths, 0.2, seed=3)
    assert len(val) == 10 and sorted(train + val) == paths and not set(train) & set(val)
    assert export.split(list(reversed(paths)), 0.2, seed=3) == (train, val)  # order given does not matter
    assert export.split(paths, 0.2, seed=4)[1] != val


def test_the_split_keeps_one_picture_on_each_side_from_two():
    assert export.split_count(1, 0.5) == 0
    assert export.split_count(2, 0.01) == 1 and export.split_count(2, 0.99) == 1
    assert export.split_count(10, 0.25) == 3  # 2.5 rounds up


def test_the_classification_split_is_stratified_and_adding_one_class_moves_no_other():
    labels = {f"c{i}.png": "cat" for i in range(20)} | {f"d{i}.png": "dog" for i in range(10)}
    sets = export.classification_split(labels, 0.2, seed=0)
    assert sum(labels[p] == "cat" for p in sets["val"]) == 4 and sum(labels[p] == "dog" for p in sets["val"]) == 2
    more = labels | {f"e{i}.png": "eel" for i in range(5)}
    again = export.classification_split(more, 0.2, seed=0)
    assert [p for p in again["val"] if more[p] != "eel"] == sets["val"]


def test_layouts_are_the_templates(tmp_path):
    images = tmp_path / "images"
    (images / "a").mkdir(parents=True)
    for name, size in (("a/1.png", (40, 20)), ("2.png", (10, 10)), ("a__1.png", (8, 8))):
        Image.new("RGB", size).save(images / name)
    target = tmp_path / "classification"
    counts = export.write_classification(target, images, {"a/1.png": "x", "2.png": "y", "a__1.png": "x"},
                                         {"train": ["a/1.png", "a__1.png"], "val": ["2.png"]})
    assert counts == {"train": {"x": 2}, "val": {"y": 1}}
    assert sorted(p.name for p in (target / "train" / "x").iterdir()) == ["a__1.png", "a__1_2.png"]  # no clash
    boxes = {"a/1.png": [{"class": "car", "box": [0, 0, 20, 10]}, {"class": "car", "box": [30, 5, 50, 30]}],
             "2.png": [], "a__1.png": [{"class": "dog", "box": [2, 2, 2, 6]}]}  # zero width: left out
    target = tmp_path / "detection"
    counts = export.write_detection(target, images, boxes, ["dog", "car"],
                                    {"train": ["a/1.png", "a__1.png"], "val": ["2.png"]})
    assert counts == {"train": {"pictures": 2, "boxes": 2}, "val": {"pictures": 1, "boxes": 0}}
    assert (target / "classes.txt").read_text() == "dog\ncar\n"
    lines = (target / "labels" / "train" / "a__1.txt").read_text().split("\n")
    assert lines[0] == "1 0.250000 0.250000 0.500000 0.500000"
    assert lines[1] == "1 0.875000 0.625000 0.250000 0.750000"  # clipped to the picture (40 x 20): 30-40, 5-20
    assert (target / "labels" / "val" / "2.txt").read_text() == ""  # labelled: no objects
    assert (target / "images" / "val" / "2.png").is_file()


def test_classes_and_pictures_are_checked(tmp_path):
    with pytest.raises(JobError, match="two or more") as e:
        check_classes(["cat"], "classification")
    assert e.value.field == "classes"
    assert check_classes(["defect"], "detection") == ["defect"]  # a detector of one thing is a real one
    for bad in ([], ["a/b", "c"], ["", "c"], "a,b", ["x", "x"]):
        with pytest.raises(JobError):
            check_classes(bad, "classification")
    (tmp_path / "s" / ".hidden").mkdir(parents=True)
    for name in ("s/b.PNG", "a.jpg", "notes.txt", "s/.hidden/c.png", ".d.png"):
        (tmp_path / name).write_bytes(b"x")
    assert pictures_in(tmp_path) == ["a.jpg", "s/b.PNG"]


def test_model_versions_are_numbered_once_each_even_at_once(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    made = []
    threads = [threading.Thread(target=lambda: made.append(registry.add("m", {"job": "j"}, {"model.pt": model})))
               for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(v["version"] for v in made) == [1, 2, 3, 4, 5, 6]
    assert [v["version"] for v in registry.model("m")["versions"]] == [6, 5, 4, 3, 2, 1]
    assert (registry.folder("m", 3) / "model.pt").read_bytes() == b"weights"
    with pytest.raises(JobError) as e:
        registry.get("m", 9)
    assert e.value.status == 404 and "1, 2, 3, 4, 5, 6" in e.value.message
    with pytest.raises(JobError):
        registry.get("../m", 1)


def resolve_inside(root: Path):
    def resolve(value: str) -> Path:
        path = Path(value).resolve()
        if root not in (path, *path.parents):
            raise ValueError(f"{value} is outside your workspace ({root})")
        return path
    return resolve


@pytest.mark.parametrize("url", ["https://git.example.org/team/models.git", "ssh://git@git.example.org/x.git",
                                 "git@git.example.org:team/models.git", "ssh://git.example.org:2222/x"])
def test_https_and_ssh_urls_are_taken(url, tmp_path):
    assert check_repository(url, resolve_inside(tmp_path)) == url


@pytest.mark.parametrize("url", ["git://example.org/x.git", "http://example.org/x.git", "ext::sh -c id",
                                 "ftp://example.org/x", "ssh://-oProxyCommand=id/x", "file:///etc",
                                 "file://otherhost/srv/x.git", "", None, 5, "https://", "/srv/x.git",
                                 "-u@host:path"])
def test_other_urls_are_refused_naming_the_repository(url, tmp_path):
    with pytest.raises(JobError) as e:
        check_repository(url, resolve_inside(tmp_path))
    assert e.value.field == "repository" and e.value.status == 400


def test_branches_are_checked():
    assert check_branch(None) is None and check_branch("release/v1") == "release/v1"
    for bad in ("-f", "a..b", "x.lock", "", "a b", 3):
        with pytest.raises(JobError) as e:
            check_branch(bad)
        assert e.value.field == "branch"


def test_a_push_builds_on_the_branch_and_tags_it(tmp_path):
    bare = tmp_path / "r.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "trunk", str(bare)], check=True)
    (tmp_path / "v" / "report" / "samples").mkdir(parents=True)
    (tmp_path / "v" / "README.md").write_text("one\n")
    (tmp_path / "v" / "report" / "r.md").write_text("r\n")
    (tmp_path / "v" / "report" / "samples" / "01.png").write_bytes(b"\x89PNG")
    files = {"README.md": tmp_path / "v" / "README.md", "report": tmp_path / "v" / "report"}
    first = push(f"file://{bare}", None, "m-v1", files, "m version 1\n", "A <a@clusterlab>")
    assert first["branch"] == "trunk"  # an empty repository's HEAD says where a clone looks
    (tmp_path / "v" / "README.md").write_text("two\n")
    second = push(f"file://{bare}", None, "m-v2", files, "m version 2\n", "A <a@clusterlab>")
    log = subprocess.run(["git", "-C", str(bare), "log", "--format=%H %s", "trunk"], capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert log[:2] == [f"{second['commit']} m version 2", f"{first['commit']} m version 1"]
    shown = subprocess.run(["git", "-C", str(bare), "show", "m-v1:README.md"], capture_output=True, text=True)
    assert shown.stdout == "one\n"
    listed = subprocess.run(["git", "-C", str(bare), "ls-tree", "-r", "--name-only", "m-v2"], capture_output=True,
                            text=True, check=True).stdout.split()
    assert listed == ["README.md", "report/r.md", "report/samples/01.png"]
    subprocess.run(["git", "-C", str(bare), "fsck", "--strict"], check=True, capture_output=True)  # well formed
    with pytest.raises(JobError) as e:
        push(f"file://{bare}", None, "m-v2", files, "again\n", "A <a@clusterlab>")
    assert e.value.status == 409 and e.value.field == "repository"
    with pytest.raises(JobError) as e:
        push(f"file://{tmp_path / 'v'}", None, "m-v3", files, "x\n", "A <a@clusterlab>")
    assert e.value.status == 502 and e.value.field == "repository"


@pytest.mark.parametrize("url", ["https://127.0.0.1:9/models.git", "ssh://git@127.0.0.1:9/models.git"])
def test_an_unreachable_https_or_ssh_repository_is_a_clear_refusal(url, tmp_path):
    """Port 9 of loopback: nothing listens. dulwich's HTTPS client and the ssh program both say so."""
    (tmp_path / "README.md").write_text("x\n")
    with pytest.raises(JobError) as e:
        push(url, None, "m-v1", {"README.md": tmp_path / "README.md"}, "m\n", "A <a@clusterlab>")
    assert e.value.status == 502 and e.value.field == "repository" and "refused" in e.value.message
