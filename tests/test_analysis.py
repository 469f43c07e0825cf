"""Analysis tables, figures, the test report and occlusion explanations.

Table tests use hand-built rows and scores whose right answer is known, so a wrong count or a
swapped label fails; the report and occlusion tests run on the tiny real model from conftest.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from model.config import SHIPPED_MODEL_DIR
from model.labels import VIOLATIONS
from train import analysis, plots
from train.evaluate import metrics


def row(text: str, labels=(), speaker="agent", listener="debtor", source="written", rid=None) -> dict:
    return {"id": rid or text[:8], "text": text, "labels": list(labels), "speaker": speaker, "listener": listener,
            "source": source, "group": rid or text, "notes": ""}  # fmt: skip


ROWS = [
    row("您好", rid="a"),  # 2 chars, punctuation-free
    row("您这期账单已经逾期了，请尽快处理。", rid="b"),
    row(
        "嗯那个您的欠款还没还，我们会按合同处理，请您理解一下，今天之内给个答复就行，谢谢您的配合好吧。",
        ["threat"],
        rid="c",
    ),
    row("你個SB老賴", ["insult"], speaker="customer", rid="d"),
    row("他欠我们两万块", ["third_party_disclosure"], listener="third_party", source="template", rid="e"),
    row("艹" * 130, ["insult", "threat"], listener="unknown", source="template", rid="f"),
]


# -- slices ---------------------------------------------------------------------------------------
def test_length_buckets_edges() -> None:
    assert [analysis.length_bucket("x" * n) for n in (1, 10, 11, 40, 41, 120, 121)] == [
        "≤10", "≤10", "11–40", "11–40", "41–120", "41–120", ">120"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "asr", "trad", "obf"),
    [
        ("您好，请问是王先生吗？", False, False, False),
        ("喂您好 我这边是客服", True, False, False),  # no punctuation
        ("嗯，那个，您的账单逾期了。", True, False, False),  # fillers despite punctuation
        ("您的賬單已經逾期了。", False, True, False),
        ("你就是个sb。", False, False, True),
        ("NMSL，还钱。", False, False, True),
        ("用USB线连上，好吗？", False, False, False),  # "sb" inside a word is not an insult
        ("尼玛的，还钱！", False, False, True),
        ("真是个傻b。", False, False, True),
    ],
)
def test_text_predicates(text: str, asr: bool, trad: bool, obf: bool) -> None:
    assert analysis.has_asr_noise(text) is asr
    assert analysis.is_traditional(text) is trad
    assert analysis.is_obfuscated(text) is obf


def test_slices_masks() -> None:
    s = analysis.slices(ROWS)
    assert all(len(m) == len(ROWS) and m.dtype == bool for m in s.values())
    assert s["length ≤10"].tolist() == [True, False, False, True, True, False]
    assert s["length >120"].tolist() == [False] * 5 + [True]
    assert "length 11–40" in s and "length 41–120" in s
    assert s["traditional"].tolist() == [False, False, False, True, False, False]
    assert s["obfuscated"].tolist() == [False, False, False, True, False, True]
    assert s["asr noise"][[0, 2]].all() and not s["asr noise"][1]
    assert s["speaker=customer"].tolist() == [False, False, False, True, False, False]
    assert s["listener=third_party"].sum() == 1 and s["source=template"].sum() == 2
    # each partition covers every row exactly once
    for prefix in ("length ", "speaker=", "listener=", "source="):
        assert sum(m.astype(int) for k, m in s.items() if k.startswith(prefix)).tolist() == [1] * len(ROWS)


def test_slice_table_matches_evaluate_metrics() -> None:
    y_true = analysis.label_matrix(ROWS)
    y_pred = y_true.copy()
    y_pred[0] = [1, 0, 0]  # a false alarm on a compliant row
    y_pred[3] = [0, 0, 0]  # a missed insult
    table = analysis.slice_table(ROWS, y_true, y_pred)
    assert table.index[0] == "all"
    full = metrics(y_true, y_pred)
    assert table.loc["all", "n"] == 6 and table.loc["all", "n_compliant"] == 2
    assert table.loc["all", "macro_f1"] == full["macro_f1"]
    assert table.loc["all", "compliant_fpr"] == 0.5  # one of two compliant rows flagged
    customer = metrics(y_true[[3]], y_pred[[3]])
    assert table.loc["speaker=customer", "macro_f1"] == customer["macro_f1"]
    assert table.loc["speaker=customer", "f1_insult"] == 0.0
    assert table.loc["source=template", "macro_f1"] == 1.0


# -- label tables ---------------------------------------------------------------------------------
def test_confusion_table_counts() -> None:
    y_true = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 1]])
    y_pred = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 0], [0, 1, 1]])
    t = analysis.confusion_table(y_true, y_pred)
    assert list(t.index) == list(VIOLATIONS)
    assert t.loc["threat"].tolist() == [1, 1, 1, 1]
    assert t.loc["insult"].tolist() == [2, 0, 0, 2]
    assert t.loc["third_party_disclosure"].tolist() == [1, 1, 0, 2]
    assert (t.sum(1) == 4).all()


def test_threshold_sweep_values() -> None:
    y_true = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 1]])
    probs = np.array([[0.9, 0.1, 0.2], [0.4, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.8]])
    sweep = analysis.threshold_sweep(y_true, probs, thresholds=[0.5, 0.95])
    threat = sweep[sweep["label"] == "threat"].set_index("threshold")
    assert threat.loc[0.5, "precision"] == pytest.approx(0.5)  # 0.9 (right) and 0.6 (wrong)
    assert threat.loc[0.5, "recall"] == pytest.approx(0.5)
    assert threat.loc[0.5, "f1"] == pytest.approx(0.5)
    assert np.isnan(threat.loc[0.95, "precision"]) and threat.loc[0.95, "recall"] == 0
    insult = sweep[sweep["label"] == "insult"].set_index("threshold")
    assert np.isnan(insult.loc[0.5, "recall"])  # no positives: recall undefined, not 0
    assert len(analysis.threshold_sweep(y_true, probs)) == 3 * 19


def test_calibration_bins_counts_and_means() -> None:
    y_true = np.array([[1, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0]])
    probs = np.array([[0.05, 0.0, 0.0], [0.15, 0.0, 0.0], [0.95, 0.0, 0.0], [1.0, 0.0, 0.0]])
    bins = analysis.calibration_bins(y_true, probs, n_bins=10)
    assert len(bins) == 30 and (bins.groupby("label")["count"].sum() == 4).all()
    threat = bins[bins["label"] == "threat"].set_index("bin")
    assert threat.loc[0, "count"] == 1 and threat.loc[0, "observed"] == 1.0
    assert threat.loc[1, "observed"] == 0.0
    assert threat.loc[9, "count"] == 2  # a score of exactly 1.0 lands in the last bin
    assert threat.loc[9, "mean_predicted"] == pytest.approx(0.975)
    assert np.isnan(threat.loc[5, "mean_predicted"])
    ece = analysis.expected_calibration_error(bins)
    # |1-.05| + |0-.15| + 2*|1-.975| over 4 rows
    assert ece["threat"] == pytest.approx((0.95 + 0.15 + 0.05) / 4)


def test_worst_errors_sorted_by_confidence() -> None:
    rows = [row("甲", rid="r0"), row("乙", ["threat"], rid="r1"), row("丙", ["insult"], rid="r2"), row("丁", rid="r3")]
    y_true = analysis.label_matrix(rows)
    probs = np.array([[0.7, 0.1, 0.1], [0.05, 0.1, 0.1], [0.1, 0.9, 0.99], [0.2, 0.1, 0.1]])
    th = {"threat": 0.5, "insult": 0.5, "third_party_disclosure": 0.5}
    errs = analysis.worst_errors(rows, y_true, probs, k=10, thresholds=th)
    assert errs[["id", "label", "error"]].values.tolist() == [
        ["r2", "third_party_disclosure", "false_positive"],
        ["r1", "threat", "false_negative"],
        ["r0", "threat", "false_positive"],
    ]
    assert errs["confidence"].tolist() == [0.99, 0.95, 0.7]
    assert errs.loc[1, "text"] == "乙" and errs.loc[0, "true_labels"] == "insult"
    assert len(analysis.worst_errors(rows, y_true, probs, k=2, thresholds=th)) == 2
    assert analysis.worst_errors(rows, y_true, (y_true * 0.9 + 0.05), thresholds=th).empty


def test_predictions_use_greater_equal() -> None:
    th = {"threat": 0.5, "insult": 0.3, "third_party_disclosure": 0.9}
    assert analysis.predictions(np.array([[0.5, 0.29, 0.9]]), th).tolist() == [[1, 0, 1]]


def test_metrics_table_subsets() -> None:
    y_true = analysis.label_matrix(ROWS)
    subsets = analysis.written_subsets(ROWS)
    assert subsets["written only"].tolist() == [True, True, True, True, False, False]
    t = analysis.metrics_table(y_true, y_true, subsets)
    assert t.loc[("all rows", "macro"), "f1"] == 1.0
    assert t.loc[("written only", "threat"), "support"] == 1


# -- corpus tables ----------------------------------------------------------------------------------
def test_composition_table_counts_multilabel_once_per_label() -> None:
    comp = analysis.composition_table({"train": ROWS, "test": ROWS[:2]})
    assert comp["n"].sum() == 7 + 2  # row f carries two labels
    by_label = comp[comp["split"] == "train"].groupby("label")["n"].sum()
    assert by_label.to_dict() == {"compliant": 2, "insult": 2, "third_party_disclosure": 1, "threat": 2}
    f = comp[(comp["split"] == "train") & (comp["listener"] == "unknown")]
    assert sorted(f["label"]) == ["insult", "threat"] and set(f["source"]) == {"template"}
    assert comp[comp["split"] == "test"]["label"].unique().tolist() == ["compliant"]


def test_length_stats() -> None:
    stats = analysis.length_stats({"train": ROWS})
    assert stats.loc[("train", "compliant"), "count"] == 2
    assert stats.loc[("train", "insult"), "max"] == 130
    shares = stats.loc[("train", "compliant"), ["≤10", "11–40", "41–120", ">120"]]
    assert shares.tolist() == [0.5, 0.5, 0.0, 0.0]


def test_examples_per_label_are_from_that_label() -> None:
    ex = analysis.examples_per_label(ROWS, n=5)
    assert set(ex["label"]) == {"threat", "insult", "third_party_disclosure", "compliant"}
    for _, r in ex.iterrows():
        assert r["label"] in r["labels"]
    assert ex.equals(analysis.examples_per_label(ROWS, n=5))


def test_cross_split_near_duplicates_finds_planted_pair() -> None:
    train = [row("您好我是瑞丰消费金融的工作人员请问您是王先生吗", rid="t1"), row("今天天气不错", rid="t2")]
    test = [row("喂您好我是瑞丰消费金融的工作人员请问您是王先生吗", rid="q1"), row("完全不同的一句话", rid="q2")]
    pairs = analysis.cross_split_near_duplicates({"train": train, "test": test}, threshold=0.8)
    assert pairs[["id_a", "id_b", "split_a", "split_b"]].values.tolist() == [["t1", "q1", "train", "test"]]
    assert pairs.loc[0, "jaccard"] >= 0.8
    assert analysis.cross_split_near_duplicates({"train": train, "test": test[1:]}, threshold=0.8).empty


@pytest.mark.slow
def test_committed_splits_have_no_near_duplicates() -> None:
    """No validation/test row near-copies a row of an earlier split, augmented copies included.

    Augmented training copies are made after the build's de-duplication, so this also catches an
    augmentation that recreates a held-out sentence.
    """
    pairs = analysis.cross_split_near_duplicates(analysis.load_splits())
    assert pairs.empty, pairs[["split_a", "id_a", "source_a", "split_b", "id_b", "jaccard"]].to_string()


def test_limit_rows_deterministic_and_ordered() -> None:
    rows = [row(str(i), rid=str(i)) for i in range(50)]
    a, b = analysis.limit_rows(rows, 10), analysis.limit_rows(rows, 10)
    ids = [int(r["id"]) for r in a]
    assert a == b and len(a) == 10 and ids == sorted(ids) and ids != list(range(10))
    assert analysis.limit_rows(rows, None) == rows and analysis.limit_rows(rows, 99) == rows


def test_notebook_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(analysis.MODEL_ENV, raising=False)
    monkeypatch.delenv(analysis.ROWS_ENV, raising=False)
    assert analysis.notebook_model_path() is None and analysis.notebook_row_limit() is None
    monkeypatch.setenv(analysis.MODEL_ENV, "/some/model")
    monkeypatch.setenv(analysis.ROWS_ENV, "60")
    assert analysis.notebook_model_path() == "/some/model" and analysis.notebook_row_limit() == 60
    monkeypatch.setenv(analysis.ROWS_ENV, "0")
    with pytest.raises(ValueError, match="COLLECTGUARD_NB_ROWS"):
        analysis.notebook_row_limit()


# -- figures ------------------------------------------------------------------------------------------
def test_figures_build_headless() -> None:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, size=(40, 3))
    probs = np.clip(y_true * 0.6 + rng.random((40, 3)) * 0.4, 0, 1)
    th = dict.fromkeys(VIOLATIONS, 0.5)
    subsets = {"all rows": np.ones(40, bool), "half": np.arange(40) < 20}
    figs = [
        plots.pr_curves(y_true, probs, th, subsets=subsets),
        plots.reliability_diagram(y_true, probs, subsets=subsets),
        plots.threshold_sweep_plot(analysis.threshold_sweep(y_true, probs), th),
        plots.length_histogram({"train": ROWS, "test": ROWS[:3]}),
        plots.composition_bars(analysis.composition_table({"test": ROWS, "train": ROWS}), normalize=True),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    assert [len(f.axes) for f in figs] == [3, 3, 3, 1, 1]
    assert [a.get_title() for a in figs[0].axes] == list(VIOLATIONS)
    # two subsets → two curves per label; split bars in train, validation, test order
    assert len(figs[0].axes[0].get_legend().get_texts()) == 2
    assert [t.get_text() for t in figs[4].axes[0].get_legend().get_texts()] == ["train", "test"]


# -- report and explanations on the tiny real model -------------------------------------------------------
def test_report_writes_figures_and_json(tiny_classifier, tmp_path) -> None:
    from train.report import REPORT_FILES, build_report

    rows = [*ROWS, *[row(f"第{i}句话，您好", rid=f"x{i}") for i in range(6)]]
    report = build_report(tiny_classifier, rows, tmp_path, n_errors=5, dpi=40)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(REPORT_FILES)
    for name in ("calibration.png", "pr_curves.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "test_report.json").read_text(encoding="utf-8"))
    assert saved == report
    assert saved["metrics"]["all"]["n"] == len(rows) and saved["metrics"]["written"]["n"] == 10
    assert saved["model"]["thresholds"] == dict.fromkeys(VIOLATIONS, 0.5)
    assert saved["slices"][0]["slice"] == "all" and len(saved["worst_errors"]) <= 5
    # one scoring pass: the report's metrics are those of the classifier's own decisions
    y_pred = analysis.predictions(tiny_classifier.predict_proba(rows), tiny_classifier.thresholds)
    assert saved["metrics"]["all"] == metrics(analysis.label_matrix(rows), y_pred)


def test_occlusion_one_weight_per_normalised_character(tiny_classifier) -> None:
    from model.explain import occlusion
    from model.preprocess import normalize

    text = "你個老賴，不要臉！！"  # traditional and doubled punctuation: weights follow the normalised text
    spans = occlusion(tiny_classifier, text, "insult")
    assert "".join(s for s, _ in spans) == normalize(text) and all(len(s) == 1 for s, _ in spans)
    bigrams = occlusion(tiny_classifier, text, "insult", window=2)
    assert len(bigrams) == len(normalize(text)) - 1 and bigrams[0][0] == normalize(text)[:2]
    with pytest.raises(ValueError, match="label"):
        occlusion(tiny_classifier, text, "compliant")


def test_occlusion_deltas_match_independent_rescoring(tiny_classifier) -> None:
    """Each delta is exactly the score drop when that character is removed, scored on its own."""
    from model.explain import occlusion

    seg = {"text": "他在我们这欠了两万三千块", "speaker": "agent", "listener": "third_party"}
    col = VIOLATIONS.index("third_party_disclosure")
    spans = occlusion(tiny_classifier, seg, "third_party_disclosure")
    text = "".join(s for s, _ in spans)
    base = tiny_classifier.predict_proba([seg])[0, col]
    hi = int(np.argmax([d for _, d in spans]))
    lo = int(np.argmin([d for _, d in spans]))
    variants = [{**seg, "text": text[:i] + text[i + 1 :]} for i in (hi, lo)]
    rescored = tiny_classifier.predict_proba(variants)[:, col]
    assert base - rescored[0] == pytest.approx(spans[hi][1], abs=1e-4)
    assert base - rescored[1] == pytest.approx(spans[lo][1], abs=1e-4)
    assert rescored[0] <= rescored[1] + 1e-6  # removing the top character lowers the score most


def test_occlusion_label_none_explains_top_label_and_single_char(tiny_classifier) -> None:
    from model.explain import occlusion

    probs = tiny_classifier.predict_proba(["你个老赖"])[0]
    top = VIOLATIONS[int(np.argmax(probs))]
    assert occlusion(tiny_classifier, "你个老赖") == occlusion(tiny_classifier, "你个老赖", top)
    # removing the only character leaves nothing: the whole score is that character's weight
    ((span, delta),) = occlusion(tiny_classifier, "赖", "threat")
    assert span == "赖" and delta == pytest.approx(tiny_classifier.predict_proba(["赖"])[0, 0], abs=1e-6)


def test_highlight_html() -> None:
    from model.explain import char_weights, highlight_html

    out = highlight_html("a<b", [0.5, -1.0, 0.0])
    assert out.count("<span title=") == 3 and "&lt;" in out
    assert "rgba(40,90,220,1.00)" in out and "rgba(220,40,40,0.50)" in out  # scaled by the largest |w|
    faint = highlight_html("ab", [0.01, -0.005])  # below MIN_SCALE: noise stays faint
    assert "rgba(220,40,40,0.20)" in faint and "rgba(40,90,220,0.10)" in faint
    assert highlight_html("ab", [("a", 0.2), ("b", 0.1)]).count("<span title=") == 2
    with pytest.raises(ValueError, match="one weight per character"):
        highlight_html("abc", [1.0])
    assert char_weights([("ab", 1.0), ("bc", 3.0)], window=2) == [1.0, 2.0, 3.0]


def test_explanation_html_covers_every_label(tiny_classifier) -> None:
    from model.explain import explanation_html

    out = explanation_html(tiny_classifier, {"text": "你再不还钱我就去你单位", "listener": "debtor"})
    assert all(f"<b>{label}</b>" in out for label in VIOLATIONS) and "listener=debtor" in out


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHIPPED_MODEL_DIR / "collectguard.json").exists(), reason="no shipped model yet; behaviour needs real weights"
)
def test_occlusion_on_shipped_model_points_at_the_insult() -> None:
    """On the real model, the insulting word outweighs the punctuation and the polite frame."""
    from model.classifier import Classifier
    from model.explain import occlusion

    clf = Classifier.load(None)
    seg = {"text": "王先生您好，您这期账单逾期了，你个老赖，真不要脸。", "speaker": "agent", "listener": "debtor"}
    spans = occlusion(clf, seg, "insult")
    insult_chars = max(d for s, d in spans if s in "老赖脸")
    frame_chars = max(d for s, d in spans[:5])  # 王先生您好
    commas = max(d for s, d in spans if s == ",")  # NFKC turned "，" into ","
    assert insult_chars > frame_chars and insult_chars > commas
    col = VIOLATIONS.index("insult")
    text = "".join(s for s, _ in spans)
    hi = int(np.argmax([d for _, d in spans]))
    lo = int(np.argmin(np.abs([d for _, d in spans])))
    rescored = clf.predict_proba([{**seg, "text": text[:i] + text[i + 1 :]} for i in (hi, lo)])[:, col]
    assert rescored[0] < rescored[1]
