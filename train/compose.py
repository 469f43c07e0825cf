"""Compositional generator of labelled collection-call segments.

Authored rows are few and expensive; this module multiplies them by composing turns out of
phrase banks (``data/templates/*.yaml``): a skeleton such as ``opening + reminder + @v +
closing`` is filled clause by clause, and the ``@v`` slots receive either a violation clause or a
hard negative (lawful consequences, negated threats, neutral third-party messages). Violations
therefore appear buried inside long polite turns, and compliant text is full of the same
vocabulary (法院, 起诉, 上门, 老赖) that a keyword model would over-trust.

Labels are never guessed: every clause in the YAML carries its own labels, and a row's labels
are the union of the labels of the clauses it was built from. Each row also carries
``group`` = its template id, so that all rows built on one skeleton stay in one data split and
the evaluation does not reward memorising skeletons.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.labels import LISTENERS as _LISTENERS
from model.labels import SPEAKERS as _SPEAKERS
from model.labels import VIOLATIONS
from train.augment import int_to_chinese

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "data" / "templates"
# The label schema's names (model/labels.py), as sets for checking the phrase banks.
LABELS: tuple[str, ...] = VIOLATIONS
LISTENERS = frozenset(_LISTENERS)
SPEAKERS = frozenset(_SPEAKERS)
ROLES = frozenset({"compliant", "filler", "multi", *LABELS})
MIN_LEN, MAX_LEN = 2, 250
VIOLATION_SLOT = "@v"
_SLOT_RE = re.compile(r"\{(\w+)\}")
_PUNCT_RE = re.compile(r"[，。？！、；：,.?!;:…]")
# Slots computed in code; every other {slot} must be a list under ``slots:`` in the YAML.
_GENERATED_SLOTS = frozenset(
    {"name", "callee", "agent", "amount", "days", "date", "phone", "workid", "fee", "installments"}
)


@dataclass(frozen=True)
class Clause:
    """One phrase with the labels it carries on its own."""

    text: str
    labels: tuple[str, ...]
    kind: str
    bank: str


@dataclass(frozen=True)
class Bank:
    """A named list of interchangeable clauses with one role and the listeners it suits."""

    name: str
    role: str
    listeners: frozenset[str]
    clauses: tuple[Clause, ...]


@dataclass(frozen=True)
class Pool:
    """Who speaks to whom, which banks fill violation slots, and the target label mix."""

    name: str
    speaker: str
    listener: str
    weight: float
    compliant: dict[str, float]
    by_label: dict[str, tuple[str, ...]]
    multi: tuple[str, ...]
    targets: tuple[tuple[tuple[str, ...], float], ...]


@dataclass(frozen=True)
class Template:
    """A skeleton: the ordered bank references (and ``@v`` slots) of one turn."""

    id: str
    pool: str
    parts: tuple[str, ...]


@dataclass(frozen=True)
class Library:
    """Everything loaded from the YAML directory, validated."""

    slots: dict[str, tuple[str, ...]]
    banks: dict[str, Bank]
    pools: dict[str, Pool]
    templates: tuple[Template, ...]


def canonical_labels(labels) -> list[str]:
    """Deduplicate and order labels as in LABELS.md, so equal label sets compare equal."""
    present = set(labels)
    unknown = present - set(LABELS)
    if unknown:
        raise ValueError(f"unknown labels {sorted(unknown)}")
    return [lab for lab in LABELS if lab in present]


def _merge_yaml(directory: Path) -> dict:
    """Merge the top-level mappings of every YAML file; a name defined twice is an error."""
    merged: dict = {"slots": {}, "banks": {}, "pools": {}, "templates": []}
    for path in sorted(directory.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for key, value in data.items():
            if key not in merged:
                raise ValueError(f"{path.name}: unknown top-level key {key!r}")
            if key == "templates":
                merged[key].extend(value)
                continue
            for name, item in value.items():
                if name in merged[key]:
                    raise ValueError(f"{path.name}: {key} {name!r} defined twice")
                merged[key][name] = item
    return merged


def _check_bank(bank: Bank, slots: dict) -> None:
    """Clause labels must agree with the bank's role, so a pool can trust a bank's label."""
    if bank.role not in ROLES:
        raise ValueError(f"bank {bank.name}: unknown role {bank.role!r}")
    if not bank.listeners or not bank.listeners <= LISTENERS:
        raise ValueError(f"bank {bank.name}: bad listeners {sorted(bank.listeners)}")
    if not bank.clauses:
        raise ValueError(f"bank {bank.name}: no clauses")
    for c in bank.clauses:
        if not c.text.strip():
            raise ValueError(f"bank {bank.name}: empty clause")
        if bank.role in {"compliant", "filler"} and c.labels:
            raise ValueError(f"bank {bank.name}: compliant clause with labels: {c.text}")
        if bank.role in LABELS and c.labels != (bank.role,):
            raise ValueError(f"bank {bank.name}: clause labels {c.labels} != role: {c.text}")
        if bank.role == "multi" and len(c.labels) < 2:
            raise ValueError(f"bank {bank.name}: multi clause with <2 labels: {c.text}")
        for slot in _SLOT_RE.findall(c.text):
            if slot not in slots and slot not in _GENERATED_SLOTS:
                raise ValueError(f"bank {bank.name}: unknown slot {{{slot}}} in {c.text}")


def _template_banks(part: str) -> list[str]:
    return part.lstrip("?").split("|")


@lru_cache(maxsize=4)
def load_library(directory: str | Path | None = None) -> Library:
    """Load and validate all phrase banks, pools and templates (cached per directory)."""
    directory = Path(directory) if directory else TEMPLATES_DIR
    raw = _merge_yaml(directory)
    slots = {k: tuple(str(v) for v in vals) for k, vals in raw["slots"].items()}

    banks: dict[str, Bank] = {}
    for name, spec in raw["banks"].items():
        clauses = []
        for item in spec["clauses"]:
            if "labels" not in item:
                raise ValueError(f"bank {name}: clause without labels: {item}")
            clauses.append(
                Clause(
                    text=str(item["text"]),
                    labels=tuple(canonical_labels(item["labels"])),
                    kind=str(item.get("kind", spec["role"])),
                    bank=name,
                )
            )
        bank = Bank(name, spec["role"], frozenset(spec["listeners"]), tuple(clauses))
        _check_bank(bank, slots)
        banks[name] = bank

    def usable(bank_name: str, listener: str, where: str) -> None:
        if bank_name not in banks:
            raise ValueError(f"{where}: unknown bank {bank_name!r}")
        if listener not in banks[bank_name].listeners:
            raise ValueError(f"{where}: bank {bank_name} not valid for listener {listener}")

    pools: dict[str, Pool] = {}
    for name, spec in raw["pools"].items():
        if spec["speaker"] not in SPEAKERS or spec["listener"] not in LISTENERS:
            raise ValueError(f"pool {name}: bad speaker/listener")
        listener = spec["listener"]
        by_label = {lab: tuple(spec.get(lab) or ()) for lab in LABELS}
        multi = tuple(spec.get("multi") or ())
        compliant = {k: float(v) for k, v in spec["compliant"].items()}
        for lab, names in by_label.items():
            for b in names:
                usable(b, listener, f"pool {name}")
                if banks[b].role != lab:
                    raise ValueError(f"pool {name}: bank {b} has role {banks[b].role}, not {lab}")
        for b in multi:
            usable(b, listener, f"pool {name}")
        for b in compliant:
            usable(b, listener, f"pool {name}")
            if banks[b].role != "compliant":
                raise ValueError(f"pool {name}: compliant bank {b} has role {banks[b].role}")
        targets = tuple((tuple(canonical_labels(t["labels"])), float(t["p"])) for t in spec["targets"])
        if abs(sum(p for _, p in targets) - 1.0) > 1e-6:
            raise ValueError(f"pool {name}: target probabilities do not sum to 1")
        for target, _ in targets:
            for lab in target:
                if not by_label[lab]:
                    raise ValueError(f"pool {name}: target {target} has no bank for {lab}")
        pools[name] = Pool(
            name,
            spec["speaker"],
            listener,
            float(spec["weight"]),
            compliant,
            by_label,
            multi,
            targets,
        )

    templates: list[Template] = []
    seen_ids: set[str] = set()
    for spec in raw["templates"]:
        tid, pool_name = str(spec["id"]), spec["pool"]
        if tid in seen_ids:
            raise ValueError(f"template id {tid} used twice")
        seen_ids.add(tid)
        if pool_name not in pools:
            raise ValueError(f"template {tid}: unknown pool {pool_name}")
        parts = tuple(spec["parts"])
        if VIOLATION_SLOT not in parts:
            raise ValueError(f"template {tid}: no {VIOLATION_SLOT} slot")
        for part in parts:
            if part != VIOLATION_SLOT:
                for b in _template_banks(part):
                    usable(b, pools[pool_name].listener, f"template {tid}")
                    if banks[b].role not in {"compliant", "filler"}:
                        raise ValueError(f"template {tid}: fixed part {b} must be compliant")
        templates.append(Template(tid, pool_name, parts))
    return Library(slots, banks, pools, tuple(templates))


# ---------------------------------------------------------------------------------------------
# Slot values
# ---------------------------------------------------------------------------------------------


def _amount(rng: random.Random) -> str:
    """Amounts in the mix of forms ASR and agents produce: 3800元, 两万三, 一万二千块钱."""
    value = rng.randrange(500, 10000, 100) if rng.random() < 0.5 else rng.randrange(10000, 200000, 1000)
    r = rng.random()
    if r < 0.35:
        return f"{value}{rng.choice(('元', '块', '块钱'))}"
    if r < 0.75 or value < 10000 or value % 10000 == 0:
        return int_to_chinese(value) + rng.choice(("元", "块", "块钱", ""))
    wan, rest = divmod(value, 10000)
    head = int_to_chinese(wan) + "万"
    # Colloquial 两万三 only when the remainder is whole thousands; otherwise say it fully.
    if rest % 1000 == 0:
        return head + "零一二三四五六七八九"[rest // 1000] + rng.choice(("", "块"))
    return int_to_chinese(value) + "块"


def _days(rng: random.Random) -> str:
    n = rng.choice((rng.randint(1, 30), rng.randint(31, 120), rng.randint(121, 400)))
    return str(n) if rng.random() < 0.5 else int_to_chinese(n)


def _date(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.5:
        return f"{rng.randint(1, 12)}月{rng.randint(1, 28)}{rng.choice(('号', '日'))}"
    if r < 0.7:
        return f"本月{rng.randint(1, 28)}号"
    if r < 0.85:
        return "下周" + rng.choice("一二三四五")
    return rng.choice(("明天", "后天", "月底", "这周五"))


def _phone(rng: random.Random) -> str:
    """Always masked, so no generated number can be a real subscriber's."""
    return f"1{rng.choice('3456789')}{rng.randint(0, 9)}****{rng.randint(0, 9999):04d}"


