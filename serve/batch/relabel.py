"""``collectguard relabel``: score archives of transcribed calls into Parquet/JSONL, resumably.

Flow, as named steps of :func:`run`: :func:`plan` (settings, inputs, model, output folder) →
:class:`ChunkReader` (readers → chunks of ``relabel.chunk_calls`` calls) → :func:`score_chunks`
(an engine runs :func:`serve.batch.chunks.score_chunk` on each; :class:`Progress` commits every
result as a part under ``OUT/parts/``) → :func:`finalise` (the final files assembled from all
parts, ``contacts.jsonl`` across calls, errors and the run manifest).

Why parts: a relabeling run over a large archive takes hours and gets killed. Each part is
written to a temporary name and renamed (atomic), the calls part last, so a chunk is either
fully committed or absent; ``--resume`` reads the committed parts, skips those calls and never
writes a row twice. The final files are rebuilt from the parts in input order on every run,
so a killed-and-resumed run ends byte-for-byte with the rows of an uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model.artifact import Manifest, read_manifest
from model.config import RelabelConfig, Settings, model_path
from model.files import atomic_write, sha256_file
from model.machine import describe
from model.preprocess import PREPROCESS_VERSION
from model.privacy import mask_value
from serve.batch import engines
from serve.batch.chunks import ChunkResult
from serve.batch.parts import CALLS_FILE, PARTS, PartStore, write_jsonl
from serve.calls.contacts import contact_rows
from serve.ingest import Call, FileRecord, IngestOptions, ReadError, ingest, parse_role_flags
from serve.ingest.files import list_files

MANIFEST_FILE, ERRORS_FILE, CONTACTS_FILE = "manifest.json", "errors.jsonl", "contacts.jsonl"


def read_jsonl_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file this run wrote."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def metadata_errors(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One error record per bad metadata value; the call itself was scored without that check."""
    return [
        ReadError(
            c["source"], c.get("position"),
            f"call {c['call_id']}: {prob['field']}: {prob['reason']} (scored; checks that need it are null)",
        ).as_dict()
        for c in calls
        for prob in c.get("metadata_problems", [])
    ]  # fmt: skip


@dataclass
class Plan:
    """Everything a run is decided by, resolved and checked before any work is done."""

    inputs: list[Path]
    files: list[Path]
    out: Path
    format: str
    resume: bool
    engine: str
    workers: int
    batch_size: int
    model_dir: Path
    model: Manifest
    settings: Settings
    reading: IngestOptions

    @property
    def config(self) -> RelabelConfig:
        return self.settings.relabel


def plan(args: argparse.Namespace) -> Plan:
    """Resolve settings and flags; fail early on a mistyped input, a bad model or a busy ``--out``."""
    settings = Settings.from_args(args)
    cfg = settings.relabel
    batch_size = args.batch_size or cfg.batch_size
    workers = args.workers or cfg.workers
    if batch_size < 1 or workers < 1:
        raise ValueError("--batch-size and --workers must be at least 1")
    engine = args.engine or cfg.engine
    if getattr(args, "ray_address", None):
        if engine != "ray":
            raise ValueError("--ray-address needs --engine ray")
        cfg.ray_address = args.ray_address
    out: Path = args.out
    files = list_files(args.inputs, exclude=[out])  # raises early for a mistyped input
    model_dir = model_path(args.model or settings.serve.model_dir)
    model = read_manifest(model_dir)
    reading = IngestOptions.from_settings(settings, args.format, args.encoding, parse_role_flags(args.role))
    _check_out(out, args.resume)
    return Plan(
        inputs=list(args.inputs), files=files, out=out, format=args.format, resume=bool(args.resume),
        engine=engine, workers=workers, batch_size=batch_size, model_dir=model_dir,
        model=model, settings=settings, reading=reading,
    )  # fmt: skip


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
    from serve.ingest.files import is_gzip

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


class Progress:
    """The driver's side of scoring: commits each scored chunk, counts, and shows one progress bar."""

    def __init__(self, store: PartStore, total: int | None) -> None:
        from tqdm import tqdm

        self.store = store
        self.errors: list[dict[str, Any]] = []
        self.counts = {"scored_calls": 0, "scored_segments": 0, "resumed_calls": 0}
        self.started = time.perf_counter()
        self.bar = tqdm(total=total, unit="call", desc="relabel", dynamic_ncols=True, file=sys.stderr, disable=None)

    def resumed(self) -> None:
        """A call already committed by an earlier run."""
        self.counts["resumed_calls"] += 1
        self.bar.update(1)

    def __call__(self, chunk: int, calls: list[Call], result: ChunkResult) -> None:
        """``on_done`` of every engine: commit the chunk's parts, then count it."""
        self.store.commit(chunk, result)
        self.errors.extend(result["errors"])
        self.counts["scored_calls"] += len(result["calls"])
        self.counts["scored_segments"] += len(result["segments"])
        self.bar.update(len(calls))
        rate = self.counts["scored_segments"] / max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix_str(f"{rate:.0f} seg/s", refresh=False)

    def close(self) -> None:
        self.bar.close()


