"""Forward-pass time of the base encoder, full vs vocabulary-trimmed (issue 2's closing figure).

Usage: python bench/bench_base.py [--batch 32] [--tokens 64] [--repeats 5]
Both models run the same random in-vocabulary ids in one process; prints median/min seconds
per forward pass and the ratio trimmed/full, plus folder sizes and thread settings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from transformers import AutoModel

from collectguard.cli import read_corpus_texts
from model.base import build_base, kept_piece_ids, load_tokenizer_json
from model.config import REPO_ROOT
from model.machine import physical_cores


def time_forward(model, ids: torch.Tensor, repeats: int) -> list[float]:
    mask = torch.ones_like(ids)
    times = []
    with torch.inference_mode():
        model(input_ids=ids, attention_mask=mask)  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            model(input_ids=ids, attention_mask=mask)
            times.append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(physical_cores())
    t = time.perf_counter()
    full_dir = build_base()
    full_build = time.perf_counter() - t
    keep = kept_piece_ids(load_tokenizer_json(), read_corpus_texts(REPO_ROOT / "data" / "authored"))
    t = time.perf_counter()
    trim_dir = build_base(keep=keep)
    trim_build = time.perf_counter() - t
    gen = torch.Generator().manual_seed(0)
    # ids valid in both vocabularies: trimmed id i is full id keep[i]
    trim_ids = torch.randint(4, len(keep) - 1, (args.batch, args.tokens), generator=gen)
    full_ids = torch.from_numpy(keep)[trim_ids]
    out = {"threads": torch.get_num_threads(), "batch": args.batch, "tokens": args.tokens}
    for name, folder, ids, build in (
        ("full", full_dir, full_ids, full_build),
        ("trimmed", trim_dir, trim_ids, trim_build),
    ):
        model = AutoModel.from_pretrained(folder).eval()
        times = time_forward(model, ids, args.repeats)
        out[name] = {
            "median_s": round(statistics.median(times), 4),
            "min_s": round(min(times), 4),
            "parameters": sum(p.numel() for p in model.parameters()),
            "folder_mb": round(sum(f.stat().st_size for f in folder.iterdir()) / 1e6, 1),
            "build_or_cache_s": round(build, 1),
        }
    out["trimmed_over_full_time"] = round(out["trimmed"]["median_s"] / out["full"]["median_s"], 3)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
