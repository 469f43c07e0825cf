"""The decision rule: a label is on when its score reaches its threshold (``score >= threshold``).

Checking overrides, parsing them from the command line and applying them live here once; the
Classifier, training metrics and the analysis tools all decide through :func:`apply_thresholds`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from model.labels import VIOLATIONS


def check_thresholds(thresholds: Mapping[str, float] | None) -> dict[str, float]:
    """Validate per-label threshold overrides, naming the bad label or value."""
    out: dict[str, float] = {}
    for label, value in (thresholds or {}).items():
        if label not in VIOLATIONS:
            raise ValueError(f"thresholds: unknown label {label!r}; expected one of {list(VIOLATIONS)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"thresholds.{label}: must be a number in [0, 1], got {value!r}")
        out[label] = float(value)
    return out


def parse_thresholds(items: list[str]) -> dict[str, float]:
    """``LABEL=VALUE`` pairs from the command line."""
    out = {}
    for item in items:
        label, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--threshold {item!r}: expected LABEL=VALUE")
        try:
            out[label] = float(value)
        except ValueError:
            raise SystemExit(f"--threshold {item!r}: {value!r} is not a number") from None
    return out


def apply_thresholds(probs: np.ndarray, thresholds: Mapping[str, float]) -> np.ndarray:
    """0/1 decisions, shape ``(n, 3)`` in :data:`VIOLATIONS` order: ``score >= threshold`` per label."""
    th = np.array([thresholds[label] for label in VIOLATIONS])
    return (np.asarray(probs).reshape(-1, len(VIOLATIONS)) >= th).astype(int)