class _Slots:
    """Per-row slot values: the same {name} or {lender} means the same thing within a turn."""

    def __init__(self, lists: dict[str, tuple[str, ...]], rng: random.Random) -> None:
        self.lists, self.rng, self.values = lists, rng, {}

    def _make(self, slot: str) -> str:
        rng, lists = self.rng, self.lists
        match slot:
            case "surname":  # the debtor's, shared by {name} and {callee}
                return rng.choice(lists["surname"])
            case "name":
                return self.get("surname") + rng.choice(lists["given_name"])
            case "callee":
                return self.get("surname") + rng.choice(lists["title"])
            case "agent":
                return rng.choice(lists["surname"])
            case "amount":
                return _amount(rng)
            case "days":
                return _days(rng)
            case "date":
                return _date(rng)
            case "phone":
                return _phone(rng)
            case "workid":
                return str(rng.randint(1000, 9999))
            case "fee":
                return f"{rng.randint(20, 800)}元"
            case "installments":
                n = rng.choice((3, 6, 12, 24))
                return str(n) if rng.random() < 0.5 else int_to_chinese(n)
            case _:
                return rng.choice(lists[slot])

    def get(self, slot: str) -> str:
        if slot not in self.values:
            self.values[slot] = self._make(slot)
        return self.values[slot]

    def fill(self, text: str) -> str:
        return _SLOT_RE.sub(lambda m: self.get(m.group(1)), text)


