"""ONNX export of a trained network, optionally int8-quantised (``collectguard export`` calls it).

Why ONNX: on CPU, onnxruntime with fused BERT kernels and int8 weights scores about twice as
fast as eager PyTorch, and only the network changes — preprocessing, windowing, thresholds and
the max-over-windows rule stay in :class:`model.classifier.Classifier`.

Pipeline: the merged fine-tuned network (LoRA already folded in) is traced with
the TorchScript exporter (``dynamo=False``: the most robust path for BERT), checked against
PyTorch, then fused with onnxruntime's transformer optimizer (Attention, SkipLayerNorm, Gelu),
and for ``int8`` its MatMul/Attention weights are quantised per output channel and every
activation gets a **fixed** scale, calibrated once on windows of training text (:func:`_fix_activation_scales`).
Fixed scales matter: onnxruntime's dynamic quantisation derives them from the whole batch, so a
segment's score moved (by up to 0.34) with whatever it was batched with — in the API, other
clients' requests; with fixed scales every row is computed alone, as in PyTorch. Next to every
``model.onnx`` lies ``collectguard_onnx.json`` naming the artifact (weights hash,
preprocessing version) and the quantisation, so an export made for other weights is detected.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model.files import atomic_write
from model.preprocess import PREPROCESS_VERSION, Segment, encode_windows, make_windows, pad_batch

if TYPE_CHECKING:
    from model.artifact import Manifest

EXPORT_FORMAT = "collectguard-onnx/3"  # /2: int8 activation scales are calibrated, not per batch; /3: 7-bit weights
MODEL_FILE = "model.onnx"
META_FILE = "collectguard_onnx.json"
OPSET = 17
QUANTIZATIONS = (None, "int8")
FP32_TOLERANCE = 1e-3  # max |logit| difference to PyTorch an fp32 export may show (typically ~1e-6)
# Sentences for the export-time parity probe (and their context prefixes); any real text would do.
_PROBE_TEXTS = (
    ("坐席对债务人", "您好，您的账单已经逾期四十天了，请尽快处理。"),
    ("坐席对第三方", "麻烦您转告他给我们回个电话"),
    ("客户对象未知", "嗯 对 是我"),
    ("坐席对债务人", "你再不还钱我就去你单位找你领导，让你全公司都知道你是老赖"),
)


def default_export_dir(manifest: Manifest, quantize: str | None) -> Path:
    """The cache folder for one artifact's export: ``<cache>/onnx/<weights_sha256[:12]>[-int8]``."""
    from model.base import default_cache_dir

    suffix = f"-{quantize}" if quantize else ""
    return default_cache_dir() / "onnx" / f"{manifest.weights_sha256[:12]}{suffix}"


def export_identity(manifest: Manifest, quantize: str | None) -> dict[str, Any]:
    """What must match for an export to stand for an artifact (the rest of the JSON is informative)."""
    return {
        "format": EXPORT_FORMAT,
        "weights_sha256": manifest.weights_sha256,
        "preprocess_version": PREPROCESS_VERSION,
        "quantize": quantize,
        "labels": list(manifest.labels),
    }


def stale_reason(out_dir: Path, manifest: Manifest, quantize: str | None) -> str | None:
    """``None`` if ``out_dir`` holds a current export for this artifact, else why it does not."""
    out_dir = Path(out_dir)
    meta_file, model_file = out_dir / META_FILE, out_dir / MODEL_FILE
    if not meta_file.exists() or not model_file.exists():
        return f"{out_dir}: no export ({MODEL_FILE} or {META_FILE} missing)"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        return f"{meta_file}: unreadable ({e})"
    for key, want in export_identity(manifest, quantize).items():
        if meta.get(key) != want:
            return f"{meta_file}: {key} is {meta.get(key)!r}, this artifact needs {want!r}"
    return None


