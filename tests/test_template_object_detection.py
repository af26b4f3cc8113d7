"""Object detection templates, run as real jobs on the local backend over the demo data.

object-detection-train learns the demo shapes (val mAP@0.5 from metrics.jsonl),
writes TensorBoard events, checkpoints and model.pt, resumes after a kill, and
refuses bad datasets with a message naming what to fix; object-detection-infer
turns that model.pt into detections.json and drawn pictures. Both take their
inputs as the job service mounts them (a dataset, an earlier job's output, or a
folder made read-only) and write nothing there. The mAP function is checked on
hand-made boxes.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import pytest
from template_jobs import (
    REPO,
    kill_after_epochs,
    make_service,
    metrics,
    read_only,
    rerun_in_place,
    run,
    unchanged,
    wait_final,
)

DATASET = "demo/shapes-detection"
EPOCHS = 6


def load_metrics_module():
    path = REPO / "templates" / "object-detection-train" / "metrics.py"
    spec = importlib.util.spec_from_file_location("object_detection_metrics", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def log_of(service, job) -> str:
    return service.log(job.id)["text"]


@pytest.fixture(scope="module")
def service(demo_data, tmp_path_factory):
    service = make_service(tmp_path_factory.mktemp("od-jobs"), demo_data)
    # the trained model lives in a job's output: let path parameters name it, as ~/.clusterlab/jobs does
    service.settings.extra_roots.append(service.settings.jobs_root)
    return service


@pytest.fixture(scope="module")
def trained(service):
    # one core for the network (this machine's two are shared), one loader worker reading pictures
    job = run(service, "object-detection-train", {"dataset": DATASET, "epochs": EPOCHS, "num_workers": 1},
              name="od_train", profile="cpu-small", timeout=150)
    assert job.status == "completed", log_of(service, job)[-3000:]
    return job


def test_training_learns_the_shapes_and_writes_its_outputs(service, trained):
    lines = metrics(trained)
    assert [line["epoch"] for line in lines] == list(range(1, EPOCHS + 1))
    assert all(line["epochs"] == EPOCHS for line in lines)
    assert {"loss", "map50", "lr"} <= set(lines[-1]["metrics"])
    assert lines[-1]["metrics"]["map50"] >= 0.5, lines
    assert lines[-1]["metrics"]["loss"] < lines[0]["metrics"]["loss"]
    output = Path(trained.folder) / "output"
    assert list((output / "tensorboard").glob("events.out.tfevents.*"))
    assert (output / "checkpoints" / "last.pt").is_file()

    model = torch_load(output / "model.pt")
    assert model["classes"] == ["circle", "square", "triangle"]
    assert model["image_size"] == 96 and model["state_dict"]
    log = log_of(service, trained)
    assert "training on cpu (1 CPU thread(s), 1 data-loading worker(s))" in log
    assert "done: validation mAP@0.5" in log


def test_tensorboard_has_loss_map_lr_and_sample_pictures(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(Path(trained.folder) / "output" / "tensorboard"),
                              size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "val/map50", "train/lr"} <= set(tags["scalars"])
    assert "val/predictions" in tags["images"]
    assert len(events.Scalars("val/map50")) == EPOCHS


def test_inference_writes_boxes_and_drawn_pictures(service, trained, demo_data):
    model = Path(trained.folder) / "output" / "model.pt"
    job = run(service, "object-detection-infer",
              {"model": str(model), "input": f"{DATASET}/images/val", "score_threshold": 0.3}, name="od_infer")
    assert job.status == "completed", log_of(service, job)[-3000:]
    output = Path(job.folder) / "output"
    pictures = sorted(p.name for p in (demo_data / DATASET / "images" / "val").glob("*.png"))
    detections = json.loads((output / "detections.json").read_text())
    assert sorted(detections) == pictures
    found = [d for boxes in detections.values() for d in boxes]
    assert len(found) >= len(pictures)  # 1-3 shapes in each, and the model has learnt them
    for d in found:
        assert d["class"] in ("circle", "square", "triangle") and 0.3 <= d["score"] <= 1
        x0, y0, x1, y1 = d["box"]
        assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 96
    drawn = sorted(p.name for p in (output / "images").glob("*.png"))
    assert drawn == pictures

    from PIL import Image

    with Image.open(output / "images" / pictures[0]) as image:
        assert image.size == (96, 96)


def test_inference_takes_the_training_job_itself_and_a_read_only_folder(service, trained, demo_data):
    pictures = demo_data / "read-only" / "od-pictures"
    if not pictures.exists():
        shutil.copytree(demo_data / DATASET / "images" / "val", pictures)
    frozen = service.datasets.resolve_input({"job": trained.id}, "model")  # what the job will mount
    with read_only(pictures), unchanged(Path(frozen["path"])):
        job = run(service, "object-detection-infer",
                  {"model": f"job:{trained.id}", "input": "read-only/od-pictures"}, name="od_infer_ref")
    log = log_of(service, job)
    assert job.status == "completed", log[-3000:]
    assert job.params["model"] == f"job:{trained.id}"
    assert f"model: job:{trained.id}/model.pt, 3 classes" in log
    detections = json.loads((Path(job.folder) / "output" / "detections.json").read_text())
    assert sorted(detections) == sorted(p.name for p in pictures.glob("*.png"))
    assert sum(len(found) for found in detections.values()) >= len(detections)


def test_training_reads_a_read_only_dataset_and_weights_folder(service, trained, demo_data):
    dataset, weights = demo_data / "read-only" / "od-dataset", demo_data / "read-only" / "od-weights"
    if not dataset.exists():
        shutil.copytree(demo_data / DATASET, dataset)
        shutil.copytree(Path(trained.folder) / "output", weights)
    with read_only(dataset, weights):
        job = run(service, "object-detection-train",
                  {"dataset": "read-only/od-dataset", "epochs": 1, "image_size": 64, "batch_size": 32,
                   "weights": "read-only/od-weights"}, name="od_read_only", profile="cpu-small")
    log = log_of(service, job)
    assert job.status == "completed", log[-3000:]
    count = len(torch_load(weights / "model.pt")["state_dict"])
    assert f"initial weights: {count} of {count} tensors from read-only/od-weights/model.pt" in log
    assert torch_load(Path(job.folder) / "output" / "model.pt")["dataset"] == "read-only/od-dataset"


def test_inference_on_a_folder_without_a_model_names_the_parameter(service, demo_data):
    folder = demo_data / "read-only" / "od-no-model"
    folder.mkdir(parents=True, exist_ok=True)
    with read_only(folder):
        job = run(service, "object-detection-infer",
                  {"model": "read-only/od-no-model", "input": f"{DATASET}/images/val"}, name="od_no_model")
    log = log_of(service, job)
    assert job.status == "failed"
    assert "error: model: read-only/od-no-model holds no model.pt (it is empty)" in log, log
    assert "Traceback" not in log


def test_training_starts_from_initial_weights(service, trained):
    model = Path(trained.folder) / "output" / "model.pt"
    job = run(service, "object-detection-train",
              {"dataset": DATASET, "epochs": 1, "image_size": 64, "batch_size": 32, "weights": str(model)},
              name="od_finetune", profile="cpu-small")
    assert job.status == "completed", log_of(service, job)[-3000:]
    log = log_of(service, job)
    count = len(torch_load(model)["state_dict"])
    assert f"initial weights: {count} of {count} tensors from {model}" in log
    assert [line["epoch"] for line in metrics(job)] == [1]


def torch_load(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def test_killed_training_resumes_in_place_with_each_epoch_once(service):
    params = {"dataset": DATASET, "epochs": 4, "seed": 1, "image_size": 64, "batch_size": 32}
    # no restarts by the job service: this is the template's own resume, as a Slurm requeue starts it again
    job = service.submit({"template": "object-detection-train", "name": "od_resume", "profile": "cpu-small",
                          "params": params, "max_restarts": 0})
    kill_after_epochs(service, job, 2)
    wait_final(service, job.id)
    assert len(metrics(job)) < 4
    result = rerun_in_place(job)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "resuming after epoch" in (Path(job.folder) / "log.txt").read_text() + result.stdout
    lines = metrics(job)
    assert [line["epoch"] for line in lines] == [1, 2, 3, 4]
    steps = [line["step"] for line in lines]
    assert steps == sorted(set(steps))
    assert (Path(job.folder) / "output" / "model.pt").is_file()


@pytest.fixture
def broken_copy(demo_data, tmp_path):
    """A workspace of its own with a copy of the demo detection data, to break."""
    workspace = tmp_path / "workspace"
    shutil.copytree(demo_data / DATASET, workspace / "shapes")
    return make_service(tmp_path, workspace), workspace / "shapes"


def test_a_bad_label_line_is_named_before_training(broken_copy):
    service, dataset = broken_copy
    label = dataset / "labels" / "train" / "0007.txt"
    label.write_text(label.read_text() + "1 0.5 oops 0.2 0.2\n")
    job = run(service, "object-detection-train", {"dataset": "shapes"}, name="od_bad_label")
    assert job.status == "failed"
    log = log_of(service, job)
    line = len(label.read_text().splitlines())
    assert f"error: shapes/labels/train/0007.txt line {line}: " in log
    assert "must be numbers" in log
    assert "training on" not in log and not metrics(job)


def test_a_class_out_of_range_and_an_unreadable_image_are_named(broken_copy):
    service, dataset = broken_copy
    (dataset / "labels" / "val" / "0003.txt").write_text("3 0.5 0.5 0.2 0.2\n")
    job = run(service, "object-detection-train", {"dataset": "shapes"}, name="od_bad_class")
    assert job.status == "failed"
    assert "shapes/labels/val/0003.txt line 1: class 3 is out of range" in log_of(service, job)
    (dataset / "labels" / "val" / "0003.txt").write_text("2 0.5 0.5 0.2 0.2\n")
    (dataset / "images" / "train" / "0011.png").write_bytes(b"not a picture")
    job = run(service, "object-detection-train", {"dataset": "shapes"}, name="od_bad_image")
    assert job.status == "failed"
    assert "shapes/images/train/0011.png cannot be read as an image" in log_of(service, job)


def test_missing_classes_txt_and_folders_are_explained(broken_copy):
    service, dataset = broken_copy
    (dataset / "classes.txt").unlink()
    job = run(service, "object-detection-train", {"dataset": "shapes"}, name="od_no_classes")
    assert job.status == "failed"
    log = log_of(service, job)
    assert "error: shapes/classes.txt is missing" in log and "one class name per line" in log
    shutil.rmtree(dataset / "labels")
    job = run(service, "object-detection-train", {"dataset": "shapes"}, name="od_no_labels")
    assert job.status == "failed"
    assert "error: shapes/labels/ is missing" in log_of(service, job)


def test_inference_refuses_a_file_that_is_not_a_model(broken_copy):
    service, dataset = broken_copy
    (dataset.parent / "model.pt").write_bytes(b"not a model")
    job = run(service, "object-detection-infer", {"model": "model.pt", "input": "shapes/images/val"}, name="od_bad")
    assert job.status == "failed"
    assert "error: model: model.pt cannot be read as a PyTorch file" in log_of(service, job)


# ----- mAP@0.5 on hand-made boxes -------------------------------------------------------------


def test_average_precision_on_hand_made_boxes():
    m = load_metrics_module()
    truth = {0: [[0, 0, 10, 10], [20, 20, 30, 30]], 1: [[0, 0, 10, 10]]}
    # every box found once, best scores first: AP 1
    perfect = [(0, 0.9, [0, 0, 10, 10]), (0, 0.8, [20, 20, 30, 30]), (1, 0.7, [1, 1, 10, 10])]
    assert m.average_precision(perfect, truth) == pytest.approx(1.0)
    # a false positive ranked first: precision 1/2, 2/3, 3/4 at recall 1/3, 2/3, 1; made monotone: 3/4
    with_fp = [(0, 0.95, [50, 50, 60, 60]), *perfect]
    assert m.average_precision(with_fp, truth) == pytest.approx(3 / 4)
    # TP, FP, TP over two boxes: precision 1 up to recall 1/2, then 2/3 up to recall 1
    middle = [(0, 0.9, [0, 0, 10, 10]), (0, 0.8, [40, 40, 50, 50]), (0, 0.7, [21, 21, 30, 30])]
    assert m.average_precision(middle, {0: truth[0]}) == pytest.approx(1 / 2 + 1 / 2 * 2 / 3)
    # a duplicate of a found box is a false positive; a box with IoU < 0.5 finds nothing
    duplicate = [(0, 0.9, [0, 0, 10, 10]), (0, 0.85, [0, 0, 10, 10]), (1, 0.8, [5, 5, 15, 15])]
    # TP, FP, FP (IoU 25/175): recall 1/3 at precision 1, never more
    assert m.average_precision(duplicate, truth) == pytest.approx(1 / 3)
    # IoU exactly 0.5 counts: [0,0,10,10] vs [0,0,10,20] -> 100/200
    assert m.average_precision([(0, 0.5, [0, 0, 10, 20])], {0: [[0, 0, 10, 10]]}) == pytest.approx(1.0)
    assert m.average_precision([], truth) == 0.0
    assert math.isnan(m.average_precision(perfect, {}))


def test_mean_average_precision_averages_classes_with_ground_truth():
    m = load_metrics_module()
    targets = [[(0, [0, 0, 10, 10]), (1, [20, 20, 40, 40])], [(1, [0, 0, 10, 10])]]
    predictions = [
        [(0, 0.9, [0, 0, 10, 10]), (1, 0.8, [20, 20, 40, 40]), (2, 0.9, [50, 50, 60, 60])],
        [(1, 0.6, [30, 30, 40, 40])],  # misses image 1's class-1 box
    ]
    value, per_class = m.mean_average_precision(predictions, targets, num_classes=3)
    assert per_class[0] == pytest.approx(1.0)
    assert per_class[1] == pytest.approx(0.5)  # one of two found, at precision 1
    assert math.isnan(per_class[2])  # no ground truth of class 2: not averaged
    assert value == pytest.approx(0.75)
    # half the classes: a wrong class is not a match
    value, _ = m.mean_average_precision([[(1, 0.9, [0, 0, 10, 10])]], [[(0, [0, 0, 10, 10])]], num_classes=2)
    assert value == 0.0
    assert m.mean_average_precision([[]], [[]], num_classes=2)[0] == 0.0
