"""Real ordinary talk as ``compliant`` text: CPED (spoken TV dialogue), KdConv (chit-chat), COLD.

The model once learned a style shortcut ("not polite collection-speak" → violation). Real human
talk that nobody here wrote breaks it. These corpora are read from a path (never committed) and
split by *dialogue* with a seeded hash, so a fixed slice of each is held out as a test of false
alarms on ordinary talk and never trains. COLD keeps its own upstream split: its ``train.csv``
safe comments may train, its ``dev.csv`` is held out.

Every row keeps exact provenance: ``id`` = ``<corpus>:<dialogue_id>:<turn>`` (or the COLD row id).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: The corpora read as ordinary talk; each is a folder holding ``utterances.jsonl``.
DIALOGUE_CORPORA = ("cped", "kdconv")


#: Slices of the real negatives: ``train`` may train; ``calibration`` picks thresholds with the
#: real dev set; ``test`` is only ever reported (false alarms on ordinary talk).
SLICES = ("train", "calibration", "test")


def slice_of(corpus: str, key: str, heldout_fraction: float, seed: int) -> str:
    """A dialogue's fixed slice: the same answer on every machine and every build.

    The held-out fraction is split in two equal halves: calibration, then test.
    """
    h = int(hashlib.sha256(f"{seed}:{corpus}:{key}".encode()).hexdigest()[:8], 16) / 16**8
    return "calibration" if h < heldout_fraction / 2 else "test" if h < heldout_fraction else "train"


def negative_row(rid: str, text: str, source: str, labels: list[str] | None = None) -> dict[str, Any]:
    """A public row in the corpus schema; its id is its provenance and its own split group."""
    return {
        "id": rid, "text": text, "labels": labels or [], "speaker": "customer", "listener": "unknown",
        "source": source, "group": rid, "notes": f"public dataset {source}",
    }  # fmt: skip


def iter_dialogue_corpus(root: Path, corpus: str) -> Iterator[tuple[str, str, str]]:
    """``(row id, dialogue_id, text)`` for every utterance of ``root/corpus/utterances.jsonl``."""
    path = Path(root) / "utterances.jsonl"
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            text = (rec.get("text") or "").strip()
            if not text:
                continue
            dialogue = str(rec.get("dialogue_id"))
            yield f"{corpus}:{dialogue}:{rec.get('turn', lineno)}", dialogue, text


def load_negatives(datasets: Path, corpus: str, part: str, heldout_fraction: float, seed: int) -> list[dict[str, Any]]:
    """Rows of one corpus (``cped``, ``kdconv`` or ``cold``) in one slice of :data:`SLICES`.

    CPED and KdConv are split by dialogue. COLD keeps its upstream split: its ``train.csv`` safe
    comments are the training slice; its ``dev.csv`` safe comments are split by row into
    calibration and test.
    """
    if part not in SLICES:
        raise ValueError(f"slice must be one of {list(SLICES)}, got {part!r}")
    if corpus == "cold":
        if part == "train":
            return load_cold_rows(Path(datasets) / "cold", "train")
        rows = load_cold_rows(Path(datasets) / "cold", "dev")
        return [r for r in rows if slice_of("cold", r["id"], 1.0, seed) == part]
    if corpus not in DIALOGUE_CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; expected one of {[*DIALOGUE_CORPORA, 'cold']}")
    return [
        negative_row(rid, text, corpus)
        for rid, dialogue, text in iter_dialogue_corpus(Path(datasets) / corpus, corpus)
        if slice_of(corpus, dialogue, heldout_fraction, seed) == part
    ]


def load_cold_rows(path: Path, upstream_split: str, label: str = "0") -> list[dict[str, Any]]:
    """COLD rows of one upstream split (``train``/``dev``) and class (``0`` safe, ``1`` offensive)."""
    rows = []
    with open(Path(path) / f"{upstream_split}.csv", encoding="utf-8-sig", newline="") as f:
        # COLD's own index column repeats across topics: a row's id is its 0-based data-row number
        for i, rec in enumerate(csv.DictReader(f)):
            text = (rec.get("TEXT") or "").strip()
            if rec.get("label") == label and text:
                rows.append(negative_row(f"cold-{upstream_split}:{i}", text, "cold"))
    return rows


def sample_rows(rows: list[dict[str, Any]], n: int | None, seed: int) -> list[dict[str, Any]]:
    """A seeded sample of at most ``n`` rows (``None`` = all), in a stable order."""
    if n is None or n >= len(rows):
        return list(rows)
    return random.Random(seed).sample(rows, n)
