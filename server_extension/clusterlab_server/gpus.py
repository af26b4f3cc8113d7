"""The GPUs granted to this server and how busy they are (the lab's GPU status item).

A server's grant is its ``CUDA_VISIBLE_DEVICES``, set by the hub's local pool or
by Slurm (``--gres=gpu:N``). Use comes from ``nvidia-smi`` when the node has
it; without it the grant is still shown, and without a grant the answer says
"no GPU granted".
"""

from __future__ import annotations

import os
import shutil
import subprocess

QUERY = "index,uuid,name,utilization.gpu,memory.used,memory.total,temperature.gpu"
FIELDS = ("index", "uuid", "name", "utilization_percent", "memory_used_mib", "memory_total_mib", "temperature_c")


def granted(env: dict | None = None) -> list[str]:
    """The GPU ids this process may use ([] when none, or when hidden with -1/NoDevFiles)."""
    value = (env if env is not None else os.environ).get("CUDA_VISIBLE_DEVICES", "")
    ids = [part.strip() for part in value.split(",") if part.strip()]
    return [] if not ids or ids[0] in ("-1", "NoDevFiles") else ids


def _number(text: str):
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        return None  # "[N/A]" and the like


def parse_smi(text: str) -> list[dict]:
    rows = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != len(FIELDS):
            continue
        row = dict(zip(FIELDS, parts))
        for key in FIELDS[3:]:
            row[key] = _number(row[key])
        rows.append(row)
    return rows


def status(env: dict | None = None, smi: str | None = None) -> dict:
    ids = granted(env)
    if not ids:
        return {"granted": [], "gpus": [], "message": "no GPU granted"}
    smi = smi if smi is not None else shutil.which("nvidia-smi")
    if not smi:
        return {"granted": ids, "gpus": [{"index": i} for i in ids],
                "message": f"GPU {', '.join(ids)} granted; nvidia-smi is not available here to show their use"}
    try:
        out = subprocess.run([smi, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return {"granted": ids, "gpus": [{"index": i} for i in ids], "message": f"nvidia-smi failed: {e}"}
    # CUDA_VISIBLE_DEVICES holds indices or UUIDs
    gpus = [row for row in parse_smi(out) if row["index"] in ids or row["uuid"] in ids]
    busy = ", ".join(f"GPU {g['index']} {g['utilization_percent']}%" for g in gpus)
    return {"granted": ids, "gpus": gpus, "message": busy or f"GPU {', '.join(ids)} granted"}
