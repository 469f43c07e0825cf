"""The label schema: severity order as LABELS.md states it, most_severe, validate_labels."""

from __future__ import annotations

import itertools
import re

import pytest

from model.config import REPO_ROOT
from model.labels import (
    ALL_LABELS,
    COMPLIANT,
    LISTENERS,
    SEVERITY,
    SPEAKERS,
    VIOLATIONS,
    check_context,
    most_severe,
    validate_labels,
)

LABELS_MD = REPO_ROOT.parent / "shared" / "LABELS.md"
EXPECTED_SEVERITY = ("threat", "third_party_disclosure", "insult", "compliant")


def test_severity_order_is_exactly_the_documented_one():
    assert SEVERITY == EXPECTED_SEVERITY


def test_severity_order_matches_labels_md_text():
    if not LABELS_MD.exists():
        pytest.skip(f"{LABELS_MD} not present")
    text = LABELS_MD.read_text(encoding="utf-8")
    section = text.split("## Severity order", 1)[1]
    line = next(ln for ln in section.splitlines() if ">" in ln)
    documented = tuple(re.findall(r"`([a-z_]+)`", line))
    assert documented == SEVERITY
    # every label the guide defines (### `name`) is one the code knows, and vice versa
    headings = set(re.findall(r"^### `([a-z_]+)`", text, flags=re.M))
    assert headings == set(ALL_LABELS)


def test_schema_constants():
    assert set(VIOLATIONS) == {"threat", "insult", "third_party_disclosure"}
    assert (*VIOLATIONS, COMPLIANT) == ALL_LABELS
    assert set(SEVERITY) == set(ALL_LABELS)
    assert SPEAKERS == ("agent", "customer")
    assert LISTENERS == ("debtor", "third_party", "unknown")


RANK = {label: i for i, label in enumerate(EXPECTED_SEVERITY)}


@pytest.mark.parametrize(
    "labels", [list(c) for r in range(len(VIOLATIONS) + 1) for c in itertools.combinations(VIOLATIONS, r)]
)
def test_most_severe_every_subset(labels):
    expected = min(labels, key=RANK.__getitem__) if labels else "compliant"
    assert most_severe(labels) == expected
    assert most_severe(reversed(labels)) == expected  # order of input irrelevant
    assert most_severe(iter(labels + labels)) == expected  # any iterable, repeats harmless


def test_most_severe_pairs_explicit():
    assert most_severe(["insult", "threat"]) == "threat"
    assert most_severe(["insult", "third_party_disclosure"]) == "third_party_disclosure"
    assert most_severe(["third_party_disclosure", "threat"]) == "threat"
    assert most_severe([]) == "compliant"


@pytest.mark.parametrize("bad", [["violence"], ["threat", "Threat"], ["compliant"]])
def test_most_severe_rejects_unknown(bad):
    with pytest.raises(ValueError, match="unknown label"):
        most_severe(bad)


def test_validate_labels_returns_canonical_order():
    assert validate_labels([]) == []
    assert validate_labels(["third_party_disclosure", "threat"]) == ["threat", "third_party_disclosure"]
    assert validate_labels(["insult", "third_party_disclosure", "threat"]) == list(VIOLATIONS)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("threat", "must be a list"),
        (("threat",), "must be a list"),
        (None, "must be a list"),
        ({"threat": 1}, "must be a list"),
        (["violence"], "violence"),
        (["compliant"], "compliant"),
        (["threat", "Insult"], "Insult"),
        ([1], "unknown label"),
        (["threat", "threat"], "duplicate"),
    ],
)
def test_validate_labels_errors(value, message):
    with pytest.raises(ValueError, match=message):
        validate_labels(value)


def test_check_context():
    for speaker in SPEAKERS:
        for listener in LISTENERS:
            check_context(speaker, listener)
    with pytest.raises(ValueError, match="speaker"):
        check_context("boss", "debtor")
    with pytest.raises(ValueError, match="listener"):
        check_context("agent", "neighbour")
