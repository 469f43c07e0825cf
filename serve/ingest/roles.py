"""Automatic role assignment: which speaker of a call is the collector, from what each one says.

Diarising ASR and dual-channel recordings tell speakers apart but not who is the agent. Each
anonymous tag's segments are scored with the cues of :mod:`serve.ingest.role_cues` (cheap
regular expressions, no neural model), plus one structural cue: the first speaker of a call who
only says 喂 is the one answering the phone. The highest-scoring tag is the agent and every other
tag is a customer; when the lead over the runner-up (or, for a one-speaker call, the score's
distance from zero) is below ``ingest.role_margin`` the call is marked ``uncertain`` instead of
being guessed silently. Tags the speaker map knows keep their mapped role.

Every call gets ``roles``: ``{"method": "map"|"auto"|"none", "status": "ok"|"uncertain",
"n_speakers", "tags": {tag: role}, "margin"}``; ``method: none`` means the transcript names no
speaker and every segment takes the default role (``agent``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from model.labels import AGENT, CUSTOMER, DEFAULT_SPEAKER
from model.preprocess import normalize
from serve.ingest.records import Call
from serve.ingest.role_cues import segment_score

ANSWERING_BONUS = (
    1.5  # the first speaker's bare 喂: picking up the phone (already a cue; this is its weight at call start)
)


def tag_scores(segments: list[dict[str, Any]]) -> dict[str, float]:
    """Agent-likeness per anonymous tag (segments whose role is still None), in first-seen order."""
    scores: dict[str, float] = defaultdict(float)
    for i, seg in enumerate(segments):
        if seg["speaker"] is not None or seg["speaker_tag"] is None:
            continue
        text = normalize(seg["text"])
        score = segment_score(text)
        if i == 0 and len(text) <= 6 and text.startswith(("喂", "哎", "诶")):
            score -= ANSWERING_BONUS
        scores[seg["speaker_tag"]] += score
    return dict(scores)


def decide(scores: dict[str, float], agent_known: bool, margin: float) -> tuple[dict[str, str], float | None, bool]:
    """Roles of anonymous tags, the decisive score lead, and whether it is below ``margin``."""
    if not scores:
        return {}, None, False
    if agent_known:  # the map named the agent: every anonymous voice is someone else
        return {tag: CUSTOMER for tag in scores}, None, False
    ranked = sorted(scores, key=lambda t: -scores[t])
    if len(ranked) == 1:
        tag = ranked[0]
        lead = scores[tag]
        role = CUSTOMER if lead <= -margin else AGENT
        return {tag: role}, round(abs(lead), 3), abs(lead) < margin
    lead = scores[ranked[0]] - scores[ranked[1]]
    return {t: (AGENT if i == 0 else CUSTOMER) for i, t in enumerate(ranked)}, round(lead, 3), lead < margin


def assign_roles(call: Call, margin: float) -> Call:
    """Fill in every segment's ``speaker`` and the call's ``roles`` record (in place; returns the call)."""
    segs = call["segments"]
    known = {s["speaker_tag"] or s["speaker"]: s["speaker"] for s in segs if s["speaker"] is not None}
    scores = tag_scores(segs)
    auto, lead, uncertain = decide(scores, AGENT in known.values(), margin)
    tags = {**known, **auto}
    for seg in segs:
        if seg["speaker"] is None:
            seg["speaker"] = auto.get(seg["speaker_tag"], DEFAULT_SPEAKER)
    untagged = any(s["speaker_tag"] is None and s["speaker"] == DEFAULT_SPEAKER for s in segs)
    method = "auto" if auto else "map" if known else "none"
    n_speakers = len({s["speaker_tag"] or s["speaker"] for s in segs}) if (known or auto) else 1
    call["roles"] = {
        "method": method,
        "status": "uncertain" if uncertain else "ok",
        "n_speakers": n_speakers,
        "tags": tags,
        "margin": lead,
        **({"untagged_segments": True} if untagged and method != "none" else {}),
    }
    return call
