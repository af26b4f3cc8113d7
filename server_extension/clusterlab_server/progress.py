"""A job's progress and metrics, read from the ``output/metrics.jsonl`` its template writes.

The lines are :class:`~.training.MetricsLog`'s: ``{"step", "epoch", "epochs",
"time", "metrics": {name: number}}``, one per epoch, appended while the job
runs. The jobs panel asks for the progress of up to 100 jobs on every poll, so
:class:`MetricsFiles` answers from a cache keyed by the file's (inode, mtime,
size) and, when a file changed, reads only its tail.

Only complete lines count: a line cut short by a kill (no newline yet, or not
JSON) is skipped, as is any line not of that shape (a user's own script may
write a ``metrics.jsonl`` of its own). Metric values that are not finite
numbers (a NaN loss) are left out, so that every answer is valid JSON.
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

TAIL_BYTES = 64 * 1024
MAX_CACHED = 2000  # files whose progress is remembered (a few per job listed)
MAX_CACHED_POINTS = 16  # files whose points are remembered (the charts open now)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def point(line: bytes) -> dict | None:
    """One complete line -> ``{step, epoch, epochs, time, metrics}``, or None if it is not one."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        return None
    if not all(_integer(data.get(key)) for key in ("step", "epoch", "epochs")) or not _number(data.get("time")):
        return None
    metrics = {str(name): float(value) for name, value in data["metrics"].items() if _number(value)}
    return {"step": data["step"], "epoch": data["epoch"], "epochs": data["epochs"], "time": data["time"],
            "metrics": metrics}


def points(data: bytes) -> list[dict]:
    """Every complete, well-formed line of a metrics file's content."""
    lines = data.split(b"\n")[:-1]  # what follows the last newline is not complete yet
    return [p for p in map(point, lines) if p is not None]


def progress(latest: dict | None) -> dict | None:
    """The latest point -> ``{epoch, epochs, fraction, metrics}`` (fraction: epoch/epochs in 0..1)."""
    if latest is None:
        return None
    epoch, epochs = latest["epoch"], latest["epochs"]
    fraction = min(1.0, max(0.0, epoch / epochs)) if epochs > 0 else 0.0
    return {"epoch": epoch, "epochs": epochs, "fraction": fraction, "metrics": latest["metrics"]}


def _key(stat: os.stat_result) -> tuple[int, int, int]:
    # a rewrite (MetricsLog.keep_until replaces the file) changes the inode
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _last_point(f, size: int) -> dict | None:
    """The last complete, well-formed line, reading back from the end as far as needed."""
    tail = TAIL_BYTES
    while True:
        start = max(0, size - tail)
        f.seek(start)
        data = f.read(size - start)
        lines = data.split(b"\n")[:-1]
        if start > 0:
            lines = lines[1:]  # the first may be the end of a longer line
        for line in reversed(lines):
            found = point(line)
            if found is not None:
                return found
        if start == 0:
            return None
        tail *= 4


class MetricsFiles:
    """Progress and points of metrics files, cached until a file changes."""

    def __init__(self):
        self._progress: OrderedDict[str, tuple[tuple, dict | None]] = OrderedDict()
        self._points: OrderedDict[str, tuple[tuple, list[dict]]] = OrderedDict()

    @staticmethod
    def _remember(cache: OrderedDict, path: str, key: tuple, value: Any, limit: int) -> None:
        cache[path] = (key, value)
        cache.move_to_end(path)
        while len(cache) > limit:
            cache.popitem(last=False)

    def _cached(self, cache: OrderedDict, path: Path, read, limit: int, missing: Any) -> Any:
        name = str(path)
        try:
            key = _key(os.stat(path))
            cached = cache.get(name)
            if cached is not None and cached[0] == key:
                return cached[1]
            with open(path, "rb") as f:
                # what was read is at least as new as the key: a later change still misses the cache
                value = read(f, key[2])
        except OSError:  # no file (yet), or not readable
            cache.pop(name, None)
            return missing
        self._remember(cache, name, key, value, limit)
        return value

    def progress(self, path: Path) -> dict | None:
        """``None`` when there is no file or no complete line yet."""
        return self._cached(self._progress, path, lambda f, size: progress(_last_point(f, size)), MAX_CACHED, None)

    def points(self, path: Path) -> list[dict]:
        """Every complete line, oldest first ([] when there is no file)."""
        return self._cached(self._points, path, lambda f, size: points(f.read(size)), MAX_CACHED_POINTS, [])
