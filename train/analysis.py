"""Error and corpus analysis shared by the research notebooks and ``python -m train.report``.

Everything a notebook shows is computed here, so the notebooks stay thin (imports, one call,
one display) and the numbers in a notebook, the model card and the tests cannot drift apart.
Tables are pandas DataFrames; metric definitions come from :mod:`train.evaluate` only.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model.labels import COMPLIANT, VIOLATIONS
from model.preprocess import _t2s
from model.thresholds import apply_thresholds
from train.evaluate import label_matrix, metrics

Rows = Sequence[Mapping[str, Any]]

# -- notebook settings ----------------------------------------------------------------------------
#: Environment variables the notebooks read (CI sets a small row limit and keeps the shipped model).
MODEL_ENV = "COLLECTGUARD_MODEL"
ROWS_ENV = "COLLECTGUARD_NB_ROWS"


def notebook_model_path() -> str | None:
    """The model folder a notebook should load: ``$COLLECTGUARD_MODEL`` or ``None`` (= shipped)."""
    return os.environ.get(MODEL_ENV) or None


def notebook_row_limit() -> int | None:
    """Rows per split a notebook may use: ``$COLLECTGUARD_NB_ROWS`` or ``None`` (= all rows)."""
    raw = os.environ.get(ROWS_ENV, "").strip()
    if not raw:
        return None
    limit = int(raw)
    if limit <= 0:
        raise ValueError(f"{ROWS_ENV} must be a positive integer, got {raw!r}")
    return limit


def limit_rows(rows: Sequence[dict[str, Any]], limit: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """A deterministic sample of ``limit`` rows in file order (all rows when ``limit`` is None).

    Splits are written grouped by source, so a plain head would be all written rows; a seeded
    sample keeps CI runs representative and reproducible.
    """
    if limit is None or limit >= len(rows):
        return list(rows)
    keep = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[i] for i in keep]


def load_splits(
    data_dir: Path | None = None, limit: int | None = None, splits: Sequence[str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The processed splits, each limited to ``limit`` rows (see :func:`limit_rows`)."""
    from train.dataset import SPLITS, load_split

    return {s: limit_rows(load_split(s, data_dir), limit) for s in (splits or SPLITS)}


# -- slices ---------------------------------------------------------------------------------------
#: Length buckets in characters of the raw text: (name, lowest, highest) inclusive.
LENGTH_BUCKETS: tuple[tuple[str, int, float], ...] = (
    ("≤10", 0, 10),
    ("11–40", 11, 40),
    ("41–120", 41, 120),
    (">120", 121, float("inf")),
)
# Any sentence punctuation, ASCII or CJK: ASR output typically has none.
_PUNCT = re.compile(r"[，。！？、；：,.!?;:…]")
# Fillers that ASR keeps and written text rarely has (LABELS.md, "Unit").
_ASR_FILLERS = ("嗯", "啊", "那个", "就是说", "呃")
#: Latin abbreviations of insults (as whole Latin runs, so "sb" does not match inside "usb").
OBFUSCATED_LATIN: frozenset[str] = frozenset(
    {"sb", "nmsl", "tmd", "cnm", "nmd", "nmb", "mlgb", "md", "tm", "lj", "fw", "byl", "zz", "sjb", "nc", "wc", "mmp"}
)
#: Look-alike characters and homophones standing in for profanity.
OBFUSCATED_LOOKALIKES: tuple[str, ...] = (
    "艹",
    "尼玛",
    "泥马",
    "草泥马",
    "傻b",
    "傻x",
    "傻比",
    "煞笔",
    "沙比",
    "傻叉",
    "特么",
)
_LATIN_RUN = re.compile(r"[a-z]+")


def length_bucket(text: str) -> str:
    """The :data:`LENGTH_BUCKETS` name for a text's character length."""
    n = len(text)
    return next(name for name, lo, hi in LENGTH_BUCKETS if lo <= n <= hi)


def has_asr_noise(text: str) -> bool:
    """ASR-like text: no punctuation at all, or spoken fillers (嗯、啊、那个…) present."""
    return not _PUNCT.search(text) or any(f in text for f in _ASR_FILLERS)


def is_traditional(text: str) -> bool:
    """Text the shared OpenCC t2s converter changes, i.e. it carries traditional characters."""
    return _t2s().convert(text) != text