# ---------------------------------------------------------------------------------------------
# Composition
# ---------------------------------------------------------------------------------------------


def _weighted(rng: random.Random, items: dict[str, float]) -> str:
    names = list(items)
    return rng.choices(names, weights=[items[n] for n in names], k=1)[0]


def _pick(rng: random.Random, bank: Bank, used: set[str]) -> Clause:
    """A clause from the bank, avoiding ones already in this turn (no 'X。X。' repeats)."""
    fresh = [c for c in bank.clauses if c.text not in used] or list(bank.clauses)
    clause = rng.choice(fresh)
    used.add(clause.text)
    return clause


def _compose_turn(
    lib: Library, rng: random.Random, template: Template, target: tuple[str, ...]
) -> tuple[str, list[str], list[str]]:
    """Fill one template for one target label set; return (text, labels, provenance)."""
    pool = lib.pools[template.pool]
    used: set[str] = set()
    # Each part becomes a list of clauses; violation parts are flagged so trimming spares them.
    parts: list[tuple[list[Clause], bool]] = []
    v_index: list[int] = []
    for part in template.parts:
        if part == VIOLATION_SLOT:
            v_index.append(len(parts))
            parts.append(([], True))
            continue
        if part.startswith("?") and rng.random() < 0.5:
            continue
        bank = lib.banks[rng.choice(_template_banks(part))]
        parts.append(([_pick(rng, bank, used)], False))

    slots = list(v_index)
    rng.shuffle(slots)
    needed = list(target)
    if len(target) >= 2 and rng.random() < 0.5:
        combos = [c for b in pool.multi for c in lib.banks[b].clauses if c.labels == tuple(target)]
        if combos:
            clause = rng.choice(combos)
            used.add(clause.text)
            parts[slots[0]][0].append(clause)
            needed = []
    rng.shuffle(needed)
    for i, label in enumerate(needed):
        slot = slots[i % len(slots)]
        parts[slot][0].append(_pick(rng, lib.banks[rng.choice(pool.by_label[label])], used))
    for slot in slots:
        if not parts[slot][0]:
            bank = lib.banks[_weighted(rng, pool.compliant)]
            parts[slot][0].append(_pick(rng, bank, used))

    filler = _Slots(lib.slots, rng)
    pieces = [([filler.fill(c.text) for c in clauses], clauses, is_v) for clauses, is_v in parts]
    # Keep within MAX_LEN by dropping the longest non-violation part; violations are never cut.
    while sum(len(t) for texts, _, _ in pieces for t in texts) > MAX_LEN:
        droppable = [i for i, (_, _, is_v) in enumerate(pieces) if not is_v]
        if not droppable:
            break
        pieces.pop(max(droppable, key=lambda i: sum(len(t) for t in pieces[i][0])))

    text = "".join(t for texts, _, _ in pieces for t in texts)
    r = rng.random()
    if r < 0.08:  # some ASR engines emit no punctuation at all
        bare = _PUNCT_RE.sub(rng.choice(("", " ")), text).strip()
        text = bare if len(bare) >= MIN_LEN else text
    elif r < 0.13:  # or one long run-on sentence
        text = text[:-1].replace("。", "，") + text[-1]

    clauses_used = [c for _, clauses, _ in pieces for c in clauses]
    labels = canonical_labels(lab for c in clauses_used for lab in c.labels)
    provenance = [f"{c.bank}/{c.kind}" if c.labels else c.bank for c in clauses_used if c.bank != "filler"]
    return text, labels, provenance


