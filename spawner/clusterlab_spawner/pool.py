"""Handing out a machine's devices (GPUs, CPU cores) to the servers on it.

The hub is one process and allocation is synchronous, so a plain object is
race-free under asyncio. Who holds what is also written into each spawner's
state, so after a hub restart the pool is rebuilt with :meth:`DevicePool.claim`
from the servers that are still running.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable


class PoolExhausted(RuntimeError):
    """Not enough free devices right now."""


class DevicePool:
    """Device ids, each lent to holders.

    ``exclusive=True`` (GPUs): an id has at most one holder; a request that
    cannot be met raises PoolExhausted. ``exclusive=False`` (cores): the least
    used ids are picked, and ids are shared once all are in use, as processes
    share cores on a workstation.
    """

    def __init__(self, ids: Iterable[str], exclusive: bool):
        self.ids = list(dict.fromkeys(str(i) for i in ids))
        self.exclusive = exclusive
        self._held: dict[Hashable, list[str]] = {}

    def _load(self) -> Counter:
        load = Counter({i: 0 for i in self.ids})
        for ids in self._held.values():
            load.update(i for i in ids if i in load)
        return load

    def free(self) -> list[str]:
        """Ids no holder has."""
        return [i for i, n in self._load().items() if n == 0]

    def held_by(self, holder: Hashable) -> list[str]:
        return list(self._held.get(holder, []))

    def allocate(self, holder: Hashable, count: int) -> list[str]:
        """Lend ``count`` ids to ``holder`` (replacing what it held)."""
        self.release(holder)
        if count <= 0:
            return []
        if count > len(self.ids):
            raise PoolExhausted(
                f"needs {count} but this machine has {len(self.ids)} in all"
            )
        load = self._load()
        if self.exclusive:
            free = [i for i in self.ids if load[i] == 0]
            if len(free) < count:
                raise PoolExhausted(
                    f"needs {count} but only {len(free)} of {len(self.ids)} are free now"
                )
            chosen = free[:count]
        else:
            # least loaded first, then in id order, so small servers spread out
            chosen = sorted(self.ids, key=lambda i: (load[i], self.ids.index(i)))[:count]
            chosen.sort(key=self.ids.index)
        self._held[holder] = chosen
        return list(chosen)

    def claim(self, holder: Hashable, ids: Iterable[str]) -> None:
        """Record ids a holder already has (a server found again after a restart)."""
        self._held[holder] = [str(i) for i in ids]

    def release(self, holder: Hashable) -> None:
        self._held.pop(holder, None)
