"""Micro-batching: segments of concurrent requests share one forward pass, off the event loop.

A transformer forward pass costs little more for 32 segments than for one, so under load it pays
to wait a few milliseconds for company. All inference runs in ONE dedicated worker thread: torch
already uses every core inside a pass, and two passes at once would only contend for them. The
event loop only queues segments and hands results back, so health checks and new requests are
answered while a batch runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from model.preprocess import Segment

log = logging.getLogger("collectguard.batcher")

PredictFn = Callable[[Sequence[Segment]], np.ndarray]


@dataclass(eq=False)
class _Job:
    """One request's segments; its future resolves when every row has been scored."""

    segments: Sequence[Segment]
    future: asyncio.Future[np.ndarray]
    rows: np.ndarray | None = None
    remaining: int = 0
    failed: bool = field(default=False)


class BatcherClosed(RuntimeError):
    """Raised to requests still waiting when the server shuts down."""


class MicroBatcher:
    """Gathers segments from concurrent requests into batches of at most ``max_size``.

    A batch is sent as soon as it is full, or ``max_wait_ms`` after its first segment arrived.
    A request larger than ``max_size`` is spread over several batches, so one big request cannot
    make a small one wait for more than one batch. Rows come back per request in input order.
    """

    def __init__(self, predict: PredictFn, max_size: int = 32, max_wait_ms: float = 5.0) -> None:
        if max_size < 1:
            raise ValueError(f"batch max_size must be ≥ 1, got {max_size}")
        self.predict = predict  # public: tests wrap it to simulate a slow model
        self.max_size = max_size
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self._queue: asyncio.Queue[tuple[_Job, int]] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batches = 0  # counters for tests and logs
        self.segments = 0

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collectguard-infer")
        self._task = asyncio.create_task(self._run(), name="collectguard-batcher")

    async def stop(self) -> None:
        """Stop collecting; requests still queued get :class:`BatcherClosed`."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._queue is not None:
            while not self._queue.empty():
                job, _ = self._queue.get_nowait()
                if not job.future.done():
                    job.future.set_exception(BatcherClosed("server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)  # let a running forward pass finish
            self._executor = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def submit(self, segments: Sequence[Segment]) -> np.ndarray:
        """Scores for ``segments`` (shape ``(n, n_labels)``), computed alongside other requests."""
        if not self.running or self._queue is None:
            raise BatcherClosed("batcher is not running")
        if not segments:
            return np.zeros((0, 0), dtype=np.float32)
        job = _Job(segments, asyncio.get_running_loop().create_future(), remaining=len(segments))
        for i in range(len(segments)):
            self._queue.put_nowait((job, i))
        return await job.future

    async def _collect(self) -> list[tuple[_Job, int]]:
        """Wait for a first segment, then take more until full or the wait is over."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            timeout = deadline - loop.time()
            if timeout <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), timeout))
            except TimeoutError:
                break
        # A client that went away cancelled its future: do not spend the model on it.
        return [(job, i) for job, i in batch if not job.future.done()]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch: list[tuple[_Job, int]] = []
            try:
                batch = await self._collect()
                if not batch:
                    continue
                segments = [job.segments[i] for job, i in batch]
                try:
                    probs = await loop.run_in_executor(self._executor, self.predict, segments)
                except Exception:
                    await self._retry_per_job(batch)
                    continue
                self.batches += 1
                self.segments += len(batch)
                self._scatter(batch, probs)
            except asyncio.CancelledError:
                self._fail(batch, BatcherClosed("server is shutting down"))
                raise
            except Exception as e:  # a bug here must fail requests, never leave them hanging
                log.exception("batcher error")
                self._fail(batch, e)

    @staticmethod
    def _fail(batch: list[tuple[_Job, int]], error: BaseException) -> None:
        for job, _ in batch:
            if not job.future.done():
                job.future.set_exception(error)

    async def _retry_per_job(self, batch: list[tuple[_Job, int]]) -> None:
        """A failed batch is re-run request by request, so one bad input fails only its own request."""
        loop = asyncio.get_running_loop()
        by_job: dict[_Job, list[int]] = {}
        for job, i in batch:
            by_job.setdefault(job, []).append(i)
        for job, idx in by_job.items():
            if job.future.done():
                continue
            try:
                probs = await loop.run_in_executor(self._executor, self.predict, [job.segments[i] for i in idx])
            except Exception as e:
                log.warning("inference failed for a request of %d segments: %r", len(job.segments), e)
                job.failed = True
                if not job.future.done():
                    job.future.set_exception(e)
                continue
            self._scatter([(job, i) for i in idx], probs)

    @staticmethod
    def _scatter(batch: list[tuple[_Job, int]], probs: np.ndarray) -> None:
        for (job, i), row in zip(batch, probs, strict=True):
            if job.future.done() or job.failed:
                continue
            if job.rows is None:
                job.rows = np.empty((len(job.segments), probs.shape[1]), dtype=probs.dtype)
            job.rows[i] = row
            job.remaining -= 1
            if job.remaining == 0:
                job.future.set_result(job.rows)