def is_obfuscated(text: str) -> bool:
    """Latin insult abbreviations (sb, nmsl, tmd…) or look-alikes (艹, 尼玛, 傻b…)."""
    low = text.lower()
    return any(run in OBFUSCATED_LATIN for run in _LATIN_RUN.findall(low)) or any(
        s in low for s in OBFUSCATED_LOOKALIKES
    )


def slices(rows: Rows) -> dict[str, np.ndarray]:
    """Boolean masks over ``rows`` for every slice the error analysis reports.

    Slices overlap on purpose (a row is in one length bucket, one speaker, one listener, one
    source and any of the noise slices); empty slices are left out.
    """
    texts = [r["text"] for r in rows]
    out: dict[str, np.ndarray] = {}
    buckets = np.array([length_bucket(t) for t in texts], dtype=object)
    for name, _, _ in LENGTH_BUCKETS:
        out[f"length {name}"] = buckets == name
    out["asr noise"] = np.array([has_asr_noise(t) for t in texts], dtype=bool)
    out["traditional"] = np.array([is_traditional(t) for t in texts], dtype=bool)
    out["obfuscated"] = np.array([is_obfuscated(t) for t in texts], dtype=bool)
    for field in ("speaker", "listener", "source"):
        values = np.array([r[field] for r in rows], dtype=object)
        for value in sorted(set(values.tolist())):
            out[f"{field}={value}"] = values == value
    return {k: np.asarray(v, dtype=bool) for k, v in out.items() if np.any(v)}


def slice_table(rows: Rows, y_true: np.ndarray, y_pred: np.ndarray) -> pd.DataFrame:
    """Per slice: row count, compliant rows, macro-F1, compliant FPR and per-label F1.

    The first row is ``all``; numbers come from :func:`train.evaluate.metrics` so they match
    ``collectguard evaluate`` exactly on the same rows.
    """
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    records = []
    masks = {"all": np.ones(len(rows), dtype=bool), **slices(rows)}
    for name, mask in masks.items():
        m = metrics(y_true[mask], y_pred[mask])
        rec = {
            "slice": name,
            "n": m["n"],
            "n_compliant": int((y_true[mask].sum(1) == 0).sum()),
            "macro_f1": m["macro_f1"],
            "compliant_fpr": m["compliant_false_positive_rate"],
        }
        rec.update({f"f1_{label}": m["labels"][label]["f1"] for label in VIOLATIONS})
        records.append(rec)
    return pd.DataFrame.from_records(records).set_index("slice")


def written_subsets(rows: Rows) -> dict[str, np.ndarray]:
    """``{"all rows": …, "written only": …}`` masks: the two populations every report shows.

    Template rows share phrasing with their training siblings' templates and score higher, so
    the written-only numbers are the honest estimate for real calls.
    """
    from train.dataset import is_written

    return {"all rows": np.ones(len(rows), dtype=bool), "written only": np.array([is_written(r) for r in rows], bool)}


