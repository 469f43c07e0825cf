"""Calls as the review page sees them: pasted or uploaded ones (kept in the store) and those of a
relabel output folder (``--calls DIR``: ``calls.jsonl`` + ``segments.parquet``), in one shape.

A report is ``{"call_id", "segments": [{start, end, speaker, listener, text}], "results":
[{scores, labels, label, evidence?}], "summary": {...}, "flags"?: {...}, "metadata": {...}}`` —
the shape ``serve.scoring.split_by_call`` returns, so the page shows what the API reports.
Fields added by later versions of the call report (``evidence`` per segment, ``flags`` per call)
are passed through untouched and shown when present.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.labels import ALL_LABELS, COMPLIANT, SEVERITY, VIOLATIONS

CALLS_FILE, SEGMENTS_FILE = "calls.jsonl", "segments.parquet"


@dataclass(frozen=True)
class CallEntry:
    """One call the page can open: ``ref`` is its URL key (``s12`` stored, ``f3`` from the folder)."""

    ref: str
    origin: str
    report: dict[str, Any]

    @property
    def call_id(self) -> str:
        return str(self.report["call_id"])

    @property
    def verdict(self) -> str:
        return (self.report.get("summary") or {}).get("verdict", COMPLIANT)

    @property
    def flags(self) -> dict[str, Any]:
        """The call-level flags, wherever the report keeps them (top level or in the summary)."""
        flags = self.report.get("flags")
        if flags is None:
            flags = (self.report.get("summary") or {}).get("flags")
        return flags if isinstance(flags, Mapping) else {}

    def raised_flags(self) -> list[str]:
        return [name for name, value in self.flags.items() if flag_state(value) is True]

    def labels_present(self) -> set[str]:
        """Every label some segment carries (``compliant`` when a segment has none)."""
        out: set[str] = set()
        for res in self.report.get("results", []):
            out.update(res.get("labels") or [COMPLIANT])
        return out

    def max_score(self) -> float:
        return max((float(r["scores"].get(lb, 0.0)) for r in self.report.get("results", []) for lb in VIOLATIONS),
                   default=0.0)  # fmt: skip


def flag_state(value: Any) -> bool | None:
    """A flag's state whatever its shape: a bool or null, or an object holding one."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        for key in ("value", "flagged", "raised", "state"):
            if key in value and (value[key] is None or isinstance(value[key], bool)):
                return value[key]
    return None


def flag_details(value: Any) -> str:
    """What a flag object says besides its state (its evidence), as compact JSON text."""
    if not isinstance(value, Mapping):
        return ""
    rest = {k: v for k, v in value.items() if k not in ("value", "flagged", "raised", "state")}
    return json.dumps(rest, ensure_ascii=False, default=str) if rest else ""


def report_from_scored(scored: Mapping[str, Any], metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A report from :func:`serve.scoring.split_by_call` output, keeping any extra fields."""
    report = {k: v for k, v in scored.items()}
    report["segments"] = [dict(s) for s in scored["segments"]]
    report["results"] = [dict(r) for r in scored["results"]]
    report.setdefault("metadata", dict(metadata or {}))
    return report


class RelabelFolder:
    """The calls of a relabel output folder, read once and re-read when its files change."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not (self.path / CALLS_FILE).is_file():
            raise FileNotFoundError(f"--calls {self.path}: no {CALLS_FILE} (not a relabel output folder)")
        self._lock = threading.Lock()
        self._stamp: tuple[float, float] | None = None
        self._entries: list[CallEntry] = []

    def _files_stamp(self) -> tuple[float, float]:
        seg = self.path / SEGMENTS_FILE
        return (self.path / CALLS_FILE).stat().st_mtime, seg.stat().st_mtime if seg.exists() else 0.0

    def entries(self) -> list[CallEntry]:
        with self._lock:
            stamp = self._files_stamp()
            if stamp != self._stamp:
                self._entries, self._stamp = self._load(), stamp
            return self._entries

    def _load(self) -> list[CallEntry]:
        segments = _segments_by_call(self.path / SEGMENTS_FILE)
        out = []
        lines = (self.path / CALLS_FILE).read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            rows = segments.get(str(row["call_id"]), [])
            out.append(CallEntry(f"f{n}", f"{self.path.name}/{CALLS_FILE} line {n}", _report_from_rows(row, rows)))
        return out


def _segments_by_call(path: Path) -> dict[str, list[dict[str, Any]]]:
    if not path.exists():
        return {}
    import pyarrow.parquet as pq

    out: dict[str, list[dict[str, Any]]] = {}
    for row in pq.read_table(path).to_pylist():
        out.setdefault(str(row["call_id"]), []).append(row)
    for rows in out.values():
        rows.sort(key=lambda r: r["segment"])
    return out


def _report_from_rows(call_row: Mapping[str, Any], seg_rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    """A relabel ``calls.jsonl`` row and its ``segments.parquet`` rows as one report."""
    segments, results = [], []
    for r in seg_rows:
        segments.append({k: r.get(k) for k in ("start", "end", "speaker", "listener", "text")})
        result = {
            "scores": {lb: float(r[f"score_{lb}"]) for lb in ALL_LABELS if r.get(f"score_{lb}") is not None},
            "labels": list(r.get("labels") or []),
            "label": r.get("label") or COMPLIANT,
        }
        evidence = r.get("evidence")
        if isinstance(evidence, str):  # a JSON column
            evidence = json.loads(evidence) if evidence.strip() else None
        if evidence:
            result["evidence"] = list(evidence)
        results.append(result)
    skip = {"call_id", "metadata", "source", "flags", "model_version", "preprocess_version"}
    report: dict[str, Any] = {
        "call_id": str(call_row["call_id"]),
        "segments": segments,
        "results": results,
        "summary": {k: v for k, v in call_row.items() if k not in skip},
        "metadata": call_row.get("metadata") or {},
    }
    if "flags" in call_row:
        report["flags"] = call_row["flags"]
    return report


def severity_rank(label: str) -> int:
    return SEVERITY.index(label) if label in SEVERITY else len(SEVERITY)
