"""A small CenterNet-style detector in plain PyTorch, shared by training and inference.

The network maps a size x size picture to a grid at stride 4 (a 96-pixel image
gives 24 x 24 cells): a convolutional backbone down to stride 4, dilated
convolutions to see whole objects, and three heads per cell:

- ``heatmap`` (one channel per class): how likely an object's centre lies in
  the cell, trained with CenterNet's penalty-reduced focal loss against Gaussian
  peaks;
- ``size``: the box width and height, in cells (L1 loss at the centres);
- ``offset``: where in the cell the centre is (L1 loss at the centres).

Decoding keeps the cells that are the maximum of their 3 x 3 neighbourhood
(``max_pool2d``, no NMS needed), the top ``max_detections`` by score.

A trained model is saved as ``model.pt``: ``{"format", "config", "state_dict",
"classes", "image_size", ...}``; ``load_model_file`` reads it back.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FORMAT = "clusterlab-centernet-v1"
STRIDE = 4


def default_config(num_classes: int, image_size: int) -> dict:
    return {"num_classes": num_classes, "image_size": image_size, "stride": STRIDE, "width": 48}


def conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def head(width: int, outputs: int, bias: float = 0.0) -> nn.Sequential:
    layers = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(width, outputs, 1))
    nn.init.constant_(layers[-1].bias, bias)
    return layers


class CenterNet(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        w, c = config["width"], config["num_classes"]
        half = w // 2
        self.backbone = nn.Sequential(
            conv(3, half, stride=2),                               # stride 2
            conv(half, w, stride=2), conv(w, w),                   # stride 4
            conv(w, w, dilation=2), conv(w, w, dilation=4), conv(w, w, dilation=8), conv(w, w),
        )
        self.heatmap = head(w, c, bias=-2.19)  # sigmoid(-2.19) = 0.1: a calm start for the focal loss
        self.size = head(w, 2)
        self.offset = head(w, 2)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(images)
        return {"heatmap": self.heatmap(features), "size": self.size(features), "offset": self.offset(features)}


def build_model(config: dict) -> CenterNet:
    return CenterNet(config)


# ----- training ----------------------------------------------------------------------------


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), averaged over the objects."""
    logits = logits.float()
    pos = target.eq(1).float()
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    p = log_p.exp()
    pos_loss = (log_p * (1 - p).pow(2) * pos).sum()
    neg_loss = (log_not_p * p.pow(2) * (1 - target).pow(4) * (1 - pos)).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp(min=1.0)


def detection_loss(outputs: dict, heatmap, size, offset, mask) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts: focal(heatmap) + 0.1 * L1(size) + L1(offset)."""
    heat = focal_loss(outputs["heatmap"], heatmap)
    m = mask.unsqueeze(1)
    n = mask.sum().clamp(min=1.0)
    size_loss = (F.l1_loss(outputs["size"].float(), size, reduction="none") * m).sum() / n
    offset_loss = (F.l1_loss(outputs["offset"].float(), offset, reduction="none") * m).sum() / n
    total = heat + 0.1 * size_loss + offset_loss
    return total, {"heatmap": heat.item(), "size": size_loss.item(), "offset": offset_loss.item()}


# ----- decoding ----------------------------------------------------------------------------


@torch.no_grad()
def decode(outputs: dict, stride: int = STRIDE, score_threshold: float = 0.05, max_detections: int = 100,
           scales: list[tuple[float, float]] | None = None) -> list[list[tuple[int, float, list[float]]]]:
    """Per image: [(class, score, [x0, y0, x1, y1])], best first.

    Boxes are in the network input's pixels, or multiplied by ``scales[i]``
    (x, y) to get back to each original image's pixels.
    """
    heat = outputs["heatmap"].float().sigmoid()
    batch, classes, h, w = heat.shape
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    k = min(max_detections, classes * h * w)
    scores, index = peaks.view(batch, -1).topk(k)
    labels = torch.div(index, h * w, rounding_mode="floor")
    cell = index % (h * w)
    ys, xs = torch.div(cell, w, rounding_mode="floor"), cell % w
    rows = torch.arange(batch, device=heat.device).unsqueeze(1)
    size = outputs["size"].float().permute(0, 2, 3, 1)[rows, ys, xs].clamp(min=0) * stride  # (B, K, 2)
    offset = outputs["offset"].float().permute(0, 2, 3, 1)[rows, ys, xs]
    cx = (xs.float() + offset[..., 0]) * stride
    cy = (ys.float() + offset[..., 1]) * stride
    half_w, half_h = size[..., 0] / 2, size[..., 1] / 2
    boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], -1)
    scores, labels, boxes = scores.cpu().tolist(), labels.cpu().tolist(), boxes.cpu().tolist()
    results = []
    for b in range(batch):
        sx, sy = scales[b] if scales is not None else (1.0, 1.0)
        found = []
        for score, label, (x0, y0, x1, y1) in zip(scores[b], labels[b], boxes[b]):
            if score < score_threshold:
                break  # best first
            found.append((int(label), float(score), [x0 * sx, y0 * sy, x1 * sx, y1 * sy]))
        results.append(found)
    return results


# ----- files -------------------------------------------------------------------------------


def model_file(model: CenterNet, classes: list[str], **extra) -> dict:
    """What ``model.pt`` holds: everything inference needs."""
    config = model.config
    return {
        "format": FORMAT, "config": config, "classes": list(classes), "image_size": config["image_size"],
        "stride": config["stride"], "normalisation": {"mean": 0.5, "std": 0.25},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **extra,
    }


class ModelFileError(ValueError):
    pass


def read_model_file(path: Path) -> dict:
    """``model.pt`` (or a checkpoint of this template) -> its dict; ModelFileError if it is not one."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise ModelFileError(f"{path.name} cannot be read as a PyTorch file ({e.__class__.__name__}: {e})") from None
    if isinstance(data, dict) and data.get("format") == FORMAT and "state_dict" in data:
        return data
    if isinstance(data, dict) and isinstance(data.get("model"), dict) and "config" in data:  # a checkpoint
        return {"format": FORMAT, "config": data["config"], "classes": data.get("classes", []),
                "image_size": data["config"]["image_size"], "stride": data["config"]["stride"],
                "state_dict": data["model"]}
    raise ModelFileError(f"{path.name} is not a model saved by the object-detection-train template "
                         f"(expected its output/model.pt)")


def load_model_file(path: Path, device: torch.device | str = "cpu") -> tuple[CenterNet, dict]:
    data = read_model_file(path)
    model = build_model(data["config"])
    model.load_state_dict(data["state_dict"])
    return model.to(device).eval(), data
