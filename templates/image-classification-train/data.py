"""The image-folder data set: checked before training, then read by a DataLoader.

``check_dataset`` needs only the standard library and Pillow, so that bad input
(a missing folder, one class only, a corrupt image) is reported in a second,
before ``import torch``. The inference template uses the same image reading.

Layout (the ImageFolder one)::

    <dataset>/train/<class>/*.png|jpg|...
    <dataset>/val/<class>/*.png|jpg|...

Class names are the ``train/`` folder names, sorted; ``val/`` may leave some out
but may not bring its own.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from clusterlab_server.training import IMAGE_SUFFIXES, find_images, unreadable_image



class DatasetError(ValueError):
    """What is wrong with the data, in words a user understands."""


@dataclass
class Split:
    files: list[Path]
    labels: list[int]


@dataclass
class Dataset:
    root: Path
    classes: list[str]
    train: Split
    val: Split


def image_files(folder: Path) -> list[Path]:
    """The images under ``folder`` (all depths), sorted; hidden files and other files left out."""
    return find_images(folder)


def _class_folders(split: Path) -> list[str]:
    return sorted(p.name for p in split.iterdir() if p.is_dir() and not p.name.startswith("."))


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def check_images(files: list[Path], root: Path, workers: int = 4, shown_as: str = "") -> None:
    """DatasetError naming the first image (in sorted order) that Pillow cannot read."""
    def problem(path: Path) -> str | None:
        reason = unreadable_image(path)
        if not reason:
            return None
        shown = _shown(path, root)
        return f"{shown_as.rstrip('/')}/{shown} is not a readable image ({reason})" if shown_as else \
            f"{shown} is not a readable image ({reason})"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for message in pool.map(problem, files):
            if message:
                raise DatasetError(message)


def check_dataset(root: Path, shown_as: str = "", workers: int = 4, verify: bool = True) -> Dataset:
    """The data set's classes and files, or DatasetError saying what is wrong."""
    name = shown_as or str(root)
    if not root.exists():
        raise DatasetError(f"the dataset folder {name} does not exist")
    if not root.is_dir():
        raise DatasetError(f"the dataset {name} is a file; it must be a folder with train/ and val/ in it")
    missing = [split for split in ("train", "val") if not (root / split).is_dir()]
    if missing:
        raise DatasetError(
            f"the dataset folder {name} has no {' and no '.join(s + '/' for s in missing)} folder: it must "
            f"hold train/<class>/ and val/<class>/ folders of images (one folder per class)")
    classes = _class_folders(root / "train")
    if len(classes) < 2:
        found = f"only one class ({classes[0]})" if classes else "no class folders"
        raise DatasetError(
            f"{name}/train has {found}: image classification needs at least two classes, "
            f"one folder per class (train/<class>/*.png)")
    index = {c: i for i, c in enumerate(classes)}
    val_classes = _class_folders(root / "val")
    unknown = [c for c in val_classes if c not in index]
    if unknown:
        raise DatasetError(
            f"{name}/val has class folder(s) that train/ does not have: {', '.join(unknown)} "
            f"(train/ has {', '.join(classes)})")
    splits = {}
    for split, names in (("train", classes), ("val", val_classes)):
        files, labels = [], []
        for c in names:
            found = image_files(root / split / c)
            if split == "train" and not found:
                raise DatasetError(f"{name}/train/{c} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            files.extend(found)
            labels.extend([index[c]] * len(found))
        if not files:
            raise DatasetError(f"{name}/val holds no images: put a few per class in val/<class>/")
        splits[split] = Split(files, labels)
    if verify:
        check_images(splits["train"].files + splits["val"].files, root, workers, name)
    return Dataset(root, classes, splits["train"], splits["val"])


def read_image(path: Path, size: int):
    """An image as a uint8 HxWx3 numpy array, resized to size x size."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.BILINEAR)
        return np.array(image, dtype=np.uint8)


class ImageFiles:
    """A map-style data set (a torch Dataset by duck typing): (uint8 3xHxW tensor, label)."""

    def __init__(self, files: list[Path], labels: list[int], size: int):
        self.files, self.labels, self.size = files, labels, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        import torch

        try:
            array = read_image(self.files[i], self.size)
        except Exception as e:  # noqa: BLE001
            raise DatasetError(f"{self.files[i]} could not be read ({e})") from None
        return torch.from_numpy(array).permute(2, 0, 1), self.labels[i]
