"""The unlabeled pool a student learns its teacher's scores on.

Distillation needs far more text than the labelled corpus: the student must see how the teacher
scores ordinary talk, crude comments and noisy speech, not only the rows a writer labelled. The
pool is every text the teacher may legitimately be asked about and that no evaluation holds:

- the processed training split (written, template and the public rows it already holds);
- ``augment_copies`` extra noisy variants (ASR noise, traditional characters, obfuscation) of its
  written and template rows;
- every **training** slice row of CPED and KdConv (split by dialogue, as in :mod:`train.negatives`);
- every COLD ``train.csv`` comment, safe and offensive (the upstream training split);
- optionally labelled rows the teacher never trained on (``extra``, e.g. ``data/candidates``), with
  their noisy variants; each carries ``target_alpha`` so the student can weigh their label above
  the teacher's score (:func:`train.distill.soft_targets`).

Held-out slices, COLD ``dev.csv`` and the real development set never enter it: any pool text
whose normalised form equals a dev text is dropped (:func:`train.dataset.drop_real_dev_texts`).
Rows keep their ids (provenance) and are de-duplicated on the normalised text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model.config import Settings
from train.augment import augment_rows
from train.dataset import dedupe_exact, drop_real_dev_texts, load_split, normalizes
from train.negatives import DIALOGUE_CORPORA, load_cold_rows, load_negatives


def public_pool(datasets: Path, settings: Settings) -> list[dict[str, Any]]:
    """Training slices of CPED and KdConv, and all of COLD's upstream training comments."""
    cfg = settings.data
    rows = [r for c in DIALOGUE_CORPORA for r in load_negatives(datasets, c, "train", cfg.heldout_fraction, cfg.seed)]
    cold = Path(datasets) / "cold"
    return rows + load_cold_rows(cold, "train", "0") + load_cold_rows(cold, "train", "1")


def build_pool(
    datasets: Path, settings: Settings, augment_copies: int = 2, extra: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The pool's rows (``id``, ``text``, ``speaker``, ``listener``, ``labels`` where known).

    ``labels`` is kept for rows of the labelled training split and for ``extra`` rows (the student
    also learns those); public rows carry ``labels: None`` — the teacher's scores are their only
    target. ``extra`` rows come after the training split, so a duplicate keeps the training label.
    """
    train = load_split("train", settings.data.out_dir)
    extra = [{**r, "target_alpha": settings.distill.extra_alpha} for r in extra or []]
    authored = [r for r in train if r.get("source") in ("written", "template")]  # not the +aug copies
    # other noise than training's; the variants keep their row's target_alpha
    noisy = augment_rows(authored + extra, augment_copies, settings.data.seed + 1)
    public = [{**r, "labels": None} for r in public_pool(datasets, settings)]
    # labelled rows first, so a duplicate keeps its label
    rows, _duplicates = dedupe_exact([r for r in train + extra + noisy + public if normalizes(r["text"])])
    kept, _dropped = drop_real_dev_texts(rows, settings.data.real_dir)
    return kept
