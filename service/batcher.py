"""Micro-batching of concurrent single-query searches.

Requests that arrive within ``window_ms`` of each other with the same search options are sent to
the engine as one ``engine.search(queries, ...)`` call: one encoder forward pass for many queries
instead of one each. A group is sent early once it holds ``max_size`` queries. The call runs in a
worker thread (bounded by ``workers``) so inference never blocks the event loop.

Back-pressure: at most ``max_queue`` queries may be waiting or running; more are refused at once
with :class:`Overloaded` (the API answers 503 with Retry-After) instead of queueing without bound.

If a batched call fails and it held more than one query, each query is retried alone so one bad
query cannot fail its neighbours; a failure then reaches only the request that caused it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

import anyio
import anyio.to_thread

R = TypeVar("R")
RunBatch = Callable[[list[str], Hashable], Sequence[Any]]


class Overloaded(RuntimeError):
    """The queue is full; the caller should retry later."""


class _Group:
    __slots__ = ("items", "timer")

    def __init__(self) -> None:
        self.items: list[tuple[str, asyncio.Future[Any]]] = []
        self.timer: asyncio.TimerHandle | None = None


class MicroBatcher(Generic[R]):
    def __init__(
        self,
        run_batch: RunBatch,
        *,
        window_ms: float = 2.0,
        max_size: int = 32,
        max_queue: int = 1024,
        workers: int = 2,
        on_batch: Callable[[int], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        if max_size < 1 or max_queue < 1 or workers < 1:
            raise ValueError("max_size, max_queue and workers must be >= 1")
        self.run_batch = run_batch
        self.window = max(0.0, window_ms) / 1000.0
        self.max_size = max_size
        self.max_queue = max_queue
        self.workers = workers
        self._on_batch = on_batch
        self._on_depth = on_depth
        self._groups: dict[Hashable, _Group] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self.batches = 0  # engine calls made (for tests and logs)

    # ------------------------------------------------------------------ public
    @property
    def pending(self) -> int:
        return self._pending

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """The worker-thread limiter, shared with other inference calls (batch search)."""
        self._bind_loop()
        assert self._limiter is not None
        return self._limiter

    async def submit(self, query: str, key: Hashable) -> R:
        """Search ``query`` with the options ``key`` (hashable; passed back to ``run_batch``)."""
        loop = self._bind_loop()
        if self._pending >= self.max_queue:
            raise Overloaded(f"search queue is full ({self.max_queue} queries); retry shortly")
        fut: asyncio.Future[Any] = loop.create_future()
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group()
            group.timer = loop.call_later(self.window, self._flush, key, group)
        group.items.append((query, fut))
        self._set_pending(+1)
        if len(group.items) >= self.max_size:
            self._flush(key, group)
        try:
            return await fut
        finally:
            self._set_pending(-1)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in a worker thread under the same limit as batched searches."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    async def aclose(self) -> None:
        """Fail queued queries and wait for running engine calls (at shutdown)."""
        for key, group in list(self._groups.items()):
            self._groups.pop(key, None)
            if group.timer is not None:
                group.timer.cancel()
            for _, fut in group.items:
                if not fut.done():
                    fut.set_exception(Overloaded("the service is shutting down"))
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---------------------------------------------------------------- internals
    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (e.g. a test client): start clean
            self._loop = loop
            self._groups.clear()
            self._tasks.clear()
            self._pending = 0
            self._limiter = anyio.CapacityLimiter(self.workers)
        return loop

    def _set_pending(self, delta: int) -> None:
        self._pending += delta
        if self._on_depth is not None:
            self._on_depth(self._pending)

    def _flush(self, key: Hashable, group: _Group) -> None:
        if self._groups.get(key) is group:
            del self._groups[key]
        if group.timer is not None:
            group.timer.cancel()
            group.timer = None
        items = [(q, f) for q, f in group.items if not f.done()]  # drop cancelled requests
        group.items = []
        if not items:
            return
        assert self._loop is not None
        task = self._loop.create_task(self._run(key, items))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Hashable, items: list[tuple[str, asyncio.Future[Any]]]) -> None:
        queries = [q for q, _ in items]
        self.batches += 1
        if self._on_batch is not None:
            self._on_batch(len(queries))
        try:
            outcomes = await anyio.to_thread.run_sync(
                self._call, queries, key, limiter=self._limiter
            )
        except BaseException as e:  # cancelled at shutdown, or a bug in _call
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(e if isinstance(e, Exception) else Overloaded("cancelled"))
            if not isinstance(e, Exception):
                raise
            return
        for (_, fut), (ok, value) in zip(items, outcomes, strict=True):
            if fut.done():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def _call(self, queries: list[str], key: Hashable) -> list[tuple[bool, Any]]:
        """In a worker thread: one engine call; on failure, each query alone."""
        try:
            results = list(self.run_batch(queries, key))
            if len(results) != len(queries):
                raise RuntimeError(
                    f"engine returned {len(results)} results for {len(queries)} queries"
                )
            return [(True, r) for r in results]
        except Exception as e:
            if len(queries) == 1:
                return [(False, e)]
        outcomes: list[tuple[bool, Any]] = []
        for q in queries:
            try:
                (r,) = self.run_batch([q], key)
                outcomes.append((True, r))
            except Exception as e:
                outcomes.append((False, e))
        return outcomes


__all__ = ["MicroBatcher", "Overloaded"]
