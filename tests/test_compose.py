"""Tests for the compositional generator and its YAML phrase banks."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from train.compose import (
    LABELS,
    TEMPLATES_DIR,
    compose_rows,
    load_library,
    main,
)

ROW_KEYS = {"id", "text", "labels", "speaker", "listener", "source", "notes", "group"}
DEBT_SLOTS = ("{lender}", "{amount}", "{product}", "{days}", "{agency}", "{fee}")
DEBT_WORDS = ("欠", "逾期", "还款", "借", "贷", "催收", "账单", "信用卡", "钱")
# Real lenders/apps that must never appear (fictitious names only).
REAL_LENDERS = ("招商银行", "平安", "捷信", "360借条", "借呗", "微粒贷", "花呗", "京东白条", "拍拍贷")


@pytest.fixture(scope="module")
def rows3000() -> list[dict]:
    return compose_rows(3000, 0)


def _raw_banks() -> dict[str, dict]:
    banks: dict[str, dict] = {}
    for path in sorted(TEMPLATES_DIR.glob("*.yaml")):
        banks.update((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("banks", {}))
    return banks


def test_deterministic_by_seed() -> None:
    assert compose_rows(300, 7) == compose_rows(300, 7)
    assert compose_rows(300, 7) != compose_rows(300, 8)


def test_schema_valid(rows3000: list[dict]) -> None:
    ids = set()
    for r in rows3000:
        assert set(r) == ROW_KEYS
        assert r["source"] == "template"
        assert r["speaker"] in {"agent", "customer"}
        assert r["listener"] in {"debtor", "third_party", "unknown"}
        assert isinstance(r["labels"], list)
        assert r["labels"] == [lab for lab in LABELS if lab in r["labels"]]  # canonical, no dups
        assert 2 <= len(r["text"]) <= 250, r["text"]
        assert r["text"].strip() == r["text"] and r["text"]
        assert "{" not in r["text"] and "}" not in r["text"], "unfilled slot"
        assert r["notes"].startswith(f"template {r['group']} ")
        ids.add(r["id"])
    assert len(ids) == len(rows3000)
    assert len({r["text"] for r in rows3000}) == len(rows3000), "duplicate texts"


def test_label_proportions(rows3000: list[dict]) -> None:
    n = len(rows3000)
    counts = Counter(lab for r in rows3000 for lab in r["labels"])
    frac = {lab: counts[lab] / n for lab in LABELS}
    compliant = sum(not r["labels"] for r in rows3000) / n
    multi = sum(len(r["labels"]) >= 2 for r in rows3000) / n
    customer = sum(r["speaker"] == "customer" for r in rows3000) / n
    unknown = sum(r["listener"] == "unknown" for r in rows3000) / n
    assert 0.50 <= compliant <= 0.65, compliant
    assert 0.12 <= frac["threat"] <= 0.28, frac
    assert 0.10 <= frac["insult"] <= 0.25, frac
    assert 0.10 <= frac["third_party_disclosure"] <= 0.25, frac
    assert 0.06 <= multi <= 0.16, multi
    assert 0.05 <= customer <= 0.12, customer
    assert 0.04 <= unknown <= 0.15, unknown
    lengths = [len(r["text"]) for r in rows3000]
    assert sum(x >= 120 for x in lengths) / n >= 0.05, "too few long turns"
    assert sum(x <= 10 for x in lengths) / n >= 0.01, "too few short turns"


def test_disclosure_needs_a_third_party(rows3000: list[dict]) -> None:
    for r in rows3000:
        if "third_party_disclosure" not in r["labels"]:
            continue
        assert r["listener"] != "debtor", r
        if r["listener"] == "unknown":
            # With an unknown listener only clauses that name the third party may disclose.
            assert "disclosure_explicit" in r["notes"], r


def test_hard_negatives_present(rows3000: list[dict]) -> None:
    compliant = [r for r in rows3000 if not r["labels"] and r["speaker"] == "agent"]
    tricky = ("法院", "起诉", "征信", "警察", "上门", "老赖", "坐牢", "报警", "通讯录")
    share = sum(any(w in r["text"] for w in tricky) for r in compliant) / len(compliant)
    assert share >= 0.2, share


def test_groups_are_templates(rows3000: list[dict]) -> None:
    lib = load_library()
    template_ids = {t.id for t in lib.templates}
    assert len(template_ids) >= 60
    groups = Counter(r["group"] for r in rows3000)
    assert set(groups) <= template_ids
    assert len(groups) >= 60
    # Each template is a skeleton for several label sets, so a split by group still sees all.
    by_group = {g: {tuple(r["labels"]) for r in rows3000 if r["group"] == g} for g in groups}
    assert sum(len(v) >= 2 for v in by_group.values()) >= 55


def test_every_yaml_clause_has_valid_labels() -> None:
    banks = _raw_banks()
    assert banks
    for name, bank in banks.items():
        role = bank["role"]
        for clause in bank["clauses"]:
            assert "labels" in clause, (name, clause)
            labels = clause["labels"]
            assert isinstance(labels, list) and set(labels) <= set(LABELS), (name, clause)
            assert len(set(labels)) == len(labels)
            if role in {"compliant", "filler"}:
                assert labels == [], (name, clause)
            elif role == "multi":
                assert len(labels) >= 2, (name, clause)
            else:
                assert labels == [role], (name, clause)


def test_bank_sizes() -> None:
    lib = load_library()

    def count(pred) -> int:
        return sum(len(b.clauses) for b in lib.banks.values() if pred(b))

    assert count(lambda b: b.role == "threat") >= 40
    assert count(lambda b: b.role == "insult") >= 40
    assert count(lambda b: b.role == "third_party_disclosure") >= 30
    assert count(lambda b: b.role == "compliant") >= 80
    assert count(lambda b: b.role == "multi") >= 20


def test_third_party_compliant_clauses_reveal_no_debt() -> None:
    """Anything compliant said to a third party must not mention the debt at all."""
    lib = load_library()
    for bank in lib.banks.values():
        if bank.role != "compliant" or "third_party" not in bank.listeners:
            continue
        if bank.name.startswith("customer"):
            continue  # customer speech to the agent is not disclosure
        for c in bank.clauses:
            assert not any(s in c.text for s in DEBT_SLOTS), (bank.name, c.text)
            assert not any(w in c.text for w in DEBT_WORDS), (bank.name, c.text)


def test_names_are_fictitious() -> None:
    text = "".join(p.read_text(encoding="utf-8") for p in TEMPLATES_DIR.glob("*.yaml"))
    for real in REAL_LENDERS:
        assert real not in text, real
    for r in compose_rows(500, 3):
        # phone numbers only ever appear masked (138****5521), never as 11 plain digits
        assert not re.search(r"1\d{10}", r["text"]), r["text"]


def _copy_templates(tmp_path: Path) -> Path:
    dst = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, dst)
    return dst


def test_loader_rejects_mislabelled_clause(tmp_path: Path) -> None:
    d = _copy_templates(tmp_path)
    p = d / "threat.yaml"
    p.write_text(
        p.read_text(encoding="utf-8").replace("labels: [threat], kind: violence}", "labels: []}", 1),
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="threat_debtor"):
        load_library(d)


def test_loader_rejects_debt_bank_for_third_party(tmp_path: Path) -> None:
    d = _copy_templates(tmp_path)
    p = d / "skeletons.yaml"
    p.write_text(
        p.read_text(encoding="utf-8").replace(
            'parts: [opening_tp, "@v", closing_tp]}', 'parts: [reminder, "@v", closing_tp]}'
        ),
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="not valid for listener third_party"):
        load_library(d)


def test_cli_writes_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "rows.jsonl"
    assert main(["--n", "25", "--seed", "4", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows == compose_rows(25, 4)


def test_never_keeps_a_duplicate_when_the_banks_run_dry(monkeypatch) -> None:
    import train.compose as compose

    real = compose._compose_turn

    def always_the_same(lib, rng, template, target):
        _, labels, provenance = real(lib, rng, template, target)
        return "同一句话", labels, provenance

    monkeypatch.setattr(compose, "_compose_turn", always_the_same)
    with pytest.raises(RuntimeError, match="already generated"):
        compose.compose_rows(2, seed=0)
