"""CPU inference benchmark: transformers pipeline baseline vs our torch path vs ONNX fp32 / int8.

Run: ``python bench/bench_inference.py [--model DIR] [--n 512] [--repeats 3] [--json OUT]``.

All configurations run in one process on one machine over the same fine-tuned network:

(a) ``transformers.pipeline("text-classification", top_k=None, function_to_apply="sigmoid")`` on
    the merged model saved to a temporary folder, fed what a user who read the README would feed:
    ``{"text": context prefix, "text_pair": normalised text}`` (normalisation done *before*
    timing, so the baseline is, if anything, flattered), ``truncation=True`` at the artifact's
    max_length, batch 1 and batch 32;
(b) ``Classifier.score`` with the PyTorch runner, batch 32 (normalises, windows, length-buckets);
(c) the same with the ONNX fp32 export; (d) with the ONNX int8 export.

Throughput: one call over all ``--n`` segments (what relabeling does), median of ``--repeats``
runs. Latency: one extra pass over requests of 32 segments (1 for batch 1), median and p95.
Segments are drawn from the corpus with a fixed seed to match a call-centre length mix: many
5–20 characters, median ~35, a tail to 300.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Target length mix: (share, min chars, max chars).
LENGTH_MIX = ((0.35, 5, 20), (0.40, 21, 50), (0.17, 51, 100), (0.06, 101, 200), (0.02, 201, 300))


def corpus_rows() -> list[dict[str, Any]]:
    """Every labelled row of the processed splits and the authored files (text + context)."""
    rows = []
    files = sorted((REPO / "data" / "processed").glob("*.jsonl")) + sorted((REPO / "data" / "authored").glob("*.jsonl"))
    for f in files:
        if f.name == "removed.jsonl":
            continue
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                rows.append({"text": r["text"], "speaker": r.get("speaker"), "listener": r.get("listener")})
    return rows


def draw_segments(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` segments matching :data:`LENGTH_MIX`; long ones are joined from same-speaker rows if scarce."""
    rng = np.random.default_rng(seed)
    rows = corpus_rows()
    out: list[dict[str, Any]] = []
    for share, lo, hi in LENGTH_MIX:
        k = round(n * share) if (share, lo, hi) != LENGTH_MIX[-1] else n - len(out)
        pool = [r for r in rows if lo <= len(r["text"]) <= hi]
        while len(pool) < k:  # the tail: glue rows together until they reach the bucket
            r = dict(rows[rng.integers(len(rows))])
            while len(r["text"]) < lo:
                r["text"] += "，" + rows[rng.integers(len(rows))]["text"]
            r["text"] = r["text"][:hi]
            pool.append(r)
        out += [pool[i] for i in rng.choice(len(pool), size=k, replace=False)]
    order = rng.permutation(len(out))  # requests arrive mixed, not sorted
    return [out[i] for i in order]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(
    name: str, batch: int, run_all: Callable[[], Any], run_request: Callable[[Sequence], Any], segs: Sequence,
    repeats: int,
) -> dict[str, Any]:  # fmt: skip
    """Throughput over all segments (median of ``repeats``) and per-request latency (one pass)."""
    run_request(segs[:batch])  # warm-up: first-call allocations, thread pools
    runs = [timed(run_all) for _ in range(repeats)]
    lat = [timed(lambda i=i: run_request(segs[i : i + batch])) * 1000 for i in range(0, len(segs), batch)]
    total = statistics.median(runs)
    row = {
        "name": name, "batch": batch, "seconds": round(total, 3), "runs_s": [round(r, 3) for r in runs],
        "segments_per_s": round(len(segs) / total, 1),
        "latency_ms_median": round(float(np.median(lat)), 1), "latency_ms_p95": round(float(np.percentile(lat, 95)), 1),
    }  # fmt: skip
    print(f"  {name:<24} batch {batch:>2}: {row['segments_per_s']:8.1f} seg/s", file=sys.stderr, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="artifact folder (default: the shipped model)")
    ap.add_argument("--n", type=int, default=512, help="segments per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: physical cores)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--skip-batch1", action="store_true", help="skip the slow pipeline batch-1 baseline")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    import torch
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from model.classifier import Classifier
    from model.config import SHIPPED_MODEL_DIR, InferenceConfig, physical_cores, repo_relative
    from model.onnx_backend import OnnxRunner
    from model.preprocess import context_prefix, normalize, segments_of

    hf_logging.set_verbosity_error()
    model_dir = args.model or SHIPPED_MODEL_DIR
    threads = args.threads or physical_cores()
    load_before = os.getloadavg()
    clf = Classifier.load(model_dir, config=InferenceConfig(threads=threads, batch_size=32))
    segs = draw_segments(args.n, args.seed)
    lengths = [len(s["text"]) for s in segs]
    print(f"{len(segs)} segments, chars p10/median/p90/max = {np.percentile(lengths, [10, 50, 90]).round().tolist()}"
          f"/{max(lengths)}", file=sys.stderr)  # fmt: skip

    results = []
    # (a) the baseline: a stock pipeline over the same fine-tuned model object
    # The model is passed as an object: saved to a folder, its config would map to transformers'
    # own BertForSequenceClassification ([CLS] pooler) rather than our mean-pooling head.
    clf.tokenizer.model_max_length = clf.manifest.max_length
    pipe = pipeline("text-classification", model=clf.model, tokenizer=clf.tokenizer, top_k=None,
                    function_to_apply="sigmoid", device=-1)  # fmt: skip
    pairs = []
    for s in segments_of(segs):
        pairs.append({"text": context_prefix(s.speaker, s.listener), "text_pair": normalize(s.text)})
    for batch in ([] if args.skip_batch1 else [1]) + [32]:
        results.append(measure(
            "a) transformers pipeline", batch,
            lambda b=batch: pipe(pairs, batch_size=b, truncation=True),
            lambda chunk, b=batch: pipe(list(chunk), batch_size=b, truncation=True), pairs, args.repeats,
        ))  # fmt: skip

    # (b) our torch path
    results.append(measure("b) Classifier torch", 32, lambda: clf.score(segs), clf.score, segs, args.repeats))
    # (c, d) the same Classifier with the ONNX runner (exported into the cache on first use, untimed)
    sessions = {}
    for label, quant in [("c) Classifier onnx fp32", "none"), ("d) Classifier onnx int8", "int8")]:
        cfg = InferenceConfig(backend="onnx", onnx_quantize=quant, threads=threads, batch_size=32)
        t0 = time.perf_counter()
        runner = OnnxRunner.for_artifact(model_dir, clf.model, clf.tokenizer, clf.manifest, cfg)
        ox = Classifier(clf.model, clf.tokenizer, clf.manifest, cfg, runner=runner)
        print(f"  {label}: session ready in {time.perf_counter() - t0:.1f} s ({runner.onnx_path})", file=sys.stderr)
        sessions[quant] = runner.session
        results.append(measure(label, 32, lambda ox=ox: ox.score(segs), ox.score, segs, args.repeats))

    base32 = next(r for r in results if r["name"].startswith("a)") and r["batch"] == 32)["segments_per_s"]
    base1 = next((r for r in results if r["name"].startswith("a)") and r["batch"] == 1), {}).get("segments_per_s")
    for r in results:
        r["x_vs_pipeline_b32"] = round(r["segments_per_s"] / base32, 2)
        r["x_vs_pipeline_b1"] = round(r["segments_per_s"] / base1, 2) if base1 else None
    env = {
        "cpu": cpu_model(), "physical_cores": physical_cores(), "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ort_intra_op_threads": sessions["int8"].get_session_options().intra_op_num_threads,
        "ort_inter_op_threads": sessions["int8"].get_session_options().inter_op_num_threads,
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__, "python": platform.python_version(),
        "model": repo_relative(model_dir), "max_length": clf.manifest.max_length,
        "n": len(segs), "repeats": args.repeats, "seed": args.seed,
        "chars": {"p10": float(np.percentile(lengths, 10)), "median": float(np.median(lengths)),
                  "p90": float(np.percentile(lengths, 90)), "max": max(lengths)},
    }  # fmt: skip
    import onnxruntime

    env["onnxruntime"] = onnxruntime.__version__

    head = f"| {'configuration':<26} | batch | seg/s | p50 ms/batch | p95 ms/batch | × (a) b32 | × (a) b1 |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in results:
        x1 = f"{r['x_vs_pipeline_b1']:.2f}" if r["x_vs_pipeline_b1"] else "–"
        print(f"| {r['name']:<26} | {r['batch']:>5} | {r['segments_per_s']:>5.0f} | {r['latency_ms_median']:>12.1f} "
              f"| {r['latency_ms_p95']:>12.1f} | {r['x_vs_pipeline_b32']:>9.2f} | {x1:>8} |")  # fmt: skip
    print(json.dumps(env, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps({"env": env, "results": results}, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
