"""image-classification-infer: classify every image of a folder with a trained model.

Writes ``predictions.csv`` (file, class, confidence) in the job's output folder,
one row per image, ``file`` relative to the input folder. When the input holds
labels (class folders named like the model's classes: ``<input>/<class>/``, or
``<input>/val/<class>/`` for a dataset with train/ and val/: every image is classified,
only val/'s are compared, the held-out ones) it also writes ``output/report/`` (see classification_report.py):
report.json, report.md, confusion.png and samples/. The model is the
``model.pt`` of an ``image-classification-train`` job: it holds the weights, the
class names, the image size and the model size. ``model`` may name that job
(``job:<id>``: its output is mounted read-only, and its model.pt is used), a
folder holding a model.pt, or the file; ``input`` a dataset or a folder. Nothing
is written next to either. Bad input is reported before ``import torch``.
"""

from __future__ import annotations

import csv
import os
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAIN = HERE.parent / "image-classification-train"
sys.path.insert(0, str(TRAIN))  # the model and the image reading are the training template's
sys.path.insert(0, str(HERE.parent / "validation"))  # the report files both inference templates write

from clusterlab_server.training import TrainingJob, fail, inference_inputs  # noqa: E402
from data import ImageFiles  # noqa: E402
from classification_report import build, labelled  # noqa: E402
import validation_report  # noqa: E402


def load_model(path: Path, shown: str):
    import torch
    from model import MODEL_FORMAT, Classifier

    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        lines = str(e).strip().splitlines()
        fail(f"the model {shown} cannot be read as a PyTorch file ({type(e).__name__}"
             f"{': ' + lines[0][:200] if lines else ''})")
    if not isinstance(stored, dict) or stored.get("format") != MODEL_FORMAT:
        fail(f"{shown} is not a model written by image-classification-train (its output/model.pt)")
    model = Classifier(len(stored["classes"]), stored["model_size"])
    model.load_state_dict(stored["state_dict"])
    return model.eval(), list(stored["classes"]), int(stored["image_size"])


def main() -> None:
    job = TrainingJob.from_environment()
    params = job.params
    batch_size = int(params.get("batch_size") or 64)
    # a folder (an earlier job's output, mounted read-only) holding model.pt, or the file itself
    model_file, model_shown = job.file_in("model", "model.pt", "image-classification-train")
    params["model"] = str(model_file)
    model_path, folder, files = inference_inputs(job, "image-classification-train")

    import torch

    device = job.device
    model, classes, size = load_model(model_path, model_shown)
    split, labels, compared = None, None, files
    if params.get("report", True):
        split, compared, labels, note = labelled(folder, files, classes)
        if note:
            print(note, flush=True)
        elif labels is not None:
            where = f"{job.given_as('input')}/{split}" if split else job.given_as("input")
            print(f"the images are in class folders ({where}/<class>/): the predictions are compared with them "
                  "in output/report/", flush=True)
    cuda = device.type == "cuda"
    model.to(device)
    model.to(memory_format=torch.channels_last)  # NHWC convolutions: faster on GPUs and CPUs alike
    if cuda:
        torch.backends.cudnn.benchmark = True
    workers = job.loader_workers()
    loader = torch.utils.data.DataLoader(
        ImageFiles(files, [0] * len(files), size), batch_size=batch_size, num_workers=workers, pin_memory=cuda)
    print(f"classifying {len(files)} images from {job.given_as('input')} with {model_shown} into "
          f"{len(classes)} classes ({', '.join(classes)}) on {device}, {size}x{size}", flush=True)

    predicted, confidences = [], []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=job.amp):
        for images, _ in loader:
            images = images.to(device, non_blocking=True)
            images = images.contiguous(memory_format=torch.channels_last)
            confidence, index = model(images).float().softmax(1).max(1)
            predicted.extend(index.tolist())
            confidences.extend(confidence.tolist())

    target = job.output / "predictions.csv"
    tmp = target.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "class", "confidence"])
        for path, index, confidence in zip(files, predicted, confidences):
            writer.writerow([path.relative_to(folder).as_posix(), classes[index], f"{confidence:.4f}"])
    os.replace(tmp, target)
    counts = Counter(classes[i] for i in predicted)
    print(f"predictions.csv: {len(files)} rows; " + ", ".join(f"{c} {counts[c]}" for c in classes), flush=True)
    if labels is not None:
        row = {path: i for i, path in enumerate(files)}  # the compared images' predictions, from all of them
        picked = [row[path] for path in compared]
        names = [path.relative_to(folder).as_posix() for path in compared]
        about = {"model": model_shown, "input": job.given_as("input"), "split": split}
        report, markdown, pictures = build(names, compared, labels, [predicted[i] for i in picked],
                                           [confidences[i] for i in picked], classes, about)
        validation_report.write(job.output, report, markdown, pictures)
        print(f"report: accuracy {report['accuracy']:.3f} on {report['images']} images; "
              "output/report/report.md (open it in JupyterLab), report.json", flush=True)


if __name__ == "__main__":
    main()
