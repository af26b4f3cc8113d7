"""mAP@0.5, VOC style, in plain Python and numpy.

``average_precision`` is one class's AP: detections sorted by score, each
matched greedily to the unmatched ground-truth box of the same image with the
highest IoU (a match needs IoU >= the threshold; a second detection of an
already matched box is a false positive), then the area under the precision /
recall curve with precision made monotone (all-point interpolation, as in
PASCAL VOC 2010 and later).

``mean_average_precision`` averages it over the classes that have ground truth
in the evaluated set (a class with none has no defined AP and is left out).

Boxes are ``[x0, y0, x1, y1]`` in any one coordinate system.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def iou(box: Sequence[float], boxes: np.ndarray) -> np.ndarray:
    """IoU of one box with each of ``boxes`` (N x 4)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def average_precision(detections: list[tuple[int, float, Sequence[float]]],
                      truths: dict[int, Sequence[Sequence[float]]], iou_threshold: float = 0.5) -> float:
    """AP of one class.

    ``detections``: (image index, score, box) for every detection of the class;
    ``truths``: image index -> the class's ground-truth boxes in that image.
    Returns nan when there is no ground truth.
    """
    total = sum(len(boxes) for boxes in truths.values())
    if total == 0:
        return float("nan")
    gt = {image: np.asarray(boxes, dtype=np.float64).reshape(-1, 4) for image, boxes in truths.items()}
    used = {image: np.zeros(len(boxes), dtype=bool) for image, boxes in gt.items()}
    order = sorted(range(len(detections)), key=lambda i: -detections[i][1])  # stable: ties keep their order
    tp = np.zeros(len(order))
    for rank, i in enumerate(order):
        image, _score, box = detections[i]
        candidates = gt.get(image)
        if candidates is None or len(candidates) == 0:
            continue
        overlaps = iou(box, candidates)
        overlaps[used[image]] = -1.0  # each ground-truth box is found once
        best = int(np.argmax(overlaps))
        if overlaps[best] >= iou_threshold:
            used[image][best] = True
            tp[rank] = 1
    if len(order) == 0:
        return 0.0
    tp_cum = np.cumsum(tp)
    recall = tp_cum / total
    precision = tp_cum / np.arange(1, len(order) + 1)
    # all-point interpolation: precision made non-increasing, area summed where recall changes
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    for k in range(len(p) - 2, -1, -1):
        p[k] = max(p[k], p[k + 1])
    steps = np.where(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def mean_average_precision(predictions: list[list[tuple[int, float, Sequence[float]]]],
                           targets: list[list[tuple[int, Sequence[float]]]], num_classes: int,
                           iou_threshold: float = 0.5) -> tuple[float, list[float]]:
    """mAP over images: ``predictions[i]`` = [(class, score, box)], ``targets[i]`` = [(class, box)].

    Returns (mAP, per-class AP with nan for classes without ground truth);
    mAP is 0.0 when no class has ground truth.
    """
    per_class = []
    for c in range(num_classes):
        detections = [(i, score, box) for i, image in enumerate(predictions) for k, score, box in image if k == c]
        truths: dict[int, list] = {}
        for i, image in enumerate(targets):
            for k, box in image:
                if k == c:
                    truths.setdefault(i, []).append(box)
        per_class.append(average_precision(detections, truths, iou_threshold))
    defined = [ap for ap in per_class if not np.isnan(ap)]
    return (float(np.mean(defined)) if defined else 0.0), per_class
