"""One chunk of calls → its rows: the unit every relabel engine (local, process pool, Ray) runs.

Scoring goes through :func:`serve.scoring.score_calls` (one ``predict_proba`` per chunk, so the
Classifier's length bucketing sees many segments), the same function the API and
``collectguard score`` use; this module only shapes the result into output rows.
"""

from __future__ import annotations

from typing import Any

from model.config import Settings
from model.labels import ALL_LABELS
from model.privacy import mask_value
from serve.calls.contacts import contact_record
from serve.ingest.records import Call, ReadError
from serve.scoring import score_calls

SCORE_COLUMNS: tuple[str, ...] = tuple(f"score_{label}" for label in ALL_LABELS)
SEGMENT_FIELDS: tuple[str, ...] = ("start", "end", "speaker", "listener", "text", "speaker_tag")
ChunkResult = dict[str, list[dict[str, Any]]]  # {"segments": rows, "calls": rows, "errors": records}


def EVIDENCE_TYPE():
    """One evidence span: the label it supports, offsets into ``text``, the words and the score drop."""
    import pyarrow as pa

    return pa.struct(
        [("label", pa.string()), ("start", pa.int32()), ("end", pa.int32()), ("text", pa.string()),
         ("weight", pa.float64())]
    )  # fmt: skip


def segments_schema():
    """The columns of ``segments.parquet`` (and of every segments part)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("call_id", pa.string()),
            ("segment", pa.int32()),
            ("start", pa.float64()),
            ("end", pa.float64()),
            ("speaker", pa.string()),
            ("listener", pa.string()),
            ("text", pa.string()),
            ("speaker_tag", pa.string()),
            ("source", pa.string()),
            ("position", pa.string()),
            *[(c, pa.float64()) for c in SCORE_COLUMNS],
            ("labels", pa.list_(pa.string())),
            ("label", pa.string()),
            ("evidence", pa.list_(EVIDENCE_TYPE())),
            ("model_version", pa.string()),
            ("preprocess_version", pa.string()),
        ]
    )


def score_chunk(
    clf: Any, calls: list[Call], batch_size: int | None = None, settings: Settings | None = None
) -> ChunkResult:
    """Score a chunk of calls in one batch; return segment rows, call rows and error records.

    If the chunk as a whole fails, calls are retried one by one so a single pathological call
    becomes an error record instead of taking its neighbours down with it. Segment text is
    masked by :func:`serve.scoring.score_calls`; call metadata is masked here, after the
    contact record (which needs the ids, and keeps only masked or hashed ones) is taken.
    """
    settings = settings or Settings()
    mask_on = settings.privacy.mask_pii
    try:
        scored = score_calls(clf, calls, batch_size=batch_size, settings=settings)
    except Exception as e:
        if len(calls) == 1:
            call = calls[0]
            err = ReadError(call["source"], call.get("position"), f"call {call['call_id']}: scoring failed: {e}")
            return {"segments": [], "calls": [], "errors": [err.as_dict()]}
        out: ChunkResult = {"segments": [], "calls": [], "errors": []}
        for call in calls:
            one = score_chunk(clf, [call], batch_size, settings)
            for key in out:
                out[key].extend(one[key])
        return out
    versions = {"model_version": clf.version, "preprocess_version": clf.preprocess_version}
    seg_rows, call_rows = [], []
    for call, done in zip(calls, scored, strict=True):
        for i, (seg, r) in enumerate(zip(done["segments"], done["results"], strict=True)):
            seg_rows.append(
                {
                    "call_id": call["call_id"],
                    "segment": i,
                    **{k: seg.get(k) for k in SEGMENT_FIELDS},
                    "source": call["source"],
                    "position": seg.get("position"),
                    **{col: r["scores"][label] for col, label in zip(SCORE_COLUMNS, ALL_LABELS, strict=True)},
                    "labels": list(r["labels"]),
                    "label": r["label"],
                    "evidence": r.get("evidence"),
                    **versions,
                }
            )
        call_rows.append(
            {
                "call_id": call["call_id"],
                **done["summary"],
                "metadata": mask_value(call["metadata"]) if mask_on else call["metadata"],
                "contact": contact_record(call["call_id"], call["metadata"], settings.calls, mask_on),
                "roles": call.get("roles"),
                "source": call["source"],
                "position": call.get("position"),
                **versions,
            }
        )
    return {"segments": seg_rows, "calls": call_rows, "errors": []}
