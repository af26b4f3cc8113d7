"""The inference templates' validation reports (output/report/), run as real jobs on the demo data.

Models trained briefly (their accuracy does not matter here): the report's numbers
must agree with the predictions the same job wrote (predictions.csv,
detections.json) and with the labels; report.md links only pictures that exist
and are PNGs; a dataset with train/ and val/ is validated on val/; input without
labels, or report: false, writes no report. The report builders are also checked
on hand-made predictions, perfect and wrong.
"""

from __future__ import annotations

import csv
import importlib
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from template_jobs import REPO, make_service, run

pytest.importorskip("torch")

TEMPLATES = REPO / "templates"
SHAPES, DETECTION = "demo/shapes", "demo/shapes-detection"
CLASSES = ["circle", "square", "triangle"]
PROFILE = "cpu-small"


def log_of(service, job) -> str:
    return service.log(job.id)["text"]


def template_module(name: str, *folders: str):
    """Import a template's module with its folders on sys.path, leaving sys.path and sys.modules as they
    were for the templates' own modules (several templates have a data.py, a model.py, ...)."""
    saved_path, saved = list(sys.path), dict(sys.modules)
    for key, module in saved.items():
        if str(getattr(module, "__file__", "") or "").startswith(str(TEMPLATES)):
            del sys.modules[key]
    sys.path[:0] = [str(TEMPLATES / f) for f in folders]
    try:
        return importlib.import_module(name)
    finally:
        sys.path[:] = saved_path
        for key, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", "") or "").startswith(str(TEMPLATES)):
                del sys.modules[key]
        sys.modules.update({k: v for k, v in saved.items() if k not in sys.modules})


@pytest.fixture(scope="module")
def service(demo_data, tmp_path_factory):
    service = make_service(tmp_path_factory.mktemp("validation-jobs"), demo_data)
    service.settings.extra_roots.append(service.settings.jobs_root)  # path parameters may name a job's model
    return service


def trained_model(service, template: str, params: dict) -> str:
    job = run(service, template, params, name="v_train", profile=PROFILE, timeout=150)
    assert job.status == "completed", log_of(service, job)[-3000:]
    return str(Path(job.folder) / "output" / "model.pt")


@pytest.fixture(scope="module")
def classifier(service):
    return trained_model(service, "image-classification-train",
                         {"dataset": SHAPES, "epochs": 2, "image_size": 32, "batch_size": 32, "seed": 0})


@pytest.fixture(scope="module")
def detector(service):
    return trained_model(service, "object-detection-train",
                         {"dataset": DETECTION, "epochs": 8, "image_size": 64, "batch_size": 16, "num_workers": 0})


def infer(service, template: str, params: dict):
    job = run(service, template, params, name="v_infer", profile=PROFILE)
    assert job.status == "completed", log_of(service, job)[-3000:]
    return Path(job.folder) / "output"