@dataclass
class ChunkReader:
    """Reads every input once; drops duplicates and already-done calls; cuts the rest into chunks.

    Iterating yields ``(chunk id, calls)``; unreadable input is recorded in ``errors`` (shared
    with :class:`Progress`, so the errors file keeps the order they were met in) and the input
    order of every call id in ``order`` (the final files follow it).
    """

    plan: Plan
    store: PartStore
    done: set[str]
    progress: Progress
    errors: list[dict[str, Any]] = field(default_factory=list)
    order: dict[str, int] = field(default_factory=dict)
    files: dict[str, FileRecord] = field(default_factory=dict)
    roles: dict[str, int] = field(default_factory=dict)

    def _count_roles(self, call: Call) -> None:
        """Role outcomes over every unique call read (resumed ones too), for the manifest."""
        r = call["roles"]
        keys = [f"method_{r['method']}"]
        keys += ["uncertain"] if r["status"] == "uncertain" else []
        keys += ["one_speaker"] if r["n_speakers"] == 1 and r["method"] != "none" else []
        keys += ["many_speakers"] if r["n_speakers"] > 2 else []
        for key in keys:
            self.roles[key] = self.roles.get(key, 0) + 1

    def _calls(self) -> Iterator[Call]:
        sources: dict[str, str] = {}
        p = self.plan
        for item in ingest(p.inputs, p.reading, exclude=[p.out]):
            if isinstance(item, FileRecord):
                self.files[item.path] = item
                continue
            if isinstance(item, ReadError):
                self.errors.append(item.as_dict())
                continue
            cid = item["call_id"]
            if cid in self.order:
                reason = f"duplicate call_id {cid!r} (first read from {sources[cid]}); this copy is skipped"
                self.errors.append(ReadError(item["source"], item.get("position"), reason).as_dict())
                continue
            self.order[cid], sources[cid] = len(self.order), item["source"]
            self._count_roles(item)
            if cid in self.done:
                self.progress.resumed()
                continue
            yield item

    def __iter__(self) -> Iterator[tuple[int, list[Call]]]:
        pending: list[Call] = []
        for call in self._calls():
            pending.append(call)
            if len(pending) >= self.plan.config.chunk_calls:
                yield self._next_chunk(pending)
                pending = []
        if pending:
            yield self._next_chunk(pending)

    def _next_chunk(self, calls: list[Call]) -> tuple[int, list[Call]]:
        chunk = self.store.next_id
        self.store.next_id += 1
        return chunk, calls


def load_local_classifier(p: Plan) -> Any:
    """The in-process model of the single-worker local engine (the other engines load their own)."""
    if p.engine != "local" or p.workers != 1:
        return None
    from model.classifier import Classifier

    return Classifier.load(p.model_dir, config=p.settings.inference)


def score_chunks(p: Plan, chunks: ChunkReader, progress: Progress, clf: Any) -> None:
    """Run the chosen engine over every chunk; each result goes to ``progress`` (which commits it)."""
    if p.engine == "ray":
        from serve.batch.ray_engine import run_ray

        address = p.config.ray_address
        run_ray(iter(chunks), p.model_dir, p.workers, p.batch_size, progress, p.settings, address)
    elif p.workers > 1:
        engines.run_pool(iter(chunks), p.model_dir, p.workers, p.batch_size, progress, p.settings)
    else:
        engines.run_local(iter(chunks), clf, p.batch_size, progress, p.settings)


