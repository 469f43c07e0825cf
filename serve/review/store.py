"""The review store: a real database through SQLAlchemy (an SQLite file by default, any URL by
``review.database_url``), its schema kept by Alembic migrations applied on open.

Every write is one short transaction. On SQLite that transaction starts with ``BEGIN IMMEDIATE``
(so two writers queue on the file lock, waiting up to the busy timeout, instead of one failing
when it upgrades a read lock) and the file runs in WAL mode (readers never block the writer):
concurrent reviewers, threads or processes, lose no write.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from serve.review.models import CallVerdict, Review, StoredCall

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 60


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and immediate write transactions."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # pysqlite: let SQLAlchemy's "begin" below own transactions
        cur = dbapi_conn.cursor()
        if ":memory:" not in url:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (a no-op when it already is)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class ReviewStore:
    """Reviews, call verdicts and pasted calls. Thread-safe: one session per operation."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str) -> ReviewStore:
        """Connect to ``url`` and migrate its schema to the newest revision."""
        engine = make_engine(url)
        migrate(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    # -- reviews ------------------------------------------------------------------------------
    def add_review(self, **fields: Any) -> dict[str, Any]:
        """Store one segment verdict (already validated) and return it as stored."""
        with self._session() as s:
            review = Review(**fields)
            s.add(review)
            s.flush()
            return review.as_dict()

    def reviews(self, call_id: str | None = None, reviewer: str | None = None) -> list[dict[str, Any]]:
        """Reviews in the order they were made, optionally of one call or one reviewer."""
        query = select(Review).order_by(Review.id)
        if call_id is not None:
            query = query.where(Review.call_id == call_id)
        if reviewer is not None:
            query = query.where(Review.reviewer == reviewer)
        with self._session() as s:
            return [r.as_dict() for r in s.scalars(query)]

    # -- call verdicts ------------------------------------------------------------------------
    def add_call_verdict(self, **fields: Any) -> dict[str, Any]:
        with self._session() as s:
            verdict = CallVerdict(**fields)
            s.add(verdict)
            s.flush()
            return verdict.as_dict()

    def call_verdicts(self, call_id: str | None = None) -> list[dict[str, Any]]:
        query = select(CallVerdict).order_by(CallVerdict.id)
        if call_id is not None:
            query = query.where(CallVerdict.call_id == call_id)
        with self._session() as s:
            return [v.as_dict() for v in s.scalars(query)]

    # -- calls pasted or uploaded on the page ---------------------------------------------
    def add_calls(self, reports: Sequence[dict[str, Any]], origin: str) -> list[int]:
        """Store scored call reports; returns their ids (the page's ``s<id>`` references)."""
        with self._session() as s:
            rows = [StoredCall(call_id=r["call_id"], origin=origin[:300], report=r) for r in reports]
            s.add_all(rows)
            s.flush()
            return [row.id for row in rows]

    def stored_call(self, ident: int) -> dict[str, Any] | None:
        with self._session() as s:
            row = s.get(StoredCall, ident)
            return None if row is None else {"id": row.id, "origin": row.origin, "report": row.report}

    def stored_calls(self) -> list[dict[str, Any]]:
        """Every stored call, newest first."""
        with self._session() as s:
            rows = s.scalars(select(StoredCall).order_by(StoredCall.id.desc()))
            return [{"id": r.id, "origin": r.origin, "report": r.report} for r in rows]
