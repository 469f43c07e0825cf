"""Figure builders for the notebooks and the model card: pure functions that return a Figure.

They build :class:`matplotlib.figure.Figure` objects directly, never through ``pyplot``, so
calling them has no display or global-state side effects: a notebook shows the returned figure,
``train.report`` saves it, and tests can build them headless. Axis text is English because the
CI machines have no CJK font.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve

from model.labels import VIOLATIONS
from train.analysis import LENGTH_BUCKETS, calibration_bins

Subsets = Mapping[str, np.ndarray] | None
SPLIT_ORDER = ("train", "validation", "test")


def _subsets(n: int, subsets: Subsets) -> dict[str, np.ndarray]:
    """Named row masks to draw as separate curves (default: one curve over all rows)."""
    return {k: np.asarray(v, dtype=bool) for k, v in (subsets or {"all rows": np.ones(n, dtype=bool)}).items()}


def _label_axes(fig: Figure, sharey: bool = True) -> Sequence[Any]:
    return fig.subplots(1, len(VIOLATIONS), sharey=sharey, squeeze=False)[0]


def pr_curves(
    y_true: np.ndarray,
    probs: np.ndarray,
    thresholds: Mapping[str, float] | None = None,
    subsets: Subsets = None,
) -> Figure:
    """Precision–recall curve per label, one line per subset, with the operating point marked.

    The dot is where the artifact's threshold puts the model, so the reader sees how much
    recall the precision floor costs.
    """
    y_true, probs = np.asarray(y_true, dtype=int), np.asarray(probs, dtype=float)
    fig = Figure(figsize=(4.2 * len(VIOLATIONS), 4.0), layout="constrained")
    for i, (ax, label) in enumerate(zip(_label_axes(fig), VIOLATIONS, strict=True)):
        for name, mask in _subsets(len(y_true), subsets).items():
            yt, p = y_true[mask, i], probs[mask, i]
            if yt.sum() == 0 or yt.sum() == len(yt):
                ax.plot([], [], label=f"{name} (no positives)" if yt.sum() == 0 else f"{name} (all positive)")
                continue
            prec, rec, _ = precision_recall_curve(yt, p)
            ap = average_precision_score(yt, p)
            (line,) = ax.step(rec, prec, where="post", label=f"{name} (AP {ap:.2f}, n+={int(yt.sum())})")
            if thresholds is not None:
                pred = p >= thresholds[label]
                tp = int((pred & (yt == 1)).sum())
                if pred.any():
                    ax.plot(tp / yt.sum(), tp / pred.sum(), "o", color=line.get_color())
        ax.set(title=label, xlabel="recall", xlim=(0, 1.02), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    _label_axes_ylabel(fig, "precision")
    return fig


def reliability_diagram(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 10, subsets: Subsets = None) -> Figure:
    """Observed positive rate vs mean predicted score per bin, per label and subset.

    Points on the diagonal mean a score of 0.7 is right 70% of the time; marker area grows with
    the bin's row count so near-empty bins do not look as trustworthy as full ones.
    """
    y_true, probs = np.asarray(y_true, dtype=int), np.asarray(probs, dtype=float)
    fig = Figure(figsize=(4.2 * len(VIOLATIONS), 4.0), layout="constrained")
    axes = _label_axes(fig)
    for name, mask in _subsets(len(y_true), subsets).items():
        bins = calibration_bins(y_true[mask], probs[mask], n_bins)
        for ax, label in zip(axes, VIOLATIONS, strict=True):
            b = bins[(bins["label"] == label) & (bins["count"] > 0)]
            size = 10 + 190 * b["count"] / max(int(mask.sum()), 1)
            (line,) = ax.plot(b["mean_predicted"], b["observed"], "-", alpha=0.7, label=name)
            ax.scatter(b["mean_predicted"], b["observed"], s=size, color=line.get_color(), alpha=0.7)
    for ax, label in zip(axes, VIOLATIONS, strict=True):
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
        ax.set(title=label, xlabel="mean predicted score", xlim=(0, 1), ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    _label_axes_ylabel(fig, "observed positive rate")
    return fig


def threshold_sweep_plot(sweep: pd.DataFrame, thresholds: Mapping[str, float] | None = None) -> Figure:
    """Precision, recall and F1 against threshold per label (from ``analysis.threshold_sweep``)."""
    fig = Figure(figsize=(4.2 * len(VIOLATIONS), 3.8), layout="constrained")
    for ax, label in zip(_label_axes(fig), VIOLATIONS, strict=True):
        s = sweep[sweep["label"] == label]
        for metric in ("precision", "recall", "f1"):
            ax.plot(s["threshold"], s[metric], marker=".", label=metric)
        if thresholds is not None:
            ax.axvline(thresholds[label], color="black", linestyle=":", label=f"shipped {thresholds[label]:.2f}")
        ax.set(title=label, xlabel="threshold", xlim=(0, 1), ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def length_histogram(rows_by_split: Mapping[str, Sequence[Mapping[str, Any]]], max_chars: int = 300) -> Figure:
    """Character-length distribution per split (share of rows), with the slice bucket edges.

    Lengths above ``max_chars`` are drawn in the last bin so long outliers stay visible.
    """
    fig = Figure(figsize=(8, 3.8), layout="constrained")
    ax = fig.subplots()
    bins = np.arange(0, max_chars + 10, 10)
    for split, rows in rows_by_split.items():
        lengths = np.minimum([len(r["text"]) for r in rows], max_chars)
        weights = np.full(len(lengths), 1.0 / max(len(lengths), 1))
        ax.hist(lengths, bins=bins, weights=weights, histtype="step", linewidth=1.5, label=f"{split} (n={len(rows)})")
    for _, lo, _ in LENGTH_BUCKETS[1:]:
        ax.axvline(lo - 0.5, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel=f"characters (≥{max_chars} in the last bin)", ylabel="share of rows", title="segment length")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def composition_bars(
    composition: pd.DataFrame, by: str = "label", hue: str = "split", normalize: bool = False
) -> Figure:
    """Bars of ``composition_table`` counts: one group per ``by`` value, one bar per ``hue``.

    ``normalize=True`` shows each ``hue`` value's share, which makes splits of very different
    sizes comparable (is the test split's label mix the training mix?).
    """
    table = composition.pivot_table(index=by, columns=hue, values="n", aggfunc="sum", fill_value=0)
    known = [c for c in SPLIT_ORDER if c in table.columns]
    table = table[known + [c for c in table.columns if c not in known]]  # train, validation, test reads naturally
    if normalize:
        table = table / table.sum(0)
    fig = Figure(figsize=(max(6.0, 1.2 * len(table) * max(1, len(table.columns)) / 2), 3.8), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(table.columns), 1)
    x = np.arange(len(table))
    for j, col in enumerate(table.columns):
        ax.bar(x + j * width - 0.4 + width / 2, table[col].to_numpy(), width, label=str(col))
    ax.set_xticks(x, [str(v) for v in table.index], rotation=20, ha="right")
    ax.set(ylabel="share of rows" if normalize else "rows", title=f"{by} by {hue}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _label_axes_ylabel(fig: Figure, text: str) -> None:
    fig.axes[0].set_ylabel(text)
