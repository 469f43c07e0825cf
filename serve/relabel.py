"""``collectguard relabel``: score archives of transcribed calls into Parquet/JSONL, resumably.

Flow: readers → chunks of ``relabel.chunk_calls`` calls → :func:`score_chunk` (one
``predict_proba`` per chunk, so the classifier's length bucketing sees many segments) → one
committed part per chunk under ``OUT/parts/`` → the final files assembled from all parts.

Why parts: a relabeling run over a large archive takes hours and gets killed. Each part is
written to a temporary name and renamed (atomic), the calls part last, so a chunk is either
fully committed or absent; ``--resume`` reads the committed parts, skips those calls and never
writes a row twice. The final files are rebuilt from the parts in input order on every run,
so a killed-and-resumed run ends byte-for-byte with the rows of an uninterrupted one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model.labels import COMPLIANT, VIOLATIONS
from model.preprocess import PREPROCESS_VERSION
from serve.readers import Call, ReadError, list_files, read_inputs
from serve.summary import summarize_call

SCORE_COLUMNS: tuple[str, ...] = tuple(f"score_{label}" for label in (*VIOLATIONS, COMPLIANT))
PARTS = "parts"
SEGMENTS_FILE, CALLS_FILE, MANIFEST_FILE, ERRORS_FILE = (
    "segments.parquet",
    "calls.jsonl",
    "manifest.json",
    "errors.jsonl",
)
ChunkResult = dict[str, list[dict[str, Any]]]  # {"segments": rows, "calls": rows, "errors": records}
OnDone = Callable[[int, list[Call], ChunkResult], None]


def segments_schema():
    """The columns of ``segments.parquet`` (and of every segments part)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("call_id", pa.string()),
            ("segment", pa.int32()),
            ("start", pa.float64()),
            ("end", pa.float64()),
            ("speaker", pa.string()),
            ("listener", pa.string()),
            ("text", pa.string()),
            *[(c, pa.float64()) for c in SCORE_COLUMNS],
            ("labels", pa.list_(pa.string())),
            ("label", pa.string()),
            ("model_version", pa.string()),
            ("preprocess_version", pa.string()),
        ]
    )


# -- scoring: the one function both engines run -------------------------------------------------
def score_chunk(clf: Any, calls: list[Call], batch_size: int | None = None) -> ChunkResult:
    """Score a chunk of calls in one ``predict_proba`` call; return segment rows, call rows, errors.

    If the chunk as a whole fails, calls are retried one by one so a single pathological call
    becomes an error record instead of taking its neighbours down with it.
    """
    flat = [seg for call in calls for seg in call["segments"]]
    try:
        results = clf.decide(clf.predict_proba(flat, batch_size))
    except Exception as e:
        if len(calls) == 1:
            call = calls[0]
            err = ReadError(call["source"], call.get("position"), f"call {call['call_id']}: scoring failed: {e}")
            return {"segments": [], "calls": [], "errors": [err.as_dict()]}
        out: ChunkResult = {"segments": [], "calls": [], "errors": []}
        for call in calls:
            one = score_chunk(clf, [call], batch_size)
            for key in out:
                out[key].extend(one[key])
        return out
    seg_rows, call_rows = [], []
    pos = 0
    for call in calls:
        segs = call["segments"]
        res = results[pos : pos + len(segs)]
        pos += len(segs)
        for i, (seg, r) in enumerate(zip(segs, res, strict=True)):
            seg_rows.append(
                {
                    "call_id": call["call_id"],
                    "segment": i,
                    **{k: seg[k] for k in ("start", "end", "speaker", "listener", "text")},
                    **{f"score_{label}": r["scores"][label] for label in (*VIOLATIONS, COMPLIANT)},
                    "labels": list(r["labels"]),
                    "label": r["label"],
                    "model_version": clf.version,
                    "preprocess_version": clf.preprocess_version,
                }
            )
        call_rows.append(
            {
                "call_id": call["call_id"],
                **summarize_call(segs, res),
                "metadata": call["metadata"],
                "source": call["source"],
                "model_version": clf.version,
                "preprocess_version": clf.preprocess_version,
            }
        )
    return {"segments": seg_rows, "calls": call_rows, "errors": []}


