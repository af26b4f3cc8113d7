"""Detection data in the YOLO text format: checked up front, then served to a DataLoader.

The layout (what ``clusterlab demo-data`` writes in ``shapes-detection/``)::

    DATASET/
      classes.txt              one class name per line; line 1 is class 0
      images/train/*.png       (or .jpg, .jpeg, .bmp, .webp)
      images/val/*.png
      labels/train/<image stem>.txt
      labels/val/<image stem>.txt

A label file has one line per box, ``<class> <x_center> <y_center> <width> <height>``,
the class a 0-based index into classes.txt, the four numbers relative to the
image's width and height (0 to 1). An image without a label file, or with an
empty one, has no objects.

Only the standard library, numpy and Pillow are used here, so that bad input is
reported before ``import torch``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from clusterlab_server.training import IMAGE_SUFFIXES, unreadable_image

SPLITS = ("train", "val")
LAYOUT = ("images/{train,val}/ with the pictures, labels/{train,val}/ with one <name>.txt per picture "
          "(lines '<class> <x_center> <y_center> <width> <height>', 0-1 relative) and classes.txt")
MEAN, STD = 0.5, 0.25  # pixel normalisation: (x / 255 - MEAN) / STD


class DataError(ValueError):
    """Bad input: the message is for the user."""


@dataclasses.dataclass
class Sample:
    image: Path
    labels: list[tuple[int, float, float, float, float]]  # class, xc, yc, w, h (relative)


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_classes(dataset: Path, shown: str) -> list[str]:
    path = dataset / "classes.txt"
    if not path.is_file():
        raise DataError(f"{shown}/classes.txt is missing: the dataset needs a classes.txt with one class "
                        f"name per line (line 1 is class 0). Expected layout: {LAYOUT}")
    try:
        names = [line.strip() for line in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{shown}/classes.txt cannot be read: {e}") from None
    while names and not names[-1]:
        names.pop()
    if not names:
        raise DataError(f"{shown}/classes.txt is empty: write one class name per line")
    for number, name in enumerate(names, 1):
        if not name:
            raise DataError(f"{shown}/classes.txt line {number} is empty: every class needs a name")
    return names


def parse_label_file(path: Path, shown: str, num_classes: int) -> list[tuple[int, float, float, float, float]]:
    """One label file -> boxes; DataError naming the file and line of the first bad line."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{shown} cannot be read: {e}") from None
    boxes = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{shown} line {number}"
        if len(fields) != 5:
            raise DataError(f"{where}: expected 5 values '<class> <x_center> <y_center> <width> <height>', "
                            f"got {line.strip()[:80]!r}")
        try:
            label = int(fields[0])
        except ValueError:
            raise DataError(f"{where}: the class must be a whole number (an index into classes.txt), "
                            f"got {fields[0][:40]!r}") from None
        try:
            xc, yc, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise DataError(f"{where}: x_center, y_center, width and height must be numbers, "
                            f"got {line.strip()[:80]!r}") from None
        if not 0 <= label < num_classes:
            raise DataError(f"{where}: class {label} is out of range: classes.txt has {num_classes} "
                            f"class(es), 0 to {num_classes - 1}")
        eps = 1e-3
        if not all(-eps <= v <= 1 + eps for v in (xc, yc, w, h)) or w <= 0 or h <= 0:
            raise DataError(f"{where}: x_center, y_center, width and height must be relative to the image "
                            f"(0 to 1, width and height above 0), got {line.strip()[:80]!r}")
        boxes.append((label, xc, yc, w, h))
    return boxes


def check_image(path: Path, shown: str) -> None:
    reason = unreadable_image(path)
    if reason:
        raise DataError(f"{shown} cannot be read as an image ({reason}); replace or remove it")


