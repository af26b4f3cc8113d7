"""The image-classification templates, each job run through the real job service (local backend).

On the demo shapes (circles, squares, triangles), small and short enough for a
2-core CPU: training learns them and writes its metrics, TensorBoard events,
checkpoint and model; inference classifies a folder with that model; a killed
training started again in place continues from its checkpoint; bad data sets
are refused or fail fast with a message naming the problem. Inputs as the job
service mounts them (a dataset version, an earlier job's output, or a folder
made read-only) are read and never written.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from clusterlab_server.service import JobError  # noqa: E402
from template_jobs import (  # noqa: E402
    kill_after_epochs,
    make_service,
    metrics,
    read_only,
    rerun_in_place,
    run,
    unchanged,
    wait_final,
)

TRAIN, INFER = "image-classification-train", "image-classification-infer"
PROFILE = "cpu-small"  # one core: what this suite's 2-core machines can give honestly
FAST = {"dataset": "demo/shapes", "epochs": 5, "image_size": 32, "batch_size": 16, "seed": 0}
JOBS = ".clusterlab-image-classification"  # in the workspace, as ~/.clusterlab/jobs is in a user's home


def log_of(service, job) -> str:
    return service.log(job.id)["text"]


def scalars(folder: Path) -> tuple[dict[str, list], list[str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0}).Reload()
    return {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}, events.Tags()["images"]


@pytest.fixture(scope="module")
def service(demo_data):
    return make_service(demo_data / JOBS, demo_data)


@pytest.fixture(scope="module")
def trained(service):
    job = run(service, TRAIN, FAST, profile=PROFILE)
    assert job.status == "completed", log_of(service, job)[-3000:]
    return job


def test_training_learns_the_shapes_and_writes_metrics_events_checkpoint_and_model(service, trained):
    import torch

    lines = metrics(trained)
    assert [line["epoch"] for line in lines] == [1, 2, 3, 4, 5]
    assert all(line["epochs"] == 5 for line in lines)
    last = lines[-1]["metrics"]
    assert last["val_accuracy"] >= 0.9, lines
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "samples_per_s"} <= set(last)
    assert last["samples_per_s"] > 0

    output = Path(trained.folder) / "output"
    tags, images = scalars(output / "tensorboard")
    for tag in ("loss/train", "loss/val", "accuracy/train", "accuracy/val", "lr"):
        assert [e.step for e in tags[tag]] == [line["step"] for line in lines], tag
    assert tags["accuracy/val"][-1].value == pytest.approx(last["val_accuracy"])
    assert images and all("predicted" in tag for tag in images), images

    checkpoint = torch.load(output / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert checkpoint["epoch"] == 5 and {"model", "optimizer", "scaler", "step", "rng"} <= set(checkpoint)
    model = torch.load(output / "model.pt", map_location="cpu", weights_only=True)
    assert model["classes"] == ["circle", "square", "triangle"]
    assert (model["image_size"], model["model_size"]) == (32, "small")
    assert "on cpu" in log_of(service, trained)


def test_inference_classifies_every_image_of_a_folder(service, trained, demo_data):
    model = (Path(trained.folder) / "output" / "model.pt").relative_to(demo_data)
    job = run(service, INFER, {"model": str(model), "input": "demo/shapes/val"}, profile=PROFILE)
    assert job.status == "completed", log_of(service, job)[-3000:]
    with open(Path(job.folder) / "output" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    expected = sorted(p.relative_to(demo_data / "demo/shapes/val").as_posix()
                      for p in (demo_data / "demo/shapes/val").rglob("*.png"))
    assert sorted(row["file"] for row in rows) == expected  # a row per image (60)
    assert all(0 < float(row["confidence"]) <= 1 for row in rows)
    right = sum(row["class"] == row["file"].split("/")[0] for row in rows)
    assert right / len(rows) >= 0.9, rows


def read_predictions(job) -> list[dict]:
    with open(Path(job.folder) / "output" / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_inference_takes_a_read_only_folder_holding_the_model(service, trained, demo_data):
    """The model as an earlier job's output is mounted: a folder (its model.pt is used), read-only."""
    model, images = demo_data / "read-only" / "ic-model", demo_data / "read-only" / "ic-images"
    if not model.exists():
        shutil.copytree(Path(trained.folder) / "output", model)
        shutil.copytree(demo_data / "demo/shapes/val", images)
    with read_only(model, images):
        job = run(service, INFER, {"model": "read-only/ic-model", "input": "read-only/ic-images"}, profile=PROFILE)
    log = log_of(service, job)
    assert job.status == "completed", log[-3000:]
    assert "with read-only/ic-model/model.pt" in log
    rows = read_predictions(job)
    assert sorted(row["file"] for row in rows) == sorted(p.relative_to(images).as_posix()
                                                         for p in images.rglob("*.png"))
    assert sum(row["class"] == row["file"].split("/")[0] for row in rows) / len(rows) >= 0.9


