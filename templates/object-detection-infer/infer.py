"""object-detection-infer: boxes for every picture of a folder, with a model from object-detection-train.

Writes to the job's output folder:

- ``detections.json``: picture (its path inside the input folder) -> list of
  ``{"class": name, "score": 0-1, "box": [x0, y0, x1, y1]}``, the box in the
  picture's own pixels, best score first;
- ``images/<picture>``: a PNG copy of each picture with its boxes and labels drawn
  (``a.png`` keeps its name, ``a.jpg`` becomes ``a.jpg.png``);
- ``report/`` when the pictures have YOLO label files (the layout object-detection-train
  reads; its val split when there is one: every picture is run, only those are compared):
  report.json (mAP@0.5, per-class AP), report.md and samples/ (see detection_report.py).

The model code is the training template's (``../object-detection-train/model.py``).
``model`` may name an object-detection-train job (``job:<id>``: its output is
mounted read-only, and its model.pt is used), a folder holding a model.pt, or the
file; ``input`` a dataset or a folder. Nothing is written next to either.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAIN = HERE.parent / "object-detection-train"
sys.path.insert(0, str(TRAIN))
sys.path.insert(0, str(HERE.parent / "validation"))  # the report files both inference templates write

from clusterlab_server.training import TrainingJob, fail, inference_inputs  # noqa: E402
from data import DataError  # noqa: E402
from detection_report import EVAL_SCORE, build, find_labels, read_truth  # noqa: E402
import validation_report  # noqa: E402

DEFAULTS = {"score_threshold": 0.3, "batch_size": 32, "report": True}


def main() -> None:
    job = TrainingJob.from_environment()
    params = {**DEFAULTS, **job.params}
    # a folder (an earlier job's output, mounted read-only) holding model.pt, or the file itself
    model_file, model_shown = job.file_in("model", "model.pt", "object-detection-train")
    job.params["model"] = str(model_file)
    model_path, folder, images = inference_inputs(job, "object-detection-train")

    import torch
    from draw import draw_detections
    from model import ModelFileError, decode, load_model_file
    from PIL import Image

    from data import load_image

    device = job.device
    torch.set_num_threads(max(1, min(job.cpus, len(os.sched_getaffinity(0)))))
    try:
        model, info = load_model_file(model_path, device)
    except ModelFileError as e:
        fail(f"model: {e}")
    except RuntimeError as e:  # weights that do not fit the recorded configuration
        fail(f"model: {model_shown} does not hold a usable model ({str(e).splitlines()[0]})")
    classes, size, stride = info["classes"], info["image_size"], info["stride"]
    threshold = float(params["score_threshold"])
    truth = None
    labels = find_labels(folder) if params["report"] else None
    if labels is not None:
        shown = job.given_as("input").rstrip("/")
        try:
            pictures, boxes, truth_classes = read_truth(labels, shown, classes)
        except DataError as e:
            fail(f"input: {e} (or set report to false to skip the comparison with the labels)")
        if pictures:
            truth = (pictures, boxes, truth_classes)
            where = labels.images.relative_to(folder).as_posix() if labels.images != folder else "."
            print(f"the pictures have label files: the {len(pictures)} pictures of {where} are compared with "
                  "their boxes in output/report/", flush=True)
    decode_score = min(threshold, EVAL_SCORE) if truth else threshold
    print(f"model: {model_shown}, {len(classes)} classes ({', '.join(classes)}), {size}x{size} input; "
          f"{len(images)} pictures of {job.given_as('input')} on {device}, score threshold {threshold}", flush=True)

    drawn_root = job.output / "images"
    results: dict[str, list[dict]] = {}
    scored, sizes = [], []  # every detection down to decode_score, and each picture's size: for the report
    batch_size = int(params["batch_size"])
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        arrays, scales = [], []
        for path in batch:
            array, (width, height) = load_image(path, size)
            arrays.append(torch.from_numpy(array))
            scales.append((width / size, height / size))
        tensor = torch.stack(arrays).to(device, non_blocking=True)
        with torch.no_grad(), torch.autocast(device.type, enabled=job.amp):
            outputs = model(tensor)
        for path, found in zip(batch, decode(outputs, stride, decode_score, scales=scales)):
            name = path.relative_to(folder).as_posix()
            with Image.open(path) as picture:
                width, height = picture.size
                clipped = [(label, score, [min(max(box[0], 0), width), min(max(box[1], 0), height),
                                           min(max(box[2], 0), width), min(max(box[3], 0), height)])
                           for label, score, box in found]
                scored.append(clipped)
                sizes.append((width, height))
                clipped = [d for d in clipped if d[1] >= threshold]
                target = drawn_root / (name if name.lower().endswith(".png") else f"{name}.png")  # a.jpg: a.jpg.png
                target.parent.mkdir(parents=True, exist_ok=True)
                draw_detections(picture, clipped, classes).save(target)
            results[name] = [{"class": classes[label], "score": round(score, 4), "box": [round(v, 1) for v in box]}
                             for label, score, box in clipped]
        print(f"{min(start + batch_size, len(images))}/{len(images)} pictures", flush=True)

    tmp = job.output / "detections.json.tmp"
    lines = [f"  {json.dumps(name)}: [{', '.join(json.dumps(d) for d in found)}]" for name, found in results.items()]
    tmp.write_text("{\n" + ",\n".join(lines) + "\n}\n")  # one line per picture
    tmp.replace(job.output / "detections.json")
    total = sum(len(v) for v in results.values())
    print(f"done: {total} boxes in {len(results)} pictures; output/detections.json and output/images/", flush=True)
    if truth:
        about = {"model": model_shown, "input": job.given_as("input"), "split": labels.split,
                 "eval_score": decode_score}
        compared, boxes, truth_classes = truth
        row = {path: i for i, path in enumerate(images)}  # the compared pictures' results, from all of them
        picked = [row[path] for path in compared]
        names = list(results)
        report, markdown, drawn = build([names[i] for i in picked], compared, [sizes[i] for i in picked], boxes,
                                        [scored[i] for i in picked], truth_classes, classes, threshold, about)
        validation_report.write(job.output, report, markdown, drawn)
        print(f"report: mAP@0.5 {report['map50']:.3f} on {report['images']} pictures "
              f"({report['ground_truth']} boxes); output/report/report.md (open it in JupyterLab), report.json",
              flush=True)


if __name__ == "__main__":
    main()
