"""The change notifier: in-process fan-out and the poll for other processes' changes."""

from __future__ import annotations

import asyncio

from mailwarden.services.notify import LocalNotifier, PollingNotifier


async def test_local_publish_reaches_only_watchers_of_that_mailbox() -> None:
    n = LocalNotifier()
    a, b = n.watch(1), n.watch(2)
    n.publish([1, 1, 3])
    assert a.changed.is_set() and not b.changed.is_set()
    a.close()
    b.close()
    assert n.watched() == []


async def test_polling_sees_a_change_made_elsewhere() -> None:
    modseqs = {1: 5}

    async def read(ids: list[int]) -> dict[int, int]:
        return {i: modseqs[i] for i in ids if i in modseqs}

    n = PollingNotifier(read, interval=0.01)
    w = n.watch(1)
    await asyncio.wait_for(w.wait(), 1)  # the first poll counts as a change
    w.changed.clear()
    await asyncio.sleep(0.05)
    assert not w.changed.is_set()  # nothing changed since
    modseqs[1] = 6  # another process commits
    await asyncio.wait_for(w.wait(), 1)
    w.close()
    await n.close()


async def test_polling_survives_a_failing_read() -> None:
    calls = 0

    async def read(ids: list[int]) -> dict[int, int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("database is locked")
        return {1: 1}

    n = PollingNotifier(read, interval=0.01)
    w = n.watch(1)
    await asyncio.wait_for(w.wait(), 1)
    assert calls >= 2
    w.close()
    await n.close()
