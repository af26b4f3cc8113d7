"""Turns to start a server: at most so many JupyterLabs start at once, the others wait, first come first served.

A JupyterLab's start-up is a second or two of CPU. Twenty of them at once on a
two-core machine (a class logging in at 9 a.m.) all take twenty times as long,
past the hub's timeouts, and the hub gave up on servers that were still starting.
Started a few at a time, each is as quick as alone and the last is ready no later.
The spawn page says where a waiting server is in the line.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable


class StartQueue:
    def __init__(self):
        self.starting = 0
        self.waiting: deque[asyncio.Future] = deque()

    @contextlib.asynccontextmanager
    async def turn(self, limit: int, on_wait: Callable[[int], None] = lambda ahead: None) -> AsyncIterator[None]:
        """Hold one of ``limit`` places while the body runs (0: no limit); ``on_wait(ahead)`` as the line moves."""
        if limit <= 0:
            yield
            return
        if self.starting >= limit or self.waiting:
            place = asyncio.get_running_loop().create_future()
            self.waiting.append(place)
            try:
                while not place.done():
                    on_wait(self.starting + self.waiting.index(place))
                    await asyncio.wait([place], timeout=0.5)
            except BaseException:
                if place in self.waiting:
                    self.waiting.remove(place)
                elif place.done():
                    self._hand_on()  # handed a place as it was cancelled: pass it on
                raise
        else:
            self.starting += 1
        try:
            yield
        finally:
            self._hand_on()

    def _hand_on(self) -> None:
        """The holder of a place is done: the first in line gets it, or it is free."""
        while self.waiting:
            place = self.waiting.popleft()
            if not place.done():
                place.set_result(None)
                return  # the place passes on; `starting` stays as it is
        self.starting -= 1
