"""Backends: what runs the network on a padded batch, and which one a loaded model gets.

A runner takes ``{"input_ids", "attention_mask"}`` int64 arrays of shape ``(n, width)`` and
returns ``(n, 3)`` float32 logits. :class:`model.classifier.Classifier` is given one and keeps
everything else (tokenising, windowing, bucketing, combining, thresholds); the torch runner
lives here, the onnxruntime one in :mod:`model.onnx_backend`. :func:`make_runner` picks one from
``inference.backend``: ``auto`` (the default) is ONNX Runtime int8, exported on first use, with
PyTorch as the fallback when that cannot be had.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from model.artifact import Manifest
    from model.config import InferenceConfig

log = logging.getLogger(__name__)


class Runner(Protocol):
    def __call__(self, batch: Mapping[str, np.ndarray]) -> np.ndarray: ...


class TorchRunner:
    """Runs the PyTorch network (eval mode, no autograd)."""

    backend = "torch"

    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            inputs = {k: torch.from_numpy(np.asarray(v)) for k, v in batch.items()}
            return self.model(**inputs).logits.float().numpy()


def make_runner(path: Path, model, tokenizer, manifest: Manifest, config: InferenceConfig) -> Runner:
    """The runner ``config.backend`` asks for.

    ``torch``: PyTorch. ``onnx``: ONNX Runtime (found or exported; any failure is raised).
    ``auto``: ONNX Runtime, and PyTorch with a warning that says why if the export cannot be
    found, made or loaded (e.g. onnxruntime missing, a read-only cache, an unsupported encoder),
    so a model always loads.
    """
    if config.backend == "torch":
        return TorchRunner(model)
    try:
        from model.onnx_backend import OnnxRunner

        return OnnxRunner.for_artifact(path, model, tokenizer, manifest, config)
    except Exception as e:
        if config.backend == "onnx":
            raise
        log.warning("ONNX Runtime backend unavailable for %s (%s: %s); scoring with PyTorch instead",
                    manifest.name, type(e).__name__, e)  # fmt: skip
        return TorchRunner(model)
