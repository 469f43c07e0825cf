"""CPU inference benchmark: the default ``Classifier.load().score()`` vs the transformers pipeline.

Run: ``python bench/bench_inference.py [--model DIR] [--n 512] [--runs 3] [--json OUT]``.

All configurations run in one process on one machine over the same fine-tuned network:

(a) ``transformers.pipeline("text-classification", top_k=None, function_to_apply="sigmoid")`` over
    the same network object, fed what a user who read the README would feed: ``{"text": context
    prefix, "text_pair": normalised text}`` (normalisation done *before* timing, so the baseline
    is, if anything, flattered), ``truncation=True`` at the artifact's max_length, at every batch
    size in ``--pipeline-batches``; the ratio is taken against its **best** one;
(b) the default path: ``Classifier.load(model).score(segments)`` with no configuration — the
    backend users get (ONNX Runtime int8, length-bucketed; its export is made, untimed, first);
(c) with ``--torch``: the same Classifier on PyTorch (``--backend torch``, the fallback).

Every run measures every configuration once over all ``--n`` segments (one call, what relabeling
does), so each run yields its own ratio; ``--runs`` runs give the spread. Segments are drawn from
the corpus with a fixed seed to a call-centre length mix: many 5–20 characters, median ~35, a
tail to 300.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
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


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="artifact folder or shipped name (default: the shipped model)")
    ap.add_argument("--also", default=None, help="another model (e.g. student) timed in the same runs, default backend"
                    " (and PyTorch with --torch)")  # fmt: skip
    ap.add_argument("--n", type=int, default=512, help="segments per run")
    ap.add_argument("--runs", type=int, default=3, help="whole comparisons; each gives a ratio")
    ap.add_argument("--pipeline-batches", default="1,8,16,32", help="pipeline batch sizes tried (best one counts)")
    ap.add_argument("--torch", action="store_true", help="also time the Classifier on PyTorch (the fallback backend)")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: physical cores)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    import onnxruntime
    import torch
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from model.classifier import Classifier
    from model.config import InferenceConfig, model_path, repo_relative
    from model.machine import describe, physical_cores
    from model.preprocess import context_prefix, normalize, segments_of

    hf_logging.set_verbosity_error()
    model_dir = model_path(args.model)
    threads = args.threads or physical_cores()
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    default = Classifier.load(model_dir, config=InferenceConfig(threads=args.threads))  # what users get
    print(f"default path: backend {default.backend}, ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    torch_clf = Classifier.load(model_dir, config=InferenceConfig(backend="torch", threads=args.threads))
    segs = draw_segments(args.n, args.seed)
    lengths = [len(s["text"]) for s in segs]
    print(f"{len(segs)} segments, chars p10/median/p90/max = {np.percentile(lengths, [10, 50, 90]).round().tolist()}"
          f"/{max(lengths)}", file=sys.stderr)  # fmt: skip

    # The model is passed as an object: saved to a folder, its config would map to transformers'
    # own BertForSequenceClassification ([CLS] pooler) rather than our mean-pooling head.
    torch_clf.tokenizer.model_max_length = torch_clf.manifest.max_length
    pipe = pipeline("text-classification", model=torch_clf.model, tokenizer=torch_clf.tokenizer, top_k=None,
                    function_to_apply="sigmoid", device=-1)  # fmt: skip
    pairs = [{"text": context_prefix(s.speaker, s.listener), "text_pair": normalize(s.text)} for s in segments_of(segs)]
    configs: dict[str, Callable[[], Any]] = {
        f"a) pipeline b{b}": (lambda b=b: pipe(pairs, batch_size=b, truncation=True))
        for b in (int(x) for x in args.pipeline_batches.split(","))
    }
    configs[f"b) default Classifier ({default.backend})"] = lambda: default.score(segs)
    if args.torch:
        configs[f"c) Classifier ({torch_clf.backend})"] = lambda: torch_clf.score(segs)
    if args.also:  # e.g. the distilled student, against the pipeline over this model's network
        for backend in ("auto", "torch") if args.torch else ("auto",):
            cfg = InferenceConfig(backend=backend, threads=args.threads)
            other = Classifier.load(model_path(args.also), config=cfg)
            other.score(segs[:32])
            configs[f"d) {args.also} Classifier ({other.backend})"] = lambda other=other: other.score(segs)
    pipe(pairs[:8], batch_size=8, truncation=True)  # warm-up: first-call allocations, thread pools
    default.score(segs[:32])
    torch_clf.score(segs[:32])

    runs: list[dict[str, float]] = []
    for r in range(args.runs):
        speeds = {name: round(len(segs) / timed(fn), 1) for name, fn in configs.items()}
        best = max((k for k in speeds if k.startswith("a)")), key=speeds.__getitem__)
        dflt = next(k for k in speeds if k.startswith("b)"))
        speeds["ratio_vs_best_pipeline"] = round(speeds[dflt] / speeds[best], 2)
        runs.append(speeds)
        print(f"run {r + 1}: " + ", ".join(f"{k} {v}" for k, v in speeds.items()), file=sys.stderr, flush=True)

    names = list(configs)
    summary = {name: statistics.median(run[name] for run in runs) for name in names}
    ratios = [run["ratio_vs_best_pipeline"] for run in runs]
    env = {
        **describe(), "physical_cores": physical_cores(), "logical_cpus": os.cpu_count(),
        "threads": threads, "default_backend": default.backend,
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
        "model": repo_relative(model_dir), "also": args.also, "max_length": default.manifest.max_length,
        "n": len(segs), "runs": args.runs, "seed": args.seed,
        "chars": {"p10": float(np.percentile(lengths, 10)), "median": float(np.median(lengths)),
                  "p90": float(np.percentile(lengths, 90)), "max": max(lengths)},
    }  # fmt: skip
    print(f"| configuration | seg/s (median of {args.runs}) | per run |")
    print("|---|---:|---|")
    for name in names:
        print(f"| {name} | {summary[name]:.0f} | {' / '.join(f'{run[name]:.0f}' for run in runs)} |")
    print(f"| **default ÷ best pipeline** | **{statistics.median(ratios):.2f}×** | "
          f"{' / '.join(f'{x:.2f}' for x in ratios)} |")  # fmt: skip
    print(json.dumps(env, ensure_ascii=False))
    if args.json:
        out = {"env": env, "runs": runs, "median_segments_per_s": summary, "ratios": ratios}
        args.json.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
