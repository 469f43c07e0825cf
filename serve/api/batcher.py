"""Fair micro-batching: windows of concurrent requests share forward passes, off the event loop.

A forward pass costs little more for 32 windows than for one, so under load it pays to wait a few
milliseconds for company. All inference runs in ONE dedicated worker thread: the backend already
uses every core inside a pass, and two passes at once would only contend for them. The event loop
only queues work and hands results back, so health checks and new requests are answered while a
batch runs.

Fairness: a request is prepared (normalised, windowed, tokenised) in a thread, then its windows
wait in the request's own queue. Each forward pass takes windows from every waiting request in
turn (round robin, the lead rotating), so a 200,000-character request is spread over many passes
and a one-segment request that arrives meanwhile rides in the next one. Each pass is bounded in
windows (``batch_max_size``) and padded tokens (``batch_max_tokens``), which bounds how long any
request waits for the pass in progress. Length bucketing across requests: the lead's window sets
the pass's width and every other request contributes its window closest to that width, so short
windows travel with short ones whoever sent them.

Back-pressure: at most ``queue_max_windows`` windows wait; a request beyond that is refused at
once (:class:`QueueFull` → 503 with ``Retry-After``) instead of waiting without bound. Every
request has a deadline (``request_timeout_s``, queueing included); past it its remaining windows
are dropped and it fails with :class:`DeadlineExceeded` (→ 504).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from model.preprocess import Segment

log = logging.getLogger("collectguard.batcher")


class WindowModel(Protocol):
    """What the batcher needs of a model (:class:`model.classifier.Classifier` is one)."""

    def prepare(self, segments: Sequence[Segment]) -> Any: ...  # has .ids: list of token-id lists

    def run_windows(self, ids: Sequence[Sequence[int]]) -> np.ndarray: ...

    def combine(self, prepared: Any, window_scores: np.ndarray) -> np.ndarray: ...


class BatcherClosed(RuntimeError):
    """Raised to requests still waiting when the server shuts down."""


class QueueFull(RuntimeError):
    """Too much work is already waiting; ``retry_after`` is the estimated seconds until it drains."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(RuntimeError):
    """A request was not scored within its deadline; its remaining work was dropped."""


@dataclass(eq=False)
class _Job:
    """One request's windows; its future resolves when every window has been scored."""

    prepared: Any
    future: asyncio.Future[np.ndarray]
    lengths: list[int] = field(default_factory=list)  # token lengths of pending windows, ascending
    pending: list[int] = field(default_factory=list)  # window indices, in the same order
    scores: np.ndarray | None = None
    remaining: int = 0

    @classmethod
    def of(cls, prepared: Any, future: asyncio.Future[np.ndarray]) -> _Job:
        order = sorted(range(len(prepared.ids)), key=lambda i: len(prepared.ids[i]))
        return cls(prepared, future, [len(prepared.ids[i]) for i in order], order, remaining=len(order))

    @property
    def live(self) -> bool:
        return not self.future.done()

    def take_near(self, width: int) -> tuple[int, int]:
        """Pop the pending window closest to ``width`` from below (else the shortest above): (index, length)."""
        k = max(bisect.bisect_right(self.lengths, width) - 1, 0)
        return self.pending.pop(k), self.lengths.pop(k)

    def peek_near(self, width: int) -> int:
        k = max(bisect.bisect_right(self.lengths, width) - 1, 0)
        return self.lengths[k]


