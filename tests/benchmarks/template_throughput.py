"""Training throughput of the image-classification template against a bare PyTorch loop.

The template runs as a real job (job service, local backend) on a larger copy
of the demo shapes, and its training loop reports its own samples per second in
``metrics.jsonl`` (``samples_per_s``: training images of the epoch / the time
from the epoch's first batch request to its last optimizer step, the GPU
synchronised; validation, checkpoints and logging are outside it). The baseline
is a minimal hand-written loop in a fresh process with the same environment
(threads), the same model (the template's ``model.py``), data (the same image
files read by the same data set class, the same DataLoader settings), batch
size, optimizer and per-device settings (channels_last; fp16 autocast and a
GradScaler on a GPU), timed the same way. Both leave out start-up and the
first epoch (warm-up) and count the same work: ``--epochs - 1`` full epochs.

The two alternate, ``--rounds`` times each (the order flips every round);
each round prints both figures and their ratio, and the end the median ratio
(template / bare; goal >= 0.95).

    .venv/bin/python tests/benchmarks/template_throughput.py [--rounds 5] [--profile cpu-small]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "templates" / "image-classification-train"
sys.path.insert(0, str(REPO / "tests"))


def bare(args) -> None:
    """The baseline, in its own process: print one JSON line, samples/s per epoch."""
    sys.path.insert(0, str(TEMPLATE))
    import torch
    import torch.nn.functional as F
    from data import check_dataset, ImageFiles
    from model import Classifier

    data = check_dataset(Path(args.dataset), verify=False)
    cpus = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    workers = args.workers if args.workers is not None else max(0, cpus - 1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    loader = torch.utils.data.DataLoader(
        ImageFiles(data.train.files, data.train.labels, args.image_size), batch_size=args.batch_size,
        shuffle=True, drop_last=True, num_workers=workers, pin_memory=cuda, persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None)
    model = Classifier(len(data.classes), args.model_size).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=cuda)
    rates = []
    for _ in range(args.epochs):
        model.train()
        seen, started = 0, time.perf_counter()
        for images, labels in loader:
            images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
                loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            seen += labels.shape[0]
        if cuda:
            torch.cuda.synchronize()
        rates.append(seen / (time.perf_counter() - started))
    print(json.dumps({"samples_per_s": rates, "device": str(device), "workers": workers}))


def overall(rates: list[float]) -> float:
    """Samples/s over the epochs after the first (each epoch has the same number of samples)."""
    measured = rates[1:]
    return len(measured) / sum(1 / r for r in measured)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3, help="per run, the first being warm-up (default 3)")
    parser.add_argument("--images-per-class", type=int, default=300, help="training images per class (3 classes)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model-size", default="small", choices=["small", "medium", "large"])
    parser.add_argument("--profile", default="cpu-small", help="instance size of the job (threads, workers)")
    parser.add_argument("--workers", type=int, help="data-loading workers (default: the template's rule)")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        return bare(args)

    from clusterlab_server.demo_data import shapes
    from template_jobs import make_service, metrics, run

    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "workspace"
        dataset = shapes(workspace / "shapes", per_class=args.images_per_class, val_per_class=10)
        service = make_service(Path(tmp), workspace)
        cpus = service.profiles[args.profile].cpus
        params = {"dataset": "shapes", "epochs": args.epochs, "image_size": args.image_size,
                  "batch_size": args.batch_size, "model_size": args.model_size, "optimizer": "adamw"}
        if args.workers is not None:
            params["num_workers"] = args.workers
        env = {**os.environ, "OMP_NUM_THREADS": str(cpus), "MKL_NUM_THREADS": str(cpus)}
        command = [sys.executable, __file__, "--bare", "--dataset", str(dataset), "--epochs", str(args.epochs),
                   "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
                   "--model-size", args.model_size]
        if args.workers is not None:
            command += ["--workers", str(args.workers)]
        print(f"{3 * args.images_per_class} training images {args.image_size}x{args.image_size}, batch "
              f"{args.batch_size}, model {args.model_size}, profile {args.profile} ({cpus} threads), "
              f"{args.epochs} epochs per run (the first one left out), {args.rounds} rounds", flush=True)
        ratios = []
        for i in range(args.rounds):
            figures = {}
            for side in (("template", "bare") if i % 2 == 0 else ("bare", "template")):
                if side == "template":
                    job = run(service, "image-classification-train", params, name=f"bench{i}",
                              profile=args.profile, timeout=1800)
                    assert job.status == "completed", service.log(job.id)["text"][-3000:]
                    figures[side] = overall([line["metrics"]["samples_per_s"] for line in metrics(job)])
                else:
                    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
                    result = json.loads(out.strip().splitlines()[-1])
                    figures[side] = overall(result["samples_per_s"])
            ratios.append(figures["template"] / figures["bare"])
            print(f"round {i + 1}: template {figures['template']:8.1f} samples/s, bare loop "
                  f"{figures['bare']:8.1f} samples/s, ratio {ratios[-1]:.3f}", flush=True)
        print(f"median ratio template / bare: {statistics.median(ratios):.3f} over {args.rounds} rounds "
              f"(goal >= 0.95)")


if __name__ == "__main__":
    main()
