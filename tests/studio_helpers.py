"""What the AI Studio tests share: unlabelled pictures with the truth kept aside (for the clicks), and the
user's Label Studio as the test reaches it."""

from __future__ import annotations

import shutil
from pathlib import Path

from clusterlab_server.demo_data import CLASSES, shapes, shapes_detection
from clusterlab_server.studio.label_studio import LabelStudio


def unlabelled_shapes(workspace: Path, per_class: int, size: int = 32) -> dict[str, str]:
    """``workspace/unlabelled/`` of shape pictures in no class folders (some in a sub-folder): path -> class."""
    scratch = workspace.parent / "shapes-source"
    shapes(scratch, per_class=per_class, val_per_class=0, size=size)
    truth = {}
    for name in CLASSES:
        for i, picture in enumerate(sorted((scratch / "train" / name).iterdir())):
            path = f"batch{i % 2}/{name[0]}{i:03d}.png"
            (workspace / "unlabelled" / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(picture, workspace / "unlabelled" / path)
            truth[path] = name
    shutil.rmtree(scratch)
    return truth


def unlabelled_detection(workspace: Path, count: int, size: int = 64) -> dict[str, list[dict]]:
    """``workspace/unlabelled-boxes/`` of pictures with 1-3 shapes: path -> pixel boxes."""
    scratch = workspace.parent / "boxes-source"
    shapes_detection(scratch, train=count, val=0, size=size)
    truth = {}
    for picture in sorted((scratch / "images" / "train").iterdir()):
        target = workspace / "unlabelled-boxes" / picture.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(picture, target)
        boxes = []
        for line in (scratch / "labels" / "train" / f"{picture.stem}.txt").read_text().split("\n"):
            if line.strip():
                label, xc, yc, w, h = line.split()
                xc, yc, w, h = (float(v) * size for v in (xc, yc, w, h))
                boxes.append({"class": CLASSES[int(label)], "box": [xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2]})
        truth[picture.name] = boxes
    shutil.rmtree(scratch)
    return truth


def label_studio_of(jobs_root: Path) -> LabelStudio:
    """The user's Label Studio as their server runs it (the same state file: the same process)."""
    studio = jobs_root / "studio"
    return LabelStudio(studio / "label-studio", studio / "labellings")