class MicroBatcher:
    """Schedules the windows of concurrent requests into bounded, fair, length-bucketed passes.

    ``submit(segments)`` returns per-segment scores in input order, exactly as
    ``model.combine(model.prepare(segments), scores)`` would for the whole request at once.
    """

    def __init__(
        self,
        model: WindowModel,
        max_size: int = 32,
        max_wait_ms: float = 5.0,
        max_tokens: int = 512,
        queue_max_windows: int = 8192,
        timeout_s: float = 60.0,
    ) -> None:
        if max_size < 1 or max_tokens < 1 or queue_max_windows < 1 or timeout_s <= 0:
            raise ValueError("batcher limits must be positive")
        self.model = model
        self.predict = model.run_windows  # public: tests wrap it to simulate a slow or failing model
        self.max_size, self.max_tokens = max_size, max_tokens
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.queue_max_windows, self.timeout_s = queue_max_windows, timeout_s
        self._jobs: deque[_Job] = deque()
        self._waiting = 0  # windows queued, not yet in a pass
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._rate = 0.0  # windows per second, moving average: for Retry-After
        self.batches = 0  # counters for tests and logs
        self.windows = 0

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collectguard-infer")
        self._task = asyncio.create_task(self._run(), name="collectguard-batcher")

    async def stop(self) -> None:
        """Stop scheduling; requests still queued get :class:`BatcherClosed`."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for job in self._jobs:
            if job.live:
                job.future.set_exception(BatcherClosed("server is shutting down"))
        self._jobs.clear()
        self._waiting = 0
        if self._executor is not None:
            self._executor.shutdown(wait=True)  # let a running forward pass finish
            self._executor = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def queued_windows(self) -> int:
        return self._waiting

    # -- requests -------------------------------------------------------------------------------
    async def submit(self, segments: Sequence[Segment]) -> np.ndarray:
        """Scores for ``segments`` (shape ``(n, n_labels)``), computed alongside other requests.

        Raises :class:`QueueFull` when admitting the request would exceed ``queue_max_windows``
        (a request alone on an empty queue is always admitted, however large), and
        :class:`DeadlineExceeded` when it is not done within ``timeout_s`` of arriving.
        """
        if not self.running or self._arrived is None:
            raise BatcherClosed("batcher is not running")
        if not segments:
            return np.zeros((0, 0), dtype=np.float32)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        prepared = await asyncio.to_thread(self.model.prepare, segments)  # tokenising 200k chars is not free
        n = len(prepared.ids)
        if self._waiting and self._waiting + n > self.queue_max_windows:
            retry = self.retry_after(n)
            raise QueueFull(
                f"server busy: {self._waiting} windows are queued and this request adds {n} (limit "
                f"{self.queue_max_windows}); retry in about {retry} s or send fewer segments",
                retry,
            )
        job = _Job.of(prepared, loop.create_future())
        self._jobs.append(job)
        self._waiting += n
        self._arrived.set()
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.shield(job.future)
        except TimeoutError:
            self._drop(job)
            done = n - job.remaining
            raise DeadlineExceeded(
                f"request not scored within its deadline of {self.timeout_s:g} s ({done} of {n} windows "
                f"done); the server is busy: retry later or send fewer segments"
            ) from None
        except asyncio.CancelledError:  # the client went away: do not spend the model on it
            self._drop(job)
            raise
        assert job.scores is not None
        return self.model.combine(prepared, job.scores)

    def retry_after(self, extra: int = 0) -> int:
        """Seconds until the queue (plus ``extra`` windows) is likely drained, 1–60."""
        if self._rate <= 0:
            return 1
        return int(min(60, max(1, math.ceil((self._waiting + extra) / self._rate))))

    def _drop(self, job: _Job) -> None:
        """Forget a request's unscheduled windows (timeout, disconnect)."""
        self._waiting -= len(job.pending)
        job.pending.clear()
        job.lengths.clear()
        if not job.future.done():
            job.future.cancel()

    # -- scheduling -----------------------------------------------------------------------------
    def _pick(self) -> list[tuple[_Job, int]]:
        """One pass: round robin over live requests, each adding its window nearest the pass width."""
        self._jobs = deque(j for j in self._jobs if j.live and j.pending)
        if not self._jobs:
            return []
        lead = self._jobs[0]
        self._jobs.rotate(-1)  # the next pass is led by the next request
        first, width = lead.take_near(0)  # the lead's shortest window sets the width
        picks = [(lead, first)]
        progress = True
        while progress and len(picks) < self.max_size:
            progress = False
            for job in self._jobs:  # the lead is last in this order now
                if not job.pending or len(picks) >= self.max_size:
                    continue
                new_width = max(width, job.peek_near(width))
                if (len(picks) + 1) * new_width > self.max_tokens:
                    continue  # too wide for this pass; a shorter window of another request may fit
                i, length = job.take_near(width)
                picks.append((job, i))
                width = max(width, length)
                progress = True
        self._waiting -= len(picks)
        return picks

    async def _wait_for_company(self) -> None:
        """Wait for a first window, then up to ``max_wait`` for the pass to fill."""
        assert self._arrived is not None
        while not self._waiting:
            self._arrived.clear()
            await self._arrived.wait()
        loop = asyncio.get_running_loop()
        until = loop.time() + self.max_wait
        while self._waiting < self.max_size and (left := until - loop.time()) > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            picks: list[tuple[_Job, int]] = []
            try:
                await self._wait_for_company()
                picks = self._pick()
                if not picks:
                    continue
                ids = [job.prepared.ids[i] for job, i in picks]
                t0 = time.perf_counter()
                try:
                    scores = await loop.run_in_executor(self._executor, self.predict, ids)
                except Exception:
                    await self._retry_per_job(picks)
                    continue
                self._count(len(picks), time.perf_counter() - t0)
                self._scatter(picks, scores)
            except asyncio.CancelledError:
                self._fail(picks, BatcherClosed("server is shutting down"))
                raise
            except Exception as e:  # a bug here must fail requests, never leave them hanging
                log.exception("batcher error")
                self._fail(picks, e)

    def _count(self, n: int, seconds: float) -> None:
        self.batches += 1
        self.windows += n
        if seconds > 0:
            rate = n / seconds
            self._rate = rate if self._rate <= 0 else 0.8 * self._rate + 0.2 * rate

    def _fail(self, picks: list[tuple[_Job, int]], error: BaseException) -> None:
        for job, _ in picks:
            if job.live:
                self._waiting -= len(job.pending)
                job.pending.clear()
                job.lengths.clear()
                job.future.set_exception(error)

    async def _retry_per_job(self, picks: list[tuple[_Job, int]]) -> None:
        """A failed pass is re-run request by request, so one bad input fails only its own request."""
        loop = asyncio.get_running_loop()
        by_job: dict[_Job, list[int]] = {}
        for job, i in picks:
            by_job.setdefault(job, []).append(i)
        for job, idx in by_job.items():
            if not job.live:
                continue
            try:
                scores = await loop.run_in_executor(self._executor, self.predict, [job.prepared.ids[i] for i in idx])
            except Exception as e:
                log.warning("inference failed for a request of %d windows: %r", len(job.prepared.ids), e)
                self._fail([(job, idx[0])], e)
                continue
            self._scatter([(job, i) for i in idx], scores)

    @staticmethod
    def _scatter(picks: list[tuple[_Job, int]], scores: np.ndarray) -> None:
        for (job, i), row in zip(picks, scores, strict=True):
            if not job.live:
                continue
            if job.scores is None:
                job.scores = np.empty((len(job.prepared.ids), scores.shape[1]), dtype=scores.dtype)
            job.scores[i] = row
            job.remaining -= 1
            if job.remaining == 0:
                job.future.set_result(job.scores)
