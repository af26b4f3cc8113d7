"""Turns to start (spawner/clusterlab_spawner/start_queue.py): never more than the limit, first come first served."""

import asyncio

from clusterlab_spawner.start_queue import StartQueue


def run(coroutine):
    return asyncio.run(coroutine)


def test_no_more_than_the_limit_start_at_once_and_the_line_is_first_come_first_served():
    queue, running, most, order, told = StartQueue(), [], [0], [], {}

    async def start(name, gate):
        async with queue.turn(2, lambda ahead: told.setdefault(name, []).append(ahead)):
            running.append(name)
            most[0] = max(most[0], len(running))
            order.append(name)
            await gate.wait()
            running.remove(name)

    async def main():
        gates = {name: asyncio.Event() for name in "abcde"}
        tasks = [asyncio.create_task(start(name, gates[name])) for name in "abcde"]
        await asyncio.sleep(0.05)
        assert order == ["a", "b"]  # two start; c, d and e wait
        assert told == {"c": [2], "d": [3], "e": [4]}  # each told how many are ahead of it
        gates["b"].set()
        await asyncio.sleep(0.05)
        assert order == ["a", "b", "c"]
        for gate in gates.values():
            gate.set()
        await asyncio.gather(*tasks)

    run(main())
    assert most[0] == 2 and order == list("abcde")
    assert queue.starting == 0 and not queue.waiting


def test_a_waiter_given_up_on_leaves_the_line_and_loses_no_place():
    queue = StartQueue()

    async def main():
        hold = asyncio.Event()

        async def first():
            async with queue.turn(1):
                await hold.wait()

        holder = asyncio.create_task(first())
        await asyncio.sleep(0.01)
        waiter = asyncio.create_task(queue.turn(1).__aenter__())
        await asyncio.sleep(0.01)
        waiter.cancel()  # the hub's start_timeout, or the user cancelling the spawn
        await asyncio.sleep(0.01)
        assert not queue.waiting
        hold.set()
        await holder
        assert queue.starting == 0
        async with queue.turn(1):  # the place is free again
            assert queue.starting == 1

    run(main())


def test_no_limit_means_no_line():
    queue = StartQueue()

    async def main():
        async with queue.turn(0):
            async with queue.turn(0):
                return queue.starting

    assert run(main()) == 0
