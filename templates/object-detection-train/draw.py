"""Boxes drawn on pictures (Pillow): for TensorBoard samples and the inference template."""

from __future__ import annotations

COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128), (170, 110, 40)]


def colour(label: int) -> tuple[int, int, int]:
    return COLOURS[label % len(COLOURS)]


def draw_detections(image, detections, classes: list[str]):
    """A copy of ``image`` (PIL) with each (class, score, [x0, y0, x1, y1]) as a labelled rectangle."""
    from PIL import ImageDraw, ImageFont

    image = image.convert("RGB").copy()
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    width = max(1, round(min(image.size) / 150))
    for label, score, box in detections:
        x0, y0, x1, y1 = box
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        draw.rectangle([x0, y0, x1, y1], outline=colour(label), width=width)
        name = classes[label] if 0 <= label < len(classes) else str(label)
        text = f"{name} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        ty = y0 - th - 2 if y0 - th - 2 >= 0 else y0
        draw.rectangle([x0, ty, x0 + tw + 2, ty + th + 2], fill=colour(label))
        draw.text((x0 + 1, ty + 1 - top), text, fill=(255, 255, 255), font=font)
    return image
