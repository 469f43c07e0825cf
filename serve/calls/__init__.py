"""Call-level checks (LABELS.md "Call-level checks"): judged on a whole call, beside the labels.

:func:`check_call` is the one entry point, called by :func:`serve.summary.summarize_call`, so
``/v1/calls``, ``collectguard score`` and ``collectguard relabel`` report the same ``flags``.
Cross-call checks (contact caps, contact-list blasting) are in :mod:`serve.calls.contacts`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from model.config import CallsConfig
from serve.calls.anonymous import anonymous_collection
from serve.calls.complaint import complaint
from serve.calls.hours import outside_permitted_hours
from serve.calls.metadata import CallMetadata

CALL_FLAGS: tuple[str, ...] = ("anonymous_collection", "outside_permitted_hours", "complaint")


def check_call(
    segments: Sequence[Any], metadata: Mapping[str, Any] | None, cfg: CallsConfig | None = None
) -> dict[str, Any]:
    """``{"flags": {name: flag}, "metadata_problems": [{"field", "reason"}]}`` for one call.

    A bad metadata value is a problem, not a failure: the check that needs it is ``null``.
    """
    cfg = cfg or CallsConfig()
    meta, problems = CallMetadata.parse(metadata, cfg.timezone)
    flags = {
        "anonymous_collection": anonymous_collection(segments, meta, cfg),
        "outside_permitted_hours": outside_permitted_hours(meta, cfg),
        "complaint": complaint(segments),
    }
    return {"flags": flags, "metadata_problems": [{"field": f, "reason": r} for f, r in problems]}