def finalise(
    p: Plan, store: PartStore, chunks: ChunkReader, progress: Progress, started_at: str, t0: float
) -> tuple[int, int, list[dict[str, Any]]]:
    """Assemble the final files from every committed part, write errors and the run manifest."""
    t_assemble = time.perf_counter()
    n_calls, n_segments = store.assemble(p.out, chunks.order)
    calls = read_jsonl_rows(p.out / CALLS_FILE)
    atomic_write(p.out / CONTACTS_FILE, write_jsonl(contact_rows((c["contact"] for c in calls), p.settings.calls)))
    # Read and scoring errors in the order they were met, then bad metadata in call order (rebuilt
    # from the committed calls, so a resumed run reports what an uninterrupted one does).
    errors = progress.errors + metadata_errors(calls)
    if p.settings.privacy.mask_pii:
        errors = [mask_value(e) for e in errors]
    atomic_write(p.out / ERRORS_FILE, write_jsonl(errors))
    finished = time.perf_counter()
    score_s = t_assemble - progress.started
    counts = progress.counts
    decided_by = scoring_settings(p)
    manifest = {
        "command": "collectguard relabel",
        "inputs": [_input_entry(f, chunks.files.get(str(f))) for f in p.files],
        **decided_by,
        "roles": {**decided_by["roles"], "counts": chunks.roles},
        "model": {**decided_by["model"], "path": str(p.model_dir)},
        "engine": p.engine,
        "machine": describe(),  # the driver's; int8 decisions can differ between CPUs (model/machine.py)
        "workers": p.workers,
        "batch_size": p.batch_size,
        "chunk_calls": p.config.chunk_calls,
        "resumed": p.resume,
        "counts": {"calls": n_calls, "segments": n_segments, "errors": len(errors), **counts},
        "timings": {
            "started_at": started_at,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "read_and_score_s": round(score_s, 3),
            "assemble_s": round(finished - t_assemble, 3),
            "total_s": round(finished - t0, 3),
            "segments_per_s": round(counts["scored_segments"] / score_s, 1) if score_s > 0 else None,
        },
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    atomic_write(p.out / MANIFEST_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return n_calls, n_segments, errors


def _input_entry(f: Path, record: FileRecord | None) -> dict[str, Any]:
    """One input file in the manifest: size and hash, and how it was read (format, encoding, shape)."""
    entry: dict[str, Any] = (
        {"path": str(f), "bytes": f.stat().st_size, "sha256": sha256_file(f)}
        if f.is_file()
        else {"path": str(f), "bytes": None, "sha256": None}  # a pipe: already consumed
    )
    if record is not None:
        entry.update({k: v for k, v in record.as_dict().items() if k != "path"})
    return entry


def scoring_settings(p: Plan) -> dict[str, Any]:
    """Everything besides the input that decides a relabeled row: the model's weights and thresholds,
    how files are read, call rules, masking, explanations, the backend. Written to the manifest, and
    kept with the saved parts so that ``--resume`` after any of them changed (a recalibrated model keeps
    its version) redoes those parts instead of mixing two settings in one output."""
    return {
        "format": p.format,
        "encoding": p.reading.encoding,
        "roles": {"mode": p.reading.roles, "margin": p.reading.role_margin},
        "model": {"name": p.model.name, "version": p.model.version, "weights_sha256": p.model.weights_sha256},
        "preprocess_version": PREPROCESS_VERSION,
        "thresholds": dict(p.model.thresholds),
        "privacy": p.settings.privacy.model_dump(mode="json"),
        "calls": p.settings.calls.model_dump(mode="json"),
        "explain": p.settings.explain.model_dump(mode="json"),
        "backend": p.settings.inference.backend,
    }


def run(args: argparse.Namespace) -> int:
    """Entry point of ``collectguard relabel`` (see collectguard/cli.py for the arguments)."""
    t0 = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    p = plan(args)
    store = PartStore(p.out, p.model.version, scoring_settings(p))
    done, stale = store.recover()
    if stale:
        why = f"made with other {', '.join(store.changed)}" if store.changed else "from another model version"
        print(f"relabel: {stale} saved chunk(s) {why} will be redone", file=sys.stderr)
    clf = load_local_classifier(p)  # loaded once, before the clock starts
    progress = Progress(store, _estimate_calls(p.files))
    chunks = ChunkReader(p, store, done, progress, errors=progress.errors)  # one list, in the order met
    try:
        score_chunks(p, chunks, progress, clf)
    except KeyboardInterrupt:
        progress.close()
        kept = p.out / PARTS
        print(f"\nrelabel: interrupted; committed chunks are kept in {kept}; rerun with --resume", file=sys.stderr)
        return 130
    progress.close()
    n_calls, n_segments, errors = finalise(p, store, chunks, progress, started_at, t0)
    print(
        f"relabel: {n_calls} calls, {n_segments} segments, {len(errors)} errors"
        f"{f' (see {p.out / ERRORS_FILE})' if errors else ''} → {p.out}",
        file=sys.stderr,
    )
    return 1 if args.fail_on_error and errors else 0
