"""The validation report of image-classification-infer, when the images are in class folders.

``labelled`` finds the labels (the ImageFolder layout: ``<input>/<class>/...``, or
``<input>/val/<class>/...`` for a whole dataset); ``build`` turns the predictions into
report.json's numbers, report.md and its pictures (see ../validation/validation_report.py).
Pure functions of plain lists, apart from reading the sample pictures.
"""

from __future__ import annotations

from pathlib import Path

import validation_report as vr


def _class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _in_class_folders(root: Path, files: list[Path], classes: list[str]) -> list[int] | None:
    """Each file's class (its first folder under ``root``), or None when one is not in a class folder."""
    index = {c: i for i, c in enumerate(classes)}
    labels = []
    for path in files:
        parts = path.relative_to(root).parts
        if len(parts) < 2 or parts[0] not in index:
            return None
        labels.append(index[parts[0]])
    return labels


def labelled(folder: Path, files: list[Path], classes: list[str]):
    """(split, files, labels) when the input holds labels, else (None, files, None) and a note (or '').

    ``split`` is '' for ``<input>/<class>/`` and 'val' for ``<input>/val/<class>/`` (a dataset with
    train/ and val/: only val/'s are compared, and ``files`` is those)."""
    folders = _class_folders(folder)
    if folders and set(folders) <= set(classes):
        labels = _in_class_folders(folder, files, classes)
        if labels is not None:
            return "", files, labels, ""
    val = folder / "val"
    if val.is_dir():
        val_folders = _class_folders(val)
        in_val = [p for p in files if p.is_relative_to(val)]
        if val_folders and set(val_folders) <= set(classes) and in_val:
            labels = _in_class_folders(val, in_val, classes)
            if labels is not None:
                return "val", in_val, labels, ""
        folders = val_folders
    note = ""
    if folders:
        others = [f for f in folders if f not in classes]
        if others:
            note = (f"no report: the sub-folders {', '.join(others[:5])} are not classes of the model "
                    f"({', '.join(classes)}), so the images' labels are unknown")
    return None, files, None, note


