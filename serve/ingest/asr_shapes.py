"""The JSON that ASR engines write, recognised by its structure and turned into segments.

Each shape says where its sentences are, which fields hold text, times (and their unit) and the
speaker, and how to name a speaker tag. Times become seconds. Shapes, as their engines document
them:

- ``funasr``: FunASR ``AutoModel.generate`` with a speaker model — a result (or a list of them,
  one per audio, named by ``key``) with ``sentence_info: [{text, start, end, spk}]``, times in ms,
  ``spk`` an integer (tag ``spk N``).
- ``whisper``: openai-whisper / faster-whisper / WhisperX — ``{segments: [{start, end, text,
  speaker?}]}`` or a bare list of such segments, times in seconds; WhisperX's diarised
  ``speaker`` is ``SPEAKER_00``.
- ``aliyun``: Alibaba Cloud file transcription (录音文件识别) — ``Result.Sentences`` (or
  ``Sentences``) ``[{Text, BeginTime, EndTime, ChannelId, SpeakerId?}]``, ms; the tag is
  ``speaker N`` when diarised, else ``channel N`` (dual-channel recordings).
- ``dashscope``: Alibaba Cloud Model Studio Paraformer file transcription — ``transcripts:
  [{channel_id, sentences: [{text, begin_time, end_time, speaker_id?}]}]``, ms.
- ``tencent``: Tencent Cloud 录音文件识别 ``DescribeTaskStatus`` — ``Response.Data.ResultDetail``
  (or ``Data.ResultDetail`` / ``ResultDetail``) ``[{FinalSentence, StartMs, EndMs, SpeakerId}]``, ms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

SHAPE_NAMES: tuple[str, ...] = ("funasr", "whisper", "aliyun", "dashscope", "tencent")

# (call key or None, JSON path of the sentence list, sentences, unit scale, sentence → raw segment)
Found = tuple[str | None, str, list[Any], float, Callable[[dict[str, Any]], dict[str, Any]]]


@dataclass(frozen=True)
class Shape:
    name: str
    described: str  # for the error that lists what is understood
    find: Callable[[Any], list[Found] | None]


def _has_list(obj: Any, key: str) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get(key), list)


def _tag(prefix: str, value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return f"{prefix} {value}"


def _funasr_segment(s: dict[str, Any]) -> dict[str, Any]:
    return {"text": s.get("text"), "start": s.get("start"), "end": s.get("end"), "speaker": _tag("spk", s.get("spk"))}


def _funasr(doc: Any) -> list[Found] | None:
    results = doc if isinstance(doc, list) else [doc]
    if not results or not all(_has_list(r, "sentence_info") for r in results):
        return None
    many = isinstance(doc, list)
    found: list[Found] = []
    for i, r in enumerate(results):
        key = r.get("key") if isinstance(r.get("key"), str) else None
        path = f"[{i}].sentence_info" if many else "sentence_info"
        found.append((key, path, r["sentence_info"], 0.001, _funasr_segment))
    return found


def _is_whisper_segment(s: Any) -> bool:
    return isinstance(s, dict) and "text" in s and "start" in s and "end" in s


def _whisper_segment(s: dict[str, Any]) -> dict[str, Any]:
    return {"text": s.get("text"), "start": s.get("start"), "end": s.get("end"), "speaker": s.get("speaker")}


def _whisper(doc: Any) -> list[Found] | None:
    if _has_list(doc, "segments") and "call_id" not in doc:
        segs, path = doc["segments"], "segments"
    elif isinstance(doc, list) and doc:
        segs, path = doc, ""
    else:
        return None
    if segs and not _is_whisper_segment(segs[0]):
        return None
    return [(None, path, segs, 1.0, _whisper_segment)]


def _aliyun_segment(s: dict[str, Any]) -> dict[str, Any]:
    tag = _tag("speaker", s.get("SpeakerId")) or _tag("channel", s.get("ChannelId"))
    return {"text": s.get("Text"), "start": s.get("BeginTime"), "end": s.get("EndTime"), "speaker": tag}


def _aliyun(doc: Any) -> list[Found] | None:
    if _has_list(doc, "Sentences"):
        return [(None, "Sentences", doc["Sentences"], 0.001, _aliyun_segment)]
    if isinstance(doc, dict) and _has_list(doc.get("Result"), "Sentences"):
        return [(doc.get("TaskId"), "Result.Sentences", doc["Result"]["Sentences"], 0.001, _aliyun_segment)]
    return None


def _dashscope_segment(channel: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def convert(s: dict[str, Any]) -> dict[str, Any]:
        tag = _tag("speaker", s.get("speaker_id")) or _tag("channel", channel)
        return {"text": s.get("text"), "start": s.get("begin_time"), "end": s.get("end_time"), "speaker": tag}

    return convert


def _dashscope(doc: Any) -> list[Found] | None:
    if not _has_list(doc, "transcripts") or not all(_has_list(t, "sentences") for t in doc["transcripts"]):
        return None
    # One call; dual-channel audio has one transcript per channel: their sentences are merged by time.
    found = []
    for i, t in enumerate(doc["transcripts"]):
        found.append(
            (None, f"transcripts[{i}].sentences", t["sentences"], 0.001, _dashscope_segment(t.get("channel_id")))
        )
    return found


def _tencent_segment(s: dict[str, Any]) -> dict[str, Any]:
    return {"text": s.get("FinalSentence"), "start": s.get("StartMs"), "end": s.get("EndMs"),
            "speaker": _tag("speaker", s.get("SpeakerId"))}  # fmt: skip


def _tencent(doc: Any) -> list[Found] | None:
    for path in ("Response.Data", "Data", ""):
        node = doc
        for key in filter(None, path.split(".")):
            node = node.get(key) if isinstance(node, dict) else None
        if _has_list(node, "ResultDetail"):
            task = node.get("TaskId")
            where = f"{path}.ResultDetail" if path else "ResultDetail"
            return [(str(task) if task is not None else None, where, node["ResultDetail"], 0.001, _tencent_segment)]
    return None


SHAPES: tuple[Shape, ...] = (
    Shape("funasr", "FunASR: {sentence_info: [{text, start, end, spk}]} (ms), or a list of them", _funasr),
    Shape(
        "aliyun",
        "Alibaba Cloud: {Result: {Sentences: [{Text, BeginTime, EndTime, ChannelId, SpeakerId}]}} (ms)",
        _aliyun,
    ),
    Shape(
        "dashscope",
        "Alibaba Model Studio: {transcripts: [{sentences: [{text, begin_time, end_time}]}]} (ms)",
        _dashscope,
    ),
    Shape(
        "tencent",
        "Tencent Cloud: {Response: {Data: {ResultDetail: [{FinalSentence, StartMs, EndMs, SpeakerId}]}}} (ms)",
        _tencent,
    ),
    Shape(
        "whisper",
        "Whisper/faster-whisper/WhisperX: {segments: [{start, end, text, speaker?}]} (s), or that list",
        _whisper,
    ),
)
CALLS_SHAPE = 'collectguard calls: {"call_id", "segments": [{text, speaker, start, end}]}, a list of them, or JSONL'


def recognise(doc: Any, forced: str | None = None) -> tuple[str, list[Found]]:
    """The shape of a JSON document and where its sentences are; ``ValueError`` lists what is understood."""
    for shape in SHAPES:
        if forced in (None, shape.name):
            found = shape.find(doc)
            if found is not None:
                return shape.name, found
    understood = "; ".join([CALLS_SHAPE, *(s.described for s in SHAPES)])
    what = f"not a {forced} transcript" if forced else "JSON of an unknown shape"
    keys = (
        list(doc)[:8]
        if isinstance(doc, dict)
        else f"a list of {len(doc)}"
        if isinstance(doc, list)
        else type(doc).__name__
    )
    raise ValueError(f"{what} (top level: {keys}); understood shapes: {understood}; or use --format")


def iter_sentences(found: Found) -> Iterator[tuple[str, Any]]:
    _, path, sentences, _, _ = found
    for i, s in enumerate(sentences):
        yield f"{path}[{i}]", s
