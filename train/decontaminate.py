"""Drop new authored rows that sit too close to an evaluation item, before they are built.

``python -m train.decontaminate data/authored/written_w.jsonl [...]`` compares each row with the
authored test split, the behaviour suite and the real development set, and rewrites the file
without rows whose character 3-gram Jaccard is ≥ ``--jaccard`` or that share a common substring
of ``--substring`` or more characters with an evaluation text (after the shared normalisation).
Writers never see evaluation items, but common boilerplate can still land on one; dropping those
rows keeps test, behaviour and dev numbers honest. Dropped rows go to ``--dropped`` with the item
they matched.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from model.preprocess import normalize
from train.dataset import NearDuplicateIndex, load_split, ngrams, normalizes, write_jsonl
from train.realeval import SUITE, load_dev, read_rows


def evaluation_texts(exclude_ids: set[str]) -> list[tuple[str, str]]:
    """(where, normalised text) of every evaluation item: test split, behaviour suite, real dev set."""
    sets = {"test.jsonl": load_split("test"), "suite.jsonl": read_rows([SUITE]), "real dev": load_dev()}
    return [(f"{name}:{r['id']}", normalize(r["text"]))
            for name, rows in sets.items() for r in rows
            if r["id"] not in exclude_ids and normalizes(r["text"])]  # fmt: skip


def as_written(path: Path) -> list[dict]:
    """The file's rows exactly as written (rewritten unchanged), once :func:`read_rows` has validated them:
    a bad row stops here, named by file and line."""
    read_rows([path])
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def substrings(text: str, n: int) -> set[str]:
    return {text[i : i + n] for i in range(len(text) - n + 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--jaccard", type=float, default=0.4)
    ap.add_argument("--substring", type=int, default=12)
    ap.add_argument("--dropped", type=Path, default=Path("runs/decontaminated.jsonl"))
    args = ap.parse_args(argv)
    new = {f: as_written(f) for f in args.files}
    new_ids = {r["id"] for rows in new.values() for r in rows}
    items = evaluation_texts(new_ids)
    index = NearDuplicateIndex([ngrams(t) for _, t in items])
    shared: dict[str, int] = {}  # every n-character substring of an evaluation text → that item
    for i, (_, t) in enumerate(items):
        shared.update(dict.fromkeys(substrings(t, args.substring), i))
    dropped = []
    for f, rows in new.items():
        kept = []
        for r in rows:
            text = normalize(r["text"])
            hits = index.find(ngrams(text), args.jaccard)
            hits = hits or [shared[s] for s in substrings(text, args.substring) if s in shared][:1]
            if hits:
                dropped.append({**r, "matched": items[hits[0]][0]})
            else:
                kept.append(r)
        write_jsonl(f, kept)
        print(f"{f}: kept {len(kept)} of {len(rows)}")
    args.dropped.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.dropped, dropped)
    print(f"dropped {len(dropped)} → {args.dropped}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
