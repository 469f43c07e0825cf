"""The training corpus: load and validate authored rows, add compositional and public rows,
split by source group, remove near-duplicates across splits, augment the training split, and
save one dataset that training, evaluation and the notebooks all load.

Splits are assigned per *group* (a written row, or a template and all rows built from it;
augmented copies inherit their source's group), so no sibling of a test row is ever trained on.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.config import DataConfig, Settings, repo_relative
from model.files import atomic_write
from model.labels import CUSTOMER, DEFAULT_LISTENER, DEFAULT_SPEAKER, UNKNOWN_LISTENER, VIOLATIONS, validate_labels
from model.preprocess import Segment, normalize
from train.negatives import load_cold_rows, load_negatives, sample_rows

SPLITS = ("train", "validation", "test")
#: Rows from public corpora: they only ever train, and live in ``public.jsonl`` (never committed).
PUBLIC_SOURCES = ("cped", "kdconv", "cold", "swsr")
PUBLIC_FILE = "public.jsonl"
ROW_FIELDS = ("id", "text", "labels", "speaker", "listener", "source", "group", "notes")


# -- reading and validation -------------------------------------------------------------------
def validate_row(raw: Any, where: str, require_id: bool = True) -> dict[str, Any]:
    """Check one row against the schema; errors name ``where`` (file:line) and the field."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a row must be a JSON object, got {type(raw).__name__}")
    text = raw.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: field 'text' is missing or empty")
    try:
        seg = Segment(text, raw.get("speaker") or DEFAULT_SPEAKER, raw.get("listener") or DEFAULT_LISTENER)
    except ValueError as e:  # names the field: "speaker must be one of ..."
        raise ValueError(f"{where}: {e}") from None
    try:
        seg.normalized  # noqa: B018
    except ValueError as e:
        raise ValueError(f"{where}: field 'text': {e}") from None
    if "labels" not in raw:
        raise ValueError(f"{where}: field 'labels' is missing (use [] for compliant)")
    try:
        labels = validate_labels(raw["labels"])
    except ValueError as e:
        raise ValueError(f"{where}: field 'labels': {e}") from None
    if require_id and not (isinstance(raw.get("id"), str) and raw["id"]):
        raise ValueError(f"{where}: field 'id' is missing")
    row = {
        "id": raw.get("id") or where,
        "text": text,
        "labels": labels,
        "speaker": seg.speaker,
        "listener": seg.listener,
        "source": raw.get("source") or "unknown",
        "group": raw.get("group") or raw.get("id") or where,
        "notes": raw.get("notes") or "",
    }
    return row


def iter_jsonl(path: Path, require_id: bool = True) -> Iterator[dict[str, Any] | ValueError]:
    """Rows of a JSONL file, or a ``ValueError`` naming file and line for each bad one."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield validate_row(json.loads(line), where, require_id)
            except json.JSONDecodeError as e:
                yield ValueError(f"{where}: not valid JSON ({e.msg})")
            except ValueError as e:
                yield e


def load_authored(directory: Path) -> list[dict[str, Any]]:
    """All authored rows; any invalid row fails the build with every problem listed."""
    files = sorted(Path(directory).glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"no authored *.jsonl files in {directory}")
    rows, errors, seen = [], [], {}
    for path in files:
        for item in iter_jsonl(path):
            if isinstance(item, ValueError):
                errors.append(str(item))
            elif item["id"] in seen:
                errors.append(f"{path}: id {item['id']!r} also used at {seen[item['id']]}")
            else:
                seen[item["id"]] = path.name
                rows.append(item)
    if errors:
        shown = "\n  ".join(errors[:20])
        raise ValueError(f"{len(errors)} invalid authored row(s):\n  {shown}")
    return rows


def load_feedback(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Reviewed rows from ``collectguard feedback export`` files (``data.feedback_paths``).

    They are split and trained like written rows. A bad row is reported on stderr, naming file and
    line, and skipped: one broken export line must not throw away a day of reviews.
    """
    rows, seen = [], set()
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"data.feedback_paths: {path} does not exist")
        for item in iter_jsonl(Path(path)):
            if isinstance(item, ValueError):
                print(f"feedback row skipped: {item}", file=sys.stderr)
            elif item["id"] in seen:
                print(f"feedback row skipped: {path}: id {item['id']!r} seen before", file=sys.stderr)
            else:
                seen.add(item["id"])
                rows.append(item)
    return rows


