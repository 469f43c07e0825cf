"""How well automatic role assignment finds the collector: calls with known roles, tags shuffled.

Each evaluation call has segments whose true role is known. Its two speakers get anonymous tags
of a randomly chosen style (``SPEAKER_00``, ``spk 0``, ``Speaker 1``, ``channel 0``, ``说话人1``),
assigned to agent and customer at random, and go through the same segment and role code the
readers use (:func:`make_segment`, :func:`assign_roles`). A call is correct when every segment
gets its true role. Reported: accuracy over all calls (an uncertain call counts with its best
guess), the uncertain rate, accuracy of the calls not marked uncertain, and both per kind.

Data (``data/roles``, see data/README.md): ``dialogues_*.txt`` written for this by hand, and
``assembled.jsonl``, calls assembled from other writers' rows (``data/authored``) by
``python -m serve.ingest.roles_eval build``.

    collectguard roles eval            # or: python -m serve.ingest.roles_eval
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from model.config import REPO_ROOT, Settings
from model.labels import AGENT, CUSTOMER
from serve.ingest.roles import assign_roles
from serve.ingest.speakers import make_segment

DATA_DIR = REPO_ROOT / "data" / "roles"
TAG_STYLES = (
    ("SPEAKER_00", "SPEAKER_01"), ("spk 0", "spk 1"), ("Speaker 1", "Speaker 2"), ("channel 0", "channel 1"),
    ("说话人1", "说话人2"),
)  # fmt: skip
_ROLE = {"A": AGENT, "C": CUSTOMER}


def load_dialogues(path: Path) -> list[dict[str, Any]]:
    """``## id | kind | note`` blocks of ``A:``/``C:`` turns → calls with true roles."""
    calls: list[dict[str, Any]] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if line.startswith("## "):
            cid, kind, note = (part.strip() for part in line[3:].split("|", 2))
            calls.append({"call_id": f"{path.stem}:{cid}", "kind": kind, "note": note, "segments": []})
        elif line[:2] in ("A:", "C:"):
            if not calls:
                raise ValueError(f"{path}:{lineno}: a turn before the first '## id | kind | note' line")
            calls[-1]["segments"].append({"speaker": _ROLE[line[0]], "text": line[2:].strip()})
    return calls


