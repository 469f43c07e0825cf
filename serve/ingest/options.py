"""What a caller decides about reading: format, encoding, speaker map and role assignment."""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class IngestOptions:
    """Reading options, resolved once per run (from :class:`model.config.Settings` and flags).

    ``fmt`` and ``encoding`` are ``"auto"`` or forced for every file; ``speaker_map`` maps
    speaker names and tags to ``agent``/``customer``; ``roles`` is ``"auto"`` (anonymous tags get
    automatic role assignment) or ``"map"`` (an unmapped tag is an error).
    """

    fmt: str = "auto"
    encoding: str = "auto"
    speaker_map: Mapping[str, str] = field(default_factory=dict)
    roles: str = "auto"
    role_margin: float = 1.0
    detect_bytes: int = 1_000_000
    max_json_bytes: int = 200_000_000
    column_aliases: Mapping[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.encoding != "auto":
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ValueError(f"unknown encoding {self.encoding!r} (e.g. utf-8, gb18030, big5, utf-16)") from None
        if self.roles not in ("auto", "map"):
            raise ValueError(f"roles must be 'auto' or 'map', got {self.roles!r}")

    @classmethod
    def from_settings(cls, settings: Any, fmt: str = "auto", encoding: str | None = None,
                      roles: Mapping[str, str] | None = None) -> IngestOptions:  # fmt: skip
        """Options of a command: config sections ``ingest`` and ``relabel.speaker_map``, then flags.

        ``roles`` (``--role TAG=ROLE``) is added to the configured speaker map.
        """
        cfg = settings.ingest
        speaker_map = {**settings.relabel.speaker_map, **(roles or {})}
        return cls(
            fmt=fmt, encoding=encoding or cfg.encoding, speaker_map=speaker_map, roles=cfg.roles,
            role_margin=cfg.role_margin, detect_bytes=cfg.detect_bytes, max_json_bytes=int(cfg.max_json_mb * 1e6),
            column_aliases=cfg.column_aliases,
        )  # fmt: skip


def parse_role_flags(items: list[str]) -> dict[str, str]:
    """``["SPEAKER_00=agent", "channel 1=customer"]`` → a speaker map; a malformed item raises."""
    out: dict[str, str] = {}
    for item in items:
        tag, sep, role = item.rpartition("=")
        if not sep or not tag.strip() or role.strip() not in ("agent", "customer"):
            raise ValueError(f"--role {item!r} must look like TAG=agent or TAG=customer")
        out[tag.strip()] = role.strip()
    return out
