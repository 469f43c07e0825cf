"""Mine hard negatives: score real ordinary talk with a model and list every row it flags.

The flagged rows go to a human (or a reviewed list): the genuinely compliant ones become hard
negatives (``data/real/hard_negatives.jsonl`` holds their ids and the review decision, never
their text), and any real violation found is recorded with its label instead.

    python -m train.mine --datasets ../shared/datasets --out runs/mining
    python -m train.mine --merge runs/mining/*.decisions.jsonl --out data/real
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tqdm import tqdm

from model.classifier import Classifier
from model.config import InferenceConfig
from train.negatives import DIALOGUE_CORPORA, iter_dialogue_corpus, load_cold_rows, negative_row


def all_negatives(datasets: Path) -> list[dict[str, Any]]:
    """Every CPED and KdConv utterance and every COLD safe comment (train and dev)."""
    rows = []
    for corpus in DIALOGUE_CORPORA:
        rows += [negative_row(rid, text, corpus) for rid, _, text in iter_dialogue_corpus(datasets / corpus, corpus)]
    for split in ("train", "dev"):
        rows += load_cold_rows(datasets / "cold", split)
    return rows


def mine(clf: Classifier, rows: list[dict[str, Any]], chunk: int = 512) -> list[dict[str, Any]]:
    """Rows the model flags, with their scores and labels (in input order)."""
    flagged = []
    for start in tqdm(range(0, len(rows), chunk), desc="mining", unit="chunk"):
        part = rows[start : start + chunk]
        results = clf.score([{"text": r["text"], "speaker": r["speaker"], "listener": r["listener"]} for r in part])
        for row, res in zip(part, results, strict=True):
            if res["labels"]:
                flagged.append({"id": row["id"], "source": row["source"], "text": row["text"],
                                "labels": res["labels"], "scores": res["scores"]})  # fmt: skip
    return flagged


def merge_reviews(flagged: Path, decisions: list[Path], out: Path) -> dict[str, int]:
    """Write the reviewed list (ids, reviewed labels, what the model said; never the text).

    Each decisions file holds one ``{"id", "labels", "note"}`` line per reviewed flagged row.
    """
    model_flags = {r["id"]: r["labels"] for r in map(json.loads, flagged.read_text(encoding="utf-8").splitlines())}
    rows = []
    for path in decisions:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            rec = json.loads(line)
            if rec["id"] not in model_flags:
                raise ValueError(f"{path}:{lineno}: {rec['id']!r} was not flagged by the mining run")
            rows.append({"id": rec["id"], "labels": rec["labels"], "model_flagged": model_flags[rec["id"]],
                         "note": rec.get("note", "")})  # fmt: skip
    rows.sort(key=lambda r: r["id"])
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    kept = sum(not r["labels"] for r in rows)
    return {"reviewed": len(rows), "hard_negatives": kept, "real_violations": len(rows) - kept}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--merge", nargs="+", type=Path, default=None, metavar="DECISIONS",
                    help="instead of mining: merge review decisions into --out/hard_negatives.jsonl")  # fmt: skip
    ap.add_argument("--flagged", type=Path, default=Path("runs/mining/flagged.jsonl"))
    ap.add_argument("--datasets", type=Path, default=None, help="folder holding cped/, kdconv/, cold/")
    ap.add_argument("--model", type=Path, default=None, help="artifact folder (default: the shipped model)")
    ap.add_argument("--backend", choices=("torch", "onnx"), default="onnx")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.merge:
        print(json.dumps(merge_reviews(args.flagged, args.merge, args.out / "hard_negatives.jsonl")))
        return 0
    if args.datasets is None:
        ap.error("--datasets is required for mining")
    clf = Classifier.load(args.model, config=InferenceConfig(backend=args.backend))
    rows = all_negatives(args.datasets)
    flagged = mine(clf, rows)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "flagged.jsonl", "w", encoding="utf-8") as f:
        for r in flagged:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    by_source: dict[str, list[int]] = {}
    for r in rows:
        by_source.setdefault(r["source"], [0, 0])[0] += 1
    for r in flagged:
        by_source[r["source"]][1] += 1
    summary = {s: {"rows": n, "flagged": k, "rate": round(k / n, 4)} for s, (n, k) in by_source.items()}
    (args.out / "summary.json").write_text(json.dumps({"model": clf.version, **summary}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
