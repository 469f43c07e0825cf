"""Backends: what runs the network on a padded batch.

A runner takes ``{"input_ids", "attention_mask"}`` int64 arrays of shape ``(n, width)`` and
returns ``(n, 3)`` float32 logits. :class:`model.classifier.Classifier` is given one and keeps
everything else (tokenising, windowing, bucketing, combining, thresholds); the torch runner
lives here, the onnxruntime one in :mod:`model.onnx_backend`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np


class Runner(Protocol):
    def __call__(self, batch: Mapping[str, np.ndarray]) -> np.ndarray: ...


class TorchRunner:
    """Runs the PyTorch network (eval mode, no autograd)."""

    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            inputs = {k: torch.from_numpy(np.asarray(v)) for k, v in batch.items()}
            return self.model(**inputs).logits.float().numpy()
