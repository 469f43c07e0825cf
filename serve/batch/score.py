"""``collectguard score``: score transcripts and show a per-call report (the README's main job).

Reads any format batch relabeling reads (JSONL calls, CSV/Excel/Parquet tables, SRT/WebVTT, ASR
JSON, folders, gzip, any encoding) through the same reader layer (:mod:`serve.ingest`), or
``--text`` segments, scores them with one Classifier and prints each call's segments with their
labels plus the same call summary the API returns.
Unreadable rows are reported on stderr and skipped; the rest is scored.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from model.labels import AGENT, COMPLIANT, INSULT, THIRD_PARTY_DISCLOSURE, THREAT, VIOLATIONS
from serve.ingest import IngestOptions, ReadError, parse_role_flags, read_inputs
from serve.scoring import score_calls

_SHORT = {THREAT: "威胁", INSULT: "侮辱", THIRD_PARTY_DISCLOSURE: "泄露", COMPLIANT: "合规"}


def format_roles(roles: dict[str, Any] | None) -> str | None:
    """``roles: auto SPEAKER_00=agent SPEAKER_01=customer (uncertain, lead 0.4)``; None when nothing to say."""
    if not roles or (roles["method"] == "map" and roles["status"] == "ok"):
        return None
    if roles["method"] == "none":
        return "   roles: the transcript names no speakers; every segment is taken as the agent's"
    tags = " ".join(f"{t}={r}" for t, r in roles["tags"].items())
    notes = [roles["status"]] + ([f"lead {roles['margin']}"] if roles["margin"] is not None else [])
    if roles["n_speakers"] != 2:
        notes.append(f"{roles['n_speakers']} speaker(s)")
    return f"   roles: {roles['method']} {tags} ({', '.join(notes)})"


def format_call(call: dict[str, Any]) -> str:
    """A readable block: one line per segment, flagged agent lines marked, then the verdict."""
    lines = [f"== {call['call_id']}  verdict: {call['summary']['verdict']}"]
    roles = format_roles(call.get("roles"))
    if roles:
        lines.append(roles)
    for seg, res in zip(call["segments"], call["results"], strict=True):
        start = f"{seg['start']:6.1f}s" if seg.get("start") is not None else "      -"
        mark = "!!" if res["labels"] and seg["speaker"] == AGENT else "  "
        tags = ",".join(_SHORT[label] for label in res["labels"]) or _SHORT[COMPLIANT]
        top = max(VIOLATIONS, key=lambda label: res["scores"][label])
        text = seg["text"] if len(seg["text"]) <= 60 else seg["text"][:59] + "…"
        lines.append(f"{mark} {start} {seg['speaker']:<8} [{tags}] ({top} {res['scores'][top]:.2f}) {text}")
        for ev in res.get("evidence") or []:
            lines.append(
                f"{'':12}evidence {ev['label']} [{ev['start']}:{ev['end']}] {ev['text']!r} (−{ev['weight']:.2f})"
            )
    counts = ", ".join(f"{k}={v}" for k, v in call["summary"]["violations"].items())
    lines.append(f"   agent violations: {counts}")
    for name, f in call["summary"]["flags"].items():
        shown = {True: "RAISED", False: "no", None: "unknown"}[f["raised"]]
        lines.append(f"   {name}: {shown} — {f['reason']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from model.classifier import Classifier
    from model.config import Settings
    from model.thresholds import parse_thresholds

    settings = Settings.from_args(args)
    if not args.inputs and not args.text:
        raise ValueError("give transcript files/folders, or --text SEGMENT")
    calls: list[dict[str, Any]] = []
    errors = 0
    reading = IngestOptions.from_settings(settings, args.format, args.encoding, parse_role_flags(args.role))
    for item in read_inputs(args.inputs, reading):
        if isinstance(item, ReadError):
            errors += 1
            print(f"skipped {item.file} {item.position or ''}: {item.reason}", file=sys.stderr)
        else:
            calls.append(item)
    if args.text:
        segs = [{"text": t, "speaker": args.speaker, "listener": args.listener, "start": None} for t in args.text]
        calls.append({"call_id": "--text", "segments": segs})
    clf = Classifier.load(args.model, config=settings.inference)
    scored = score_calls(clf, calls, parse_thresholds(args.threshold), settings=settings)
    for call, done in zip(calls, scored, strict=True):
        if "roles" in call:
            done["roles"] = call["roles"]
    if args.json:
        for call in scored:
            print(json.dumps({"model": {"name": clf.name, "version": clf.version}, **call}, ensure_ascii=False))
    else:
        print(f"model {clf.name} {clf.version}; thresholds {clf.thresholds}")
        for call in scored:
            print(format_call(call))
    return 1 if errors and not scored else 0
