"""Progress and metrics points from a job's metrics.jsonl (clusterlab_server.progress)."""

from __future__ import annotations

import json
import os

from clusterlab_server import progress as progress_module
from clusterlab_server.progress import MetricsFiles, points, progress
from clusterlab_server.training import MetricsLog


def line(epoch, epochs=4, **metrics) -> str:
    return json.dumps({"step": epoch, "epoch": epoch, "epochs": epochs, "time": 1.5, "metrics": metrics}) + "\n"


def test_only_complete_well_formed_lines_count():
    text = (
        line(1, loss=1.0)
        + "not json\n"
        + json.dumps({"epoch": 2, "epochs": 4}) + "\n"        # a user's own format: no step, time, metrics
        + json.dumps({"step": True, "epoch": 2, "epochs": 4, "time": 1, "metrics": {}}) + "\n"  # bool is no int
        + line(2, loss=float("nan"), accuracy=0.5)              # NaN is not JSON a browser reads: left out
        + '{"step": 3, "epoch": 3, "epochs": 4, "time": 2, "metrics": {}}'  # no newline: not complete yet
    )
    found = points(text.encode())
    assert [p["epoch"] for p in found] == [1, 2]
    assert found[1]["metrics"] == {"accuracy": 0.5}
    assert points(b"") == [] and points(line(1).encode()[:-1]) == []


def test_progress_is_the_latest_line_with_a_clamped_fraction():
    assert progress(None) is None
    latest = points(line(3, 4, loss=0.25).encode())[-1]
    assert progress(latest) == {"epoch": 3, "epochs": 4, "fraction": 0.75, "metrics": {"loss": 0.25}}
    assert progress(points(line(5, 4).encode())[-1])["fraction"] == 1.0
    assert progress(points(line(1, 0).encode())[-1])["fraction"] == 0.0


def test_files_are_read_once_per_change_and_from_the_tail(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    files = MetricsFiles()
    assert files.progress(path) is None and files.points(path) == []

    log = MetricsLog(path)
    for epoch in range(1, 2001):  # ~150 KB: more than one tail
        log.write(epoch * 10, epoch, 2000, loss=1 / epoch)
    with open(path, "a") as f:
        f.write('{"step": 20010, "epoch": 2001, "epo')  # killed mid-write
    assert path.stat().st_size > progress_module.TAIL_BYTES
    assert files.progress(path)["epoch"] == 2000
    assert len(files.points(path)) == 2000

    reads = []
    real = progress_module._last_point
    monkeypatch.setattr(progress_module, "_last_point", lambda f, size: reads.append(size) or real(f, size))
    files.progress(path)
    assert reads == []  # unchanged: the cache answers

    log.keep_until(10)  # a restarted job rewrites the file (a new inode)
    assert files.progress(path) == {"epoch": 10, "epochs": 2000, "fraction": 0.005, "metrics": {"loss": 0.1}}
    assert [p["epoch"] for p in files.points(path)] == list(range(1, 11))
    assert len(reads) == 1

    os.remove(path)
    assert files.progress(path) is None and files.points(path) == []


def test_a_tail_of_only_one_long_line_reads_further_back(tmp_path, monkeypatch):
    monkeypatch.setattr(progress_module, "TAIL_BYTES", 16)
    path = tmp_path / "metrics.jsonl"
    path.write_text(line(1, loss=0.5) + line(2, **{f"m{i}": i for i in range(50)}) + "garbage-without-newline")
    assert MetricsFiles().progress(path)["epoch"] == 2
