"""Small synthetic data sets the templates learn well: ``clusterlab demo-data DIR``.

- ``shapes/``: image classification, ImageFolder layout (``train/<class>/*.png``,
  ``val/<class>/*.png``): circles, squares and triangles of random colour, size
  and place on a noisy background.
- ``shapes-detection/``: object detection in the YOLO text format:
  ``images/{train,val}/*.png``, ``labels/{train,val}/*.txt`` with one line per
  box, ``<class> <x_center> <y_center> <width> <height>`` (0-1, relative to the
  image), and ``classes.txt`` with one class name per line.
- ``tabular/houses.csv``: numeric and categorical columns, a numeric target
  (``price``) for regression and a categorical one (``segment``) for classification.

Deterministic for a given seed, and generated in a few seconds.
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

CLASSES = ("circle", "square", "triangle")


def _canvas(size: int, rng: random.Random):
    import numpy as np
    from PIL import Image

    base = np.full((size, size, 3), rng.randint(150, 230), dtype=np.uint8)
    noise = np.random.default_rng(rng.randint(0, 2**31)).integers(-25, 25, (size, size, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def _draw(image, shape: str, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    from PIL import ImageDraw

    x0, y0, x1, y1 = box
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return tuple(rng.randint(0, 110) for _ in range(3))  # dark on a light background


def shapes(folder: Path, per_class: int = 60, val_per_class: int = 20, size: int = 64, seed: int = 0) -> Path:
    rng = random.Random(seed)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for name in CLASSES:
            (folder / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = _canvas(size, rng)
                side = rng.randint(size // 3, int(size * 0.8))
                x0, y0 = rng.randint(0, size - side), rng.randint(0, size - side)
                _draw(image, name, (x0, y0, x0 + side, y0 + side), _colour(rng))
                image.save(folder / split / name / f"{name}_{i:04d}.png")
    return folder


def shapes_detection(folder: Path, train: int = 160, val: int = 40, size: int = 96, seed: int = 1) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for split, count in (("train", train), ("val", val)):
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, boxes = _canvas(size, rng), []
            for _ in range(rng.randint(1, 3)):
                side = rng.randint(size // 5, size // 2)
                for _attempt in range(20):  # place it apart from the others
                    x0, y0 = rng.randint(0, size - side), rng.randint(0, size - side)
                    if all(x0 + side < b[0] or b[2] < x0 or y0 + side < b[1] or b[3] < y0 for b, _ in boxes):
                        break
                else:
                    continue
                label = rng.randrange(len(CLASSES))
                _draw(image, CLASSES[label], (x0, y0, x0 + side, y0 + side), _colour(rng))
                boxes.append(((x0, y0, x0 + side, y0 + side), label))
            image.save(folder / "images" / split / f"{i:04d}.png")
            lines = [
                f"{label} {(b[0] + b[2]) / 2 / size:.6f} {(b[1] + b[3]) / 2 / size:.6f} "
                f"{(b[2] - b[0]) / size:.6f} {(b[3] - b[1]) / size:.6f}"
                for b, label in boxes
            ]
            (folder / "labels" / split / f"{i:04d}.txt").write_text("\n".join(lines) + "\n")
    return folder


def tabular(folder: Path, rows: int = 600, seed: int = 2) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "houses.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["area_m2", "rooms", "age_years", "district", "garden", "price", "segment"])
        for _ in range(rows):
            area = rng.uniform(30, 250)
            rooms = max(1, round(area / 30 + rng.gauss(0, 0.7)))
            age = rng.uniform(0, 80)
            district = rng.choice(["centre", "north", "south", "harbour"])
            garden = rng.random() < 0.4
            bonus = {"centre": 1.5, "north": 1.0, "south": 0.9, "harbour": 1.25}[district]
            price = (2500 * area * bonus - 400 * age + 15000 * garden + 8000 * rooms) * math.exp(rng.gauss(0, 0.05))
            segment = "premium" if price > 450000 else "standard" if price > 200000 else "budget"
            writer.writerow([round(area, 1), rooms, round(age, 1), district, int(garden), round(price), segment])
    return path


def generate(folder: Path) -> dict[str, Path]:
    folder = Path(folder)
    return {
        "image classification": shapes(folder / "shapes"),
        "object detection": shapes_detection(folder / "shapes-detection"),
        "tabular": tabular(folder / "tabular"),
    }
