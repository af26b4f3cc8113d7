"""A crowd at 9 a.m.: N users log in and spawn at once; how many get a server, how soon, and how the hub holds up.

One real hub (the embedded default, or --backend slurm on `make slurm`'s
cluster), with N users signed up and approved beforehand. Then, all at once,
each user logs in through the login form, takes a token and asks for a server
of the smallest size through the REST API, follows the hub's progress events
until the server is ready (as the spawn page does), then asks
/user/<name>/api/status through the proxy. Meanwhile a sampler asks the hub's API for
one user's model every 50 ms and times each answer (through the proxy, as a
client would). Prints:

- how many servers became ready, and the time until the last one did;
- each user's spawn time (p50, max);
- the hub API's latency over the storm: p50, p95, max;
- how often the hub gave up on a server, from its log;
- with --hold S, each user stops their server S seconds after it answered, as
  someone trying a thing would; on Slurm (default S=5) the test cluster has
  room for two such servers at once, so the others wait in Slurm's queue, with
  their place in line on the spawn page, and start as places free up;
- with --gpu-users K, the first K users ask for one GPU each (the hub lends
  two): how many got one, that no GPU went to two servers, and what the others
  were told.

Goals (issue 17): N/N ready, none given up on, API p95 < 1 s and max < 2 s.

    .venv/bin/python tests/benchmarks/spawn_storm.py [--users 20] [--gpu-users 4]
    .venv/bin/python tests/benchmarks/spawn_storm.py --db postgresql      # the hub's database on PostgreSQL
    .venv/bin/python tests/benchmarks/spawn_storm.py --backend slurm --users 10

Needs root for per-user accounts (made for the run, removed after); --backend
slurm needs `make slurm`; --db postgresql needs a PostgreSQL server
(tests/postgres.py says how).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import accounts  # noqa: E402
from hub import Hub  # noqa: E402

SLURM_PROFILES = Path(__file__).resolve().parents[1] / "data" / "slurm-profiles.yaml"
PASSWORD = "a-long-storm-password"
GAVE_UP = ("Giving up", "never showed up", "timed out", "failed to start")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


class Sampler(threading.Thread):
    """Times one hub API request every 50 ms until stopped."""

    def __init__(self, hub: Hub, api: requests.Session):
        super().__init__(daemon=True)
        self.url, self.api = f"{hub.url}/hub/api/users/admin", api
        self.seconds: list[float] = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            start = time.perf_counter()
            response = self.api.get(self.url, timeout=60)
            if response.status_code == 200:
                self.seconds.append(time.perf_counter() - start)
            self.halt.wait(max(0.0, 0.05 - (time.perf_counter() - start)))


def one_user(hub: Hub, name: str, profile: str, go: threading.Event, t0: list[float], result: dict,
             hold: float | None = None) -> None:
    go.wait()
    try:
        session = hub.browser(name, PASSWORD)  # the login form: NativeAuthenticator's bcrypt check
        api = hub.api(hub.token(session, name))
        response = api.post(hub.server_url(name), json={"profile": profile}, timeout=600)
        result["status"] = response.status_code
        if response.status_code not in (201, 202):
            result["refused"] = response.json().get("message", response.text)
            return
        # as the spawn page does: the hub's progress events until the server is ready, then the server itself
        with api.get(f"{hub.url}/hub/api/users/{name}/server/progress", stream=True, timeout=600) as events:
            for line in events.iter_lines():
                if not line.startswith(b"data:"):
                    continue
                event = json.loads(line[5:])
                if event.get("failed"):
                    result["refused"] = event.get("message", "failed")
                    return
                if event.get("ready"):
                    break
        response = api.get(f"{hub.url}/user/{name}/api/status", timeout=60)
        if response.status_code == 200:
            result["ready"] = time.perf_counter() - t0[0]
            if hold is not None:  # done with it: the next in Slurm's queue gets its place
                time.sleep(hold)
                hub.stop_server(api, name)
        else:
            result["refused"] = f"ready, but its status answered {response.status_code}"
    except Exception as e:  # one user's failure is a result, not the end of the run
        result["refused"] = f"{type(e).__name__}: {e}"


def gpus_of_servers(names: set[str]) -> dict[str, str]:
    """CUDA_VISIBLE_DEVICES of each running server, read from its process."""
    found = {}
    for proc in psutil.process_iter(["cmdline"]):
        if "clusterlab-singleuser" not in " ".join(proc.info["cmdline"] or []):
            continue
        with contextlib.suppress(psutil.Error):
            env = proc.environ()
            if env.get("JUPYTERHUB_USER") in names:
                found[env["JUPYTERHUB_USER"]] = env.get("CUDA_VISIBLE_DEVICES", "")
    return found


def storm(hub: Hub, users: int, gpu_users: int, profile: str, hold: float | None) -> None:
    names = [f"storm{i:02d}" for i in range(1, users + 1)]
    print(f"signing up {users} users (bcrypt: a few seconds)...", flush=True)
    for name in names:
        hub.account_for(name)
        assert hub.signup(name, PASSWORD).status_code == 200
        hub.approve(name)
    admin = hub.admin_api
    sampler = Sampler(hub, admin)
    go, t0 = threading.Event(), [0.0]
    results = {name: {} for name in names}
    wanted = {name: ("gpu-1" if i < gpu_users else profile) for i, name in enumerate(names)}
    threads = [threading.Thread(target=one_user, args=(hub, name, wanted[name], go, t0, results[name], hold))
               for name in names]
    for thread in threads:
        thread.start()
    sampler.start()
    time.sleep(1)  # a second of quiet samples first
    print(f"{users} users log in and spawn at once...", flush=True)
    t0[0] = time.perf_counter()
    go.set()
    for thread in threads:
        thread.join()
    sampler.halt.set()
    sampler.join()

    ready = {name: r["ready"] for name, r in results.items() if "ready" in r}
    asked_cpu = [n for n in names if wanted[n] != "gpu-1"]
    print(f"ready: {len(ready)}/{users}"
          + (f" (of the {len(asked_cpu)} asking for {profile}: {sum(n in ready for n in asked_cpu)})"
             if gpu_users else ""))
    if ready:
        times = list(ready.values())
        print(f"last ready after {max(times):.1f} s; spawn time p50 {statistics.median(times):.1f} s, "
              f"max {max(times):.1f} s")
    lat = sampler.seconds
    print(f"hub API latency over {len(lat)} samples: p50 {percentile(lat, 0.5) * 1000:.0f} ms, "
          f"p95 {percentile(lat, 0.95) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms")
    log = hub.log_path.read_text(errors="replace")
    gave_up = [line for line in log.splitlines() if any(mark in line for mark in GAVE_UP)]
    print(f"servers the hub gave up on: {len(gave_up)}")
    for line in gave_up[:5]:
        print("   ", line[:200])
    waited = log.count("waits for a turn to start")
    print(f"servers that waited for a turn to start: {waited}")
    refused = {name: r["refused"] for name, r in results.items() if "refused" in r}
    for name, why in sorted(refused.items()):
        print(f"  {name} ({wanted[name]}): {why[:160]}")
    if gpu_users:
        held = gpus_of_servers({n for n in names if wanted[n] == "gpu-1"})
        devices = [d for d in held.values() if d]
        exact = len(devices) == len(set(devices)) and all("," not in d for d in devices)
        print(f"GPU servers running: {len(held)} of {gpu_users} asked, devices {sorted(devices)}: "
              f"{'each GPU to one server' if exact else 'A GPU WENT TO TWO SERVERS'}")
    for name in names:
        with contextlib.suppress(Exception):
            hub.stop_server(admin, name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--gpu-users", type=int, default=0, help="of them, how many ask for a GPU (2 to lend)")
    parser.add_argument("--backend", choices=["local", "slurm"], default="local")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--hold", type=float, default=None,
                        help="each user stops their server this many seconds after it is ready (default: keeps it; "
                             "with --backend slurm: 5, since the test cluster has room for two at once)")
    parser.add_argument("--keep-log", type=Path, help="copy the hub's log here (PYTHONASYNCIODEBUG=1 in the "
                                                         "environment makes it name callbacks that block)")
    args = parser.parse_args()
    env = {"CLUSTERLAB_BACKEND": args.backend}
    profile = "cpu-small"
    if args.backend == "slurm":
        env["CLUSTERLAB_PROFILES"] = str(SLURM_PROFILES)
        profile = "cpu-1"
        if args.hold is None:
            args.hold = 5.0
    with contextlib.ExitStack() as stack:
        if args.db == "postgresql":
            import postgres

            why_not = postgres.postgres_ready()
            if why_not:
                sys.exit(f"--db postgresql: {why_not}; {postgres.HOW}")
            env["CLUSTERLAB_DB_URL"] = stack.enter_context(postgres.database("storm"))
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        hub = Hub(Path(tmp) / "hub", env=env).start()
        try:
            print(f"hub: {args.backend} backend, {args.db} database")
            if args.hold is not None:
                print(f"each user stops their server {args.hold:g} s after it is ready")
            storm(hub, args.users, args.gpu_users, profile, args.hold)
        finally:
            hub.stop()
            accounts.remove_created()
            if args.keep_log:
                shutil.copy(hub.log_path, args.keep_log)


if __name__ == "__main__":
    main()
