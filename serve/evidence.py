"""Evidence spans on flagged segments: one path for the API, ``collectguard score`` and relabel.

Occlusion (:mod:`model.explain`) through the shared preprocessing: every flagged segment is cut
into at most ``explain.max_variants`` chunks, each left out in turn, and all variants of all
segments are scored in **one** batch by whatever scores the segments themselves (the Classifier,
or the API's micro-batcher). The spans that lowered a flagged label's score most are reported as
offsets into the text the client sent: ``text[start:end] == evidence.text``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.config import ExplainConfig
from model.explain import OcclusionPlan, evidence_spans, plan_occlusion
from model.labels import VIOLATIONS
from model.preprocess import Segment
from model.privacy import Masked


@dataclass(frozen=True)
class Job:
    """One segment to explain: its index, its occlusion plan and the labels to explain."""

    index: int
    plan: OcclusionPlan
    labels: tuple[str, ...]


def evidence_jobs(
    segments: Sequence[Segment], results: Sequence[dict[str, Any]], cfg: ExplainConfig, only_flagged: bool = True
) -> list[Job]:
    """Jobs for flagged segments (``only_flagged``) or for every segment (their top label)."""
    jobs = []
    for i, (seg, res) in enumerate(zip(segments, results, strict=True)):
        labels = tuple(res["labels"]) or (() if only_flagged else (max(VIOLATIONS, key=lambda x: res["scores"][x]),))
        if labels:
            jobs.append(Job(i, plan_occlusion(seg, cfg.max_variants, cfg.min_chunk), labels))
    return jobs


def variants_of(jobs: Sequence[Job]) -> list[Segment]:
    """Every variant of every job, flat, in job order: score them in one batch."""
    return [v for job in jobs for v in job.plan.variants]


def attach_evidence(
    jobs: Sequence[Job],
    probs: np.ndarray,
    results: list[dict[str, Any]],
    cfg: ExplainConfig,
    originals: Sequence[Masked | None] | None = None,
) -> None:
    """Put ``evidence`` on each job's result from the flat variant scores ``probs``.

    ``originals[i]`` is the masking of segment ``i`` when the scored text was masked: offsets
    then refer to the text the client sent, and no span ever covers a masked number.
    """
    probs = np.asarray(probs, dtype=float).reshape(-1, len(VIOLATIONS))
    at = 0
    for job in jobs:
        n = len(job.plan.variants)
        res = results[job.index]
        base = [res["scores"][label] for label in VIOLATIONS]
        masked = originals[job.index] if originals else None
        res["evidence"] = evidence_spans(
            job.plan, base, probs[at : at + n], job.labels, cfg.min_weight, cfg.keep_fraction,
            original=masked.original if masked else None,
            to_original=masked.to_original if masked else None,
            blocked=masked.token_ranges() if masked else (),
        )  # fmt: skip
        at += n


def explain_results(
    predict: Callable[[list[Segment]], np.ndarray],
    segments: Sequence[Segment],
    results: list[dict[str, Any]],
    cfg: ExplainConfig,
    originals: Sequence[Masked | None] | None = None,
    only_flagged: bool = True,
) -> None:
    """Synchronous driver: plan, score all variants with ``predict`` in one call, attach."""
    jobs = evidence_jobs(segments, results, cfg, only_flagged)
    variants = variants_of(jobs)
    probs = predict(variants) if variants else np.zeros((0, len(VIOLATIONS)))
    attach_evidence(jobs, probs, results, cfg, originals)