def load_split(dataset: Path, shown: str, split: str, num_classes: int, check_images: bool = True) -> list[Sample]:
    images = dataset / "images" / split
    labels = dataset / "labels" / split
    if not images.is_dir():
        raise DataError(f"{shown}/images/{split}/ is missing. Expected layout: {LAYOUT}")
    if not labels.is_dir():
        raise DataError(f"{shown}/labels/{split}/ is missing. Expected layout: {LAYOUT}")
    samples = []
    for image in list_images(images):
        label_file = labels / f"{image.stem}.txt"
        boxes = (parse_label_file(label_file, f"{shown}/labels/{split}/{label_file.name}", num_classes)
                 if label_file.is_file() else [])
        if check_images:
            check_image(image, f"{shown}/images/{split}/{image.name}")
        samples.append(Sample(image, boxes))
    if not samples:
        raise DataError(f"{shown}/images/{split}/ has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return samples


def load_dataset(dataset: Path, shown: str) -> tuple[list[str], dict[str, list[Sample]]]:
    """Check the whole dataset; DataError with the first problem a user must fix."""
    if not dataset.is_dir():
        raise DataError(f"{shown} is not a folder. Expected a folder with {LAYOUT}")
    for folder in ("images", "labels"):
        if not (dataset / folder).is_dir():
            raise DataError(f"{shown}/{folder}/ is missing. Expected layout: {LAYOUT}")
    classes = read_classes(dataset, shown)
    splits = {split: load_split(dataset, shown, split, len(classes)) for split in SPLITS}
    return classes, splits


# ----- turning a sample into tensors -------------------------------------------------------


def load_image(path: Path, size: int):
    """An image as a float32 CHW array (normalised), resized to size x size; and its original (w, h)."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as image:
            original = image.size
            image = image.convert("RGB").resize((size, size), Image.BILINEAR)
    except (OSError, ValueError) as e:
        raise DataError(f"{path} cannot be read as an image ({e})") from None
    array = (np.asarray(image, dtype=np.float32) / 255.0 - MEAN) / STD
    return array.transpose(2, 0, 1).copy(), original


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius: how far a centre may move with the box keeping IoU >= min_overlap."""
    import math

    a1, b1 = 1, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2 = 4, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def encode_targets(boxes, num_classes: int, out_size: int):
    """Dense CenterNet targets on the out_size x out_size grid from relative YOLO boxes.

    heatmap (C, S, S): a Gaussian peak of 1 at each centre; size (2, S, S): box
    width and height in grid cells at the centre cell; offset (2, S, S): the
    centre's sub-cell position; mask (S, S): 1 at the centre cells.
    """
    import numpy as np

    s = out_size
    heatmap = np.zeros((num_classes, s, s), dtype=np.float32)
    size = np.zeros((2, s, s), dtype=np.float32)
    offset = np.zeros((2, s, s), dtype=np.float32)
    mask = np.zeros((s, s), dtype=np.float32)
    for label, xc, yc, w, h in boxes:
        cx, cy, bw, bh = xc * s, yc * s, w * s, h * s
        ix, iy = min(int(cx), s - 1), min(int(cy), s - 1)
        radius = max(0, int(gaussian_radius(bh, bw)))
        sigma = (2 * radius + 1) / 6
        ys, xs = np.ogrid[-radius:radius + 1, -radius:radius + 1]
        blob = np.exp(-(xs * xs + ys * ys) / (2 * sigma * sigma))
        x0, x1 = max(0, ix - radius), min(s, ix + radius + 1)
        y0, y1 = max(0, iy - radius), min(s, iy + radius + 1)
        patch = blob[y0 - iy + radius:y1 - iy + radius, x0 - ix + radius:x1 - ix + radius]
        np.maximum(heatmap[label, y0:y1, x0:x1], patch, out=heatmap[label, y0:y1, x0:x1])
        heatmap[label, iy, ix] = 1.0
        size[:, iy, ix] = (bw, bh)
        offset[:, iy, ix] = (cx - ix, cy - iy)
        mask[iy, ix] = 1.0
    return heatmap, size, offset, mask


class DetectionDataset:
    """Map-style dataset for torch's DataLoader (numpy arrays; default collation makes tensors)."""

    def __init__(self, samples: list[Sample], num_classes: int, image_size: int, stride: int, augment: bool):
        self.samples, self.num_classes = samples, num_classes
        self.image_size, self.out_size, self.augment = image_size, image_size // stride, augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        import random

        sample = self.samples[index]
        image, _ = load_image(sample.image, self.image_size)
        boxes = sample.labels
        if self.augment and random.random() < 0.5:  # horizontal flip (torch seeds `random` in each worker)
            image = image[:, :, ::-1].copy()
            boxes = [(c, 1.0 - xc, yc, w, h) for c, xc, yc, w, h in boxes]
        heatmap, size, offset, mask = encode_targets(boxes, self.num_classes, self.out_size)
        return image, heatmap, size, offset, mask


def truth_boxes(sample: Sample, width: float, height: float) -> list[tuple[int, list[float]]]:
    """A sample's boxes as (class, [x0, y0, x1, y1]) in a width x height picture."""
    return [(c, [(xc - w / 2) * width, (yc - h / 2) * height, (xc + w / 2) * width, (yc + h / 2) * height])
            for c, xc, yc, w, h in sample.labels]
