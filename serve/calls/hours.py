"""``outside_permitted_hours``: the call started at or after 22:00 or before 08:00 local time.

Local time is ``calls.timezone`` (the debtors' zone): the offset in ``started_at`` fixes the
instant, which is then read on the local clock. The window is ``calls.quiet_start`` to
``calls.quiet_end``. What it cannot know: the debtor's consent to a call at night, or that the
debtor is in another time zone.
"""

from __future__ import annotations

from datetime import time
from typing import Any
from zoneinfo import ZoneInfo

from model.config import CallsConfig
from serve.calls.flag import flag
from serve.calls.metadata import CallMetadata


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def in_quiet_window(local: time, start: time, end: time) -> bool:
    """``start <= local < end``, across midnight when ``start > end``."""
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def outside_permitted_hours(meta: CallMetadata, cfg: CallsConfig) -> dict[str, Any]:
    if meta.started_at is None:
        return flag(None, "no valid started_at: the start time is unknown")
    local = meta.started_at.astimezone(ZoneInfo(cfg.timezone))
    window = f"{cfg.quiet_start}–{cfg.quiet_end}"
    raised = in_quiet_window(local.time(), _clock(cfg.quiet_start), _clock(cfg.quiet_end))
    reason = (
        f"started {local:%H:%M} local time, inside the quiet window {window}"
        if raised
        else f"started {local:%H:%M} local time, outside the quiet window {window}"
    )
    return flag(raised, reason, local_time=local.isoformat(), timezone=cfg.timezone, window=window)
