"""image-classification-train: a CNN trained on an image folder (train/<class>, val/<class>).

Runs in the job's output folder and writes there:

- ``metrics.jsonl``: one line per epoch (loss, accuracy, val_loss, val_accuracy,
  lr, samples_per_s: the training loop's own throughput);
- ``tensorboard/``: the same scalars, and after the last epoch a few validation
  images with their predicted class in the tag;
- ``checkpoints/last.pt``: everything needed to continue (model, optimizer, AMP
  scaler, epoch, step, random states), saved each epoch; started again on the
  same output it continues from there and ends with the same epoch count;
- ``model.pt``: the trained model (state_dict, class names, image size, model
  size): all that ``image-classification-infer`` needs.

Across nodes (a size with ``nodes: 2``: srun starts one process per GPU, or per node on
CPU) it trains data-parallel (DistributedDataParallel; NCCL on GPUs, gloo on CPU):
``batch_size`` stays the batch of one step, split across the processes, so that
the run learns as a one-node run does; each process reads its share of the
training images; rank 0 alone validates and writes everything above.

``dataset`` and ``weights`` may be inputs the job service mounted read-only (a
dataset version, an earlier job's output: see TrainingJob.file_in): nothing is written
next to them.

Bad input is reported before ``import torch``.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clusterlab_server.training import TrainingJob, fail  # noqa: E402
from data import DatasetError, ImageFiles, check_dataset  # noqa: E402

DEFAULTS = {"epochs": 10, "batch_size": 32, "learning_rate": 0.001, "image_size": 64, "model_size": "small",
            "optimizer": "adamw", "seed": 0, "weights": None, "num_workers": None}
SAMPLE_IMAGES = 8


def settings(job: TrainingJob) -> dict:
    p = {**DEFAULTS, **{k: v for k, v in job.params.items() if v is not None}}
    for key in ("epochs", "batch_size", "image_size"):
        if not isinstance(p[key], int) or p[key] < 1:
            fail(f"{key} must be a whole number of 1 or more, not {p[key]!r}")
    if not (isinstance(p["learning_rate"], (int, float)) and p["learning_rate"] > 0):
        fail(f"learning_rate must be a number above 0, not {p['learning_rate']!r}")
    if p["optimizer"] not in ("adam", "adamw", "sgd"):
        fail(f"optimizer must be adam, adamw or sgd, not {p['optimizer']!r}")
    if p["model_size"] not in ("small", "medium", "large"):
        fail(f"model_size must be small, medium or large, not {p['model_size']!r}")
    return p


def lr_at(step: int, total: int, base: float) -> float:
    """A short linear warm-up, then a cosine decay to zero over the whole run."""
    warmup = max(1, min(total // 20, 500))
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def random_states(sampler_generator) -> dict:
    import numpy as np
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "sampler": sampler_generator.get_state()}


def restore_random_states(states: dict, sampler_generator) -> None:
    import numpy as np
    import torch

    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    sampler_generator.set_state(states["sampler"])


def reason(error: Exception) -> str:
    """An exception in one short line: its type and the first line of its message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__


