"""Concurrent requests scored together: requests wait in a queue, and one worker takes up to
``max_batch`` responses (or whatever came within ``max_wait`` seconds of the first) and
scores them in one call, off the event loop, so the server keeps reading requests while the
model runs. Each request gets back exactly its own responses' scores.

Bounded: at most ``max_queue`` responses wait at once (a request beyond that is refused as
busy, not buffered); a request that has timed out or whose client hung up before its batch
started is dropped from the queue unscored. When a batch fails, each of its requests is scored
again alone, so that only the request at fault gets the error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Busy(Exception):
    """The queue is full: the request was not taken."""


@dataclass
class _Job:
    items: list[Any]
    future: asyncio.Future


@dataclass
class Stats:
    requests: int = 0
    responses: int = 0
    batches: int = 0
    largest_batch: int = 0
    dropped: int = 0
    waiting: int = 0         # responses queued, not yet in a batch
    in_flight: int = 0       # requests taken and not yet answered
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "responses": self.responses, "batches": self.batches,
                "largest_batch": self.largest_batch, "dropped": self.dropped,
                "waiting": self.waiting, "in_flight": self.in_flight,
                "uptime_s": round(time.monotonic() - self.started, 1)}


class Batcher:
    def __init__(self, score: Callable[[list[Any]], list[Any]], max_batch: int = 64,
                 max_wait: float = 0.01, max_queue: int = 8192):
        self.score, self.max_batch, self.max_wait, self.max_queue = score, max_batch, max_wait, max_queue
        self.stats = Stats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """After the server has finished its requests: nothing is left waiting."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    async def submit(self, items: list[Any]) -> list[Any]:
        assert self._queue is not None, "the batcher was not started"
        if self.stats.waiting + len(items) > self.max_queue and self.stats.waiting:
            raise Busy(f"{self.stats.waiting} responses are already waiting (--max-queue "
                       f"{self.max_queue}); try again shortly")
        future = asyncio.get_running_loop().create_future()
        self.stats.waiting += len(items)
        self.stats.in_flight += 1
        self._queue.put_nowait(_Job(items, future))
        try:
            return await future
        finally:
            self.stats.in_flight -= 1

    async def _next_batch(self) -> list[_Job]:
        assert self._queue is not None
        jobs = [await self._queue.get()]
        size = len(jobs[0].items)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), left)
                except TimeoutError:
                    break
            jobs.append(job)
            size += len(job.items)
        return jobs

    async def _run(self) -> None:
        while True:
            jobs = await self._next_batch()
            for job in jobs:
                self.stats.waiting -= len(job.items)
            live = [job for job in jobs if not job.future.done()]
            self.stats.dropped += len(jobs) - len(live)
            if not live:
                continue
            try:
                await self._score(live)
            except Exception:  # noqa: BLE001 - one request's fault must not fail the others
                for job in live:
                    try:
                        await self._score([job])
                    except Exception as exc:  # noqa: BLE001 - its request gets the reason
                        if not job.future.done():
                            job.future.set_exception(exc)

    async def _score(self, jobs: list[_Job]) -> None:
        items = [item for job in jobs for item in job.items]
        scores = await asyncio.to_thread(self.score, items)
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(items))
        start = 0
        for job in jobs:
            mine = scores[start:start + len(job.items)]
            start += len(job.items)
            if not job.future.done():  # its client may have gone, or timed out
                job.future.set_result(mine)
                self.stats.requests += 1
                self.stats.responses += len(mine)
