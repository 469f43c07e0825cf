"""The one way in: ``Classifier.load().score(segments)``.

Data flows one way: raw text → :mod:`model.preprocess` (normalise, context, windows) → tokenise
→ network → per-window sigmoid scores → max over windows → thresholds → labels. The HTTP API,
batch relabeling, evaluation and the notebooks all call this class.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.artifact import Manifest, load_artifact
from model.config import InferenceConfig, model_path
from model.labels import COMPLIANT, VIOLATIONS, most_severe
from model.machine import physical_cores
from model.preprocess import (
    PREPROCESS_VERSION,
    Segment,
    Window,
    combine_by_max,
    encode_windows,
    make_windows,
    pad_batch,
    segments_of,
)
from model.runners import Runner, TorchRunner, make_runner
from model.thresholds import apply_thresholds, check_thresholds

__all__ = ["Classifier", "Prepared", "SegmentLike", "check_thresholds"]

SegmentLike = str | Mapping[str, Any] | Segment


@dataclass(frozen=True)
class Prepared:
    """Segments cut into windows and tokenised: the unit a scheduler can split across batches."""

    windows: list[Window]
    ids: list[list[int]]
    n_segments: int


class Classifier:
    """A loaded collectguard model: scores transcript segments for the violation labels."""

    def __init__(
        self,
        model,
        tokenizer,
        manifest: Manifest,
        config: InferenceConfig | None = None,
        runner: Runner | None = None,
    ) -> None:
        """``runner`` runs the network on padded batches (default: :class:`~model.runners.TorchRunner`)."""
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.manifest = manifest
        self.config = config or InferenceConfig()
        self.thresholds: dict[str, float] = dict(manifest.thresholds)
        self.runner: Runner = runner if runner is not None else TorchRunner(self.model)

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        thresholds: Mapping[str, float] | None = None,
        config: InferenceConfig | None = None,
    ) -> Classifier:
        """Load an artifact folder, or a shipped model by name (``None`` = the shipped default model).

        The network runs on ``config.backend``: by default ONNX Runtime int8 (the export is found
        beside the artifact or in the cache, or made there on first use), PyTorch as the fallback.
        """
        config = config or InferenceConfig()
        torch.set_num_threads(config.threads or physical_cores())
        path = model_path(path)
        model, tokenizer, manifest = load_artifact(path)
        runner = make_runner(path, model, tokenizer, manifest, config)  # auto: ONNX int8, else PyTorch
        clf = cls(model, tokenizer, manifest, config, runner)
        clf.thresholds.update(check_thresholds(thresholds))
        return clf

    # -- identity -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def backend(self) -> str:
        """What runs the network: ``torch``, ``onnx-int8`` or ``onnx-fp32`` (another runner: its class name)."""
        return getattr(self.runner, "backend", type(self.runner).__name__)

    @property
    def preprocess_version(self) -> str:
        return PREPROCESS_VERSION

    @property
    def labels(self) -> tuple[str, ...]:
        return VIOLATIONS

    # -- scoring --------------------------------------------------------------------------
    def window_scores(self, windows: Sequence[Window], batch_size: int | None = None) -> np.ndarray:
        """Sigmoid scores per window, in the given order (length-bucketed internally)."""
        if not windows:
            return np.zeros((0, len(VIOLATIONS)), dtype=np.float32)
        batch_size = batch_size or self.config.batch_size
        ids = encode_windows(self.tokenizer, windows, self.manifest.max_length)
        order = np.argsort([len(x) for x in ids], kind="stable")  # similar lengths share a batch: little padding
        out = np.empty((len(windows), len(VIOLATIONS)), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self.run_windows([ids[i] for i in idx])
        return out

    # -- the same steps, one at a time (the API's scheduler interleaves requests between them) --
    def prepare(self, segments: Iterable[SegmentLike]) -> Prepared:
        """Normalise, window and tokenise: everything before the network, for one request."""
        segs = segments_of(segments)
        windows = make_windows(self.tokenizer, segs, self.manifest.max_length, self.manifest.stride)
        return Prepared(windows, encode_windows(self.tokenizer, windows, self.manifest.max_length), len(segs))

    def run_windows(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Sigmoid scores of tokenised windows run as ONE padded batch (callers choose the batch)."""
        logits = self.runner(pad_batch(list(ids), self.tokenizer.pad_token_id))
        return 1.0 / (1.0 + np.exp(-logits))

    @staticmethod
    def combine(prepared: Prepared, window_scores: np.ndarray) -> np.ndarray:
        """Per-segment probabilities from a prepared request's window scores (max over windows)."""
        return combine_by_max(window_scores, prepared.windows, prepared.n_segments)

    def predict_proba(self, segments: Iterable[SegmentLike], batch_size: int | None = None) -> np.ndarray:
        """Violation probabilities, shape ``(n_segments, 3)`` in :data:`VIOLATIONS` order."""
        segs = segments_of(segments)
        windows = make_windows(self.tokenizer, segs, self.manifest.max_length, self.manifest.stride)
        return combine_by_max(self.window_scores(windows, batch_size), windows, len(segs))

    def decide(self, probs: np.ndarray, thresholds: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
        """Turn probabilities into results: ``label`` (most severe), ``labels`` and four ``scores``."""
        th = {**self.thresholds, **check_thresholds(thresholds)}
        probs = np.asarray(probs)
        results = []
        for row, on in zip(probs, apply_thresholds(probs, th), strict=True):
            scores = {label: float(p) for label, p in zip(VIOLATIONS, row, strict=True)}
            scores[COMPLIANT] = float(1.0 - row.max())  # compliant = no violation is likely
            labels = [label for label, flag in zip(VIOLATIONS, on, strict=True) if flag]
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
