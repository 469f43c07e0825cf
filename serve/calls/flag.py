"""The shape of one call-level check's answer, shared by every check."""

from __future__ import annotations

from typing import Any


def flag(raised: bool | None, reason: str, **evidence: Any) -> dict[str, Any]:
    """``{"raised": true | false | null, "reason": why, "evidence": {...}}``.

    ``raised`` is ``None`` when the check cannot be decided (metadata missing or invalid, or the
    call is not of the kind the check judges): never a guess, and ``reason`` says which.
    """
    return {"raised": raised, "reason": reason, "evidence": evidence}
