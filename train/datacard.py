"""``python -m train.datacard``: the data card's "Counts" section, printed from the data itself.

The counts in ``data/README.md`` went stale once already as writers were added; this prints
them from ``data/authored/written_*.jsonl`` and ``data/processed/stats.json`` (what
``collectguard data build`` wrote), so the card is refreshed by pasting, never by hand-counting.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from model.config import REPO_ROOT
from model.labels import VIOLATIONS
from train.dataset import is_written, load_authored

SPLITS = ("train", "validation", "test")
AUGMENTED = ("written+aug", "template+aug")


def written_summary(rows: list[dict[str, Any]], writers: str) -> str:
    """One paragraph on the authored rows: labels, multi-label, speakers, listeners, lengths."""
    n = len(rows)
    labels = Counter(label for r in rows for label in r["labels"])
    compliant = sum(not r["labels"] for r in rows)
    multi = sum(len(r["labels"]) > 1 for r in rows)
    customer = sum(r["speaker"] == "customer" for r in rows)
    listeners = Counter(r["listener"] for r in rows)
    lengths = [len(r["text"]) for r in rows]
    return (
        f"Authored (written) rows, writers {writers}: {n:,} — compliant {compliant:,} ({compliant / n:.0%}), "
        f"threat {labels['threat']:,}, insult {labels['insult']:,}, third-party disclosure "
        f"{labels['third_party_disclosure']:,}; {multi:,} ({multi / n:.1%}) carry two or three labels; "
        f"{customer:,} ({customer / n:.1%}) customer speech; listeners debtor {listeners['debtor']:,} / third party "
        f"{listeners['third_party']:,} / unknown {listeners['unknown']:,}; length {min(lengths)}–{max(lengths)} "
        f"characters (median {statistics.median(lengths):.0f}; "
        f"{sum(x >= 120 for x in lengths):,} rows of 120+ characters)."
    )


def split_table(stats: dict[str, Any]) -> str:
    """Rows per split by origin and label."""
    columns = [
        "rows",
        "written",
        "template",
        "augmented",
        "public",
        "compliant",
        "threat",
        "insult",
        "disclosure",
        "multi-label",
    ]
    lines = ["| split | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for split in SPLITS:
        s = stats[split]
        src = s["by_source"]
        aug = sum(src.get(k, 0) for k in AUGMENTED)
        public = s["rows"] - src.get("written", 0) - src.get("template", 0) - aug
        cells = [s["rows"], src.get("written", 0), src.get("template", 0), aug, public,
                 s["by_label"]["compliant"], *(s["by_label"][v] for v in VIOLATIONS), s["multi_label"]]  # fmt: skip
        lines.append(f"| {split} | " + " | ".join(f"{c:,}" for c in cells) + " |")
    return "\n".join(lines)


def role_table(stats: dict[str, Any]) -> str:
    """Label × speaker × listener × split."""
    keys = sorted({k for split in SPLITS for k in stats[split]["label_speaker_listener"]},
                  key=lambda k: (k.split("|")[0] != "compliant", k))  # fmt: skip
    lines = ["| label | speaker | listener | train | validation | test |", "|---|---|---|---:|---:|---:|"]
    for key in keys:
        label, speaker, listener = key.split("|")
        counts = [stats[split]["label_speaker_listener"].get(key, 0) for split in SPLITS]
        lines.append(f"| {label} | {speaker} | {listener} | " + " | ".join(map(str, counts)) + " |")
    return "\n".join(lines)


def letter_ranges(letters: list[str]) -> str:
    """``a b c e f`` -> ``a–c, e, f``: writer letters with the gaps shown (a dropped writer is not hidden)."""
    runs: list[list[str]] = []
    for letter in sorted(letters):
        if runs and ord(letter) == ord(runs[-1][-1]) + 1:
            runs[-1].append(letter)
        else:
            runs.append([letter])
    return ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 2 else ", ".join(r) for r in runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--authored", type=Path, default=REPO_ROOT / "data" / "authored")
    ap.add_argument("--stats", type=Path, default=REPO_ROOT / "data" / "processed" / "stats.json")
    args = ap.parse_args(argv)
    rows = [r for r in load_authored(args.authored) if is_written(r)]
    letters = list({r["id"].split("-")[0].removeprefix("w") for r in rows})
    stats = json.loads(args.stats.read_text(encoding="utf-8"))
    print(written_summary(rows, letter_ranges(letters)), "", split_table(stats), "",
          "Label × speaker × listener × split:", "", role_table(stats), sep="\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
