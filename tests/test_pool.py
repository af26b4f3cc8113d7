"""The device pool: exclusive GPUs, shared-when-full cores, restart claims."""

import pytest
from clusterlab_spawner.local import local_limits
from clusterlab_spawner.options import Choice
from clusterlab_spawner.pool import DevicePool, PoolExhausted
from clusterlab_spawner.profiles import parse_profiles


def test_gpus_are_never_shared():
    pool = DevicePool(["0", "1", "2"], exclusive=True)
    assert pool.allocate("a", 2) == ["0", "1"]
    assert pool.allocate("b", 1) == ["2"]
    with pytest.raises(PoolExhausted, match="only 0 of 3 are free now"):
        pool.allocate("c", 1)
    with pytest.raises(PoolExhausted, match="this machine has 3 in all"):
        pool.allocate("c", 4)
    pool.release("a")
    assert pool.allocate("c", 1) == ["0"]
    assert pool.free() == ["1"]


def test_cores_spread_out_then_share():
    pool = DevicePool(["0", "1", "2", "3"], exclusive=False)
    assert pool.allocate("a", 1) == ["0"]
    assert pool.allocate("b", 2) == ["1", "2"]
    assert pool.allocate("c", 2) == ["0", "3"]  # 3 is free; then the least used
    assert pool.free() == []
    assert pool.allocate("d", 4) == ["0", "1", "2", "3"]


def test_claims_rebuild_the_pool_after_a_restart():
    pool = DevicePool(["0", "1"], exclusive=True)
    pool.claim(("alice", ""), ["1"])
    assert pool.allocate(("bob", ""), 1) == ["0"]
    assert pool.held_by(("alice", "")) == ["1"]


def test_local_limits_follow_the_choice():
    (profile,) = parse_profiles({"profiles": [
        {"id": "g", "display_name": "G", "cpus": 4, "memory_gb": 8, "gpus": 1, "max_hours": 2, "default_hours": 1}
    ]})
    limits = local_limits(Choice(profile, 1.5), cores=["3", "1"], gpus=["7"])
    assert limits["affinity"] == [1, 3]
    assert limits["rlimit_data"] == 8 * 1024**3
    assert limits["env"]["OMP_NUM_THREADS"] == "2" and limits["env"]["MKL_NUM_THREADS"] == "2"
    assert limits["env"]["CUDA_VISIBLE_DEVICES"] == "7"
    assert limits["deadline_seconds"] == 5400
