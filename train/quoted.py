"""Evaluation items whose wording reached a data writer, kept out of the "unquoted" numbers.

Writers never open the test split or the behaviour suite, but their briefs are written from
what the model got wrong there, and round 5's briefs (writers p–s) quoted phrases from some of
those items. Those items are no longer a blind test of the model trained on that data, so
reports show every metric twice: on all items, and without the ids listed in
``train/results/brief_quoted.json`` (``{"test": [...], "behaviour": [...]}``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.config import REPO_ROOT

QUOTED_FILE = REPO_ROOT / "train" / "results" / "brief_quoted.json"


def quoted_ids(kind: str, path: Path = QUOTED_FILE) -> frozenset[str]:
    """Ids of ``kind`` (``test`` or ``behaviour``) quoted in a writer's brief; empty if no list."""
    if not Path(path).exists():
        return frozenset()
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if kind not in data:
        raise KeyError(f"{path}: no {kind!r} list (has {sorted(k for k in data if k != 'why')})")
    return frozenset(data[kind])


def unquoted_mask(rows: Sequence[dict[str, Any]], kind: str, path: Path = QUOTED_FILE) -> np.ndarray:
    """Boolean mask of the rows whose id was never quoted to a writer."""
    quoted = quoted_ids(kind, path)
    return np.array([r["id"] not in quoted for r in rows], dtype=bool)
