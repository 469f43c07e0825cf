"""Average runs that start from one network into one artifact (a "model soup", Wortsman et al. 2022).

Runs that differ only in seed land on different sides of the same decision boundary: on the
real-speech measures (a 408-row dev set, behaviour functionalities of 12 cases) one seed passes
where another fails, and no single run is the better model. Averaging their weight updates keeps
what the runs agree on at the cost of one model's inference, unlike an ensemble.

Two kinds of run can be averaged: LoRA fine-tunes of one base, and distilled students (method
``top``) of one teacher, which all start from the same copy of the teacher's layers and head, so
their weights stay in one basin; their tensors are averaged directly.

The average is exact for LoRA: concatenating the runs' ``A`` matrices (rank axis) and their ``B``
matrices divided by N gives ``B' A' = mean_i(B_i A_i)``; rank and ``lora_alpha`` both grow N-fold
so peft's scaling ``alpha / r`` stays the same. The classifier head is averaged directly. Runs
must share the base, method and LoRA settings; the soup takes the widest kept vocabulary, which
must contain every other run's (runs on different data keep different rare characters).
Thresholds are the first run's until ``train.calibrate`` picks the soup's own.

    python -m train.soup runs/a/artifact runs/b/artifact --out runs/soup/artifact
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from model.architecture import state_hash
from model.artifact import MANIFEST, WEIGHTS, Manifest, read_kept_ids, read_manifest, write_manifest
from model.config import TrainConfig

#: manifest ``train`` settings the runs must share for their weights to be averaged
SHARED = ("method", "lora_r", "lora_alpha", "top_layers", "layers", "weights_dtype", "distilled_from")
#: methods whose runs share a starting point: LoRA (the base) and ``top`` students (their teacher)
SOUPABLE = ("lora", "top")


def widest_vocabulary(runs: list[Path]) -> int:
    """Index of the run whose kept vocabulary contains every other run's.

    Embeddings are frozen (LoRA and students alike), so a token's row is the base's in every run: runs trained on
    different data (whose kept vocabularies differ by the new data's rare characters) can share
    the widest vocabulary. A token a run never kept was UNK to it, now it is itself: the soup is a
    new model and is calibrated and evaluated as one.
    """
    keeps = [read_kept_ids(r) for r in runs]
    if all(k is None for k in keeps):
        return 0
    for run, keep in zip(runs, keeps, strict=True):
        if keep is None:
            raise ValueError(f"{run}: full vocabulary, other runs prune theirs (kept vocabulary differs)")
    widest = max(range(len(runs)), key=lambda i: len(keeps[i]))
    for run, keep in zip(runs, keeps, strict=True):
        if not np.isin(keep, keeps[widest]).all():
            raise ValueError(f"{run}: kept vocabulary is not contained in {runs[widest]}'s, so no run's covers all")
    return widest


def check_compatible(runs: list[Path], manifests: list[Manifest]) -> int:
    """Raise naming the run and the setting that differs from the first run; else the widest run's index."""
    first = manifests[0]
    if first.method not in SOUPABLE:
        raise ValueError(f"{runs[0]}: method {first.method!r}; only {' and '.join(SOUPABLE)} runs can be souped")
    if first.method == "top" and not first.train.get("distilled_from"):
        raise ValueError(f"{runs[0]}: method 'top' without distilled_from; only students of one teacher can be souped")
    for run, m in zip(runs[1:], manifests[1:], strict=True):
        if m.base["encoder"] != first.base["encoder"] or m.base.get("sha256") != first.base.get("sha256"):
            raise ValueError(f"{run}: base encoder {m.base} differs from {runs[0]}'s {first.base}")
        if m.preprocess_version != first.preprocess_version:
            raise ValueError(
                f"{run}: preprocess_version {m.preprocess_version}, {runs[0]} has {first.preprocess_version}"
            )
        for key in SHARED:
            if m.train.get(key) != first.train.get(key):
                raise ValueError(f"{run}: train.{key}={m.train.get(key)!r}, {runs[0]} has {first.train.get(key)!r}")
    return widest_vocabulary(runs)


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One state whose LoRA product and head are the mean of the runs' (see the module docstring)."""
    n = len(states)
    keys = set(states[0])
    for i, s in enumerate(states[1:], 1):
        if set(s) != keys:
            raise ValueError(f"run {i}: parameter names differ from run 0's ({sorted(keys ^ set(s))[:3]} …)")
    out: dict[str, torch.Tensor] = {}
    for key in sorted(keys):
        parts = [s[key].float() for s in states]
        if ".lora_A." in key:
            out[key] = torch.cat(parts, dim=0)
        elif ".lora_B." in key:
            out[key] = torch.cat(parts, dim=1) / n
        else:
            out[key] = torch.stack(parts).mean(0)
    return out


def lora_rank(first: Manifest, n: int) -> dict[str, int]:
    """The soup's LoRA rank and alpha (N-fold, see the module docstring); nothing for other methods."""
    if first.method != "lora":
        return {}
    defaults = TrainConfig()
    return {"lora_r": first.train.get("lora_r", defaults.lora_r) * n,
            "lora_alpha": first.train.get("lora_alpha", defaults.lora_alpha) * n}  # fmt: skip


def soup(runs: list[Path], out: Path) -> Path:
    """Write the averaged artifact to ``out`` (tokenizer and kept vocabulary of the widest run)."""
    runs = [Path(r) for r in runs]
    if len(runs) < 2:
        raise ValueError("a soup needs at least two runs")
    manifests = [read_manifest(r) for r in runs]
    widest = check_compatible(runs, manifests)
    state = average_states([load_file(str(r / WEIGHTS)) for r in runs])
    first = manifests[0]
    if first.train.get("weights_dtype") == "float16":
        state = {k: v.half() for k, v in state.items()}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for f in runs[widest].iterdir():  # tokenizer files and kept ids of the widest vocabulary
        if f.is_file() and f.name not in (WEIGHTS, MANIFEST):
            shutil.copy2(f, out / f.name)
    save_file(state, str(out / WEIGHTS))
    n = len(runs)
    first.train = {**first.train, **lora_rank(first, n),
                   "soup_of": [{"version": m.version, "weights_sha256": m.weights_sha256, "seed": m.train.get("seed"),
                                "train_data_sha256": m.train_data_sha256} for m in manifests]}  # fmt: skip
    first.version = f"{first.version.rsplit('-s', 1)[0]}-soup{n}"
    first.base = manifests[widest].base  # its fingerprint names the kept vocabulary
    first.weights_sha256 = state_hash(state)
    first.metrics = {}  # the runs' validation metrics do not describe the soup
    write_manifest(out, first)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "runs", nargs="+", type=Path, help="artifact folders: LoRA runs of one base, or students of one teacher"
    )
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    out = soup(args.runs, args.out)
    print(json.dumps({"out": str(out), "version": read_manifest(out).version}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