def check_pictures(report: Path) -> list[str]:
    """The pictures report.md links: relative, existing, PNG; every PNG of the report linked. Their paths."""
    from PIL import Image

    text = (report / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links, text
    for link in links:
        assert not link.startswith("/") and ".." not in link and " " not in link, link
        path = report / link
        assert path.is_file(), link
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link
        with Image.open(path) as image:
            image.verify()
    assert sorted(p.relative_to(report).as_posix() for p in report.rglob("*.png")) == sorted(set(links))
    return links


# ----- image classification ---------------------------------------------------------------------


def read_predictions(output: Path) -> list[dict]:
    with open(output / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def check_classification(output: Path, prefix: str) -> dict:
    rows = [row for row in read_predictions(output) if row["file"].startswith(prefix)]  # the compared ones
    report = json.loads((output / "report" / "report.json").read_text())
    truth = [row["file"][len(prefix):].split("/")[0] for row in rows]
    correct = sum(t == row["class"] for t, row in zip(truth, rows))
    assert report["kind"] == "classification"
    assert report["images"] == len(rows) and report["correct"] == correct
    assert report["accuracy"] == pytest.approx(correct / len(rows), abs=1e-4)
    confusion = report["confusion"]
    assert confusion["labels"] == CLASSES
    matrix = confusion["matrix"]
    assert sum(map(sum, matrix)) == len(rows)
    for i, name in enumerate(CLASSES):
        assert [sum(1 for t, row in zip(truth, rows) if t == name and row["class"] == other)
                for other in CLASSES] == matrix[i]
        stats = report["classes"][name]
        assert stats["support"] == sum(matrix[i]) == truth.count(name)
        assert stats["recall"] == pytest.approx(matrix[i][i] / sum(matrix[i]), abs=1e-4)
        guessed = sum(row[i] for row in matrix)
        assert stats["precision"] == (pytest.approx(matrix[i][i] / guessed, abs=1e-4) if guessed else None)
    links = check_pictures(output / "report")
    assert "confusion.png" in links and 1 <= sum(link.startswith("samples/") for link in links) <= 8
    text = (output / "report" / "report.md").read_text()
    assert f"{report['accuracy']:.3f}" in text and all(name in text for name in CLASSES)
    return report


def test_a_folder_of_class_folders_gets_a_classification_report(service, classifier):
    output = infer(service, "image-classification-infer", {"model": classifier, "input": f"{SHAPES}/val"})
    report = check_classification(output, "")
    assert report["images"] == 60 and report["split"] is None


def test_a_dataset_with_train_and_val_is_validated_on_val(service, classifier, demo_data):
    output = infer(service, "image-classification-infer", {"model": classifier, "input": SHAPES})
    report = check_classification(output, "val/")
    assert report["images"] == 60 and report["split"] == "val"
    # every image is still classified, as without labels: only the held-out ones are compared
    assert len(read_predictions(output)) == len(list((demo_data / SHAPES).rglob("*.png"))) > report["images"]


def test_classification_without_labels_writes_no_report(service, classifier, demo_data):
    flat = demo_data / "validation" / "flat-shapes"
    flat.mkdir(parents=True)
    for path in sorted((demo_data / SHAPES / "val").rglob("*_000[0-2].png")):
        shutil.copy(path, flat / path.name)
    output = infer(service, "image-classification-infer", {"model": classifier, "input": "validation/flat-shapes"})
    assert len(read_predictions(output)) == 9 and not (output / "report").exists()
    output = infer(service, "image-classification-infer",
                   {"model": classifier, "input": SHAPES, "report": False})
    assert len(read_predictions(output)) == 240 and not (output / "report").exists()  # as before: every image


def test_the_classification_report_of_perfect_and_wrong_predictions(tmp_path):
    from PIL import Image

    report_module = template_module("classification_report", "validation", "image-classification-infer")
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(paths[-1])
    names, truths = [p.name for p in paths], [0, 0, 1, 1, 2, 2]
    about = {"model": "m", "input": "i", "split": ""}
    perfect, _, _ = report_module.build(names, paths, truths, truths, [0.9] * 6, CLASSES, about)
    assert perfect["accuracy"] == 1.0 and perfect["confusion"]["matrix"] == [[2, 0, 0], [0, 2, 0], [0, 0, 2]]
    assert all(v == {"precision": 1.0, "recall": 1.0, "support": 2} for v in perfect["classes"].values())
    wrong, _, pictures = report_module.build(names, paths, truths, [1, 1, 0, 0, 0, 0], [0.8] * 6, CLASSES, about)
    assert wrong["accuracy"] == 0.0 and wrong["confusion"]["matrix"] == [[0, 2, 0], [2, 0, 0], [2, 0, 0]]
    assert wrong["classes"]["triangle"] == {"precision": None, "recall": 0.0, "support": 2}
    assert len([p for p in pictures if p.startswith("samples/")]) == 6


# ----- object detection -------------------------------------------------------------------------


def yolo_truth(dataset: Path, split: str, names: list[str]) -> list[list]:
    """Each picture's label file as (class, [x0, y0, x1, y1]) in its pixels."""
    from PIL import Image

    truths = []
    for name in names:
        with Image.open(dataset / "images" / split / name) as image:
            w, h = image.size
        rows = [line.split() for line in (dataset / "labels" / split / f"{Path(name).stem}.txt").read_text()
                .splitlines() if line.strip()]
        truths.append([(int(c), [(x - bw / 2) * w, (y - bh / 2) * h, (x + bw / 2) * w, (y + bh / 2) * h])
                       for c, x, y, bw, bh in ((r[0], *map(float, r[1:])) for r in rows)])
    return truths


def check_detection(output: Path, dataset: Path, prefix: str) -> dict:
    detections = {name: found for name, found in json.loads((output / "detections.json").read_text()).items()
                  if name.startswith(prefix)}  # the compared ones
    report = json.loads((output / "report" / "report.json").read_text())
    assert report["kind"] == "detection" and report["split"] == "val"
    val = sorted(p.name for p in (dataset / "images" / "val").glob("*.png"))
    assert sorted(detections) == [prefix + name for name in val] and report["images"] == len(val)
    truths = yolo_truth(dataset, "val", val)
    assert set(report["classes"]) == set(CLASSES)
    for k, name in enumerate(CLASSES):
        stats = report["classes"][name]
        assert stats["ground_truth"] == sum(c == k for t in truths for c, _ in t)
        assert stats["detections"] == sum(d["class"] == name for found in detections.values() for d in found)
    aps = [v["ap50"] for v in report["classes"].values() if v["ap50"] is not None]
    assert report["map50"] == pytest.approx(sum(aps) / len(aps), abs=2e-4)
    links = check_pictures(output / "report")
    assert 1 <= len(links) <= 8 and all(link.startswith("samples/") for link in links)
    return report


def test_a_yolo_dataset_gets_a_detection_report_on_its_val_split(service, detector, demo_data):
    output = infer(service, "object-detection-infer", {"model": detector, "input": DETECTION})
    report = check_detection(output, demo_data / DETECTION, "images/val/")
    assert report["score_threshold"] == 0.3 and report["eval_score"] == 0.05
    # every picture is still run, as without labels: only the held-out ones are compared
    every = json.loads((output / "detections.json").read_text())
    assert len(every) == len(list((demo_data / DETECTION / "images").rglob("*.png"))) > report["images"]
    assert f"{report['map50']:.3f}" in (output / "report" / "report.md").read_text()


def test_a_folder_of_pictures_beside_its_labels_is_scored_with_the_training_templates_map(
        service, detector, demo_data):
    # with the threshold at the mAP's own, detections.json holds every detection the mAP counted
    output = infer(service, "object-detection-infer",
                   {"model": detector, "input": f"{DETECTION}/images/val", "score_threshold": 0.05})
    report = check_detection(output, demo_data / DETECTION, "")
    detections = json.loads((output / "detections.json").read_text())
    metrics = template_module("metrics", "object-detection-train")
    names = sorted(detections)
    predictions = [[(CLASSES.index(d["class"]), d["score"], d["box"]) for d in detections[n]] for n in names]
    expected, per_class = metrics.mean_average_precision(predictions, yolo_truth(demo_data / DETECTION, "val", names),
                                                         len(CLASSES))
    assert 0 < report["map50"] == pytest.approx(expected, abs=2e-3)  # detections.json rounds boxes and scores
    for name, ap in zip(CLASSES, per_class):
        assert report["classes"][name]["ap50"] == pytest.approx(ap, abs=2e-3)


def test_detection_without_labels_writes_no_report(service, detector, demo_data):
    flat = demo_data / "validation" / "flat-detection"
    flat.mkdir(parents=True)
    for path in sorted((demo_data / DETECTION / "images" / "val").glob("000[0-3].png")):
        shutil.copy(path, flat / path.name)
    output = infer(service, "object-detection-infer", {"model": detector, "input": "validation/flat-detection"})
    assert len(json.loads((output / "detections.json").read_text())) == 4 and not (output / "report").exists()


def test_the_detection_report_of_perfect_and_wrong_boxes(tmp_path):
    from PIL import Image

    report_module = template_module("detection_report", "validation", "object-detection-infer",
                                    "object-detection-train")
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for path in paths:
        Image.new("RGB", (100, 50)).save(path)
    labels = [[(0, 0.25, 0.5, 0.2, 0.4)], [(1, 0.5, 0.5, 0.5, 0.5), (0, 0.8, 0.2, 0.1, 0.2)]]
    boxes = [[(0, [15, 15, 35, 35])], [(1, [25, 12.5, 75, 37.5]), (0, [75, 5, 85, 15])]]
    about = {"model": "m", "input": "i", "split": "", "eval_score": 0.05}
    args = (["a.png", "b.png"], paths, [(100, 50)] * 2, labels)
    perfect, _, pictures = report_module.build(
        *args, [[(c, 0.9, b) for c, b in found] for found in boxes], ["circle", "square"], CLASSES, 0.3, about)
    assert perfect["map50"] == 1.0 and perfect["ground_truth"] == 3
    assert perfect["classes"] == {"circle": {"ap50": 1.0, "ground_truth": 2, "detections": 2},
                                  "square": {"ap50": 1.0, "ground_truth": 1, "detections": 1}}
    assert sorted(pictures) == ["samples/01-a.png", "samples/02-b.png"]
    shifted = [[(c, 0.9, [b[0] + 40, b[1], b[2] + 40, b[3]]) for c, b in found] for found in boxes]
    wrong, text, _ = report_module.build(*args, shifted, ["circle", "square"], CLASSES, 0.3, about)
    assert wrong["map50"] == 0.0 and "missed" in text
