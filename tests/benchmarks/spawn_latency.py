"""Spawn latency: hub spawn-to-ready through the proxy vs the same server started bare, and vs a stock JupyterLab.

Alternates, in one run, N rounds of:
  hub:        POST /hub/api/users/admin/server {"profile": "cpu-small"} until
              /user/admin/api/status answers 200 through the proxy;
  singleuser: the command the hub runs, `clusterlab-singleuser`, started by hand
              on its own port (hub environment, no spawner, no proxy) until it answers 200;
  stock lab:  a stock `jupyter lab` of the same JupyterLab version, installed plainly
              in a throw-away virtual environment without ClusterLab (made once, from
              PyPI, under .clusterlab/bench/), until /api/status answers 200.
All are polled every 20 ms. Prints each round and the median ratios.

hub / singleuser is what the hub adds to a spawn (the goal: <= 1.05).
hub / stock lab is a whole ClusterLab spawn against what a user would get by
starting JupyterLab on their own (the goal: <= 0.75); clusterlab-singleuser
leaves out two imports that are most of a stock start-up (docs/performance.md).

As root, the hub runs each user's server as their own Unix account (admin's
here, made for the run and removed after). Each round then also times:
  shared:     the same spawn on a second hub run as an ordinary account, which
              runs every server as itself (what the local backend did for
              everyone before per-user accounts);
so per-user / shared is what separate accounts cost a spawn (the goal: <= 1.05).

    .venv/bin/python tests/benchmarks/spawn_latency.py [--pairs 7]
"""

import argparse
import importlib.metadata
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import accounts  # noqa: E402
from hub import Hub, free_port_block, singleuser_by_hand  # noqa: E402

SHARED_HUB_ACCOUNT = "clbench"

POLL = 0.02
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def stock_jupyterlab() -> Path:
    """The `jupyter` command of a plain JupyterLab, the version ours runs, in a venv of its own (made once)."""
    version = importlib.metadata.version("jupyterlab")
    venv = REPO / ".clusterlab" / "bench" / f"stock-jupyterlab-{version}"
    jupyter = venv / "bin" / "jupyter"
    if not (venv / ".installed").exists():
        print(f"making a stock JupyterLab {version} in {venv} (once)...", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", f"jupyterlab=={version}"], check=True)
        (venv / ".installed").touch()
    return jupyter


def wait_200(session, url, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if session.get(url, timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(POLL)
    raise TimeoutError(url)


def time_hub(hub, api):
    start = time.perf_counter()
    response = api.post(hub.server_url("admin"), json={"profile": "cpu-small"})
    assert response.status_code in (201, 202), response.text
    wait_200(api, f"{hub.url}/user/admin/api/status")
    elapsed = time.perf_counter() - start
    hub.stop_server(api, "admin")
    return elapsed


def time_bare(workdir, hub=None, token="bench-token", jupyter=None):
    """A server started by hand: the hub's clusterlab-singleuser if a hub is given, else `jupyter lab`."""
    port = free_port_block(1)
    env = {**os.environ, "HOME": str(workdir)}
    if hub:
        cmd, env, url = singleuser_by_hand(str(BIN / "clusterlab-singleuser"), port,
                                           f"http://127.0.0.1:{hub.port + 1}/hub/api", token)
        env["HOME"] = str(workdir)
    else:
        env["PATH"] = f"{jupyter.parent}:{env['PATH']}"  # as its venv, activated, would have it
        cmd = [str(jupyter), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
               f"--IdentityProvider.token={token}", "--allow-root"]
        url = f"http://127.0.0.1:{port}/api/status"
    start = time.perf_counter()
    proc = subprocess.Popen(cmd + [f"--ServerApp.root_dir={workdir}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(workdir / "bare.log", "ab"))
    session = requests.Session()
    session.headers["Authorization"] = f"token {token}"
    try:
        wait_200(session, url)
        return time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(30)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=7, help="rounds (>= 5)")
    args = parser.parse_args()
    per_user = os.geteuid() == 0
    stock = stock_jupyterlab()
    hubs = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BENCH_TMP"] = tmp
        try:
            hub = Hub(Path(tmp) / "hub")
            hubs.append(hub.start())
            shared = None
            if per_user:  # a second hub as an ordinary account: one account for every server
                account = accounts.ensure(SHARED_HUB_ACCOUNT)
                data = Path(tempfile.mkdtemp(prefix="clusterlab-bench-shared-"))
                os.chown(data, account.pw_uid, account.pw_gid)
                shared = Hub(data, run_as=SHARED_HUB_ACCOUNT)
                hubs.append(shared.start())
            api, token = hub.admin_api, hub._admin_token
            work = Path(tmp)
            time_hub(hub, api), time_bare(work, hub, token), time_bare(work, jupyter=stock)  # warm-up, unmeasured
            if shared:
                time_hub(shared, shared.admin_api)
            to_singleuser, to_lab, to_shared = [], [], []
            for i in range(args.pairs):
                if shared and i % 2:  # alternate which of the two goes first
                    shared_s, hub_s = time_hub(shared, shared.admin_api), time_hub(hub, api)
                else:
                    hub_s = time_hub(hub, api)
                    shared_s = time_hub(shared, shared.admin_api) if shared else None
                single_s = time_bare(work, hub, token)
                lab_s = time_bare(work, jupyter=stock)
                to_singleuser.append(hub_s / single_s)
                to_lab.append(hub_s / lab_s)
                if shared:
                    to_shared.append(hub_s / shared_s)
                shared_text = f"shared-account hub {shared_s:.3f} s   " if shared else ""
                print(f"round {i + 1}: hub {hub_s:.3f} s   {shared_text}"
                      f"bare clusterlab-singleuser {single_s:.3f} s   stock jupyter lab {lab_s:.3f} s")
        finally:
            for each in hubs:
                each.stop()
            if len(hubs) > 1:
                shutil.rmtree(hubs[1].data_dir, ignore_errors=True)
            accounts.remove_created()
    what = "per-user accounts" if per_user else "the hub's own account (not root)"
    print(f"hub servers ran as {what}")
    print(f"median ratio hub / bare clusterlab-singleuser over {args.pairs} rounds: "
          f"{statistics.median(to_singleuser):.3f} (goal <= 1.05)")
    print(f"median ratio hub / stock jupyter lab {importlib.metadata.version('jupyterlab')} over {args.pairs} "
          f"rounds: {statistics.median(to_lab):.3f} (goal <= 0.75)")
    if to_shared:
        print(f"median ratio per-user-account hub / shared-account hub over {args.pairs} rounds: "
              f"{statistics.median(to_shared):.3f}")


if __name__ == "__main__":
    main()
