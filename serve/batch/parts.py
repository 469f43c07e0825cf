"""Committed chunks of a relabel run (``OUT/parts``) and the final files assembled from them.

Each part is written to a temporary name and renamed (atomic), the calls part last, so a chunk
is either fully committed or absent; ``--resume`` reads the committed parts, skips those calls
and never writes a row twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from model.files import atomic_write
from model.preprocess import PREPROCESS_VERSION
from serve.batch.chunks import ChunkResult, segments_schema

PARTS = "parts"
RUN_FILE = "run.json"  # the settings the committed parts were made with
SEGMENTS_FILE, CALLS_FILE = "segments.parquet", "calls.jsonl"


def write_jsonl(rows: Iterable[dict[str, Any]]) -> Callable[[Path], None]:
    """A writer for :func:`model.files.atomic_write`: one JSON object per line."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    return write


def write_parquet(table) -> Callable[[Path], None]:
    """A writer for :func:`model.files.atomic_write`: a pyarrow table as Parquet."""
    import pyarrow.parquet as pq

    return lambda tmp: pq.write_table(table, tmp)


class PartStore:
    """Committed chunks under ``OUT/parts``: ``chunk-N.segments.parquet`` + ``chunk-N.calls.jsonl``.

    The calls part is renamed into place last, so its presence is the commit marker: a segments
    part without one is the debris of a killed run and is removed on recovery.
    """

    def __init__(self, out: Path, model_version: str, settings: dict[str, Any]) -> None:
        self.dir = out / PARTS
        self.model_version = model_version
        #: what decides a part's rows besides its input (model weights, thresholds, call rules...);
        #: kept in ``parts/run.json`` so a resume with other settings redoes the parts, not mixes them
        self.settings = json.loads(json.dumps(settings, ensure_ascii=False))
        self.next_id = 0
        self.changed: list[str] = []

    def _chunks(self) -> list[int]:
        return sorted(int(p.name.split(".")[0].split("-")[1]) for p in self.dir.glob("chunk-*.calls.jsonl"))

    def _paths(self, chunk: int) -> tuple[Path, Path]:
        return self.dir / f"chunk-{chunk:06d}.segments.parquet", self.dir / f"chunk-{chunk:06d}.calls.jsonl"

    def recover(self) -> tuple[set[str], int]:
        """Clean debris, drop parts of another model/preprocessing version or made with other settings
        (``self.changed`` names them); return (done call ids, stale parts)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.dir.glob(".*.tmp-*"):
            tmp.unlink()
        done: set[str] = set()
        stale = 0
        committed = set(self._chunks())
        saved = self.dir / RUN_FILE
        before = json.loads(saved.read_text(encoding="utf-8")) if saved.is_file() else self.settings
        self.changed = sorted(k for k in before.keys() | self.settings.keys() if before.get(k) != self.settings.get(k))
        for seg_part in self.dir.glob("chunk-*.segments.parquet"):
            if int(seg_part.name.split(".")[0].split("-")[1]) not in committed:
                seg_part.unlink()
        for chunk in sorted(committed):
            seg_part, calls_part = self._paths(chunk)
            rows = [json.loads(line) for line in calls_part.read_text(encoding="utf-8").splitlines() if line]
            if self.changed or any(
                r["model_version"] != self.model_version or r["preprocess_version"] != PREPROCESS_VERSION for r in rows
            ):
                seg_part.unlink(missing_ok=True)
                calls_part.unlink()
                stale += 1
                continue
            done.update(r["call_id"] for r in rows)
        # written only once stale parts are gone: a kill before this point still finds them stale
        text = json.dumps(self.settings, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        atomic_write(saved, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        self.next_id = max(committed, default=-1) + 1
        return done, stale

    def commit(self, chunk: int, result: ChunkResult) -> None:
        import pyarrow as pa

        seg_part, calls_part = self._paths(chunk)
        atomic_write(seg_part, write_parquet(pa.Table.from_pylist(result["segments"], schema=segments_schema())))
        atomic_write(calls_part, write_jsonl(result["calls"]))

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
        atomic_write(out / SEGMENTS_FILE, write_parquet(table))
        atomic_write(out / CALLS_FILE, write_jsonl(calls))
        return len(calls), table.num_rows
