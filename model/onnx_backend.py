"""The onnxruntime backend: ``InferenceConfig(backend="onnx")`` swaps only the network call.

:class:`model.classifier.Classifier` keeps tokenising, length-bucketing, windowing, combining and
thresholding; the runner built here takes the same padded ``input_ids``/``attention_mask`` batch
as the PyTorch runner and returns the same ``(n, 3)`` float32 logits. The export is found (next
to the artifact, else in the cache) or made on first use, so the API and relabeling only set
``backend: onnx``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.export import default_export_dir, export_onnx, make_session, stale_reason

if TYPE_CHECKING:
    from model.classifier import Classifier

log = logging.getLogger(__name__)

Runner = Callable[[Mapping[str, np.ndarray]], np.ndarray]


def export_candidates(path: Path, clf: Classifier, quantize: str | None) -> list[Path]:
    """Where an export may already be: shipped beside the artifact (``onnx[-int8]/``), then the cache."""
    suffix = f"-{quantize}" if quantize else ""
    return [Path(path) / f"onnx{suffix}", default_export_dir(clf.manifest, quantize)]


def find_or_export(path: Path, clf: Classifier, quantize: str | None) -> Path:
    """The current ``.onnx`` for this artifact, exporting into the cache if none is current."""
    candidates = export_candidates(path, clf, quantize)
    for folder in candidates:
        if stale_reason(folder, clf.manifest, quantize) is None:
            return folder / "model.onnx"
    target = candidates[-1]
    log.warning("exporting %s to ONNX (%s) in %s: %s", clf.name, quantize or "fp32", target,
                stale_reason(target, clf.manifest, quantize))  # fmt: skip
    return export_onnx(clf, target, quantize)


def onnx_runner(path: Path, clf: Classifier) -> Runner:
    """A runner with the PyTorch runner's contract, backed by an onnxruntime CPU session.

    Quantisation follows ``clf.config.onnx_quantize`` (``int8`` by default); intra-op threads
    follow ``clf.config.threads`` or the physical core count.
    """
    quantize = None if getattr(clf.config, "onnx_quantize", "int8") == "none" else "int8"
    onnx_path = find_or_export(Path(path), clf, quantize)
    session = make_session(onnx_path, clf.config.threads)
    names = [i.name for i in session.get_inputs()]

    def run(batch: Mapping[str, np.ndarray]) -> np.ndarray:
        feed = {name: np.ascontiguousarray(batch[name], dtype=np.int64) for name in names}
        return np.asarray(session.run(["logits"], feed)[0], dtype=np.float32)

    run.session = session  # type: ignore[attr-defined]  # for benchmarks and inspection
    run.onnx_path = onnx_path  # type: ignore[attr-defined]
    return run
