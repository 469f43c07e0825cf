"""The review store's tables (SQLAlchemy ORM). Changing them needs an Alembic revision in
``migrations/versions``; ``tests/test_review_store.py`` fails when the two disagree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Per-segment verdicts a reviewer can give.
VERDICTS: tuple[str, ...] = ("confirm", "reject", "correct")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    def as_dict(self) -> dict[str, Any]:
        """Every column by name; datetimes as ISO 8601 in UTC (what the API returns)."""
        values = {c.key: getattr(self, c.key) for c in self.__table__.columns}
        return {k: _iso(v) if isinstance(v, datetime) else v for k, v in values.items()}


class Review(Base):
    """One reviewer's verdict on one segment of one call (never updated: a new verdict is a new row)."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(200), index=True)
    segment: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    speaker: Mapped[str] = mapped_column(String(16))
    listener: Mapped[str] = mapped_column(String(16))
    verdict: Mapped[str] = mapped_column(String(16))
    labels: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    model_labels: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    reviewer: Mapped[str] = mapped_column(String(100), index=True)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class CallVerdict(Base):
    """A reviewer's overall verdict on a call: the most severe label they found (or compliant)."""

    __tablename__ = "call_verdicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(200), index=True)
    verdict: Mapped[str] = mapped_column(String(32))
    model_verdict: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reviewer: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class StoredCall(Base):
    """A call pasted or uploaded on the page, with its scored report, so it has a stable URL."""

    __tablename__ = "stored_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(200), index=True)
    origin: Mapped[str] = mapped_column(String(300))
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


def _iso(value: datetime) -> str:
    # SQLite returns naive datetimes; every value was written in UTC.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat(timespec="seconds")