# -- export steps ---------------------------------------------------------------------------
def _probe_batches(model, tokenizer, max_length: int) -> list[dict[str, np.ndarray]]:
    """Real text pairs (padded, so the mask matters) and one random full-length batch."""
    from model.preprocess import Window

    windows = [Window(i, prefix, text, 0, len(text)) for i, (prefix, text) in enumerate(_PROBE_TEXTS)]
    enc = pad_batch(encode_windows(tokenizer, windows, max_length), tokenizer.pad_token_id)
    rng = np.random.default_rng(0)
    vocab = min(len(tokenizer), model.config.vocab_size)
    long_ids = rng.integers(4, vocab, size=(2, max_length), dtype=np.int64)
    long_mask = np.ones_like(long_ids)
    long_mask[1, max_length // 3 :] = 0
    ids, mask = enc["input_ids"], enc["attention_mask"]
    return [
        {"input_ids": ids, "attention_mask": mask},
        {"input_ids": ids[:1], "attention_mask": mask[:1]},
        {"input_ids": long_ids, "attention_mask": long_mask},
    ]


def _torch_logits(model, batch: dict[str, np.ndarray]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.float().numpy()


def _trace_to_onnx(model, probe: dict[str, np.ndarray], path: Path) -> None:
    """TorchScript-trace the network to ONNX with dynamic batch and sequence axes."""
    import torch

    class Logits(torch.nn.Module):
        """Positional (input_ids, attention_mask) → logits, the runner's contract."""

        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    # eval() matters: the exporter restores the wrapper's mode afterwards, and a new Module is
    # in training mode — that would silently switch the live model's dropout on.
    wrapper = Logits(model).eval()
    args = (torch.from_numpy(probe["input_ids"]), torch.from_numpy(probe["attention_mask"]))
    dynamic = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
               "logits": {0: "batch"}}  # fmt: skip
    # Eager attention traces to MatMul/Softmax, which the optimizer fuses into one Attention
    # kernel; the SDPA path traces to a graph it does not recognise (measured: no fusion).
    attn = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # tracer and "legacy exporter" warnings are expected here
            torch.onnx.export(
                wrapper, args, str(path), input_names=["input_ids", "attention_mask"], output_names=["logits"],
                dynamic_axes=dynamic, opset_version=OPSET, do_constant_folding=True, dynamo=False,
            )  # fmt: skip
    finally:
        model.set_attn_implementation(attn)
        model.eval()


def _fuse(src: Path, dst: Path, config) -> None:
    """Fuse BERT subgraphs into onnxruntime's kernels (Attention, SkipLayerNorm, BiasGelu)."""
    from onnxruntime.transformers import optimizer

    opt = optimizer.optimize_model(
        str(src), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size,
        opt_level=0,  # python fusions only; the session applies its own graph optimisations at load
    )  # fmt: skip
    opt.save_model_to_file(str(dst))


def _quantize_int8(src: Path, dst: Path) -> None:
    """Int8 weights per output channel; activations still quantised per batch (until fixed below).

    Weights use 7 bits (``reduce_range``): onnxruntime multiplies uint8 activations by int8 weights
    with pairwise 16-bit sums on CPUs without VNNI (AVX2, most AMD EPYC and older Xeons), which
    saturate on 8-bit weights. With 8 bits the same export scored the real dev set at macro-F1
    0.850 on the machine that calibrated it (likely VNNI) and 0.827 on an AVX2 one. 7-bit weights
    cannot saturate, so the integer sums are exact on either kind of CPU (onnxruntime's
    quantisation guide recommends this for U8S8 on non-VNNI machines); checked on AVX2 only.
    Embedding tables (Gather) stay fp32: they cost no compute and quantising them costs accuracy.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's "consider pre-processing" hint is for CNNs
    try:
        quantize_dynamic(
            src, dst, op_types_to_quantize=["MatMul", "Attention"], per_channel=True, reduce_range=True,
            weight_type=QuantType.QInt8,
            # shape inference cannot type the outputs of fused com.microsoft ops; they are all float
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )  # fmt: skip
    finally:
        root.setLevel(level)


def calibration_segments(path: Path, rows: int, seed: int = 0) -> list[Segment]:
    """``rows`` segments drawn (fixed seed) from a JSONL of ``text``/``speaker``/``listener`` rows.

    They set the int8 activation ranges, so they should look like what the model will score: the
    default is the authored training split, which is fictitious and ships with the repository.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"int8 calibration data {path} not found (set inference.int8_calibration)")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(lines), size=min(rows, len(lines)), replace=False)) if lines else []
    segs = []
    for i in picked:
        try:
            segs.append(Segment.of(json.loads(lines[i])))
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}:{i + 1}: not a segment row ({e})") from None
    if not segs:
        raise ValueError(f"int8 calibration data {path} holds no rows")
    return segs


def _activation_ranges(model, batches: list[dict[str, np.ndarray]], names: list[str]) -> dict[str, tuple[float, float]]:
    """Min and max of each named tensor over the real (unpadded) tokens of the calibration batches."""
    import onnx
    from onnx import TensorProto, helper

    probe = onnx.ModelProto()
    probe.CopyFrom(model)  # the same graph with the named tensors exposed as outputs
    probe.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names)
    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(probe, f"{tmp}/probe.onnx")
        sess = make_session(Path(f"{tmp}/probe.onnx"))
        ranges = {n: (0.0, 0.0) for n in names}  # uint8 ranges always hold 0, as the dynamic op's do
        for batch in batches:
            real = batch["attention_mask"].astype(bool)
            for name, value in zip(names, sess.run(names, batch), strict=True):
                value = value[real] if value.shape[:2] == real.shape else value
                lo, hi = ranges[name]
                ranges[name] = (min(lo, float(value.min())), max(hi, float(value.max())))
    return ranges


