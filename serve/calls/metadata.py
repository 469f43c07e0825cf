"""Optional call metadata (``started_at``, ``direction``, ``debtor_id``, ``callee``): one parser.

The API's request schema and relabeling both validate metadata here, so a value that is a 422
in the API is an ``errors.jsonl`` record in relabel, with the same reason. A bad value never
stops a call from being scored: that call's checks that need the value become ``null``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from model.privacy import mask_pii

OUTBOUND, INBOUND = "outbound", "inbound"
DIRECTIONS: tuple[str, ...] = (OUTBOUND, INBOUND)
DEBTOR, THIRD_PARTY, UNKNOWN = "debtor", "third_party", "unknown"
CALLEE_ROLES: tuple[str, ...] = (DEBTOR, THIRD_PARTY, UNKNOWN)
METADATA_FIELDS: tuple[str, ...] = ("started_at", "direction", "debtor_id", "callee")


def _shown(value: Any) -> str:
    """A bad value as an error message may quote it: personal numbers masked (errors are stored and logged)."""
    return repr(mask_pii(value)) if isinstance(value, str) else repr(value)


def parse_started_at(value: Any, timezone: str) -> datetime:
    """An ISO 8601 time as an aware datetime; without an offset it is read in ``timezone``."""
    if not isinstance(value, str):
        raise ValueError(f"must be an ISO 8601 string such as 2026-03-01T21:30:00+08:00, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{_shown(value)} is not an ISO 8601 date-time (e.g. 2026-03-01T21:30:00+08:00)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(timezone))
    return parsed


def check_direction(value: Any) -> str:
    if value not in DIRECTIONS:
        raise ValueError(f"must be one of {list(DIRECTIONS)}, got {_shown(value)}")
    return value


def check_role(value: Any) -> str:
    if value not in CALLEE_ROLES:
        raise ValueError(f"must be one of {list(CALLEE_ROLES)}, got {_shown(value)}")
    return value


def _text_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"must be a string (or an integer), got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise ValueError("is empty")
    return text


@dataclass(frozen=True)
class CallMetadata:
    """What the call-level checks may use; ``None`` = not given (or given but invalid)."""

    started_at: datetime | None = None
    direction: str = OUTBOUND
    direction_given: bool = False
    debtor_id: str | None = None
    callee_id: str | None = None
    callee_role: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, timezone: str) -> tuple[CallMetadata, list[tuple[str, str]]]:
        """``(metadata, problems)``; each problem is ``(field, reason)`` and that field is left out."""
        raw = raw or {}
        problems: list[tuple[str, str]] = []
        values: dict[str, Any] = {}

        def take(name: str, parse: Any, value: Any) -> Any:
            try:
                return parse(value)
            except ValueError as e:
                problems.append((name, str(e)))
                return None

        if raw.get("started_at") is not None:
            values["started_at"] = take("started_at", lambda v: parse_started_at(v, timezone), raw["started_at"])
        if raw.get("direction") is not None:
            direction = take("direction", check_direction, raw["direction"])
            if direction is not None:
                values["direction"], values["direction_given"] = direction, True
        if raw.get("debtor_id") is not None:
            values["debtor_id"] = take("debtor_id", _text_id, raw["debtor_id"])
        callee = raw.get("callee")
        if callee is not None:
            if not isinstance(callee, Mapping):
                problems.append(("callee", f'must be an object {{"id": …, "role": …}}, got {type(callee).__name__}'))
            else:
                unknown = sorted(set(callee) - {"id", "role"})
                if unknown:
                    problems.append((f"callee.{unknown[0]}", "unknown field (callee has id and role)"))
                if callee.get("id") is not None:
                    values["callee_id"] = take("callee.id", _text_id, callee["id"])
                values["callee_role"] = take("callee.role", check_role, callee.get("role", UNKNOWN))
        return cls(**values), problems