def load_initial_weights(model, path: Path, shown: str, model_size: str) -> None:
    """User-supplied weights (a model.pt of this template, or a state_dict); a new head if the classes differ."""
    import torch

    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        fail(f"the initial weights {shown} cannot be read as a PyTorch weights file ({reason(e)})")
    if isinstance(stored, dict) and stored.get("model_size") not in (None, model_size):
        fail(f"the initial weights {shown} are for model_size {stored['model_size']}: "
             f"set model_size to {stored['model_size']} to start from them")
    state = stored.get("state_dict", stored.get("model", stored)) if isinstance(stored, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        fail(f"the initial weights {shown} hold no state_dict (a mapping of tensor names to tensors)")
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    unfit = [k for k in own if k not in fitting and not k.startswith("head.")]
    if unfit:
        fail(f"the initial weights {shown} do not fit this model ({len(unfit)} of its tensors are missing or of "
             f"another shape, e.g. {unfit[0]}): use a model.pt written by this template with the same model_size")
    model.load_state_dict(fitting, strict=False)
    new_head = [k for k in own if k.startswith("head.") and k not in fitting]
    print(f"initial weights: {shown}" + (" (a new classifier head for these classes)" if new_head else ""),
          flush=True)


def main() -> None:
    job = TrainingJob.from_environment()
    p = settings(job)
    if "dataset" not in job.params:
        fail("no dataset given: set dataset to a folder with train/<class>/ and val/<class>/ image folders")
    try:
        data = check_dataset(job.path("dataset"), shown_as=job.given_as("dataset"), workers=max(2, job.cpus))
    except DatasetError as e:
        fail(str(e))
    weights, weights_shown = None, ""
    if p["weights"]:  # an earlier job of this template (its output: model.pt in it), a model.pt or a state_dict
        weights, weights_shown = job.file_in("weights", "model.pt", "image-classification-train")

    import torch
    import torch.nn.functional as F
    from model import Classifier, model_file

    device, amp = job.device, job.amp
    cuda = device.type == "cuda"
    dist = job.distributed
    dist.start(device)  # a no-op for one process
    if cuda:
        torch.backends.cudnn.benchmark = True
    channels_last = True  # NHWC: faster convolutions with cuDNN tensor cores and with oneDNN on CPUs
    epochs, batch_size, size = p["epochs"], p["batch_size"], p["image_size"]
    if dist.enabled:  # one step's batch, split across the processes
        batch_size = max(1, batch_size // dist.world_size)
    workers = job.loader_workers()
    job.seed(p["seed"])

    def loader(split, shuffle: bool, generator=None):
        dataset = ImageFiles(split.files, split.labels, size)
        # across processes each reads its share, shuffled by (seed, epoch): the same on a resumed run
        sampler = (torch.utils.data.DistributedSampler(dataset, dist.world_size, dist.rank, shuffle=True,
                                                       seed=p["seed"], drop_last=True)
                   if shuffle and dist.enabled else None)
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch_size if shuffle else batch_size * 2, shuffle=shuffle and sampler is None,
            sampler=sampler, drop_last=shuffle and len(dataset) > batch_size, num_workers=workers,
            pin_memory=cuda, persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
            generator=generator if sampler is None else None,
        )

    sampler_generator = torch.Generator().manual_seed(p["seed"])
    train_loader, val_loader = loader(data.train, True, sampler_generator), loader(data.val, False)
    total_steps = len(train_loader) * epochs

    model = Classifier(len(data.classes), p["model_size"])
    decay, no_decay = [], []
    for param in model.parameters():
        (no_decay if param.ndim <= 1 else decay).append(param)
    lr = float(p["learning_rate"])
    if p["optimizer"] == "sgd":
        groups = [{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    elif p["optimizer"] == "adamw":
        groups = [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, lr=lr)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)

    model.to(device)  # before loading the optimizer's state: it follows its parameters' device
    if channels_last:
        model.to(memory_format=torch.channels_last)
    state = job.resume()
    epoch, step = 0, 0
    if state is not None:
        made = {"classes": state.get("classes"), "model_size": state.get("model_size"),
                "image_size": state.get("image_size")}
        wanted = {"classes": data.classes, "model_size": p["model_size"], "image_size": size}
        if made != wanted:
            differ = [f"{k} {made[k]} (now {wanted[k]})" for k in made if made[k] != wanted[k]]
            fail(f"the checkpoint {job.checkpoints.latest} of this output was made with {'; '.join(differ)}: "
                 f"it cannot be continued with other settings; run a new job for them")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if amp and state.get("scaler"):  # empty when saved on a CPU (no mixed precision there)
            scaler.load_state_dict(state["scaler"])
        epoch, step = state["epoch"], state["step"]
        restore_random_states(state["rng"], sampler_generator)
    elif weights is not None:
        load_initial_weights(model, weights, weights_shown, p["model_size"])
    writer = job.tensorboard(resume_step=step + 1)  # drops events a killed run wrote after its checkpoint
    trained = model  # what the training steps call: the model itself, or its data-parallel wrapper
    if dist.enabled:
        trained = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if cuda else None)

    print(f"{len(data.train.files)} training and {len(data.val.files)} validation images, "
          f"{len(data.classes)} classes: {', '.join(data.classes)}", flush=True)
    print(f"model {p['model_size']} ({sum(t.numel() for t in model.parameters()):,} parameters), "
          f"{size}x{size} images, batch {batch_size}, {p['optimizer']} lr {lr:g}, {epochs} epochs; on {device}"
          f"{' with mixed precision' if amp else ''}, {job.cpus} core(s), {workers} loader worker(s)", flush=True)
    if dist.enabled:
        print(f"data-parallel across {dist.world_size} processes ({os.environ.get('SLURM_JOB_NODELIST', 'local')}), "
              f"{batch_size} images per process and step", flush=True)

    def to_device(images, labels):
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels.to(device, non_blocking=True)

    val_loss = val_accuracy = float("nan")
    while epoch < epochs:
        epoch += 1
        if dist.enabled:
            train_loader.sampler.set_epoch(epoch)
            torch.manual_seed(p["seed"] * 1009 + epoch * 101 + dist.rank)  # each process its own flips
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        started = time.perf_counter()
        for images, labels in train_loader:
            images, labels = to_device(images, labels)
            flip = torch.rand(images.shape[0], device=device) < 0.5  # horizontal flips
            images = torch.where(flip[:, None, None, None], images.flip(3), images)
            lr_now = lr_at(step, total_steps, lr)
            for group in optimizer.param_groups:
                group["lr"] = lr_now
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                logits = trained(images)
                loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            loss_sum += loss.detach().float() * labels.shape[0]
            correct += (logits.detach().argmax(1) == labels).sum()
            seen += labels.shape[0]
        if cuda:
            torch.cuda.synchronize()
        train_seconds = time.perf_counter() - started
        loss_total, correct_total, seen_total = dist.sum(loss_sum.item(), correct.item(), seen)
        loss_mean, accuracy = loss_total / seen_total, correct_total / seen_total
        if not dist.main:
            continue  # rank 0 validates and writes; the others go on to the next epoch's first step

        model.eval()
        val_loss_sum, val_correct, val_seen = 0.0, 0, 0
        last = epoch == epochs
        samples = []
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            for images, labels in val_loader:
                images, labels = to_device(images, labels)
                logits = model(images).float()
                val_loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
                predicted = logits.argmax(1)
                val_correct += (predicted == labels).sum().item()
                val_seen += labels.shape[0]
                if last and len(samples) < SAMPLE_IMAGES:
                    confidence = logits.softmax(1).max(1).values
                    every = max(1, len(data.val.files) // SAMPLE_IMAGES)  # spread over the classes
                    for i in range(labels.shape[0]):
                        if (val_seen - labels.shape[0] + i) % every == 0 and len(samples) < SAMPLE_IMAGES:
                            samples.append((images[i].to("cpu", memory_format=torch.contiguous_format),
                                            int(labels[i]), int(predicted[i]), float(confidence[i])))
        val_loss, val_accuracy = val_loss_sum / val_seen, val_correct / val_seen
        samples_per_s = seen_total / train_seconds

        for tag, value in (("loss/train", loss_mean), ("loss/val", val_loss), ("accuracy/train", accuracy),
                           ("accuracy/val", val_accuracy), ("lr", lr_now), ("samples_per_s", samples_per_s)):
            writer.add_scalar(tag, value, step)
        for k, (image, label, predicted, confidence) in enumerate(samples):
            verdict = "right" if label == predicted else "WRONG"
            writer.add_image(f"predictions/{k:02d} {data.classes[label]}: predicted {data.classes[predicted]} "
                             f"{confidence:.0%} ({verdict})", image, step)
        writer.flush()
        job.metrics.write(step, epoch, epochs, loss=loss_mean, accuracy=accuracy, val_loss=val_loss,
                          val_accuracy=val_accuracy, lr=lr_now, samples_per_s=samples_per_s)
        print(f"epoch {epoch}/{epochs}: loss {loss_mean:.4f} accuracy {accuracy:.3f}  val_loss {val_loss:.4f} "
              f"val_accuracy {val_accuracy:.3f}  lr {lr_now:.2e}  {samples_per_s:,.0f} samples/s", flush=True)
        job.checkpoints.save({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "epoch": epoch, "step": step, "rng": random_states(sampler_generator), "classes": data.classes,
            "image_size": size, "model_size": p["model_size"], "val_accuracy": val_accuracy,
        })

    if not dist.main:
        job.close()
        return
    if math.isnan(val_accuracy):  # resumed after the last epoch: its result is in the checkpoint
        val_accuracy = float((state or {}).get("val_accuracy", float("nan")))
    target = job.output / "model.pt"
    tmp = target.with_suffix(".pt.tmp")
    torch.save(model_file(model, data.classes, size, p["model_size"], val_accuracy=val_accuracy), tmp)
    os.replace(tmp, target)
    job.close()
    print(f"model written to {target} (val accuracy {val_accuracy:.3f}, classes {', '.join(data.classes)})",
          flush=True)


if __name__ == "__main__":
    main()
