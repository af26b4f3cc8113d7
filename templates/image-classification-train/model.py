"""The classifier: a plain PyTorch CNN with BatchNorm; the model size sets its width.

It takes uint8 images (N x 3 x H x W, 0-255) and scales them itself, so that
inference needs nothing but the saved state, the class names and the image size.
"""

from __future__ import annotations

import torch
from torch import nn

WIDTHS = {"small": 16, "medium": 32, "large": 64}
MODEL_FORMAT = "clusterlab-image-classifier"


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Classifier(nn.Module):
    def __init__(self, classes: int, size: str = "small"):
        super().__init__()
        if size not in WIDTHS:
            raise ValueError(f"model size must be one of {', '.join(WIDTHS)}, not {size!r}")
        w = WIDTHS[size]
        self.features = nn.Sequential(
            conv_bn(3, w), conv_bn(w, w), nn.MaxPool2d(2),
            conv_bn(w, 2 * w), conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),
            conv_bn(2 * w, 4 * w), conv_bn(4 * w, 4 * w), nn.MaxPool2d(2),
            conv_bn(4 * w, 8 * w), conv_bn(8 * w, 8 * w),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(8 * w, classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.float()
        x = images * (1 / 63.75) - 2.0  # 0-255 -> about -2..2 (mean 0.5, std 0.25 of 0-1)
        return self.head(self.features(x))


def model_file(model: Classifier, classes: list[str], image_size: int, size: str, **extra) -> dict:
    """What output/model.pt holds: enough to classify images with nothing else."""
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    return {"format": MODEL_FORMAT, "version": 1, "state_dict": state, "classes": list(classes),
            "image_size": int(image_size), "model_size": size, **extra}
