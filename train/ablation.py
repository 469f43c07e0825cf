"""Public-data ablation: does adding COLD / SWSR help on the written-only validation split?

``python -m train.ablation --cold ../shared/datasets/cold --swsr ../shared/datasets/swsr``

Trains the default recipe on one fixed in-domain training subsample, once alone and once with
each public source added, at the same number of epochs, and compares validation macro-F1 and
compliant false-positive rate on the individually written rows. A source is kept in the
default build only if it helps there (data/README.md records the decision).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from model.config import REPO_ROOT, Settings
from train.dataset import load_split, load_swsr, write_jsonl
from train.negatives import load_cold_rows, sample_rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold", type=Path, required=True)
    ap.add_argument("--swsr", type=Path, required=True)
    ap.add_argument("--arms", nargs="*", default=None, help="subset of: in-domain-only plus-cold plus-swsr")
    ap.add_argument("--rows", type=int, default=3000, help="in-domain training rows (same for every arm)")
    ap.add_argument("--public-rows", type=int, default=1000, help="rows taken from each public source")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--config", type=Path, default=REPO_ROOT / "train" / "configs" / "default.yaml")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "ablation")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="config overrides applied to every arm (e.g. a cheaper method)")  # fmt: skip
    args = ap.parse_args(argv)
    from train.finetune import train

    settings = Settings.load(args.config)
    seed = settings.data.seed
    in_domain = random.Random(seed).sample(load_split("train"), args.rows)
    public = {
        "cold": sample_rows(load_cold_rows(args.cold, "train"), args.public_rows, seed),
        "swsr": load_swsr(args.swsr, args.public_rows, seed),
    }
    arms = {"in-domain only": [], "+cold": ["cold"], "+swsr": ["swsr"], "+cold+swsr": ["cold", "swsr"]}
    slug = {arm: arm.replace("+", "plus-").replace(" ", "-") for arm in arms}
    if args.arms:
        arms = {arm: src for arm, src in arms.items() if slug[arm] in args.arms}
    results = {}
    for arm, sources in arms.items():
        data_dir = args.out / slug[arm] / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        write_jsonl(data_dir / "train.jsonl", in_domain + [r for s in sources for r in public[s]])
        for split in ("validation", "test"):
            write_jsonl(data_dir / f"{split}.jsonl", load_split(split))
        overrides = [
            *args.overrides,
            f"train.epochs={args.epochs}",
            f"train.out_dir={data_dir.parent}",
            "train.eval_test=false",
        ]
        artifact = train(Settings.load(args.config, overrides), data_dir=data_dir)
        m = json.loads((artifact / "collectguard.json").read_text())["metrics"]["validation"]
        results[arm] = {
            "train_rows": args.rows + sum(len(public[s]) for s in sources),
            "val_macro_f1_written": m["written"]["macro_f1"],
            "val_compliant_fpr_written": m["written"]["compliant_false_positive_rate"],
            "val_insult_f1_written": m["written"]["labels"]["insult"]["f1"],
            "val_macro_f1_all": m["all"]["macro_f1"],
        }
        print(json.dumps({arm: results[arm]}), flush=True)
    (args.out / "ablation.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