# -- public data --------------------------------------------------------------------------------
def load_swsr(path: Path, max_rows: int, seed: int) -> list[dict[str, Any]]:
    """SWSR: non-sexist comments as compliant; sexist comments aimed at an individual as insult.

    Group-directed (target G) sexism is hate against a group, not an insult to a person.
    """
    safe, abuse = [], []
    with open(Path(path) / "SexComment.csv", encoding="utf-8-sig", newline="") as f:
        for rec in csv.DictReader(f):
            text = (rec.get("comment_text") or "").strip()
            if not text:
                continue
            rid = f"swsr-{rec.get('index')}"
            if rec.get("label") == "0":
                safe.append(_public_row(rid, text, [], "swsr"))
            elif rec.get("label") == "1" and rec.get("target") == "I":
                abuse.append(_public_row(rid, text, ["insult"], "swsr"))
    return _sample(safe, max_rows // 2, seed) + _sample(abuse, max_rows // 2, seed)


def load_real_negatives(cfg: DataConfig) -> list[dict[str, Any]]:
    """Real talk from each corpus's training slice: a seeded sample, reviewed hard negatives, real insults.

    Hard negatives are rows an earlier model flagged; the reviewed list (ids only, no text) says
    which are genuinely compliant (``labels: []``, capped per corpus by ``hard_negatives_max``)
    and which hold a real violation (always kept, with its labels). COLD comments reviewed as
    attacks on a person (``person_directed``) train as ``insult``: without them, thousands of crude
    but group-directed safe comments teach that crude wording is never an insult.
    """
    reviewed = load_hard_negatives(cfg.hard_negatives)
    rows: list[dict[str, Any]] = []
    for corpus, n in cfg.negatives_rows.items():
        pool = load_negatives(cfg.negatives_dir, corpus, "train", cfg.heldout_fraction, cfg.seed)
        hard = [
            {**r, "labels": reviewed[r["id"]], "notes": "reviewed hard negative"} for r in pool if r["id"] in reviewed
        ]
        violations = [r for r in hard if r["labels"]]
        compliant = sample_rows([r for r in hard if not r["labels"]], cfg.hard_negatives_max.get(corpus), cfg.seed)
        rest = [r for r in pool if r["id"] not in reviewed]
        rows += violations + compliant + sample_rows([r for r in rest if normalizes(r["text"])], n, cfg.seed)
    if Path(cfg.person_directed).exists():
        lines = Path(cfg.person_directed).read_text(encoding="utf-8").splitlines()
        attacks = {rec["id"] for rec in map(json.loads, lines) if rec["person_directed"]}
        offensive = load_cold_rows(Path(cfg.negatives_dir) / "cold", "train", "1")
        note = "reviewed person-directed attack"
        rows += [{**r, "labels": ["insult"], "notes": note} for r in offensive if r["id"] in attacks]
    return rows


def load_hard_negatives(path: Path) -> dict[str, list[str]]:
    """``{row id: reviewed labels}`` from the hard-negative review file (absent file = none)."""
    if not Path(path).exists():
        return {}
    out = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                rec = json.loads(line)
                try:
                    out[rec["id"]] = validate_labels(rec["labels"])
                except (KeyError, ValueError) as e:
                    raise ValueError(f"{path}:{lineno}: {e}") from None
    return out


def _public_row(rid: str, text: str, labels: list[str], source: str) -> dict[str, Any]:
    return {
        "id": rid, "text": text, "labels": labels, "speaker": CUSTOMER, "listener": UNKNOWN_LISTENER,
        "source": source, "group": rid, "notes": f"public dataset {source}",
    }  # fmt: skip


def _sample(rows: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    rows = [r for r in rows if normalizes(r["text"])]
    return random.Random(seed).sample(rows, min(n, len(rows)))


def normalizes(text: str) -> bool:
    """Whether anything of ``text`` is left to score after preprocessing."""
    try:
        normalize(text)
        return True
    except ValueError:
        return False


# -- de-duplication and splitting -----------------------------------------------------------
def ngrams(text: str, n: int = 3) -> frozenset[str]:
    """Character n-grams of the normalised text (short texts: the text itself)."""
    t = normalize(text)
    return frozenset({t} if len(t) < n else {t[i : i + n] for i in range(len(t) - n + 1)})


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class NearDuplicateIndex:
    """Exact Jaccard search over character n-gram sets with prefix filtering.

    If J(A, B) ≥ t then B contains at least t·|A| of A's grams, so B must share one of A's
    |A| − ⌈t·|A|⌉ + 1 rarest grams: only rows in those grams' postings need an exact check.
    """

    def __init__(self, sets: list[frozenset[str]]) -> None:
        self.sets = sets
        self.postings: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(sets):
            for g in s:
                self.postings[g].append(i)

    def find(self, query: frozenset[str], threshold: float) -> list[int]:
        import math

        ordered = sorted(query, key=lambda g: (len(self.postings.get(g, ())), g))
        # the epsilon keeps float rounding (0.56 * 25 = 14.000000000000002) from shortening the prefix
        prefix = ordered[: len(ordered) - math.ceil(threshold * len(ordered) - 1e-9) + 1]
        candidates = {i for g in prefix for i in self.postings.get(g, ())}
        return [i for i in candidates if jaccard(query, self.sets[i]) >= threshold]


def dedupe_exact(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Drop rows whose normalised text was already seen (first kept); returns (kept, dropped)."""
    seen: dict[str, dict[str, Any]] = {}
    kept, dropped = [], []
    for r in rows:
        key = normalize(r["text"])
        if key in seen:
            dropped.append({**r, "duplicate_of": seen[key]["id"]})
        else:
            seen[key] = r
            kept.append(r)
    return kept, dropped


def drop_real_dev_texts(
    rows: list[dict[str, Any]], real_dir: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Drop corpus rows whose normalised text equals a real dev row (e.g. a one-word insult both hold).

    The real development set is for selection, thresholds and reporting only; this is the one
    place the build reads it, so that nothing it holds can train or sit in the authored splits.
    """
    dev = set()
    for path in sorted(Path(real_dir).glob("dev_*.jsonl")):
        dev |= {normalize(json.loads(line)["text"]) for line in path.read_text(encoding="utf-8").splitlines() if line}
    kept, dropped = [], []
    for r in rows:
        (dropped if normalize(r["text"]) in dev else kept).append(r)
    return kept, [{**r, "duplicate_of": "real dev set"} for r in dropped]


def assign_splits(rows: list[dict[str, Any]], cfg: DataConfig) -> dict[str, list[dict[str, Any]]]:
    """Groups go to one split each, by a seeded hash; public rows only ever train."""
    splits: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for r in rows:
        if r["source"] in PUBLIC_SOURCES:
            splits["train"].append(r)
            continue
        h = int(hashlib.sha256(f"{cfg.seed}:{r['group']}".encode()).hexdigest()[:8], 16) / 16**8
        split = (
            "test" if h < cfg.test_fraction else "validation" if h < cfg.test_fraction + cfg.val_fraction else "train"
        )
        splits[split].append(r)
    return splits


def remove_cross_split_near_duplicates(
    splits: dict[str, list[dict[str, Any]]], threshold: float
) -> list[dict[str, Any]]:
    """Drop validation/test rows near-duplicating a training row (and test rows near validation)."""
    removed = []
    reference = list(splits["train"])
    for split in ("validation", "test"):
        index = NearDuplicateIndex([ngrams(r["text"]) for r in reference])
        kept = []
        for r in splits[split]:
            hits = index.find(ngrams(r["text"]), threshold)
            if hits:
                removed.append({**r, "split": split, "near_duplicate_of": reference[hits[0]]["id"]})
            else:
                kept.append(r)
        splits[split] = kept
        reference += kept
    return removed


# -- the build ----------------------------------------------------------------------------------
@dataclass
class BuildResult:
    out: Path
    counts: dict[str, Any]
    data_hash: str


def build(settings: Settings, out: Path | None = None) -> BuildResult:
    """Assemble the corpus and write ``{train,validation,test}.jsonl`` plus ``stats.json``."""
    from train.augment import augment_rows
    from train.compose import compose_rows

    cfg = settings.data
    out = Path(out or cfg.out_dir)
    written = load_authored(cfg.authored_dir)
    templated = compose_rows(cfg.template_rows, cfg.seed) if cfg.template_rows else []
    for r in templated:
        r.update(validate_row(r, f"template {r['id']}"))
    public: list[dict[str, Any]] = []
    if cfg.negatives_dir:
        public += load_real_negatives(cfg)
    if cfg.swsr_path:
        public += load_swsr(cfg.swsr_path, cfg.public_max_rows, cfg.seed)
    feedback = load_feedback(cfg.feedback_paths)
    rows, exact_dups = dedupe_exact(written + feedback + templated + public)
    rows, dev_copies = drop_real_dev_texts(rows, cfg.real_dir)
    exact_dups += dev_copies
    splits = assign_splits(rows, cfg)
    near_dups = remove_cross_split_near_duplicates(splits, cfg.near_dup_jaccard)
    if cfg.augment_copies:
        own = [r for r in splits["train"] if r["source"] not in PUBLIC_SOURCES]  # real talk stays as it was said
        augmented = augment_rows(own, cfg.augment_copies, cfg.seed)
        # an augmented copy can land on an evaluation text (e.g. "你等着。" → "你等着"): drop those copies
        held_out = NearDuplicateIndex([ngrams(r["text"]) for r in splits["validation"] + splits["test"]])
        kept_aug = [r for r in augmented if not held_out.find(ngrams(r["text"]), cfg.near_dup_jaccard)]
        near_dups += [{**r, "split": "train", "near_duplicate_of": "validation/test"} for r in augmented
                      if r not in kept_aug]  # fmt: skip
        splits["train"] += kept_aug
    out.mkdir(parents=True, exist_ok=True)
    for split, split_rows in splits.items():
        write_jsonl(out / f"{split}.jsonl", [r for r in split_rows if r["source"] not in PUBLIC_SOURCES])
    # public corpora are read from their path, never committed: their rows go to an ignored file
    write_jsonl(out / PUBLIC_FILE, [r for r in splits["train"] if r["source"] in PUBLIC_SOURCES])
    counts = corpus_counts(splits)
    counts["removed"] = {"exact_duplicates": len(exact_dups), "cross_split_near_duplicates": len(near_dups)}
    data_hash = hash_rows(splits["train"] + splits["validation"])
    config = cfg.model_dump(mode="json")
    config.update({k: repo_relative(v) for k, v in cfg if isinstance(v, Path)})  # byte-identical on any machine
    if cfg.feedback_paths:
        config["feedback_paths"] = [repo_relative(p) for p in cfg.feedback_paths]
        counts["feedback"] = {"rows": len(feedback)}
    else:  # builds without reviews keep the stats they always had
        config.pop("feedback_paths", None)
    stats = {"data_sha256": data_hash, "config": config, **counts}
    (out / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_jsonl(out / "removed.jsonl", exact_dups + near_dups)
    return BuildResult(out, counts, data_hash)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")

    atomic_write(Path(path), write)


def hash_rows(rows: Iterable[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r["text"], r["labels"], r["speaker"], r["listener"]], ensure_ascii=False).encode())
    return h.hexdigest()


def is_written(row: dict[str, Any]) -> bool:
    """Individually written rows (not template-filled, not augmented, not public)."""
    return row["source"] == "written"


def corpus_counts(splits: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Counts per split × source, label, speaker and listener (what the data card shows)."""
    out: dict[str, Any] = {}
    for split, rows in splits.items():
        label_key = Counter()
        for r in rows:
            for label in r["labels"] or ["compliant"]:
                label_key[label] += 1
        out[split] = {
            "rows": len(rows),
            "by_source": dict(Counter(r["source"] for r in rows)),
            "by_label": {k: label_key[k] for k in (*VIOLATIONS, "compliant")},
            "multi_label": sum(len(r["labels"]) > 1 for r in rows),
            "by_speaker": dict(Counter(r["speaker"] for r in rows)),
            "by_listener": dict(Counter(r["listener"] for r in rows)),
            "label_speaker_listener": {
                f"{lab}|{r_s}|{r_l}": n
                for (lab, r_s, r_l), n in sorted(
                    Counter(
                        (label, r["speaker"], r["listener"]) for r in rows for label in (r["labels"] or ["compliant"])
                    ).items()
                )
            },
        }
    return out


def load_split(split: str, data_dir: Path | None = None, written_only: bool = False) -> list[dict[str, Any]]:
    """Rows of one processed split (validated), optionally only the individually written ones."""
    data_dir = Path(data_dir or DataConfig().out_dir)
    path = data_dir / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run `collectguard data build` first")
    paths = [path]
    if split == "train" and (data_dir / PUBLIC_FILE).exists():
        paths.append(data_dir / PUBLIC_FILE)  # real negatives built on this machine from their path
    rows = []
    for p in paths:
        for item in iter_jsonl(p):
            if isinstance(item, ValueError):
                raise item
            rows.append(item)
    return [r for r in rows if is_written(r)] if written_only else rows


def check_built_with_negatives(data_dir: Path, negatives_dir: Path | None) -> None:
    """Fail when a config that trains on real negatives meets splits built without them.

    ``collectguard data build`` without ``--config`` leaves ``data.negatives_dir`` unset, so the
    9,000-odd real ordinary-talk rows silently drop out of training; a model trained on that build
    flags ordinary talk again. Cheap to catch here, expensive to find after a 30-minute run.
    """
    stats_path = Path(data_dir) / "stats.json"
    if negatives_dir is None or not stats_path.exists():
        return
    built = json.loads(stats_path.read_text(encoding="utf-8")).get("config", {}).get("negatives_dir")
    public = Path(data_dir) / PUBLIC_FILE
    if built is None or not public.exists() or public.stat().st_size == 0:
        raise ValueError(
            f"{data_dir} was built without real negatives (stats.json data.negatives_dir={built!r}, "
            f"{PUBLIC_FILE} empty or missing) but this config sets data.negatives_dir={str(negatives_dir)!r}: "
            "rebuild with `collectguard data build --config <this config>`"
        )


def load_dataset_dict(data_dir: Path | None = None):
    """The processed splits as a Hugging Face ``DatasetDict`` (for training and notebooks)."""
    from datasets import Dataset, DatasetDict

    return DatasetDict({s: Dataset.from_list(load_split(s, data_dir)) for s in SPLITS})


def run_build(args: argparse.Namespace) -> int:
    result = build(Settings.from_args(args), args.out)
    summary = {s: result.counts[s]["rows"] for s in SPLITS}
    print(json.dumps({"out": str(result.out), "rows": summary, "removed": result.counts["removed"]}, indent=2))
    return 0
