"""The local relabel engines: one process, or ``--workers N`` spawned processes.

Both hand every scored chunk to ``on_done(chunk, calls, result)`` in the driver, which commits
it; the Ray engine (:mod:`serve.batch.ray_engine`) follows the same contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from model.config import InferenceConfig, Settings
from serve.batch.chunks import ChunkResult, score_chunk
from serve.ingest.records import Call

OnDone = Callable[[int, list[Call], ChunkResult], None]


def run_local(
    chunks: Iterator[tuple[int, list[Call]]], clf: Any, batch_size: int, on_done: OnDone, settings: Any = None
) -> None:
    for chunk, calls in chunks:
        on_done(chunk, calls, score_chunk(clf, calls, batch_size, settings))


_WORKER: tuple[Any, Settings] | None = None  # (classifier, settings) of a pool worker process


def worker_settings(settings: Settings | None, threads: int) -> dict[str, Any]:
    """The driver's settings for a worker with ``threads`` threads, as a plain dict.

    Workers run what the driver was told to run — the same backend, masking, call checks and
    evidence — so every engine writes the same outputs; a dict travels to spawned processes and
    Ray actors alike. Their ONNX threads never busy-wait: workers share the cores with each other
    and the driver, and spinning threads would steal them.
    """
    settings = settings or Settings()
    inference = settings.inference.model_copy(update={"threads": threads, "onnx_spin": False})
    return settings.model_copy(update={"inference": inference}).model_dump(mode="json")


def load_worker(model: str, settings: dict[str, Any]) -> tuple[Any, Settings]:
    """A worker's classifier and settings, from :func:`worker_settings`' dict (loaded once per worker)."""
    from model.classifier import Classifier

    parsed = Settings.model_validate(settings)
    return Classifier.load(model, config=parsed.inference), parsed


def prepare_backend(model: Path, inference: InferenceConfig) -> None:
    """Load once in the driver so the ONNX export is made (and cached) before workers start:
    otherwise every worker would export the same network at once on first use."""
    from model.classifier import Classifier

    if inference.backend != "torch":
        Classifier.load(model, config=inference)


def _init_worker(model: str, settings: dict[str, Any]) -> None:
    """Process-pool initializer: each worker loads the model once."""
    global _WORKER
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent handles it
    _WORKER = load_worker(model, settings)


def _score_in_worker(calls: list[Call], batch_size: int) -> ChunkResult:
    clf, settings = _WORKER
    return score_chunk(clf, calls, batch_size, settings)


def run_pool(
    chunks: Iterator[tuple[int, list[Call]]],
    model: Path,
    workers: int,
    batch_size: int,
    on_done: OnDone,
    settings: Settings | None = None,
) -> None:
    """``--workers N`` with the local engine: N spawned processes, at most 2N chunks in flight."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from model.machine import physical_cores

    settings = settings or Settings()
    prepare_backend(model, settings.inference)
    args = (str(model), worker_settings(settings, max(1, physical_cores() // workers)))
    with ProcessPoolExecutor(
        workers, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=args
    ) as ex:
        inflight: dict[Any, tuple[int, list[Call]]] = {}
        try:
            for chunk, calls in chunks:
                inflight[ex.submit(_score_in_worker, calls, batch_size)] = (chunk, calls)
                while len(inflight) >= 2 * workers:
                    finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        on_done(*inflight.pop(fut), fut.result())
            for fut in list(inflight):
                on_done(*inflight.pop(fut), fut.result())
        except BaseException:
            ex.shutdown(wait=False, cancel_futures=True)
            raise