def test_training_takes_a_dataset_version_and_starts_from_an_earlier_job(service, trained):
    version = service.datasets.create({"name": "shapes", "folder": "demo/shapes"})
    frozen = service.datasets.resolve_input({"job": trained.id}, "weights")  # what the job will mount
    with unchanged(Path(version["path"]), Path(frozen["path"])):
        job = run(service, TRAIN, {**FAST, "epochs": 1, "learning_rate": 0.0001, "dataset": "shapes",
                                   "weights": f"job:{trained.id}"}, profile=PROFILE)
    log = log_of(service, job)
    assert job.status == "completed", log[-3000:]
    # the record keeps the pinned references; the code got the mounted folders
    assert (job.params["dataset"], job.params["weights"]) == ("shapes:1", f"job:{trained.id}")
    given = json.loads((Path(job.folder) / "params.json").read_text())
    assert given["dataset"] == str(Path(job.folder) / "input" / "dataset")
    assert given["weights"] == str(Path(job.folder) / "input" / "weights")
    assert f"initial weights: job:{trained.id}/model.pt" in log
    assert metrics(job)[0]["metrics"]["val_accuracy"] >= 0.9  # one short epoch: it started from what it knew


@pytest.mark.parametrize("key", ["model", "weights"])
def test_a_folder_without_a_model_fails_fast_naming_the_parameter(service, demo_data, key):
    folder = demo_data / "read-only" / "no-model"
    if not folder.exists():  # an output without model.pt, as a training killed before its end leaves
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "metrics.jsonl").write_text("")
    params = ({"model": "read-only/no-model", "input": "demo/shapes/val"} if key == "model"
              else {**FAST, "weights": "read-only/no-model"})
    started = time.monotonic()
    with read_only(folder):
        job = run(service, INFER if key == "model" else TRAIN, params, name="nomodel", profile=PROFILE)
    log = log_of(service, job)
    assert job.status == "failed", log
    assert f"error: {key}: read-only/no-model holds no model.pt (it has checkpoints/, metrics.jsonl)" in log, log
    assert "Traceback" not in log and not metrics(job), log
    assert time.monotonic() - started < 20


def test_training_can_start_from_user_supplied_weights(service, trained, demo_data):
    weights = (Path(trained.folder) / "output" / "model.pt").relative_to(demo_data)
    job = run(service, TRAIN, {**FAST, "epochs": 1, "learning_rate": 0.0001, "weights": str(weights)},
              profile=PROFILE)
    log = log_of(service, job)
    assert job.status == "completed", log[-3000:]
    assert f"initial weights: {weights}" in log
    assert metrics(job)[0]["metrics"]["val_accuracy"] >= 0.9  # one short epoch: it started from what it knew


def test_a_killed_training_started_again_in_place_continues_from_its_checkpoint(service):
    params = {**FAST, "epochs": 6, "image_size": 48, "seed": 1}
    # no restarts by the job service: this is the template's own resume, as a Slurm requeue starts it again
    job = service.submit({"template": TRAIN, "name": "killed", "params": params, "profile": PROFILE,
                          "max_restarts": 0})
    kill_after_epochs(service, job, 2)
    assert wait_final(service, job.id).status == "failed"
    done = len(metrics(job))
    assert done < 6

    again = rerun_in_place(job)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming after epoch" in again.stdout, again.stdout[-3000:]
    lines = metrics(job)
    assert [line["epoch"] for line in lines] == [1, 2, 3, 4, 5, 6]  # each epoch once
    steps = [line["step"] for line in lines]
    assert steps == sorted(steps) and len(set(steps)) == 6
    tags, _ = scalars(Path(job.folder) / "output" / "tensorboard")
    assert [e.step for e in tags["loss/train"]] == steps  # events after the checkpoint were replaced
    assert (Path(job.folder) / "output" / "model.pt").exists()


def test_a_missing_dataset_folder_is_refused_by_the_service(service):
    with pytest.raises(JobError) as e:
        service.submit({"template": TRAIN, "name": "nodata", "params": {**FAST, "dataset": "demo/nothing-here"},
                        "profile": PROFILE})
    assert e.value.field == "params.dataset"
    assert "demo/nothing-here does not exist" in e.value.message


def _one_class(root: Path, shapes: Path) -> None:
    for split in ("train", "val"):
        shutil.copytree(shapes / split / "circle", root / split / "circle")


def _corrupt_image(root: Path, shapes: Path) -> None:
    shutil.copytree(shapes, root)
    (root / "train" / "square" / "square_0007.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")


def _no_val(root: Path, shapes: Path) -> None:
    shutil.copytree(shapes / "train", root / "train")


def _unknown_val_class(root: Path, shapes: Path) -> None:
    shutil.copytree(shapes, root)
    shutil.copytree(shapes / "val" / "circle", root / "val" / "hexagon")


@pytest.mark.parametrize(("make", "message"), [
    (_one_class, "train has only one class (circle): image classification needs at least two classes"),
    (_corrupt_image, "train/square/square_0007.png is not a readable image"),
    (_no_val, "has no val/ folder"),
    (_unknown_val_class, "val has class folder(s) that train/ does not have: hexagon"),
], ids=["one-class", "corrupt-image", "no-val", "unknown-val-class"])
def test_a_bad_dataset_fails_fast_saying_what_is_wrong(service, demo_data, make, message):
    name = f"image-classification-bad/{make.__name__.strip('_')}"
    root = demo_data / name
    if not root.exists():
        make(root, demo_data / "demo" / "shapes")
    started = time.monotonic()
    job = run(service, TRAIN, {**FAST, "dataset": name}, name="bad", profile=PROFILE)
    elapsed = time.monotonic() - started
    log = log_of(service, job)
    assert job.status == "failed", log
    assert message in log, log
    assert "epoch" not in log and not metrics(job), log  # nothing trained
    assert elapsed < 20, f"took {elapsed:.1f} s to fail"