def _fix_activation_scales(path: Path, batches: list[dict[str, np.ndarray]]) -> int:
    """Replace every ``DynamicQuantizeLinear`` with a ``QuantizeLinear`` of calibrated, fixed scale.

    The rewritten op quantises like the dynamic one (uint8, asymmetric, range holding 0) but with
    the range seen over the calibration windows instead of the current batch's, so a row's
    result no longer depends on the rows beside it. Same kernels, same speed (measured). Returns
    how many activations were fixed.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    dynamic = [n for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"]
    ranges = _activation_ranges(model, batches, [n.input[0] for n in dynamic])
    nodes = []
    for node in model.graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            nodes.append(node)
            continue
        (x,), (y, y_scale, y_zero) = node.input, node.output
        lo, hi = ranges[x]
        scale = (hi - lo) / 255.0 or 1.0
        zero = int(np.clip(round(-lo / scale), 0, 255))
        model.graph.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), y_scale),
                                        numpy_helper.from_array(np.array(zero, np.uint8), y_zero)])  # fmt: skip
        nodes.append(helper.make_node("QuantizeLinear", [x, y_scale, y_zero], [y], name=f"{node.name}_fixed"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(path))
    return len(dynamic)


def _calibration_batches(tokenizer, manifest: Manifest, segments: Sequence[Segment]) -> list[dict[str, np.ndarray]]:
    """The calibration segments windowed and tokenised as scoring does, in length-sorted batches of 16."""
    windows = make_windows(tokenizer, segments, manifest.max_length, manifest.stride)
    ids = sorted(encode_windows(tokenizer, windows, manifest.max_length), key=len)
    return [pad_batch(ids[i : i + 16], tokenizer.pad_token_id) for i in range(0, len(ids), 16)]


def make_session(path: Path, threads: int | None = None, spin: bool = False):
    """An onnxruntime CPU session: intra-op = physical cores, one inter-op thread, all graph optimisations.

    ``spin`` lets idle intra-op threads busy-wait between ops: about 10 % faster on an otherwise
    idle machine (measured 260 vs 235 seg/s), but when relabel workers, the API or training share
    the cores, spinning threads steal them (measured: int8 batch 1.6x slower under contention).
    """
    import onnxruntime as ort

    from model.machine import physical_cores

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or physical_cores()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _max_diff(path: Path, model, probes: list[dict[str, np.ndarray]], threads: int | None) -> dict[str, float]:
    """Largest logit and probability difference between the ONNX file and PyTorch on the probes."""
    sess = make_session(path, threads)
    logit, prob = 0.0, 0.0
    for batch in probes:
        ref, got = _torch_logits(model, batch), sess.run(["logits"], batch)[0]
        logit = max(logit, float(np.abs(ref - got).max()))
        prob = max(prob, float(np.abs(1 / (1 + np.exp(-ref)) - 1 / (1 + np.exp(-got))).max()))
    return {"max_abs_logit": logit, "max_abs_prob": prob}


def export_onnx(
    model,
    tokenizer,
    manifest: Manifest,
    out_dir: Path,
    quantize: str | None,
    threads: int | None = None,
    calibration: Sequence[Segment] = (),
) -> Path:
    """Export the network ``model`` to ``out_dir/model.onnx`` (fp32, or int8 with ``quantize="int8"``).

    Takes the parts it needs: the network, its tokenizer (for the parity probes), the manifest
    (identity and window length), the onnxruntime thread count for the parity check and, for
    int8, the segments that fix the activation scales (:func:`calibration_segments`).

    The fp32 graph is checked against PyTorch before anything is written; a mismatch raises
    ``ValueError``. The JSON is written last, so an interrupted export is never taken as current.
    Returns the ``.onnx`` path.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    if quantize == "int8" and not calibration:
        raise ValueError("an int8 export needs calibration segments to fix its activation scales")
    import onnxruntime
    import torch

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    probes = _probe_batches(model, tokenizer, manifest.max_length)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
        raw, fused = Path(tmp) / "raw.onnx", Path(tmp) / "fused.onnx"
        _trace_to_onnx(model, probes[0], raw)
        _fuse(raw, fused, model.config)
        fp32 = _max_diff(fused, model, probes, threads)
        if fp32["max_abs_logit"] > FP32_TOLERANCE:
            diff = fp32["max_abs_logit"]
            raise ValueError(f"ONNX export does not reproduce PyTorch: max logit difference {diff:.2e}")
        final, fixed = fused, 0
        if quantize == "int8":
            final = Path(tmp) / "int8.onnx"
            _quantize_int8(fused, final)
            fixed = _fix_activation_scales(final, _calibration_batches(tokenizer, manifest, calibration))
        parity = fp32 if final == fused else _max_diff(final, model, probes, threads)
        atomic_write(out_dir / MODEL_FILE, lambda p: os.replace(final, p))
    meta = {
        **export_identity(manifest, quantize),
        "model": {"name": manifest.name, "version": manifest.version},
        "opset": OPSET,
        "quantization": None
        if quantize is None
        else {
            "weights": "int8 per output channel (MatMul, Attention)",
            "activations": f"uint8, {fixed} fixed scales calibrated on {len(calibration)} segments",
        },
        "parity_vs_torch": {k: float(f"{v:.3g}") for k, v in parity.items()},
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    text = json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    atomic_write(out_dir / META_FILE, lambda p: p.write_text(text, encoding="utf-8"))
    return out_dir / MODEL_FILE
