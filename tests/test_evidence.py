"""Evidence spans (model/explain.py + serve/evidence.py): offsets into the text as sent, on text
that normalisation changes (full-width, traditional, repeated fillers and punctuation,
placeholders) and on masked text; the words that drive a label are the ones reported."""

from __future__ import annotations

import numpy as np
import pytest

from model.config import ExplainConfig, Settings
from model.explain import align_to_original, plan_occlusion
from model.labels import VIOLATIONS
from model.preprocess import Segment, segments_of
from model.privacy import mask
from serve.evidence import explain_results
from serve.scoring import score_calls

CFG = ExplainConfig()


class KeywordModel:
    """A stand-in classifier whose scores depend on known words of the *normalised* text, so the
    right evidence is known: 打断 → threat, 老赖 → insult, 欠 to a third party → disclosure."""

    version, preprocess_version = "kw", "kw"

    def predict_proba(self, segments, batch_size=None) -> np.ndarray:
        rows = []
        for seg in segments_of(segments):
            text = seg.normalized
            rows.append([0.9 if "打断" in text else 0.05, 0.8 if "老赖" in text else 0.05,
                         0.7 if ("欠" in text and seg.listener == "third_party") else 0.02])  # fmt: skip
        return np.asarray(rows)

    def score(self, segments, thresholds=None, batch_size=None) -> list[dict]:
        out = []
        for row in self.predict_proba(segments):
            labels = [label for label, p in zip(VIOLATIONS, row, strict=True) if p >= 0.5]
            scores = {label: float(p) for label, p in zip(VIOLATIONS, row, strict=True)}
            out.append({"label": labels[0] if labels else "compliant", "labels": labels, "scores": scores})
        return out


CASES = [
    ("你這個老賴！！！！不要臉", "insult", "老賴"),  # traditional, repeated punctuation
    ("ＮＩ个老赖，ｗｏ打断你的腿", "threat", "打断"),  # full-width Latin
    ("嗯嗯嗯 那个那个 就是说就是说 你个老赖 啊啊", "insult", "老赖"),  # repeated fillers, spaces
    ("{name}你好 你再不还 我就打斷你的腿", "threat", "打斷"),  # a placeholder before the words
    ("   我 打 断 你 的 腿   ", "threat", "打 断"),  # ASR spacing: the span covers the original spaces
]


@pytest.mark.parametrize(("text", "label", "words"), CASES)
def test_evidence_offsets_point_into_the_text_as_sent(text: str, label: str, words: str) -> None:
    model = KeywordModel()
    segs = [Segment(text)]
    results = model.score(segs)
    explain_results(model.predict_proba, segs, results, CFG)
    evidence = results[0]["evidence"]
    assert evidence, results
    for ev in evidence:
        assert text[ev["start"] : ev["end"]] == ev["text"]
        assert ev["label"] in results[0]["labels"] and ev["weight"] > 0
    spans = [ev for ev in evidence if ev["label"] == label]
    assert any(words in ev["text"] for ev in spans), spans
    assert all(len(ev["text"]) <= len(words) + 6 for ev in spans)  # the words, not the whole segment


def test_unflagged_segments_get_no_evidence_and_context_is_kept() -> None:
    model = KeywordModel()
    segs = [Segment("他欠了我们两万", listener="third_party"), Segment("他欠了我们两万", listener="debtor")]
    results = model.score(segs)
    explain_results(model.predict_proba, segs, results, CFG)
    assert [ev["text"] for ev in results[0]["evidence"]] and "欠" in results[0]["evidence"][0]["text"]
    assert "evidence" not in results[1]  # compliant to the debtor: nothing to explain


def test_masked_numbers_are_never_evidence_and_offsets_are_original() -> None:
    model = KeywordModel()
    original = "你个老赖13800138000打断你腿"
    masked = mask(original)
    segs = [Segment(masked.text)]
    results = model.score(segs)
    explain_results(model.predict_proba, segs, results, CFG, originals=[masked])
    assert {ev["label"] for ev in results[0]["evidence"]} == {"threat", "insult"}
    for ev in results[0]["evidence"]:
        assert original[ev["start"] : ev["end"]] == ev["text"]
        assert "138" not in ev["text"] and "[PHONE]" not in ev["text"]


def test_cost_is_bounded_by_max_variants() -> None:
    long = "你好" * 400 + "打断你的腿"
    plan = plan_occlusion(long, max_variants=16, min_chunk=2)
    assert len(plan.variants) <= 16
    assert plan.chunks[0][0] == 0 and plan.chunks[-1][1] == len(plan.normalized)


def test_alignment_covers_every_normalised_character() -> None:
    for text in ("ＡＢＣ全角，還有繁體字。", "喂 你好 嗯嗯嗯 那个那个 {name}先生 ${amt}元", "！！！？？？好"):
        norm, spans = align_to_original(text)
        assert len(spans) == len(norm)
        assert all(0 <= a < b <= len(text) for a, b in spans)
        assert [a for a, _ in spans] == sorted(a for a, _ in spans)  # order is kept


def test_score_calls_explains_flagged_segments_with_the_real_model(tiny_classifier) -> None:
    """Through the shared path with a real (tiny) network: every flagged segment has evidence,
    every span is a slice of the stored (masked) text."""
    settings = Settings()
    settings.explain.min_weight = 0.0
    texts = ["你這個老賴！！！！不要臉", "ＮＩ个老赖，打13800138000找你", "嗯嗯嗯 那个那个 我打断你的腿"]
    calls = [{"call_id": "c", "segments": [{"text": t, "speaker": "agent"} for t in texts]}]
    [call] = score_calls(tiny_classifier, calls, thresholds=dict.fromkeys(VIOLATIONS, 0.0), settings=settings)
    for seg, res in zip(call["segments"], call["results"], strict=True):
        assert res["labels"] and "evidence" in res
        for ev in res["evidence"]:
            assert seg["text"][ev["start"] : ev["end"]] == ev["text"]
    assert "13800138000" not in repr(call) and "[PHONE]" in call["segments"][1]["text"]
    settings.explain.flagged = False
    [plain] = score_calls(tiny_classifier, calls, thresholds=dict.fromkeys(VIOLATIONS, 0.0), settings=settings)
    assert all("evidence" not in r for r in plain["results"])
