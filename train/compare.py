"""Compare training methods at one budget: ``python -m train.compare --rows 1200 --epochs 1``.

Runs :func:`train.finetune.train` once per method (LoRA on the top layers, the top layers in
full, LoRA on all layers, full fine-tuning) on the same training subsample, seed and steps,
and reports validation macro-F1 (all rows and written-only), artifact size, trainable
parameters and wall time. The default config's method is chosen from this table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from model.config import REPO_ROOT, Settings

VARIANTS: dict[str, list[str]] = {
    "lora-top4": ["train.method=lora", "train.top_layers=4"],
    "top4": ["train.method=top", "train.top_layers=4", "train.weights_dtype=float16", "train.learning_rate=0.0001"],
    "lora-all": ["train.method=lora", "train.top_layers=null"],
    "full": ["train.method=full", "train.learning_rate=0.00005", "train.weights_dtype=float16"],
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO_ROOT / "train" / "configs" / "default.yaml")
    ap.add_argument("--rows", type=int, default=1200, help="training rows per variant (same subsample)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "compare")
    args = ap.parse_args(argv)
    from train.finetune import train

    results = {}
    table = args.out / "compare.json"
    if table.exists():
        results = json.loads(table.read_text())
    for name in args.variants:
        overrides = [*VARIANTS[name], f"train.max_train_rows={args.rows}", f"train.epochs={args.epochs}",
                     f"train.out_dir={args.out / name}", "train.eval_test=false"]  # fmt: skip
        artifact = train(Settings.load(args.config, overrides))
        m = json.loads((artifact / "collectguard.json").read_text())["metrics"]
        results[name] = {
            "val_macro_f1_all": m["validation"]["all"]["macro_f1"],
            "val_macro_f1_written": m["validation"]["written"]["macro_f1"],
            "val_compliant_fpr_written": m["validation"]["written"]["compliant_false_positive_rate"],
            "artifact_mb": round(m["artifact_bytes"] / 1e6, 2),
            "trainable_parameters": m["trainable_parameters"],
            "train_seconds": m["train_seconds"],
            "rows": args.rows,
            "epochs": args.epochs,
        }
        args.out.mkdir(parents=True, exist_ok=True)
        table.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps({name: results[name]}))
    print(
        "| method | val macro-F1 (all) | val macro-F1 (written) | compliant FPR (written) "
        "| artifact MB | trainable | s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['val_macro_f1_all']:.4f} | {r['val_macro_f1_written']:.4f} | "
              f"{r['val_compliant_fpr_written']:.4f} | {r['artifact_mb']} | {r['trainable_parameters']:,} | "
              f"{r['train_seconds']} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
