"""What the Jobs panel's poll costs, side by side with its baseline in one run.

The panel asks for ``GET /clusterlab/api/jobs`` every few seconds (1 s in the
browser test), and every job in the answer carries its ``progress`` read from
its ``output/metrics.jsonl``. This compares, on two real jupyter servers with
100 jobs each, alternating requests:

- ours: every job has a 50-epoch ``metrics.jsonl`` (progress read, cached by file)
- bare: the same jobs without metrics files (the store listing alone)

and reports the server-side request times (from its log), their medians and
the ratio; then the same for ``GET jobs/{id}/metrics`` (the chart's points).

    .venv/bin/python tests/benchmarks/jobs_panel_poll.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from jupyter_server_process import JupyterServer  # noqa: E402

JOBS = 100
EPOCHS = 50


def fill_store(root: Path, with_metrics: bool) -> list[str]:
    from clusterlab_server.store import Job, JobStore

    store = JobStore(root / "jobs" / "jobs.sqlite")
    now = datetime.datetime.now(datetime.timezone.utc)
    ids = []
    with store.session.begin() as s:
        for i in range(JOBS):
            job_id = f"20260101-000000-{i:06x}"
            folder = root / "jobs" / job_id
            (folder / "output").mkdir(parents=True)
            if with_metrics:
                lines = (json.dumps({"step": e * 10, "epoch": e, "epochs": EPOCHS, "time": 1.7e9 + e,
                                     "metrics": {"loss": 1 / e, "accuracy": 1 - 1 / e, "val_loss": 1.1 / e,
                                                 "val_accuracy": 1 - 1.1 / e, "lr": 1e-3}})
                         for e in range(1, EPOCHS + 1))
                (folder / "output" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
            s.add(Job(id=job_id, name=f"job{i}", template="image-classification-train", template_version="1",
                      params={"epochs": EPOCHS}, profile="cpu-small", hours=1, backend="local",
                      folder=str(folder), status="completed", exit_code=0,
                      submit_time=now - datetime.timedelta(seconds=i), end_time=now))
            ids.append(job_id)
    return ids


def compare(servers: dict[str, JupyterServer], paths: dict[str, str], label: str, rounds: int) -> None:
    """Alternate GETs of each side's path; print the server-side medians and their ratio."""
    for i in range(rounds + 1):  # the first round warms the caches up
        for side in (("ours", "bare") if i % 2 == 0 else ("bare", "ours")):
            response = servers[side].call("GET", paths[side])
            assert response.status_code == 200, response.text
    medians = {side: statistics.median(servers[side].request_times_ms(paths[side])[1:]) for side in servers}
    print(f"{label}: ours {medians['ours']:.2f} ms, bare {medians['bare']:.2f} ms "
          f"(server-side medians over {rounds} requests each), ratio {medians['ours'] / medians['bare']:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ids = {side: fill_store(tmp / side, side == "ours") for side in ("ours", "bare")}
        servers = {side: JupyterServer(tmp / side, poll_interval=60, log_level="DEBUG").start()
                   for side in ("ours", "bare")}
        try:
            sample = servers["ours"].call("GET", "jobs").json()["jobs"][0]
            assert sample["progress"]["epoch"] == EPOCHS, sample
            compare(servers, {side: "jobs?limit=100" for side in servers},
                    f"GET jobs?limit=100 ({JOBS} jobs, {EPOCHS}-epoch metrics vs none)", args.rounds)
            compare(servers, {side: f"jobs/{ids[side][0]}/metrics" for side in servers},
                    f"GET jobs/{{id}}/metrics ({EPOCHS} points vs none)", args.rounds)
        finally:
            for server in servers.values():
                server.stop()


if __name__ == "__main__":
    main()
