"""The validation report of object-detection-infer, when the pictures have YOLO label files.

``find_labels`` recognises the layout object-detection-train reads (classes.txt,
images/<split>/, labels/<split>/: the val split when there is one) given as the
dataset's folder, its images/ folder or one images/<split>/ folder; ``read_truth``
reads the boxes; ``build`` scores the detections with the training template's
mAP@0.5 (metrics.py: VOC all-point interpolation, IoU 0.5) and makes report.json,
report.md and the sample pictures (see ../validation/validation_report.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import validation_report as vr
from data import Sample, list_images, parse_label_file, read_classes, truth_boxes
from draw import draw_detections
from metrics import iou, mean_average_precision

IOU = 0.5
EVAL_SCORE = 0.05  # the lowest score a detection needs to count in the mAP, as in object-detection-train


@dataclasses.dataclass
class Labels:
    images: Path  # the folder of the pictures compared
    labels: Path  # its folder of label files
    root: Path | None  # the dataset's folder (classes.txt) when known
    split: str  # 'val', 'train', ... or '' (pictures straight in images/)


def _subfolders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _pick_split(images: Path, labels: Path, root: Path | None, split: str = "") -> Labels | None:
    if split:
        return Labels(images, labels, root, split)
    if (images / "val").is_dir() and (labels / "val").is_dir():
        return Labels(images / "val", labels / "val", root, "val")
    if list_images(images):
        return Labels(images, labels, root, "")
    paired = [s for s in _subfolders(images) if (labels / s).is_dir()]
    if len(paired) == 1:
        return Labels(images / paired[0], labels / paired[0], root, paired[0])
    return None


def find_labels(folder: Path) -> Labels | None:
    """Where the input's label files are, or None when it has none (a plain folder of pictures)."""
    if (folder / "images").is_dir() and (folder / "labels").is_dir():
        return _pick_split(folder / "images", folder / "labels", folder)
    if folder.name == "images" and (folder.parent / "labels").is_dir():
        return _pick_split(folder, folder.parent / "labels", folder.parent)
    if folder.parent.name == "images" and (folder.parent.parent / "labels" / folder.name).is_dir():
        root = folder.parent.parent
        return _pick_split(folder, root / "labels" / folder.name, root, folder.name)
    return None


def read_truth(found: Labels, shown: str, model_classes: list[str]):
    """(pictures, their boxes as (class name index, xc, yc, w, h), the dataset's class names).

    The class names are classes.txt's when the dataset has one, else the model's. DataError (from
    data.py) names a bad label file."""
    root = found.root
    classes = read_classes(root, shown) if root is not None and (root / "classes.txt").is_file() else model_classes
    pictures = list_images(found.images)
    boxes = []
    for picture in pictures:
        label_file = found.labels / f"{picture.stem}.txt"
        where = f"{shown}: {label_file.name}"
        boxes.append(parse_label_file(label_file, where, len(classes)) if label_file.is_file() else [])
    return pictures, boxes, classes


def _errors(shown: list, truth: list) -> tuple[int, int]:
    """(missed ground-truth boxes, false detections) of one picture at IoU 0.5, greedy by score."""
    used = [False] * len(truth)
    false = 0
    for label, _score, box in sorted(shown, key=lambda d: -d[1]):
        best, best_iou = -1, IOU
        for k, (c, gt) in enumerate(truth):
            if c == label and not used[k]:
                overlap = float(iou(box, [gt])[0])
                if overlap >= best_iou:
                    best, best_iou = k, overlap
        if best < 0:
            false += 1
        else:
            used[best] = True
    return used.count(False), false


def _draw(picture, shown: list, truth: list, model_classes: list[str]):
    from PIL import ImageDraw

    image = vr.enlarged(picture)
    factor = image.width / picture.width
    draw = ImageDraw.Draw(image)
    width = max(1, round(min(image.size) / 150))
    for _c, box in truth:  # ground truth: white with a dark edge, under the predictions
        x0, y0, x1, y1 = (v * factor for v in box)
        draw.rectangle([x0 - 1, y0 - 1, x1 + 1, y1 + 1], outline=(0, 0, 0), width=width + 2)
        draw.rectangle([x0, y0, x1, y1], outline=(255, 255, 255), width=width)
    scaled = [(label, score, [v * factor for v in box]) for label, score, box in shown]
    return draw_detections(image, scaled, model_classes)


