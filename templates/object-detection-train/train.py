"""object-detection-train: a CenterNet-style detector on a YOLO-format dataset, scored by mAP@0.5.

Runs in the job's output folder (see templates/README.md). Bad input is
reported before ``import torch``; then it trains on the GPU when there is one
(mixed precision, pinned memory) or on the CPU, reading pictures with the
granted cores, and each epoch writes a metrics.jsonl line, TensorBoard events
and a checkpoint. Started again on the same output it continues after the last
checkpoint. At the end: output/model.pt (see model.py), for object-detection-infer.

``dataset`` and ``weights`` may be inputs the job service mounted read-only (a
dataset version, an earlier job's output: see TrainingJob.file_in): nothing is
written next to them.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from clusterlab_server.training import TrainingJob, fail  # noqa: E402
from data import DataError, DetectionDataset, load_dataset, truth_boxes  # noqa: E402

DEFAULTS = {
    "epochs": 15, "batch_size": 16, "learning_rate": 0.003, "optimizer": "adamw", "image_size": 96,
    "seed": 0, "weights": None, "num_workers": None, "score_threshold": 0.05,
}
SAMPLES = 4  # validation pictures shown in TensorBoard with their predicted boxes
SAMPLE_SCORE = 0.3


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def make_optimizer(name: str, parameters, lr: float):
    import torch

    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=1e-4, nesterov=True)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=1e-4)


def schedule(steps_per_epoch: int, total_steps: int):
    """One epoch of linear warm-up, then a cosine decay to 0 (a factor on the peak rate)."""

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, steps_per_epoch))
        return warm * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))

    return factor


def initial_weights(model, path: Path, shown: str) -> str:
    """Load what fits of a model.pt / checkpoint / state_dict; the line to print, or fail."""
    import torch
    from model import ModelFileError, read_model_file

    try:
        state = read_model_file(path)["state_dict"]
    except ModelFileError as e:
        raw = None
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001
            pass
        if not (isinstance(raw, dict) and raw and all(isinstance(v, torch.Tensor) for v in raw.values())):
            fail(f"weights: {shown}: {e}")
        state = raw
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not fitting:
        fail(f"weights: {shown} has no weights that fit this model (was it trained by this template?)")
    model.load_state_dict(fitting, strict=False)
    return f"initial weights: {len(fitting)} of {len(own)} tensors from {shown}"


def main() -> None:
    job = TrainingJob.from_environment()
    params = {**DEFAULTS, **job.params}
    if not params.get("dataset"):
        fail("dataset: give the folder of your dataset (classes.txt, images/, labels/)")
    image_size = int(params["image_size"])
    if image_size % 4:
        fail(f"image_size: {image_size} is not a multiple of 4")
    dataset_shown = job.given_as("dataset").rstrip("/")
    try:
        classes, splits = load_dataset(job.path("dataset"), dataset_shown)
    except DataError as e:
        fail(str(e))
    weights, weights_shown = None, ""
    if params.get("weights"):  # an earlier job of this template (its output: model.pt in it), or a file
        weights, weights_shown = job.file_in("weights", "model.pt", "object-detection-train")
    counts = {s: (len(v), sum(len(x.labels) for x in v)) for s, v in splits.items()}
    print(f"dataset: {len(classes)} classes ({', '.join(classes)}); "
          + "; ".join(f"{s}: {n} images, {b} boxes" for s, (n, b) in counts.items()), flush=True)

    import numpy as np
    import torch
    from PIL import Image
    from draw import draw_detections
    from metrics import mean_average_precision
    from model import build_model, decode, default_config, detection_loss, model_file

    torch.set_num_threads(max(1, min(job.cpus, available_cores())))
    device, amp = job.device, job.amp
    seed, epochs = int(params["seed"]), int(params["epochs"])
    job.seed(seed)
    config = default_config(len(classes), image_size)
    model = build_model(config)

    state = job.resume()
    if state is not None and (state.get("classes") != classes or state.get("config") != config):
        fail("the checkpoint in output/checkpoints was made for other classes or another image size: "
             "start a new job instead of resuming this one")
    if state is None:
        shutil.rmtree(job.output / "tensorboard", ignore_errors=True)  # from a run killed before its first checkpoint
        if weights is not None:
            print(initial_weights(model, weights, weights_shown), flush=True)
    model.to(device)

    workers = params.get("num_workers")
    if workers is None:
        workers = min(job.loader_workers(), max(0, available_cores() - 1))
    workers = int(workers)
    stride = config["stride"]
    train_set = DetectionDataset(splits["train"], len(classes), image_size, stride, augment=True)
    val_set = DetectionDataset(splits["val"], len(classes), image_size, stride, augment=False)
    order = torch.Generator()
    loader_options = dict(num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    batch_size = min(int(params["batch_size"]), len(train_set))
    train_loader = torch.utils.data.DataLoader(
        train_set, batch_size=batch_size, sampler=torch.utils.data.RandomSampler(train_set, generator=order),
        drop_last=len(train_set) >= 2 * batch_size, **loader_options)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=batch_size, shuffle=False, **loader_options)

    optimizer = make_optimizer(params["optimizer"], model.parameters(), float(params["learning_rate"]))
    steps_per_epoch = len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(steps_per_epoch, epochs * steps_per_epoch))
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    start_epoch, step, last = 0, 0, {}
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") and amp:  # empty when saved without mixed precision
            scaler.load_state_dict(state["scaler"])
        start_epoch, step, last = state["epoch"], state["step"], state.get("last", {})
    writer = job.tensorboard(resume_step=step + 1 if state is not None else 0)
    if start_epoch < epochs:
        print(f"training on {device} ({'mixed precision, ' if amp else ''}{torch.get_num_threads()} CPU thread(s), "
              f"{workers} data-loading worker(s)): epochs {start_epoch + 1}-{epochs}, {steps_per_epoch} steps each",
              flush=True)
    else:
        print(f"all {epochs} epochs were done before: writing the model", flush=True)

    targets = [truth_boxes(s, image_size, image_size) for s in splits["val"]]
    sample_pictures = []
    for s in splits["val"][:SAMPLES]:
        with Image.open(s.image) as picture:
            sample_pictures.append(picture.convert("RGB").resize((image_size, image_size), Image.BILINEAR))

    def evaluate():
        model.eval()
        predictions = []
        with torch.no_grad(), torch.autocast(device.type, enabled=amp):
            for images, *_ in val_loader:
                predictions += decode(model(images.to(device, non_blocking=True)), stride,
                                      float(params["score_threshold"]))
        return predictions

    for epoch in range(start_epoch, epochs):
        started = time.monotonic()
        order.manual_seed(seed * 100003 + epoch)  # the same picture order whether resumed or not
        model.train()
        losses = []
        for images, heatmap, size, offset, mask in train_loader:
            images = images.to(device, non_blocking=True)
            heatmap, size, offset, mask = (t.to(device, non_blocking=True) for t in (heatmap, size, offset, mask))
            with torch.autocast(device.type, enabled=amp):
                outputs = model(images)
            loss, parts = detection_loss(outputs, heatmap, size, offset, mask)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            losses.append(loss.item())
            writer.add_scalar("train/loss", losses[-1], step)
            for name, value in parts.items():
                writer.add_scalar(f"train/loss_{name}", value, step)
        finite = [x for x in losses if math.isfinite(x)]  # mixed precision may skip a step now and then
        if not finite or not math.isfinite(losses[-1]):
            fail(f"the loss became {losses[-1] if losses else 'undefined'} in epoch {epoch + 1}: "
                 "try a lower learning_rate")
        lr = optimizer.param_groups[0]["lr"]
        predictions = evaluate()
        map50, per_class = mean_average_precision(predictions, targets, len(classes))
        loss = float(np.mean(finite))
        writer.add_scalar("val/map50", map50, step)
        writer.add_scalar("train/epoch_loss", loss, step)
        writer.add_scalar("train/lr", lr, step)
        for name, ap in zip(classes, per_class):
            if not math.isnan(ap):
                writer.add_scalar(f"val/ap50/{name}", ap, step)
        drawn = [np.asarray(draw_detections(p, [d for d in predictions[i] if d[1] >= SAMPLE_SCORE], classes))
                 for i, p in enumerate(sample_pictures)]
        if drawn:
            writer.add_image("val/predictions", np.concatenate(drawn, axis=1), step, dataformats="HWC")
        writer.flush()
        job.metrics.write(step, epoch + 1, epochs, loss=loss, map50=map50, lr=lr)
        last = {"map50": map50, "loss": loss, "per_class_ap50": per_class}
        job.checkpoints.save({
            "epoch": epoch + 1, "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "config": config,
            "classes": classes, "last": last, "params": params,
        })
        print(f"epoch {epoch + 1}/{epochs}  loss {loss:.4f}  mAP@0.5 {map50:.3f}  lr {lr:.2e}  "
              f"({time.monotonic() - started:.1f} s)", flush=True)

    model.cpu()
    final = model_file(model, classes, map50=last.get("map50"), per_class_ap50=last.get("per_class_ap50"),
                       epochs=epochs, template="object-detection-train", dataset=dataset_shown)
    tmp = job.output / "model.pt.tmp"
    torch.save(final, tmp)
    os.replace(tmp, job.output / "model.pt")
    job.close()
    print(f"done: validation mAP@0.5 {last.get('map50', float('nan')):.3f}; model saved to output/model.pt", flush=True)


if __name__ == "__main__":
    main()
