"""Checks across calls (relabel's ``contacts.jsonl``): contact caps and contact-list blasting.

LABELS.md: ``daily_contact_cap_exceeded`` — more calls to one debtor in one local day than
``calls.daily_contact_cap``; ``contact_list_blasting`` — more distinct third parties contacted
about one debtor in ``calls.third_party_window_days`` days (rolling, ending on the row's day)
than ``calls.third_party_limit``. Only outbound calls are contacts.

Each call contributes one :func:`contact_record` (stored in its ``calls.jsonl`` row, so a
resumed run rebuilds the same table from its committed parts); :func:`contact_rows` groups them
per debtor and local day. Calls without ``debtor_id`` or ``started_at`` are counted and
reported with ``null`` flags, not dropped. Where a callee's role or identity is unknown and
could tip the count over the limit, the flag is ``null`` (unknown), never a guess. With
``privacy.mask_pii`` on, ids that contain a phone or ID number are masked in the output and
grouped by a hash of the original (``pii:…``): pseudonymous, not anonymous.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from model.config import CallsConfig
from model.privacy import mask_pii
from serve.calls.flag import flag
from serve.calls.metadata import DEBTOR, OUTBOUND, THIRD_PARTY, UNKNOWN, CallMetadata

CONTACT_FLAGS: tuple[str, ...] = ("daily_contact_cap_exceeded", "contact_list_blasting")


def _key(value: str | None, mask_on: bool) -> str | None:
    if value is None or not mask_on or mask_pii(value) == value:
        return value
    return "pii:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]


def contact_record(
    call_id: str, metadata: Mapping[str, Any] | None, cfg: CallsConfig, mask_on: bool = True
) -> dict[str, Any]:
    """What one call contributes to the contact table (ids masked or pseudonymised when ``mask_on``)."""
    meta, _ = CallMetadata.parse(metadata, cfg.timezone)
    day = meta.started_at.astimezone(ZoneInfo(cfg.timezone)).date().isoformat() if meta.started_at else None
    shown = mask_pii(meta.debtor_id) if (mask_on and meta.debtor_id is not None) else meta.debtor_id
    return {
        "call_id": call_id,
        "debtor_key": _key(meta.debtor_id, mask_on),
        "debtor_id": shown,
        "day": day,
        "direction": meta.direction,
        "callee_role": meta.callee_role,
        "callee_key": _key(meta.callee_id, mask_on),
    }


def contact_rows(records: Iterable[Mapping[str, Any]], cfg: CallsConfig) -> list[dict[str, Any]]:
    """One row per debtor (or unknown debtor) and local day, with counts and the two flags."""
    groups: dict[tuple[str | None, str | None], list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["debtor_key"], r["day"])].append(r)
    by_debtor: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for (debtor, _), rows in groups.items():
        if debtor is not None:
            by_debtor[debtor].extend(rows)
    out = []
    for (debtor, day), rows in sorted(
        groups.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or "", kv[0][1] or "")
    ):
        out.append(_row(debtor, day, rows, by_debtor.get(debtor or "", []), cfg))
    return out


def _row(
    debtor: str | None, day: str | None, rows: list[Mapping[str, Any]], all_rows: list[Mapping[str, Any]],
    cfg: CallsConfig,
) -> dict[str, Any]:  # fmt: skip
    outbound = [r for r in rows if r["direction"] == OUTBOUND]
    to_debtor = sum(r["callee_role"] == DEBTOR for r in outbound)
    unknown = sum(r["callee_role"] in (None, UNKNOWN) for r in outbound)
    third = {r["callee_key"] for r in outbound if r["callee_role"] == THIRD_PARTY and r["callee_key"]}
    row: dict[str, Any] = {
        "debtor_id": rows[0]["debtor_id"],
        "day": day,
        "calls": len(rows),
        "outbound_calls": len(outbound),
        "calls_to_debtor": to_debtor,
        "calls_callee_unknown": unknown,
        "third_parties": len(third),
        "call_ids": [r["call_id"] for r in rows],
    }
    if debtor is None or day is None:
        missing = "debtor_id" if debtor is None else "started_at"
        reason = f"no valid {missing}: these calls cannot be attributed to a debtor and day"
        row["flags"] = {name: flag(None, reason) for name in ("daily_contact_cap_exceeded", "contact_list_blasting")}
        return row
    row["flags"] = {
        "daily_contact_cap_exceeded": _cap_flag(to_debtor, unknown, cfg.daily_contact_cap),
        "contact_list_blasting": _blasting_flag(day, all_rows, cfg),
    }
    return row


def _cap_flag(to_debtor: int, unknown: int, cap: int) -> dict[str, Any]:
    evidence = {"calls_to_debtor": to_debtor, "calls_callee_unknown": unknown, "cap": cap}
    if to_debtor > cap:
        return flag(True, f"{to_debtor} outbound calls to the debtor in one day (cap {cap})", **evidence)
    if to_debtor + unknown > cap:
        return flag(None, f"{unknown} calls with an unknown callee could put the day over the cap {cap}", **evidence)
    return flag(False, f"{to_debtor + unknown} outbound calls at most (cap {cap})", **evidence)


def _blasting_flag(day: str, rows: list[Mapping[str, Any]], cfg: CallsConfig) -> dict[str, Any]:
    end = date.fromisoformat(day)
    start = end - timedelta(days=cfg.third_party_window_days - 1)
    window = [
        r for r in rows
        if r["day"] and start <= date.fromisoformat(r["day"]) <= end and r["direction"] == OUTBOUND
        and r["callee_role"] == THIRD_PARTY
    ]  # fmt: skip
    known = sorted({r["callee_key"] for r in window if r["callee_key"]})
    anonymous = sum(not r["callee_key"] for r in window)
    limit = cfg.third_party_limit
    evidence = {
        "window": [start.isoformat(), end.isoformat()],
        "distinct_third_parties": len(known),
        "third_party_calls_without_id": anonymous,
        "limit": limit,
        "call_ids": [r["call_id"] for r in window],
    }
    if len(known) > limit:
        return flag(True, f"{len(known)} distinct third parties contacted in {cfg.third_party_window_days} days "
                          f"(limit {limit})", **evidence)  # fmt: skip
    if len(known) + anonymous > limit:
        return flag(
            None, f"{anonymous} third-party calls without a callee id could exceed the limit {limit}", **evidence
        )
    return flag(False, f"{len(known)} distinct third parties in {cfg.third_party_window_days} days (limit {limit})",
                **evidence)  # fmt: skip
