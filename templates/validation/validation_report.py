"""The validation report the inference templates write when their input holds labels.

``image-classification-infer`` and ``object-detection-infer`` import this module
(their script puts this folder on ``sys.path``, as they do with their training
template's folder). A report is a folder, ``output/report/``::

    report.json      the numbers, for programs (the AI Studio's Validate step)
    report.md        the same for people, with pictures; JupyterLab's Markdown viewer shows it
    *.png            pictures report.md links by relative paths (samples/*.png, confusion.png)

It is made in ``report.tmp/`` and then moved into place, so a reader never sees half
a report, and a job run again replaces the earlier one. Only the standard library
and Pillow are used.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

SAMPLES = 8  # pictures shown in a report
RIGHT, WRONG = (40, 160, 60), (215, 40, 40)


def number(value, digits: int = 3) -> str:
    """A metric for a Markdown table: '–' when it is undefined (None or nan)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def rounded(value, digits: int = 4):
    """A metric for report.json: None (null) when undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), digits)


def cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table (GitHub flavour, which JupyterLab renders)."""
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def sample_name(index: int, relative: str) -> str:
    """A file name for a sample picture that is safe in a Markdown link: 01-circle_0003.png."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", relative.rsplit(".", 1)[0].replace("/", "_")).strip("_.")
    return f"{index:02d}-{stem[:60] or 'image'}.png"


def printable(text: str, font) -> str:
    """``text`` as ``font`` can draw it: Pillow's old bitmap font has Latin-1 only."""
    from PIL import ImageFont

    if isinstance(font, ImageFont.FreeTypeFont):
        return text
    return text.encode("latin-1", "replace").decode("latin-1")


def enlarged(image, smallest: int = 192):
    """An RGB copy at least ``smallest`` pixels on its short side (small pictures become readable)."""
    from PIL import Image

    image = image.convert("RGB")
    factor = max(1, math.ceil(smallest / max(1, min(image.size))))
    if factor > 1:
        image = image.resize((image.width * factor, image.height * factor), Image.NEAREST)
    return image


def captioned(image, lines: list[str], colour: tuple[int, int, int]):
    """``image`` in a frame of ``colour`` with ``lines`` of text in a strip beneath it."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    lines = [printable(line, font) for line in lines]
    probe = ImageDraw.Draw(image)
    heights = [probe.textbbox((0, 0), line or " ", font=font) for line in lines]
    line_height = max((b[3] - b[1] for b in heights), default=10) + 4
    border = 4
    width = max([image.width] + [b[2] - b[0] + 8 for b in heights]) + 2 * border
    out = Image.new("RGB", (width, image.height + 2 * border + line_height * len(lines) + 4), colour)
    out.paste(image, (border, border))
    draw = ImageDraw.Draw(out)
    top = image.height + 2 * border + 2
    for line in lines:
        draw.text((border + 2, top), line, fill=(255, 255, 255), font=font)
        top += line_height
    return out


def write(output: Path, report: dict, markdown: str, pictures: dict[str, object]) -> Path:
    """``output/report/`` with report.json, report.md and ``pictures`` (relative path -> PIL image)."""
    tmp, target = output / "report.tmp", output / "report"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for relative, image in pictures.items():
        path = tmp / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="PNG")
    (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (tmp / "report.md").write_text(markdown.rstrip() + "\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def image_link(relative: str, alt: str) -> str:
    return f"![{alt.replace(']', ')')}]({relative})"