def metrics_table(y_true: np.ndarray, y_pred: np.ndarray, subsets: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Precision/recall/F1 per label plus macro-F1 and compliant FPR, one column block per subset.

    Subsets are boolean row masks (e.g. all rows vs written-only), so the flattering template
    rows can be told apart from individually written ones at a glance.
    """
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    records = []
    for name, mask in subsets.items():
        m = metrics(y_true[mask], y_pred[mask])
        for label in VIOLATIONS:
            records.append({"subset": name, "label": label, **m["labels"][label]})
        records.append(
            {"subset": name, "label": "macro", "f1": m["macro_f1"], "support": m["n"],
             "compliant_fpr": m["compliant_false_positive_rate"]}
        )  # fmt: skip
    return pd.DataFrame.from_records(records).set_index(["subset", "label"])


# -- label-level tables -----------------------------------------------------------------------------
def confusion_table(y_true: np.ndarray, y_pred: np.ndarray) -> pd.DataFrame:
    """Per label: tp, fp, fn, tn (each label is an independent binary decision)."""
    y_true, y_pred = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    return pd.DataFrame(
        {
            "tp": (y_true & y_pred).sum(0),
            "fp": (~y_true & y_pred).sum(0),
            "fn": (y_true & ~y_pred).sum(0),
            "tn": (~y_true & ~y_pred).sum(0),
        },
        index=pd.Index(VIOLATIONS, name="label"),
    ).astype(int)


def predictions(probs: np.ndarray, thresholds: Mapping[str, float]) -> np.ndarray:
    """0/1 decisions at per-label thresholds: :func:`model.thresholds.apply_thresholds`, the Classifier's rule."""
    return apply_thresholds(probs, thresholds)


def threshold_sweep(y_true: np.ndarray, probs: np.ndarray, thresholds: Sequence[float] | None = None) -> pd.DataFrame:
    """Precision, recall and F1 per label at each threshold (long format: label × threshold).

    Precision of an empty prediction set is reported as NaN, not 0, so a plot shows a gap
    rather than a false collapse at high thresholds.
    """
    y_true, probs = np.asarray(y_true, dtype=bool), np.asarray(probs, dtype=float)
    grid = np.linspace(0.05, 0.95, 19) if thresholds is None else np.asarray(thresholds, dtype=float)
    records = []
    for i, label in enumerate(VIOLATIONS):
        pos = y_true[:, i]
        for t in grid:
            pred = probs[:, i] >= t
            tp = int((pred & pos).sum())
            n_pred, n_pos = int(pred.sum()), int(pos.sum())
            precision = tp / n_pred if n_pred else float("nan")
            recall = tp / n_pos if n_pos else float("nan")
            f1 = 2 * tp / (n_pred + n_pos) if n_pred + n_pos else float("nan")
            records.append(
                {"label": label, "threshold": round(float(t), 4), "precision": precision, "recall": recall,
                 "f1": f1, "n_predicted": n_pred, "support": n_pos}
            )  # fmt: skip
    return pd.DataFrame.from_records(records)


def calibration_bins(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Per label and equal-width probability bin: count, mean predicted score, observed rate.

    Empty bins are kept with NaN means so every label has the same ``n_bins`` rows.
    """
    y_true, probs = np.asarray(y_true, dtype=float), np.asarray(probs, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    records = []
    for i, label in enumerate(VIOLATIONS):
        # right-closed last bin so a score of exactly 1.0 is counted
        idx = np.clip(np.digitize(probs[:, i], edges[1:-1], right=False), 0, n_bins - 1)
        for b in range(n_bins):
            mask = idx == b
            n = int(mask.sum())
            records.append(
                {"label": label, "bin": b, "lo": edges[b], "hi": edges[b + 1], "count": n,
                 "mean_predicted": float(probs[mask, i].mean()) if n else float("nan"),
                 "observed": float(y_true[mask, i].mean()) if n else float("nan")}
            )  # fmt: skip
    return pd.DataFrame.from_records(records)


def expected_calibration_error(bins: pd.DataFrame) -> pd.Series:
    """Per label, the count-weighted mean |observed − predicted| over non-empty bins."""
    full = bins[bins["count"] > 0]
    gap = (full["observed"] - full["mean_predicted"]).abs() * full["count"]
    return (gap.groupby(full["label"]).sum() / full.groupby("label")["count"].sum()).reindex(list(VIOLATIONS))


def worst_errors(
    rows: Rows,
    y_true: np.ndarray,
    probs: np.ndarray,
    k: int = 20,
    thresholds: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """The ``k`` most confident wrong decisions, one row per (segment, label) error.

    Confidence of the wrong decision is the score for a false positive and ``1 − score`` for a
    false negative, so the top of the table is where the model is most sure and most wrong —
    usually a labelling question or a pattern the training data lacks.
    """
    th = thresholds or dict.fromkeys(VIOLATIONS, 0.5)
    y_true, probs = np.asarray(y_true, dtype=bool), np.asarray(probs, dtype=float)
    pred = predictions(probs, th).astype(bool)
    records = []
    for r_i, c_i in zip(*np.nonzero(pred != y_true), strict=True):
        label, p = VIOLATIONS[c_i], float(probs[r_i, c_i])
        fp = bool(pred[r_i, c_i])
        row = rows[r_i]
        records.append(
            {"id": row.get("id"), "label": label, "error": "false_positive" if fp else "false_negative",
             "score": round(p, 4), "threshold": th[label], "confidence": round(p if fp else 1.0 - p, 4),
             "true_labels": ",".join(row["labels"]) or COMPLIANT, "speaker": row.get("speaker"),
             "listener": row.get("listener"), "source": row.get("source"), "text": row["text"]}
        )  # fmt: skip
    columns = ["id", "label", "error", "score", "threshold", "confidence", "true_labels", "speaker", "listener",
               "source", "text"]  # fmt: skip
    df = pd.DataFrame.from_records(records, columns=columns)
    return df.sort_values(["confidence", "id", "label"], ascending=[False, True, True]).head(k).reset_index(drop=True)


# -- corpus tables ------------------------------------------------------------------------------------
def composition_table(rows_by_split: Mapping[str, Rows]) -> pd.DataFrame:
    """Row counts by split × label × speaker × listener × source (long format).

    A multi-label row counts once under each of its labels; a row with no label counts under
    ``compliant``. Pivot it (``.pivot_table``) for the view you need.
    """
    records = [
        {"split": split, "label": label, "speaker": r["speaker"], "listener": r["listener"], "source": r["source"]}
        for split, rows in rows_by_split.items()
        for r in rows
        for label in (r["labels"] or [COMPLIANT])
    ]
    keys = ["split", "label", "speaker", "listener", "source"]
    df = pd.DataFrame.from_records(records, columns=keys)
    return df.groupby(keys, sort=True).size().rename("n").reset_index()


def length_stats(rows_by_split: Mapping[str, Rows]) -> pd.DataFrame:
    """Character-length summary per split and label (count, mean, quantiles, bucket shares)."""
    records = [
        {"split": split, "label": label, "length": len(r["text"]), "bucket": length_bucket(r["text"])}
        for split, rows in rows_by_split.items()
        for r in rows
        for label in (r["labels"] or [COMPLIANT])
    ]
    df = pd.DataFrame.from_records(records, columns=["split", "label", "length", "bucket"])
    grouped = df.groupby(["split", "label"])["length"]
    stats = grouped.agg(count="count", mean="mean", median="median", p90=lambda s: s.quantile(0.9), max="max").round(1)
    shares = pd.crosstab([df["split"], df["label"]], df["bucket"], normalize="index").round(3)
    shares = shares.reindex(columns=[name for name, _, _ in LENGTH_BUCKETS], fill_value=0.0)
    return stats.join(shares)


def examples_per_label(rows: Rows, n: int = 3, seed: int = 0) -> pd.DataFrame:
    """``n`` example rows for each label (and compliant), sampled deterministically."""
    rng = random.Random(seed)
    records = []
    for label in (*VIOLATIONS, COMPLIANT):
        pool = [r for r in rows if (label in r["labels"] if label != COMPLIANT else not r["labels"])]
        for r in rng.sample(pool, min(n, len(pool))):
            records.append(
                {"label": label, "id": r["id"], "speaker": r["speaker"], "listener": r["listener"],
                 "source": r["source"], "labels": ",".join(r["labels"]) or COMPLIANT, "text": r["text"]}
            )  # fmt: skip
    return pd.DataFrame.from_records(records)


def cross_split_near_duplicates(rows_by_split: Mapping[str, Rows], threshold: float | None = None) -> pd.DataFrame:
    """Pairs of rows in different splits whose character 3-gram Jaccard is ≥ ``threshold``.

    Each later split is checked against every earlier one (train → validation → test order),
    with the same :class:`train.dataset.NearDuplicateIndex` the build uses; the default
    threshold is the build's ``data.near_dup_jaccard``. An empty table means no leakage.
    """
    from model.config import DataConfig
    from train.dataset import NearDuplicateIndex, jaccard, ngrams

    threshold = DataConfig().near_dup_jaccard if threshold is None else threshold
    order = [s for s in ("train", "validation", "test") if s in rows_by_split]
    order += [s for s in rows_by_split if s not in order]
    grams = {s: [ngrams(r["text"]) for r in rows_by_split[s]] for s in order}
    records = []
    for j, later in enumerate(order):
        for earlier in order[:j]:
            index = NearDuplicateIndex(grams[earlier])
            for qi, q in enumerate(grams[later]):
                for hi in sorted(index.find(q, threshold)):
                    a, b = rows_by_split[earlier][hi], rows_by_split[later][qi]
                    records.append(
                        {"split_a": earlier, "id_a": a["id"], "source_a": a["source"], "split_b": later,
                         "id_b": b["id"], "source_b": b["source"],
                         "jaccard": round(jaccard(grams[earlier][hi], q), 4), "text_a": a["text"], "text_b": b["text"]}
                    )  # fmt: skip
    columns = ["split_a", "id_a", "source_a", "split_b", "id_b", "source_b", "jaccard", "text_a", "text_b"]
    return pd.DataFrame.from_records(records, columns=columns)


# -- scoring once -------------------------------------------------------------------------------------
def score_rows(classifier: Any, rows: Rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(y_true, probs, y_pred)`` for rows, scored once at the classifier's own thresholds."""
    probs = classifier.predict_proba(rows)
    return label_matrix(rows), probs, predictions(probs, classifier.thresholds)
