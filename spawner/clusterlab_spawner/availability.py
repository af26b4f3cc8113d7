"""What is free now, per profile: the one reading of a backend's resources.

Side-effect free (no JupyterHub, no batchspawner), so the hub's size form and
the job service in each JupyterLab share it: the spawner shows it on the form,
the server extension in ``GET /clusterlab/api/profiles``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from .profiles import Profile
from .slurm_queue import NodeFree


@dataclasses.dataclass
class Availability:
    """What is free right now, as a backend sees it (None: unknown)."""

    free_cpus: int | None
    total_cpus: int | None
    free_gpus: int | None
    total_gpus: int | None
    # per profile id: why it cannot start now (busy); absent when it can
    blocked: dict[str, str] = dataclasses.field(default_factory=dict)
    # per profile id: why it can never start here (larger than any machine or node)
    impossible: dict[str, str] = dataclasses.field(default_factory=dict)
    # per profile id: what to know about a size that can start (the hub's local
    # spawner gives one larger than the machine the whole machine, say)
    notes: dict[str, str] = dataclasses.field(default_factory=dict)

    def state(self, profile_id: str) -> dict[str, str]:
        """``{"state": "free" | "queue" | "impossible", "reason": ...}`` ('' reason when free)."""
        if profile_id in self.impossible:
            return {"state": "impossible", "reason": self.impossible[profile_id]}
        if profile_id in self.blocked:
            return {"state": "queue", "reason": self.blocked[profile_id]}
        return {"state": "free", "reason": self.notes.get(profile_id, "")}


def availability_from_nodes(nodes: list[NodeFree], profiles: Iterable[Profile]) -> Availability:
    """sinfo's nodes -> what is free, what must queue and what never fits, per profile."""
    usable = {n.name: n for n in nodes if n.usable}
    default_partition = next((n.partition for n in nodes if n.default_partition), "")
    availability = Availability(
        free_cpus=sum(n.free_cpus for n in usable.values()),
        total_cpus=sum(n.cpus for n in usable.values()),
        free_gpus=sum(n.free_gpus for n in usable.values()),
        total_gpus=sum(n.gpus for n in usable.values()),
    )
    for profile in profiles:
        partition = profile.slurm.get("partition") or default_partition
        members = [n for n in nodes if n.partition == partition]
        never, busy = _fit(profile, partition, members)
        if never:
            availability.impossible[profile.id] = never
        elif busy:
            availability.blocked[profile.id] = busy
    return availability


def _fit(profile: Profile, partition: str, members: list[NodeFree]) -> tuple[str, str]:
    """(why it can never run, why it cannot run now) in one partition; '' when it can."""
    if not members:
        return f"partition {partition} does not exist", ""
    memory_mb = math.ceil(profile.memory_gb * 1024)

    def fits(cpus, mem, gpus):
        return cpus >= profile.cpus and mem >= memory_mb and gpus >= profile.gpus

    if not any(fits(n.cpus, n.memory_mb, n.gpus) for n in members):
        big = max(members, key=lambda n: (n.gpus, n.cpus, n.memory_mb))
        return (
            f"needs {profile.summary}; the largest node of partition {partition} has "
            f"{big.cpus} cores, {big.memory_mb // 1024} GB, {big.gpus} GPUs"
        ), ""
    big_enough = {n.name for n in members if fits(n.cpus, n.memory_mb, n.gpus)}  # a node is listed per partition
    if len(big_enough) < profile.nodes:
        return (f"needs {profile.nodes} nodes of {profile.summary.split(' × ')[-1]}; partition {partition} has "
                f"{len(big_enough)} node{'s' if len(big_enough) != 1 else ''} that large"), ""
    usable = [n for n in members if n.usable]
    if not usable:
        return "", f"no node of partition {partition} is up"
    free_enough = {n.name for n in usable if fits(n.free_cpus, n.free_memory_mb, n.free_gpus)}
    if len(free_enough) >= profile.nodes:
        return "", ""
    if profile.multi_node and free_enough:
        return "", f"needs {profile.nodes} nodes free at once; {len(free_enough)} free now in partition {partition}"
    if profile.gpus and max(n.free_gpus for n in usable) < profile.gpus:
        free = sum(n.free_gpus for n in usable)
        return "", f"needs {profile.gpus} GPU(s); {free} free now in partition {partition}"
    if max(n.free_cpus for n in usable) < profile.cpus:
        free = max(n.free_cpus for n in usable)
        return "", f"needs {profile.cpus} core(s); at most {free} free now on a node of {partition}"
    return "", f"needs {profile.memory_gb:g} GB; not that much memory is free now in partition {partition}"