def compose_rows(n: int, seed: int, directory: str | Path | None = None) -> list[dict]:
    """Generate ``n`` distinct labelled rows, deterministically for a given ``seed``.

    Pools are drawn by weight, then a template uniformly within the pool, then a target label
    set by the pool's target mix. A text that was already generated is redrawn, so a corpus
    has no exact duplicates (which would inflate both training weight and test scores); if 60
    draws in a row give only texts already generated, ``RuntimeError`` is raised rather than a
    duplicate kept (the phrase banks are too small for ``n``).
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    lib = load_library(directory)
    rng = random.Random(seed)
    by_pool: dict[str, list[Template]] = {}
    for t in lib.templates:
        by_pool.setdefault(t.pool, []).append(t)
    pool_weights = {p: lib.pools[p].weight for p in by_pool}

    rows: list[dict] = []
    seen: set[str] = set()
    for i in range(n):
        for attempt in range(60):
            if attempt % 5 == 0:  # retry the same template a few times before switching
                template = rng.choice(by_pool[_weighted(rng, pool_weights)])
                pool = lib.pools[template.pool]
            targets = {",".join(t): p for t, p in pool.targets}
            target = tuple(t for t in _weighted(rng, targets).split(",") if t)
            text, labels, provenance = _compose_turn(lib, rng, template, target)
            if labels != list(target):
                raise RuntimeError(f"{template.id}: built {labels} for target {target}")
            if text not in seen:
                break
        else:
            raise RuntimeError(f"row {i}: 60 draws gave only texts already generated; banks too small for n={n}")
        seen.add(text)
        rows.append(
            {
                "id": f"tpl-{seed}-{i:06d}",
                "text": text,
                "labels": labels,
                "speaker": pool.speaker,
                "listener": pool.listener,
                "source": "template",
                "notes": f"template {template.id} ({pool.name}): " + ", ".join(provenance),
                "group": template.id,
            }
        )
    return rows


def _summary(rows: list[dict]) -> str:
    counts: Counter[str] = Counter()
    for r in rows:
        counts.update(r["labels"] or ["compliant"])
        counts["multi"] += len(r["labels"]) >= 2
        counts[f"speaker:{r['speaker']}"] += 1
    return ", ".join(f"{k}={v} ({v / max(len(rows), 1):.1%})" for k, v in sorted(counts.items()))


def main(argv: list[str] | None = None) -> int:
    """CLI: write ``--n`` composed rows as JSON Lines to ``--out`` (stdout if omitted)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="number of rows")
    ap.add_argument("--seed", type=int, default=0, help="random seed (output is deterministic)")
    ap.add_argument("--out", type=Path, help="output .jsonl file (default: stdout)")
    args = ap.parse_args(argv)
    rows = compose_rows(args.n, args.seed)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(lines, encoding="utf-8")
    else:
        sys.stdout.write(lines)
    print(f"{len(rows)} rows: {_summary(rows)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
