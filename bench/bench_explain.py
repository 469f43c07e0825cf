"""Cost of evidence spans (occlusion on flagged segments) relative to scoring, on CPU.

Run: ``python bench/bench_explain.py [--model DIR] [--n 512] [--repeats 3] [--json OUT]``.

The same segments as ``bench_inference.py`` (drawn from ``data/`` to a call-centre length mix,
fixed seed) are scored with ``Classifier.score`` (what every request pays), then the flagged
ones are explained exactly as ``/v1/calls`` and relabel do (:func:`serve.evidence.explain_results`:
at most ``explain.max_variants`` variants per flagged segment, all in one batch). Reported:
seconds for each (median of ``--repeats``), the flagged share, the ratio explain / score, the
cost of explaining one flagged segment in units of scoring one segment, and the worst case
(every segment explained). ``--allow-stale`` times a model whose preprocessing version differs
from the code's (the shipped model while a new one trains): the network and the cost are the
same, only which segments get flagged may differ; the output says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def load(model: Path | None, threads: int | None, allow_stale: bool) -> Any:
    from model.classifier import Classifier
    from model.config import InferenceConfig

    if allow_stale:
        import model.artifact as artifact

        artifact.check_version = lambda version, where="": None  # timing only: see the module docstring
    return Classifier.load(model, config=InferenceConfig(threads=threads))


def main(argv: list[str] | None = None) -> int:
    from bench_inference import draw_segments

    from model.config import ExplainConfig
    from model.machine import describe, physical_cores
    from model.preprocess import segments_of
    from serve.evidence import explain_results

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--allow-stale", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    clf = load(args.model, args.threads, args.allow_stale)
    cfg = ExplainConfig()
    segs = segments_of(draw_segments(args.n, args.seed))
    for s in segs:
        s.normalized  # noqa: B018 (cached, as the API does before queuing)
    predict = lambda v: clf.predict_proba(v)  # noqa: E731
    clf.score(segs[:32])  # warm-up
    score_s = median_seconds(lambda: clf.score(segs), args.repeats)
    results = clf.score(segs)
    flagged = sum(bool(r["labels"]) for r in results)

    def explain(only_flagged: bool) -> None:
        explain_results(predict, segs, [dict(r) for r in results], cfg, only_flagged=only_flagged)

    explain_s = median_seconds(lambda: explain(True), args.repeats)
    explain_all_s = median_seconds(lambda: explain(False), 1)
    per_segment = score_s / len(segs)
    out = {
        "machine": {**describe(), "physical_cores": physical_cores(), "python": platform.python_version()},
        "model": {"name": clf.name, "version": clf.version, "stale_preprocessing_allowed": args.allow_stale},
        "explain": cfg.model_dump(),
        "n_segments": len(segs),
        "flagged": flagged,
        "flagged_share": round(flagged / len(segs), 4),
        "score_s": round(score_s, 3),
        "explain_flagged_s": round(explain_s, 3),
        "explain_over_score": round(explain_s / score_s, 3),
        "per_flagged_segment_in_scored_segments": round(explain_s / max(flagged, 1) / per_segment, 2),
        "explain_all_s": round(explain_all_s, 3),
        "explain_all_over_score": round(explain_all_s / score_s, 3),
        "repeats": args.repeats,
    }
    text = json.dumps(out, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
