"""``collectguard relabel --engine ray``: the same :func:`serve.batch.chunks.score_chunk` on Ray Data.

One dataset row is one chunk of calls (so chunk boundaries, batching and therefore scores are
exactly those of the local engine); ``map_batches`` runs a pool of actors that each load the
classifier once. Results stream back to the driver, which commits them as the same atomic parts
as the local engine: the output folder is identical and ``--resume`` works across engines.

Results are collected on the driver rather than with ``Dataset.write_parquet``: on a cluster
that would write to the worker nodes' local disks and lose the per-chunk commit that makes a
killed run resumable.

Where it runs: ``--ray-address ADDRESS`` (or ``relabel.ray_address``, or ``RAY_ADDRESS``) joins an
existing cluster — ``host:port`` of its head (GCS, the port ``ray start --head`` printed) or
``ray://host:10001`` through Ray Client; its nodes need collectguard installed and the model
folder at the same path. Without one, a local Ray instance is started with ``workers + 1`` CPUs.
Actors run the driver's inference settings (backend, quantisation) with one thread each.
Ray is imported only here, so the rest of collectguard does not need it.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from model.config import Settings
from serve.batch.chunks import score_chunk
from serve.batch.engines import load_worker, prepare_backend, worker_settings
from serve.ingest.records import Call


class ChunkScorer:
    """Ray Data class-based UDF: the classifier is loaded once per actor, not per batch."""

    def __init__(self, model: str, batch_size: int, settings: dict[str, Any]) -> None:
        self.clf, self.settings = load_worker(model, settings)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [
            json.dumps(score_chunk(self.clf, json.loads(payload), self.batch_size, self.settings), ensure_ascii=False)
            for payload in batch["calls"]
        ]
        return {"chunk": np.asarray(batch["chunk"], dtype=np.int64), "result": np.asarray(results, dtype=object)}


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail in seconds, naming the address, when nothing listens there (``ray.init`` retries for minutes).

    Only ``host:port`` addresses are probed; ``ray://`` and ``auto`` are left to Ray.
    """
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ValueError(f"--ray-address {address}: cannot connect to a Ray cluster there ({e})") from e


def connect(address: str | None, workers: int) -> bool:
    """Join the cluster at ``address`` (else ``$RAY_ADDRESS``), or start a local instance; True if we did."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        check_reachable(address)
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, TimeoutError) as e:
            raise ValueError(f"--ray-address {address}: cannot connect to a Ray cluster there ({e})") from e
    else:
        ray.init(num_cpus=workers + 1, include_dashboard=False, log_to_driver=False)
    return True


def run_ray(
    chunks: Iterator[tuple[int, list[Call]]], model: Path, workers: int, batch_size: int, on_done: Any,
    settings: Any = None, address: str | None = None,
) -> None:  # fmt: skip
    """Score every chunk on Ray Data and hand each result to ``on_done(chunk, calls, result)``."""
    import ray
    import ray.data

    pending = {chunk: calls for chunk, calls in chunks}
    if not pending:
        return
    settings = settings or Settings()
    prepare_backend(model, settings.inference)  # the export is made once here, not by every actor
    started = connect(address, workers)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the driver's tqdm bar is the one progress display
        items = [{"chunk": k, "calls": json.dumps(calls, ensure_ascii=False)} for k, calls in pending.items()]
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), 10_000))
        ds = ds.map_batches(
            ChunkScorer,
            fn_constructor_kwargs={
                "model": str(Path(model).resolve()),
                "batch_size": batch_size,
                "settings": worker_settings(settings, threads=1),
            },
            batch_size=1,
            batch_format="numpy",
            concurrency=workers,
            num_cpus=1,
        )
        for batch in ds.iter_batches(batch_size=1, batch_format="numpy"):
            for chunk, result in zip(batch["chunk"], batch["result"], strict=True):
                on_done(int(chunk), pending.pop(int(chunk)), json.loads(result))
    finally:
        if started:
            ray.shutdown()