def load_calls(paths: list[Path]) -> list[dict[str, Any]]:
    calls = []
    for path in paths:
        if path.suffix == ".txt":
            calls.extend(load_dialogues(path))
        else:
            calls.extend(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return calls


def default_paths() -> list[Path]:
    return sorted(DATA_DIR.glob("dialogues_*.txt")) + sorted(DATA_DIR.glob("*.jsonl"))


def half(call_id: str) -> str:
    """``dev`` (dialogues_a and even assembled calls: the misses the cues were revised on) or
    ``test`` (never looked at while writing the cues)."""
    name, _, num = call_id.partition(":")
    if name == "assembled":
        return "dev" if int(num) % 2 == 0 else "test"
    return "dev" if name == "dialogues_a" else "test"


def shuffle_tags(call: dict[str, Any], rng: random.Random) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The call's segments with anonymous tags instead of roles, and the true role of each tag."""
    style = list(rng.choice(TAG_STYLES))
    rng.shuffle(style)
    tag_of = {AGENT: style[0], CUSTOMER: style[1]}
    segs = [{"text": s["text"], "speaker": tag_of[s["speaker"]]} for s in call["segments"]]
    return segs, {tag: role for role, tag in tag_of.items()}


def evaluate(calls: list[dict[str, Any]], margin: float, speaker_map: dict[str, str], seed: int = 0) -> dict[str, Any]:
    """Accuracy and uncertain rate of automatic roles on ``calls``; also the wrong/uncertain calls."""
    rng = random.Random(seed)
    stats: dict[str, dict[str, int]] = defaultdict(lambda: {"calls": 0, "correct": 0, "uncertain": 0, "certain_ok": 0})
    misses = []
    for call in calls:
        raw, truth = shuffle_tags(call, rng)
        segs = [make_segment(s, speaker_map, "auto", f"segments[{i}]") for i, s in enumerate(raw)]
        done = assign_roles({"call_id": call["call_id"], "segments": segs}, margin)
        ok = all(s["speaker"] == truth[s["speaker_tag"]] for s in segs)
        uncertain = done["roles"]["status"] == "uncertain"
        keys = ("all", f"half:{half(call['call_id'])}", f"kind:{call.get('kind', '?')}",
                f"set:{call['call_id'].split(':')[0]}")  # fmt: skip
        for key in keys:
            st = stats[key]
            st["calls"] += 1
            st["correct"] += ok
            st["uncertain"] += uncertain
            st["certain_ok"] += ok and not uncertain
        if not ok or uncertain:
            misses.append({"call_id": call["call_id"], "correct": ok, "roles": done["roles"], "truth": truth,
                           "segments": [{"tag": s["speaker_tag"], "text": s["text"]} for s in segs]})  # fmt: skip
    report = {}
    for key, st in sorted(stats.items()):
        certain = st["calls"] - st["uncertain"]
        report[key] = {
            "calls": st["calls"],
            "accuracy": round(st["correct"] / st["calls"], 4),
            "uncertain_rate": round(st["uncertain"] / st["calls"], 4),
            "accuracy_when_certain": round(st["certain_ok"] / certain, 4) if certain else None,
        }
    return {"margin": margin, "seed": seed, "results": report, "misses": misses}


def build_assembled(authored: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """Calls assembled from the written corpus rows of one writer at a time: short calls, calls to
    third parties (the listener of the agent's rows), and talkative customers (more and longer
    customer turns than agent turns). Turns alternate; who speaks first is random."""
    rng = random.Random(seed)
    pools: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for f in sorted(authored.glob("written_*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            listener = "third_party" if row["listener"] == "third_party" else "debtor"
            pools[(f.stem, row["speaker"], listener)].append(row["text"])
    writers = sorted({w for w, _, _ in pools})
    calls = []
    for i in range(n):
        kind = rng.choice(["debtor", "debtor", "third_party", "short", "talkative"])
        listener = "third_party" if kind == "third_party" else "debtor"
        writer = rng.choice([w for w in writers if pools[(w, "customer", listener)]])
        agent_rows, customer_rows = pools[(writer, "agent", listener)], pools[(writer, "customer", listener)]
        n_agent, n_cust = {"short": (1, 1), "talkative": (rng.randint(1, 2), rng.randint(3, 5))}.get(
            kind, (rng.randint(2, 5), rng.randint(1, 4))
        )
        a = rng.sample(agent_rows, min(n_agent, len(agent_rows)))
        if kind == "talkative":
            longest = sorted(customer_rows, key=len, reverse=True)[: max(12, n_cust)]
            c = rng.sample(longest, min(n_cust, len(longest)))
        else:
            c = rng.sample(customer_rows, min(n_cust, len(customer_rows)))
        turns: list[dict[str, str]] = []
        first_agent = rng.random() < 0.6
        while a or c:
            order = [(AGENT, a), (CUSTOMER, c)] if first_agent else [(CUSTOMER, c), (AGENT, a)]
            for role, rows in order:
                if rows:
                    turns.append({"speaker": role, "text": rows.pop()})
        calls.append({"call_id": f"assembled:{i:04d}", "kind": kind, "writer": writer, "segments": turns})
    return calls


def run(args: argparse.Namespace) -> int:
    """``collectguard roles eval``: print the report; ``--errors`` writes the wrong and uncertain calls."""
    settings = Settings.from_args(args)
    calls = load_calls(args.data or default_paths())
    report = evaluate(calls, settings.ingest.role_margin, settings.relabel.speaker_map, args.seed)
    misses = report.pop("misses")
    if args.errors:
        args.errors.write_text("".join(json.dumps(m, ensure_ascii=False) + "\n" for m in misses), encoding="utf-8")
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="eval", choices=["eval", "build"])
    parser.add_argument("--data", type=Path, nargs="+", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--errors", type=Path, default=None)
    parser.add_argument("--n", type=int, default=260, help="build: assembled calls to write")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    if args.command == "build":
        calls = build_assembled(REPO_ROOT / "data" / "authored", args.n, args.seed)
        out = DATA_DIR / "assembled.jsonl"
        out.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in calls), encoding="utf-8")
        print(f"wrote {len(calls)} calls to {out}", file=sys.stderr)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
