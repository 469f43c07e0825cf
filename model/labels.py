"""The label schema: the one place that names the labels and their severity order.

Mirrors ../shared/LABELS.md. Everything else (data validation, training heads, API models,
reports) imports from here so a label can never be spelled two ways.
"""

from __future__ import annotations

from collections.abc import Iterable

THREAT = "threat"
INSULT = "insult"
THIRD_PARTY_DISCLOSURE = "third_party_disclosure"
COMPLIANT = "compliant"

#: The independent violation labels, in the order of the model's output units.
VIOLATIONS: tuple[str, ...] = (THREAT, INSULT, THIRD_PARTY_DISCLOSURE)
#: Every label a segment can be shown with; `compliant` means "no violation".
ALL_LABELS: tuple[str, ...] = (*VIOLATIONS, COMPLIANT)
#: Most severe first (LABELS.md, "Severity order").
SEVERITY: tuple[str, ...] = (THREAT, THIRD_PARTY_DISCLOSURE, INSULT, COMPLIANT)

AGENT, CUSTOMER = "agent", "customer"
DEBTOR, THIRD_PARTY, UNKNOWN_LISTENER = "debtor", "third_party", "unknown"
#: Who speaks (only the agent's segments count towards a call's verdict) and to whom.
SPEAKERS: tuple[str, ...] = (AGENT, CUSTOMER)
LISTENERS: tuple[str, ...] = (DEBTOR, THIRD_PARTY, UNKNOWN_LISTENER)
DEFAULT_SPEAKER = AGENT
DEFAULT_LISTENER = UNKNOWN_LISTENER


def most_severe(labels: Iterable[str]) -> str:
    """The one label to show for a set of violations (`compliant` when empty)."""
    present = set(labels)
    unknown = present - set(VIOLATIONS)
    if unknown:
        raise ValueError(f"unknown label(s) {sorted(unknown)}; expected a subset of {list(VIOLATIONS)}")
    for label in SEVERITY:
        if label in present:
            return label
    return COMPLIANT


def validate_labels(labels: object) -> list[str]:
    """Check a row's `labels` field: a list of distinct violation names (`[]` = compliant)."""
    if not isinstance(labels, list):
        raise ValueError(f"labels must be a list, got {type(labels).__name__}")
    bad = [x for x in labels if x not in VIOLATIONS]
    if bad:
        raise ValueError(f"unknown label(s) {bad}; allowed: {list(VIOLATIONS)} ([] means compliant)")
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate labels in {labels}")
    return [x for x in VIOLATIONS if x in labels]


def check_context(speaker: str, listener: str) -> None:
    """Raise a ValueError naming the bad field if speaker/listener is not in the schema."""
    if speaker not in SPEAKERS:
        raise ValueError(f"speaker must be one of {list(SPEAKERS)}, got {speaker!r}")
    if listener not in LISTENERS:
        raise ValueError(f"listener must be one of {list(LISTENERS)}, got {listener!r}")