# -- atomic files and parts ------------------------------------------------------------------------
def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, fsync, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_jsonl(rows: Iterable[dict[str, Any]]) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    return write


def _write_parquet(table) -> Callable[[Path], None]:
    import pyarrow.parquet as pq

    return lambda tmp: pq.write_table(table, tmp)


class PartStore:
    """Committed chunks under ``OUT/parts``: ``chunk-N.segments.parquet`` + ``chunk-N.calls.jsonl``.

    The calls part is renamed into place last, so its presence is the commit marker: a segments
    part without one is the debris of a killed run and is removed on recovery.
    """

    def __init__(self, out: Path, model_version: str) -> None:
        self.dir = out / PARTS
        self.model_version = model_version
        self.next_id = 0

    def _chunks(self) -> list[int]:
        return sorted(int(p.name.split(".")[0].split("-")[1]) for p in self.dir.glob("chunk-*.calls.jsonl"))

    def _paths(self, chunk: int) -> tuple[Path, Path]:
        return self.dir / f"chunk-{chunk:06d}.segments.parquet", self.dir / f"chunk-{chunk:06d}.calls.jsonl"

    def recover(self) -> tuple[set[str], int]:
        """Clean debris, drop parts of another model/preprocessing version; return (done call ids, stale parts)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.dir.glob(".*.tmp-*"):
            tmp.unlink()
        done: set[str] = set()
        stale = 0
        committed = set(self._chunks())
        for seg_part in self.dir.glob("chunk-*.segments.parquet"):
            if int(seg_part.name.split(".")[0].split("-")[1]) not in committed:
                seg_part.unlink()
        for chunk in sorted(committed):
            seg_part, calls_part = self._paths(chunk)
            rows = [json.loads(line) for line in calls_part.read_text(encoding="utf-8").splitlines() if line]
            if any(
                r["model_version"] != self.model_version or r["preprocess_version"] != PREPROCESS_VERSION for r in rows
            ):
                seg_part.unlink(missing_ok=True)
                calls_part.unlink()
                stale += 1
                continue
            done.update(r["call_id"] for r in rows)
        self.next_id = max(committed, default=-1) + 1
        return done, stale

    def commit(self, chunk: int, result: ChunkResult) -> None:
        import pyarrow as pa

        seg_part, calls_part = self._paths(chunk)
        _atomic_write(seg_part, _write_parquet(pa.Table.from_pylist(result["segments"], schema=segments_schema())))
        _atomic_write(calls_part, _write_jsonl(result["calls"]))

    def assemble(self, out: Path, order: dict[str, int]) -> tuple[int, int]:
        """Rebuild the final files from every committed part, in input order; returns (calls, segments)."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        chunks = self._chunks()
        calls: list[dict[str, Any]] = []
        tables = [segments_schema().empty_table()]
        for chunk in chunks:
            seg_part, calls_part = self._paths(chunk)
            calls.extend(json.loads(line) for line in calls_part.read_text(encoding="utf-8").splitlines() if line)
            tables.append(pq.read_table(seg_part, schema=segments_schema()))
        # Calls no longer in the inputs (resumed with other inputs) go last, in commit order.
        rank = {c["call_id"]: order.get(c["call_id"], len(order) + i) for i, c in enumerate(calls)}
        calls.sort(key=lambda c: rank[c["call_id"]])
        table = pa.concat_tables(tables)
        keys = pa.array([rank[c] for c in table.column("call_id").to_pylist()], type=pa.int64())
        table = table.take(
            pc.sort_indices(table.append_column("_rank", keys), [("_rank", "ascending"), ("segment", "ascending")])
        )
        _atomic_write(out / SEGMENTS_FILE, _write_parquet(table))
        _atomic_write(out / CALLS_FILE, _write_jsonl(calls))
        return len(calls), table.num_rows