def confusion_picture(classes: list[str], matrix: list[list[int]]):
    """The confusion matrix as a picture: rows the true class, columns the predicted one."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def size(text: str) -> tuple[int, int]:
        box = probe.textbbox((0, 0), text, font=font)
        return box[2] - box[0], box[3] - box[1]

    names = [vr.printable(c if len(c) <= 18 else c[:16] + "..", font) for c in classes]
    cell = max(44, max(size(n)[0] for n in names) + 10)
    left = max(size(n)[0] for n in names + ["true \\ predicted"]) + 14
    top = 2 * (size("Ag")[1] + 8) + 4
    n = len(classes)
    image = Image.new("RGB", (left + n * cell + 8, top + n * cell + 8), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.text((6, 4), "true \\ predicted", fill=(0, 0, 0), font=font)
    for j, name in enumerate(names):
        w, _ = size(name)
        draw.text((left + j * cell + (cell - w) // 2, top - size("Ag")[1] - 8), name, fill=(0, 0, 0), font=font)
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        _, h = size(names[i])
        draw.text((6, top + i * cell + (cell - h) // 2), names[i], fill=(0, 0, 0), font=font)
        for j, count in enumerate(row):
            share = count / total
            base = (30, 110, 200) if i == j else (210, 50, 50)
            fill = tuple(round(255 + (c - 255) * share) for c in base)
            x0, y0 = left + j * cell, top + i * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=fill, outline=(180, 180, 180))
            text = str(count)
            w, h = size(text)
            draw.text((x0 + (cell - w) // 2, y0 + (cell - h) // 2), text,
                      fill=(255, 255, 255) if share > 0.5 else (0, 0, 0), font=font)
    return image


def pick_samples(truths: list[int], predicted: list[int], confidences: list[float], count: int) -> list[int]:
    """Up to ``count`` rows: the wrong ones first (most confident first, at most count - 2 of them when
    right ones exist), then right ones taking each class in turn."""
    wrong = sorted((i for i, (t, p) in enumerate(zip(truths, predicted)) if t != p), key=lambda i: -confidences[i])
    right = [i for i, (t, p) in enumerate(zip(truths, predicted)) if t == p]
    chosen = wrong[:count - min(2, len(right))] if right else wrong[:count]
    by_class: dict[int, list[int]] = {}
    for i in right:
        by_class.setdefault(truths[i], []).append(i)
    queues = [by_class[c] for c in sorted(by_class)]
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return chosen


def build(names: list[str], paths: list[Path], truths: list[int], predicted: list[int],
          confidences: list[float], classes: list[str], about: dict) -> tuple[dict, str, dict]:
    """report.json's dict, report.md's text and its pictures (relative path -> PIL image).

    ``names``: each image as in predictions.csv; ``about``: model, input and split, for the page."""
    from PIL import Image

    k = len(classes)
    matrix = [[0] * k for _ in range(k)]
    for t, p in zip(truths, predicted):
        matrix[t][p] += 1
    total = len(truths)
    correct = sum(matrix[i][i] for i in range(k))
    per_class = {}
    for i, name in enumerate(classes):
        support, guessed = sum(matrix[i]), sum(row[i] for row in matrix)
        per_class[name] = {
            "precision": vr.rounded(matrix[i][i] / guessed) if guessed else None,
            "recall": vr.rounded(matrix[i][i] / support) if support else None,
            "support": support,
        }
    accuracy = correct / total if total else 0.0
    report = {
        "kind": "classification", "images": total, "correct": correct, "accuracy": vr.rounded(accuracy),
        "classes": per_class, "confusion": {"labels": list(classes), "matrix": matrix},
        "model": about["model"], "input": about["input"], "split": about["split"] or None,
    }

    pictures = {"confusion.png": confusion_picture(classes, matrix)}
    samples = []
    for number, i in enumerate(pick_samples(truths, predicted, confidences, vr.SAMPLES), 1):
        ok = truths[i] == predicted[i]
        with Image.open(paths[i]) as picture:
            drawn = vr.captioned(vr.enlarged(picture), [
                "right" if ok else "WRONG", f"true: {classes[truths[i]]}",
                f"predicted: {classes[predicted[i]]} {confidences[i]:.2f}"], vr.RIGHT if ok else vr.WRONG)
        relative = f"samples/{vr.sample_name(number, names[i])}"
        pictures[relative] = drawn
        samples.append((relative, names[i], ok, i))

    split = f" (its `{about['split']}/` split)" if about["split"] else ""
    lines = [
        "# Validation report: image classification", "",
        f"Model `{about['model']}` on `{about['input']}`{split}: the class folders hold the true labels.", "",
        f"- images: **{total}**",
        f"- accuracy: **{vr.number(accuracy)}** ({correct} of {total} right)",
        f"- classes: {', '.join(classes)}", "",
        "## Per class", "",
        "Precision: of the images predicted as the class, the share that are; recall: of the class's images, "
        "the share found; support: the class's images. '–' where there is nothing to divide by.", "",
        vr.table(["class", "precision", "recall", "support"],
                 [[c, vr.number(v["precision"]), vr.number(v["recall"]), v["support"]] for c, v in per_class.items()]),
        "", "## Confusion matrix", "",
        "Rows: the true class; columns: the predicted class.", "",
        vr.table(["true \\ predicted", *classes], [[c, *row] for c, row in zip(classes, matrix)]), "",
        vr.image_link("confusion.png", "confusion matrix"), "",
        "## Samples", "",
        "Wrong predictions first (most confident first, framed red), then right ones (framed green).", "",
    ]
    for relative, name, ok, i in samples:
        verdict = "right" if ok else "**wrong**"
        lines += [f"`{name}`: true {classes[truths[i]]}, predicted {classes[predicted[i]]} "
                  f"({confidences[i]:.2f}), {verdict}", "", vr.image_link(relative, name), ""]
    return report, "\n".join(lines), pictures
