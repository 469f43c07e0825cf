"""The onnxruntime backend: ``InferenceConfig(backend="onnx")`` swaps only the network call.

:class:`model.classifier.Classifier` keeps tokenising, length-bucketing, windowing, combining and
thresholding; :class:`OnnxRunner` takes the same padded ``input_ids``/``attention_mask`` batch
as :class:`model.runners.TorchRunner` and returns the same ``(n, 3)`` float32 logits. The export
is found (next to the artifact, else in the cache) or made on first use, so the API and
relabeling only set ``backend: onnx``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.export import META_FILE, calibration_segments, default_export_dir, export_onnx, make_session, stale_reason

if TYPE_CHECKING:
    from model.artifact import Manifest
    from model.config import InferenceConfig

log = logging.getLogger(__name__)


def export_candidates(path: Path, manifest: Manifest, quantize: str | None) -> list[Path]:
    """Where an export may already be: shipped beside the artifact (``onnx[-int8]/``), then the cache."""
    suffix = f"-{quantize}" if quantize else ""
    return [Path(path) / f"onnx{suffix}", default_export_dir(manifest, quantize)]


def find_or_export(path: Path, model, tokenizer, manifest: Manifest, config: InferenceConfig) -> Path:
    """The current ``.onnx`` for this artifact, exporting into the cache if none is current."""
    quantize = None if config.onnx_quantize == "none" else "int8"
    candidates = export_candidates(path, manifest, quantize)
    for folder in candidates:
        if stale_reason(folder, manifest, quantize) is None:
            return folder / "model.onnx"
    target = candidates[-1]
    log.warning("exporting %s to ONNX (%s) in %s: %s", manifest.name, quantize or "fp32", target,
                stale_reason(target, manifest, quantize))  # fmt: skip
    return export_as_configured(model, tokenizer, manifest, target, quantize, config)


def export_as_configured(
    model, tokenizer, manifest: Manifest, out_dir: Path, quantize: str | None, config: InferenceConfig
) -> Path:
    """:func:`model.export.export_onnx` with what ``config`` names: threads, and for int8 its calibration segments."""
    calibration = calibration_segments(config.int8_calibration, config.int8_calibration_rows) if quantize else ()
    return export_onnx(model, tokenizer, manifest, out_dir, quantize, config.threads, calibration)


class OnnxRunner:
    """A runner with the torch runner's contract, backed by an onnxruntime CPU session."""

    def __init__(self, onnx_path: Path, threads: int | None = None, spin: bool = False) -> None:
        self.onnx_path = Path(onnx_path)
        self.session = make_session(self.onnx_path, threads, spin)
        self.input_names = [i.name for i in self.session.get_inputs()]
        meta = self.onnx_path.parent / META_FILE
        quantize = json.loads(meta.read_text(encoding="utf-8")).get("quantize") if meta.exists() else None
        self.backend = f"onnx-{quantize or 'fp32'}"  # what /v1/model, manifests and benchmarks report

    @classmethod
    def for_artifact(cls, path: Path, model, tokenizer, manifest: Manifest, config: InferenceConfig) -> OnnxRunner:
        """The runner for an artifact folder, exporting on first use.

        Quantisation follows ``config.onnx_quantize`` (``int8`` by default, its activation scales
        fixed on ``config.int8_calibration``); intra-op threads follow ``config.threads`` or the
        physical core count.
        """
        onnx_path = find_or_export(Path(path), model, tokenizer, manifest, config)
        return cls(onnx_path, config.threads, config.onnx_spin)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        feed = {name: np.ascontiguousarray(batch[name], dtype=np.int64) for name in self.input_names}
        return np.asarray(self.session.run(["logits"], feed)[0], dtype=np.float32)
