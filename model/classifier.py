"""The one way in: ``Classifier.load().score(segments)``.

Data flows one way: raw text → :mod:`model.preprocess` (normalise, context, windows) → tokenise
→ network → per-window sigmoid scores → max over windows → thresholds → labels. The HTTP API,
batch relabeling, evaluation and the notebooks all call this class.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.artifact import Manifest, load_artifact
from model.config import SHIPPED_MODEL_DIR, InferenceConfig, physical_cores
from model.labels import COMPLIANT, VIOLATIONS, most_severe
from model.preprocess import PREPROCESS_VERSION, Segment, Window, combine_by_max, make_windows, segments_of

SegmentLike = str | Mapping[str, Any] | Segment


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


class Classifier:
    """A loaded collectguard model: scores transcript segments for the violation labels."""

    def __init__(self, model, tokenizer, manifest: Manifest, config: InferenceConfig | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.manifest = manifest
        self.config = config or InferenceConfig()
        self.thresholds: dict[str, float] = dict(manifest.thresholds)
        self._runner = self._torch_runner

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        thresholds: Mapping[str, float] | None = None,
        config: InferenceConfig | None = None,
    ) -> Classifier:
        """Load an artifact folder (``None`` = the shipped default model)."""
        config = config or InferenceConfig()
        torch.set_num_threads(config.threads or physical_cores())
        path = Path(path) if path is not None else SHIPPED_MODEL_DIR
        model, tokenizer, manifest = load_artifact(path)
        clf = cls(model, tokenizer, manifest, config)
        clf.thresholds.update(check_thresholds(thresholds))
        if config.backend == "onnx":
            from model.onnx_backend import onnx_runner

            clf._runner = onnx_runner(path, clf)
        return clf

    # -- identity -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def preprocess_version(self) -> str:
        return PREPROCESS_VERSION

    @property
    def labels(self) -> tuple[str, ...]:
        return VIOLATIONS

    # -- scoring --------------------------------------------------------------------------
    def _torch_runner(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            inputs = {k: torch.from_numpy(np.asarray(v)) for k, v in batch.items()}
            return self.model(**inputs).logits.float().numpy()

    def window_scores(self, windows: Sequence[Window], batch_size: int | None = None) -> np.ndarray:
        """Sigmoid scores per window, in the given order (length-bucketed internally)."""
        if not windows:
            return np.zeros((0, len(VIOLATIONS)), dtype=np.float32)
        batch_size = batch_size or self.config.batch_size
        enc = self.tokenizer(
            [w.prefix for w in windows], [w.text for w in windows],
            truncation="only_second", max_length=self.manifest.max_length,
        )  # fmt: skip
        ids, masks = enc["input_ids"], enc["attention_mask"]
        order = np.argsort([len(x) for x in ids], kind="stable")  # similar lengths share a batch: little padding
        out = np.empty((len(windows), len(VIOLATIONS)), dtype=np.float32)
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(ids[i]) for i in idx)
            input_ids = np.full((len(idx), width), pad, dtype=np.int64)
            attention = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                input_ids[row, : len(ids[i])] = ids[i]
                attention[row, : len(masks[i])] = masks[i]
            logits = self._runner({"input_ids": input_ids, "attention_mask": attention})
            out[idx] = 1.0 / (1.0 + np.exp(-logits))
        return out

    def predict_proba(self, segments: Iterable[SegmentLike], batch_size: int | None = None) -> np.ndarray:
        """Violation probabilities, shape ``(n_segments, 3)`` in :data:`VIOLATIONS` order."""
        segs = segments_of(segments)
        windows = make_windows(self.tokenizer, segs, self.manifest.max_length, self.manifest.stride)
        return combine_by_max(self.window_scores(windows, batch_size), windows, len(segs))

    def decide(self, probs: np.ndarray, thresholds: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
        """Turn probabilities into results: ``label`` (most severe), ``labels`` and four ``scores``."""
        th = {**self.thresholds, **check_thresholds(thresholds)}
        results = []
        for row in np.asarray(probs):
            scores = {label: float(p) for label, p in zip(VIOLATIONS, row, strict=True)}
            scores[COMPLIANT] = float(1.0 - row.max())  # compliant = no violation is likely
            labels = [label for label in VIOLATIONS if scores[label] >= th[label]]
            results.append({"label": most_severe(labels), "labels": labels, "scores": scores})
        return results

    def score(
        self,
        segments: Iterable[SegmentLike],
        thresholds: Mapping[str, float] | None = None,
        batch_size: int | None = None,
    ) -> list[dict[str, Any]]:
        """Score segments (strings, or dicts with ``text`` and optional ``speaker``/``listener``)."""
        check_thresholds(thresholds)  # fail before any work is done
        return self.decide(self.predict_proba(segments, batch_size), thresholds)

    def predict(self, texts: Iterable[SegmentLike]) -> dict[str, list[float]]:
        """Detoxify-style view: ``{label: [score per text]}`` for all four labels."""
        results = self.score(texts)
        return {label: [r["scores"][label] for r in results] for label in (*VIOLATIONS, COMPLIANT)}
