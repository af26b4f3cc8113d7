"""A labelling's labels written out in the layouts the training templates read, with a reproducible split.

- classification (image-classification-train): ``train/<class>/<picture>`` and ``val/<class>/<picture>``;
- detection (object-detection-train): ``classes.txt``, ``images/{train,val}/<picture>`` and
  ``labels/{train,val}/<stem>.txt`` in the YOLO text format (``<class> <xc> <yc> <w> <h>``, relative 0-1).

The split is seeded and stratified: for classification each class is shuffled on its own with
``random.Random(f"{seed}:{class}")`` over the pictures' sorted paths, so the same labels, fraction and seed
always give the same split, and adding pictures of one class does not move the others'. A picture's path
inside the labelling (``a/b.png``) becomes one file name (``a__b.png``): sub-folders would read as classes.
Pictures are hard links to the labelling's frozen copies (the dataset store links them again).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from pathlib import Path


def split_count(total: int, val_fraction: float) -> int:
    """How many of ``total`` go to validation: the fraction rounded, but at least one and, from two, never all."""
    if total < 2:
        return 0
    return min(total - 1, max(1, math.floor(total * val_fraction + 0.5)))


def split(paths: list[str], val_fraction: float, seed: int, salt: str = "") -> tuple[list[str], list[str]]:
    """(train, val) of ``paths``, the same for the same paths, fraction and seed."""
    ordered = sorted(paths)
    random.Random(f"{seed}:{salt}").shuffle(ordered)
    count = split_count(len(ordered), val_fraction)
    return sorted(ordered[count:]), sorted(ordered[:count])


def flat_name(path: str, taken: set[str]) -> str:
    """``a/b.png`` -> ``a__b.png``, made unique among ``taken`` (which it joins)."""
    name = path.replace("/", "__")
    stem, dot, suffix = name.rpartition(".")
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}_{n}{dot}{suffix}" if dot else f"{name}_{n}"
    taken.add(candidate)
    return candidate


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links refused
        shutil.copy2(source, target)


def classification_split(labels: dict[str, str], val_fraction: float, seed: int) -> dict[str, list[str]]:
    by_class: dict[str, list[str]] = {}
    for path, name in labels.items():
        by_class.setdefault(name, []).append(path)
    sets: dict[str, list[str]] = {"train": [], "val": []}
    for name in sorted(by_class):
        train, val = split(by_class[name], val_fraction, seed, name)
        sets["train"] += train
        sets["val"] += val
    return sets


def write_classification(target: Path, images: Path, labels: dict[str, str], sets: dict[str, list[str]]) -> dict:
    """The ImageFolder layout in ``target``; returns the counts per split and class."""
    counts: dict[str, dict[str, int]] = {}
    for part, paths in sets.items():
        taken: set[str] = set()
        counts[part] = {}
        for path in paths:
            name = labels[path]
            _link(images / path, target / part / name / flat_name(path, taken))
            counts[part][name] = counts[part].get(name, 0) + 1
    return counts


def yolo_lines(boxes: list[dict], classes: list[str], width: int, height: int) -> list[str]:
    """Pixel boxes ``[x0, y0, x1, y1]`` as YOLO lines, clipped to the picture; empty boxes are left out."""
    lines = []
    for box in boxes:
        x0, y0, x1, y1 = box["box"]
        x0, x1 = sorted((min(max(x0, 0.0), width), min(max(x1, 0.0), width)))
        y0, y1 = sorted((min(max(y0, 0.0), height), min(max(y1, 0.0), height)))
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            continue
        lines.append(f"{classes.index(box['class'])} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
                     f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}")
    return lines


def write_detection(target: Path, images: Path, labels: dict[str, list[dict]], classes: list[str],
                    sets: dict[str, list[str]]) -> dict:
    """The YOLO layout in ``target``; returns the pictures and boxes per split."""
    from PIL import Image  # not at import: the server imports this module as it starts

    target.mkdir(parents=True, exist_ok=True)
    (target / "classes.txt").write_text("".join(f"{name}\n" for name in classes))
    counts: dict[str, dict[str, int]] = {}
    for part, paths in sets.items():
        taken: set[str] = set()
        boxes = 0
        for path in paths:
            name = flat_name(path, taken)
            _link(images / path, target / "images" / part / name)
            with Image.open(images / path) as picture:
                width, height = picture.size
            lines = yolo_lines(labels[path], classes, width, height)
            boxes += len(lines)
            label = target / "labels" / part / (name.rpartition(".")[0] + ".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(f"{line}\n" for line in lines))
        (target / "images" / part).mkdir(parents=True, exist_ok=True)
        (target / "labels" / part).mkdir(parents=True, exist_ok=True)
        counts[part] = {"pictures": len(paths), "boxes": boxes}
    return counts


def write_labels_file(target: Path, labels: dict) -> None:
    """The labels as they were exported, beside the layout: picture path -> class, or -> pixel boxes."""
    (target / "labels.json").write_text(json.dumps(labels, indent=1, sort_keys=True) + "\n")
