"""Scheduling for processing at feed rate: per-patient turns, batched sends, coalesced screening.

Three small asyncio parts, free of FHIR so they can be tested on their own:

- ``Turns``: jobs run concurrently (at most ``limit`` at once); jobs that share a key (a patient) run
  one after the other, in the order their turns were taken. A job waits only for earlier jobs, so
  there is no deadlock, and a waiting job holds no slot.
- ``Batcher``: items submitted within ``linger`` seconds of each other, or while earlier batches are
  being sent (same group), are handed to one call of ``send``, up to ``max_size``; each submitter gets
  its own result or exception.
- ``Coalescer``: callers ask for keys to be handled (patients to be screened); keys asked for while
  a round waits or runs are handled once, in the next round. A round always starts after the request
  it answers, so it reads everything written before that request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Turn:
    """One job's place: ``async with turn:`` waits for the earlier jobs on its keys and for a slot."""

    def __init__(self, owner: Turns, keys: frozenset[Hashable], before: list[asyncio.Future[None]]) -> None:
        self._owner = owner
        self.keys = keys
        self._before = before
        self._finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._slot = False

    async def __aenter__(self) -> Turn:
        try:
            for earlier in self._before:
                await asyncio.shield(earlier)
            await self._owner._slots.acquire()
            self._slot = True
        except BaseException:
            self.release()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Lets the next jobs on these keys go (also for a turn never entered, e.g. a job that failed
        before its forward). Idempotent."""
        if self._slot:
            self._slot = False
            self._owner._slots.release()
        if not self._finished.done():
            self._finished.set_result(None)
            for key in self.keys:
                if self._owner._tails.get(key) is self._finished:
                    del self._owner._tails[key]


class Turns:
    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(max(1, limit))
        self._tails: dict[Hashable, asyncio.Future[None]] = {}  # key -> the last turn taken on it

    def take(self, keys: Iterable[Hashable]) -> Turn:
        """A turn after every turn already taken on any of ``keys`` (synchronous: call in the order the
        jobs must keep)."""
        keys = frozenset(keys)
        before = list({id(f): f for k in keys if (f := self._tails.get(k)) is not None}.values())
        turn = Turn(self, keys, before)
        for key in keys:
            self._tails[key] = turn._finished
        return turn

    @property
    def busy_keys(self) -> int:
        return len(self._tails)


class Batcher(Generic[T, R]):
    """Groups items for one ``send(group, items) -> results`` call (results in the items' order; an
    exception in the list is that item's failure). At most ``concurrent`` calls run at once; while
    they do, new items gather in the next batch (up to ``max_size``), so a busy server gets fewer,
    larger batches."""

    def __init__(
        self,
        send: Callable[[Hashable, list[T]], Awaitable[list[R | BaseException]]],
        *,
        linger: float = 0.02,
        max_size: int = 500,
        size: Callable[[T], int] = lambda _: 1,
        concurrent: int = 2,
    ) -> None:
        self._send = send
        self.linger = linger
        self.max_size = max_size
        self._size = size
        self._sending = asyncio.Semaphore(max(1, concurrent))
        self._open: dict[Hashable, list[tuple[T, asyncio.Future[R]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0

    async def submit(self, group: Hashable, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        waiting = self._open.get(group)
        if waiting is not None and sum(self._size(i) for i, _ in waiting) + self._size(item) > self.max_size:
            del self._open[group]  # full: closed to new items, sent when its turn comes
            waiting = None
        if waiting is None:
            waiting = self._open[group] = []
            task = asyncio.ensure_future(self._deliver(group, waiting))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        waiting.append((item, future))
        return await future

    async def _deliver(self, group: Hashable, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        await asyncio.sleep(self.linger)
        async with self._sending:
            if self._open.get(group) is batch:
                del self._open[group]  # what gathered while the earlier batches were sent
            self.batches += 1
            try:
                results: list[Any] = list(await self._send(group, [item for item, _ in batch]))
            except BaseException as exc:  # the whole call failed: every item gets the error
                results = [exc] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result)


class Coalescer(Generic[R]):
    """``await request(keys)`` -> each key's result, from one ``run(keys)`` per round. Rounds run one at
    a time; a round takes at most ``max_keys`` keys (the oldest requests first)."""

    def __init__(
        self,
        run: Callable[[list[str]], Awaitable[dict[str, R | BaseException]]],
        *,
        linger: float = 0.05,
        max_keys: int = 200,
    ) -> None:
        self._run = run
        self.linger = linger
        self.max_keys = max_keys
        self._pending: dict[str, list[asyncio.Future[R]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0
        self.handled = 0
        self.requested = 0

    async def request(self, keys: Iterable[str]) -> dict[str, R]:
        loop = asyncio.get_running_loop()
        futures: dict[str, asyncio.Future[R]] = {}
        for key in dict.fromkeys(keys):
            futures[key] = loop.create_future()
            self._pending.setdefault(key, []).append(futures[key])
        if not futures:
            return {}
        self.requested += len(futures)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop())
        self._wake.set()
        values = await asyncio.gather(*futures.values(), return_exceptions=True)
        for value in values:
            if isinstance(value, BaseException):
                raise value
        return dict(zip(futures, values, strict=True))  # type: ignore[arg-type]

    async def _loop(self) -> None:
        while True:
            if not self._pending:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=30.0)
                except TimeoutError:
                    return  # idle: a new request starts a new loop
                continue
            await asyncio.sleep(self.linger)  # let a burst on the same patients gather
            keys = list(self._pending)[: self.max_keys]
            taken = {key: self._pending.pop(key) for key in keys}
            self.rounds += 1
            self.handled += len(keys)
            try:
                results: dict[str, Any] = dict(await self._run(keys))
            except Exception as exc:  # the round failed: every waiter gets the error
                results = dict.fromkeys(keys, exc)
            for key, futures in taken.items():
                result = results.get(key, KeyError(key))
                for future in futures:
                    _settle(future, result)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    """Give a waiter its result, or its error; one that already has an answer is left alone."""
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
