"""Keep training rows and evaluation items apart: drop new rows that sit too close to the other side.

``python -m train.decontaminate data/authored/written_w.jsonl [...]`` compares each new **training**
row with the evaluation items (the authored test split, the behaviour suite and the real development
set) and rewrites the file without rows whose character 3-gram Jaccard is ≥ ``--jaccard`` or that
share a common substring of ``--substring`` or more characters with one (after the shared
normalisation). Writers never see evaluation items, but common boilerplate can still land on one;
dropping those rows keeps test, behaviour and dev numbers honest.

``--against corpus`` runs the other direction, for new **evaluation** items (behaviour cases): each
is compared with every row of the processed splits and of ``data/candidates/`` (written rows that
a later model may train on), so a fresh case that happens to repeat a training row is dropped
rather than measuring recall of that row. Dropped rows go to ``--dropped`` with what they matched.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path

from model.config import REPO_ROOT
from model.preprocess import normalize
from train.dataset import SPLITS, NearDuplicateIndex, load_split, ngrams, normalizes, write_jsonl
from train.realeval import SUITE, load_dev, read_rows

CANDIDATES = REPO_ROOT / "data" / "candidates"


def evaluation_texts(exclude_ids: set[str]) -> list[tuple[str, str]]:
    """(where, normalised text) of every evaluation item: test split, behaviour suite, real dev set."""
    sets = {"test.jsonl": load_split("test"), "suite.jsonl": read_rows([SUITE]), "real dev": load_dev()}
    return [(f"{name}:{r['id']}", normalize(r["text"]))
            for name, rows in sets.items() for r in rows
            if r["id"] not in exclude_ids and normalizes(r["text"])]  # fmt: skip


def corpus_texts(exclude_ids: set[str]) -> list[tuple[str, str]]:
    """(where, normalised text) of every row of the processed splits (training, validation, test)
    and of the candidate rows a later model may train on."""
    sets = {f"{split}.jsonl": load_split(split) for split in SPLITS}
    sets |= {f"candidates/{f.name}": read_rows([f]) for f in sorted(CANDIDATES.glob("*.jsonl"))}
    return [(f"{name}:{r['id']}", normalize(r["text"]))
            for name, rows in sets.items() for r in rows
            if r["id"] not in exclude_ids and normalizes(r["text"])]  # fmt: skip


def substrings(text: str, n: int) -> set[str]:
    return {text[i : i + n] for i in range(len(text) - n + 1)}


class NearCopies:
    """Finds the first of ``items`` (where, normalised text) that a text sits too close to."""

    def __init__(self, items: list[tuple[str, str]], jaccard: float = 0.4, substring: int = 12) -> None:
        self.items, self.jaccard, self.substring = items, jaccard, substring
        self.index = NearDuplicateIndex([ngrams(t) for _, t in items])
        self.shared: dict[str, int] = {}  # every n-character substring of an item → that item
        for i, (_, t) in enumerate(items):
            self.shared.update(dict.fromkeys(substrings(t, substring), i))

    def match(self, text: str) -> str | None:
        """Where the closest-found item lives, or None when ``text`` is clear of every item."""
        text = normalize(text)
        hits = self.index.find(ngrams(text), self.jaccard)
        hits = hits or [self.shared[s] for s in substrings(text, self.substring) if s in self.shared][:1]
        return self.items[hits[0]][0] if hits else None

    def split(self, rows: Iterable[dict]) -> tuple[list[dict], list[dict]]:
        """(kept, dropped); a dropped row carries ``matched``: the item it sits on."""
        kept, dropped = [], []
        for r in rows:
            where = self.match(r["text"])
            if where:
                dropped.append({**r, "matched": where})
            else:
                kept.append(r)
        return kept, dropped


def as_written(path: Path) -> list[dict]:
    """The file's rows exactly as written (rewritten unchanged), once :func:`read_rows` has validated them:
    a bad row stops here, named by file and line."""
    read_rows([path])
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument(
        "--against",
        choices=("evaluation", "corpus"),
        default="evaluation",
        help="evaluation: new training rows vs evaluation items; corpus: new evaluation items vs the splits",
    )
    ap.add_argument("--jaccard", type=float, default=0.4)
    ap.add_argument("--substring", type=int, default=12)
    ap.add_argument("--dropped", type=Path, default=Path("runs/decontaminated.jsonl"))
    args = ap.parse_args(argv)
    new = {f: as_written(f) for f in args.files}
    new_ids = {r["id"] for rows in new.values() for r in rows}
    items = (evaluation_texts if args.against == "evaluation" else corpus_texts)(new_ids)
    finder = NearCopies(items, args.jaccard, args.substring)
    dropped = []
    for f, rows in new.items():
        kept, gone = finder.split(rows)
        write_jsonl(f, kept)
        dropped += gone
        print(f"{f}: kept {len(kept)} of {len(rows)}")
    args.dropped.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.dropped, dropped)
    print(f"dropped {len(dropped)} → {args.dropped}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
