"""A crowd on the embedded default: servers take turns to start, and the hub's database does not stall it.

The storm itself (20 users at once, the API's latency) is a benchmark,
tests/benchmarks/spawn_storm.py; these are the behaviours it relies on, without timing.
"""

import json
import sqlite3
import threading

import requests

from conftest import stop_all_servers


def test_servers_beyond_the_limit_wait_their_turn_and_all_start(make_hub):
    # slow_spawn_timeout 0: the POST answers at once (202), and the progress events show the wait
    hub = make_hub(extra_config="c.ClusterSpawner.max_concurrent_starts = 1\n"
                                "c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}")
    names = ["crowd1", "crowd2", "crowd3"]
    tokens = {name: hub.add_user(name) for name in names}
    events = {name: [] for name in names}

    def spawn_and_watch(name):
        api = hub.api(tokens[name])
        assert api.post(hub.server_url(name), json={"profile": "cpu-small"}).status_code in (201, 202)
        # the spawn page's event stream, as the browser reads it
        with api.get(f"{hub.url}/hub/api/users/{name}/server/progress", stream=True, timeout=120) as stream:
            for line in stream.iter_lines():
                if line.startswith(b"data:"):
                    event = json.loads(line[5:])
                    events[name].append(event.get("message", ""))
                    if event.get("ready") or event.get("failed"):
                        return

    threads = [threading.Thread(target=spawn_and_watch, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    try:
        for name in names:  # all three start, none is given up on
            assert hub.wait_ready(name, timeout=120)["ready"], events[name]
            assert requests.get(f"{hub.url}/user/{name}/api/status",
                                headers={"Authorization": f"token {tokens[name]}"}).status_code == 200
        # one starts at a time: the three were asked for within a fraction of a second, a start takes
        # seconds, so at least the two that came later were told they wait, and how many are ahead
        waited = [name for name in names
                  if any(m.startswith("Waiting for a turn to start: ") and "ahead of yours" in m
                         for m in events[name])]
        assert len(waited) >= 2, events
        assert hub.log_path.read_text().count("waits for a turn to start") >= 2
    finally:
        stop_all_servers(hub)


def test_the_hubs_sqlite_database_is_in_write_ahead_log_mode(hub):
    # a commit appends to the log instead of waiting for fsync on the hub's event loop
    with sqlite3.connect(hub.data_dir / "hub" / "jupyterhub.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
