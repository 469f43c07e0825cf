"""What the review routes share in one running app: settings, the store (opened on first use, so
an API-only server never creates a database file), the page guard and the relabel folder."""

from __future__ import annotations

import threading
from typing import Any

from model.config import Settings
from model.labels import VIOLATIONS
from serve.review.calls import CallEntry, RelabelFolder
from serve.review.security import PageGuard
from serve.review.store import ReviewStore


class ReviewContext:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = settings.review
        self.guard = PageGuard(settings.serve.api_key, self.config.session_hours)
        self.folder = RelabelFolder(self.config.calls_dir) if self.config.calls_dir else None
        self._store: ReviewStore | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> ReviewStore:
        with self._lock:
            if self._store is None:
                self._store = ReviewStore.open(self.config.resolved_url())
            return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def entries(self) -> list[CallEntry]:
        """Every call the page can open: pasted/uploaded ones (newest first), then the folder's."""
        stored = [CallEntry(f"s{c['id']}", c["origin"], c["report"]) for c in self.store.stored_calls()]
        return stored + (self.folder.entries() if self.folder else [])

    def entry(self, ref: str) -> CallEntry | None:
        if ref.startswith("s") and ref[1:].isdigit():
            row = self.store.stored_call(int(ref[1:]))
            return None if row is None else CallEntry(ref, row["origin"], row["report"])
        if ref.startswith("f") and ref[1:].isdigit() and self.folder:
            return next((e for e in self.folder.entries() if e.ref == ref), None)
        return None


def model_thresholds(app_state: Any) -> dict[str, float]:
    """The loaded model's thresholds (0.5 each until it is loaded): the queue's reference points."""
    service = getattr(app_state, "service", None)
    if service is None:
        return dict.fromkeys(VIOLATIONS, 0.5)
    return {lb: float(service.classifier.thresholds.get(lb, 0.5)) for lb in VIOLATIONS}