def build(names: list[str], paths: list[Path], sizes: list[tuple[int, int]], labels: list[list],
          found: list[list], dataset_classes: list[str], model_classes: list[str], threshold: float,
          about: dict) -> tuple[dict, str, dict]:
    """report.json's dict, report.md's text and its pictures (relative path -> PIL image).

    ``found[i]``: picture i's detections (model class, score, [x0, y0, x1, y1] in its pixels) down to
    ``about['eval_score']``; ``threshold``: the score the drawn and listed detections need."""
    from PIL import Image

    names_all = list(model_classes) + [c for c in dataset_classes if c not in model_classes]
    index = [names_all.index(c) for c in dataset_classes]
    targets = [[(index[c], box) for c, box in truth_boxes_of(boxes, size)] for boxes, size in zip(labels, sizes)]
    map50, per_class = mean_average_precision(found, targets, len(names_all), IOU)
    shown = [[d for d in f if d[1] >= threshold] for f in found]
    classes = {}
    for k, name in enumerate(names_all):
        truth = sum(1 for t in targets for c, _ in t if c == k)
        if truth == 0 and name not in dataset_classes:
            continue
        classes[name] = {"ap50": vr.rounded(per_class[k]), "ground_truth": truth,
                         "detections": sum(1 for s in shown for d in s if d[0] == k)}
    unknown = [c for c in dataset_classes if c not in model_classes]
    report = {
        "kind": "detection", "images": len(names), "map50": vr.rounded(map50), "classes": classes,
        "ground_truth": sum(len(t) for t in targets), "iou_threshold": IOU, "eval_score": about["eval_score"],
        "score_threshold": threshold, "model": about["model"], "input": about["input"],
        "split": about["split"] or None,
    }

    errors = [_errors(s, t) for s, t in zip(shown, targets)]
    bad = sorted((i for i, e in enumerate(errors) if sum(e)), key=lambda i: (-sum(errors[i]), i))
    good = [i for i, e in enumerate(errors) if not sum(e)]
    chosen = bad[:vr.SAMPLES - min(2, len(good))] if good else bad[:vr.SAMPLES]
    chosen += good[:vr.SAMPLES - len(chosen)]
    pictures, samples = {}, []
    for number, i in enumerate(chosen, 1):
        missed, false = errors[i]
        with Image.open(paths[i]) as picture:
            drawn = vr.captioned(_draw(picture, shown[i], targets[i], model_classes), [
                f"truth {len(targets[i])} (white), found {len(shown[i])}",
                f"missed {missed}, false {false}"], vr.WRONG if missed or false else vr.RIGHT)
        relative = f"samples/{vr.sample_name(number, names[i])}"
        pictures[relative] = drawn
        samples.append((relative, names[i], missed, false))

    split = f" (its `{about['split']}` split)" if about["split"] else ""
    lines = [
        "# Validation report: object detection", "",
        f"Model `{about['model']}` on `{about['input']}`{split}, against the boxes of its label files.", "",
        f"- pictures: **{len(names)}**, ground-truth boxes: **{report['ground_truth']}**",
        f"- mAP@0.5: **{vr.number(map50)}** (VOC style: each class's average precision at IoU {IOU}, "
        "all-point interpolation, averaged over the classes with ground truth; detections scoring at least "
        f"{about['eval_score']} count)", "",
    ]
    if unknown:
        lines += [f"The model does not know the class(es) {', '.join(unknown)}: their AP is 0.", ""]
    lines += [
        "## Per class", "",
        vr.table(["class", "AP@0.5", "ground-truth boxes", f"detections (score ≥ {threshold})"],
                 [[c, vr.number(v["ap50"]), v["ground_truth"], v["detections"]] for c, v in classes.items()]),
        "",
    ]
    if any(v["ap50"] is None for v in classes.values()):
        lines += ["'–': no ground truth of the class in these pictures, so no AP.", ""]
    lines += [
        "## Samples", "",
        f"Ground truth in white; the detections scoring at least {threshold} in colour, with class and score. "
        "Pictures with a missed box or a false detection (at IoU 0.5) first, framed red; right ones green.", "",
    ]
    for relative, name, missed, false in samples:
        lines += [f"`{name}`: missed {missed}, false {false}", "", vr.image_link(relative, name), ""]
    return report, "\n".join(lines), pictures


def truth_boxes_of(boxes: list, size: tuple[int, int]) -> list[tuple[int, list[float]]]:
    """YOLO boxes as (class, [x0, y0, x1, y1]) in a picture of ``size`` (width, height)."""
    return truth_boxes(Sample(Path(), boxes), size[0], size[1])