# -- engines -------------------------------------------------------------------------------------
def _run_local(chunks: Iterator[tuple[int, list[Call]]], clf: Any, batch_size: int, on_done: OnDone) -> None:
    for chunk, calls in chunks:
        on_done(chunk, calls, score_chunk(clf, calls, batch_size))


_WORKER_CLF: Any = None


def _init_worker(model: str, threads: int) -> None:
    """Process-pool initializer: each worker loads the model once."""
    global _WORKER_CLF
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent handles it
    from model.classifier import Classifier
    from model.config import InferenceConfig

    _WORKER_CLF = Classifier.load(model, config=InferenceConfig(threads=threads))


def _score_in_worker(calls: list[Call], batch_size: int) -> ChunkResult:
    return score_chunk(_WORKER_CLF, calls, batch_size)


def _run_pool(
    chunks: Iterator[tuple[int, list[Call]]], model: Path, workers: int, batch_size: int, on_done: OnDone
) -> None:
    """``--workers N`` with the local engine: N spawned processes, at most 2N chunks in flight."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from model.config import physical_cores

    threads = max(1, physical_cores() // workers)
    args = (str(model), threads)
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


# -- the command -----------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_out(out: Path, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if not resume and out.is_dir() and any(out.iterdir()):
        raise ValueError(
            f"--out {out} is not empty; pass --resume to continue the run saved there, or choose a new or empty folder"
        )
    out.mkdir(parents=True, exist_ok=True)


def _estimate_calls(files: list[Path]) -> int | None:
    """Total calls when cheap to count (plain JSONL lines and subtitle files), else None."""
    total = 0
    from serve.readers import is_gzip

    for f in files:
        name = f.name.lower()
        if not f.is_file() or (not name.endswith(".gz") and is_gzip(f)):  # never read a pipe twice
            return None
        if name.endswith((".srt", ".vtt", ".srt.gz", ".vtt.gz")):
            total += 1
        elif name.endswith((".jsonl", ".ndjson")):
            with open(f, "rb") as fh:
                total += sum(1 for line in fh if line.strip())
        else:
            return None
    return total


def run(args: argparse.Namespace) -> int:
    """Entry point of ``collectguard relabel`` (see model/cli.py for the arguments)."""
    from tqdm import tqdm

    from model.artifact import read_manifest
    from model.cli import load_settings
    from model.config import SHIPPED_MODEL_DIR

    t0 = time.perf_counter()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    settings = load_settings(args)
    cfg = settings.relabel
    engine = args.engine or cfg.engine
    batch_size = args.batch_size or cfg.batch_size
    workers = args.workers or cfg.workers
    if batch_size < 1 or workers < 1:
        raise ValueError("--batch-size and --workers must be at least 1")
    out: Path = args.out
    files = list_files(args.inputs, exclude=[out])  # raises early for a mistyped input
    model_dir = args.model or settings.serve.model_dir or SHIPPED_MODEL_DIR
    meta = read_manifest(model_dir)
    _check_out(out, args.resume)
    store = PartStore(out, meta.version)
    done, stale = store.recover()
    if stale:
        print(f"relabel: {stale} saved chunk(s) from another model version will be redone", file=sys.stderr)

    errors: list[dict[str, Any]] = []
    order: dict[str, int] = {}
    counts = {"scored_calls": 0, "scored_segments": 0, "resumed_calls": 0}
    total = _estimate_calls(files)

    def chunks() -> Iterator[tuple[int, list[Call]]]:
        """Read every input once; drop duplicates and already-done calls; cut the rest into chunks."""
        pending: list[Call] = []
        sources: dict[str, str] = {}
        for item in read_inputs(args.inputs, args.format, cfg.speaker_map, exclude=[out]):
            if isinstance(item, ReadError):
                errors.append(item.as_dict())
                continue
            cid = item["call_id"]
            if cid in order:
                reason = f"duplicate call_id {cid!r} (first read from {sources[cid]}); this copy is skipped"
                errors.append(ReadError(item["source"], item.get("position"), reason).as_dict())
                continue
            order[cid], sources[cid] = len(order), item["source"]
            if cid in done:
                counts["resumed_calls"] += 1
                bar.update(1)
                continue
            pending.append(item)
            if len(pending) >= cfg.chunk_calls:
                yield store.next_id, pending
                store.next_id += 1
                pending = []
        if pending:
            yield store.next_id, pending
            store.next_id += 1

    def on_done(chunk: int, calls: list[Call], result: ChunkResult) -> None:
        store.commit(chunk, result)
        errors.extend(result["errors"])
        counts["scored_calls"] += len(result["calls"])
        counts["scored_segments"] += len(result["segments"])
        bar.update(len(calls))
        rate = counts["scored_segments"] / max(time.perf_counter() - t_score, 1e-9)
        bar.set_postfix_str(f"{rate:.0f} seg/s", refresh=False)

    clf = None
    if engine == "local" and workers == 1:
        from model.classifier import Classifier

        clf = Classifier.load(model_dir, config=settings.inference)  # loaded once, before the clock starts
    t_score = time.perf_counter()
    bar = tqdm(total=total, unit="call", desc="relabel", dynamic_ncols=True, file=sys.stderr, disable=None)
    try:
        if engine == "ray":
            from serve.ray_engine import run_ray

            run_ray(chunks(), model_dir, workers, batch_size, on_done)
        elif workers > 1:
            _run_pool(chunks(), model_dir, workers, batch_size, on_done)
        else:
            _run_local(chunks(), clf, batch_size, on_done)
    except KeyboardInterrupt:
        bar.close()
        print(
            f"\nrelabel: interrupted; committed chunks are kept in {out / PARTS}; rerun with --resume", file=sys.stderr
        )
        return 130
    bar.close()
    t_assemble = time.perf_counter()
    n_calls, n_segments = store.assemble(out, order)
    _atomic_write(out / ERRORS_FILE, _write_jsonl(errors))
    finished = time.perf_counter()
    score_s = t_assemble - t_score
    manifest = {
        "command": "collectguard relabel",
        "inputs": [
            {"path": str(f), "bytes": f.stat().st_size, "sha256": sha256_file(f)}
            if f.is_file()
            else {"path": str(f), "bytes": None, "sha256": None}  # a pipe: already consumed
            for f in files
        ],
        "format": args.format,
        "model": {
            "name": meta.name,
            "version": meta.version,
            "path": str(model_dir),
            "weights_sha256": meta.weights_sha256,
        },
        "preprocess_version": PREPROCESS_VERSION,
        "thresholds": dict(meta.thresholds),
        "engine": engine,
        "workers": workers,
        "batch_size": batch_size,
        "chunk_calls": cfg.chunk_calls,
        "resumed": bool(args.resume),
        "counts": {"calls": n_calls, "segments": n_segments, "errors": len(errors), **counts},
        "timings": {
            "started_at": started,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "read_and_score_s": round(score_s, 3),
            "assemble_s": round(finished - t_assemble, 3),
            "total_s": round(finished - t0, 3),
            "segments_per_s": round(counts["scored_segments"] / score_s, 1) if score_s > 0 else None,
        },
    }
    _atomic_write(
        out / MANIFEST_FILE,
        lambda tmp: tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"),
    )
    print(
        f"relabel: {n_calls} calls, {n_segments} segments, {len(errors)} errors"
        f"{f' (see {out / ERRORS_FILE})' if errors else ''} → {out}",
        file=sys.stderr,
    )
    return 1 if args.fail_on_error and errors else 0
