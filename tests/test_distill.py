"""Distillation mechanics on tiny random BERTs: the student's shape, its start, its targets, the pool,
and a short run through the real path whose artifact loads and reproduces the in-memory scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.architecture import build_model, keep_encoder_layers
from model.classifier import Classifier
from model.config import InferenceConfig, Settings
from model.preprocess import normalize
from tests.conftest import make_tiny_artifact
from train.dataset import load_split
from train.distill import (
    Targets,
    boosted_schedule,
    disagreements,
    distill,
    freeze_lower_layers,
    make_student,
    pool_windows,
    score_windows,
    soft_targets,
)
from train.pool import build_pool

TORCH = InferenceConfig(backend="torch")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, base4) -> Path:
    return make_tiny_artifact(tmp_path_factory.mktemp("teacher"), base4, seed=5)


def _layer_weights(model, i: int) -> torch.Tensor:
    return model.base_model.encoder.layer[i].attention.self.query.weight


def test_kept_layers_are_the_named_base_layers_in_order(base4):
    full = build_model(str(base4), "head", {})
    student = build_model(str(base4), "top", {"layers": [1, 3], "top_layers": 2})
    assert student.config.num_hidden_layers == 2 and len(student.base_model.encoder.layer) == 2
    torch.testing.assert_close(_layer_weights(student, 0), _layer_weights(full, 1))
    torch.testing.assert_close(_layer_weights(student, 1), _layer_weights(full, 3))


@pytest.mark.parametrize("layers", [[3, 1], [0, 4], [1, 1]])
def test_bad_layer_lists_are_refused_with_the_list_named(base4, layers):
    model = build_model(str(base4), "head", {})
    with pytest.raises(ValueError, match=r"layers=\[.*must be increasing ids of the encoder's 4 layers"):
        keep_encoder_layers(model, layers)


def test_student_with_every_layer_is_the_teacher_and_trains_all_but_embeddings(teacher):
    clf = Classifier.load(teacher, config=TORCH)
    ids = torch.tensor([[0, 5, 9, 2]])
    twin = make_student(clf.model, [0, 1, 2, 3])
    torch.testing.assert_close(twin(input_ids=ids).logits, clf.model(input_ids=ids).logits)
    half = make_student(clf.model, [1, 3])
    trained = {n for n, p in half.named_parameters() if p.requires_grad}
    assert trained and all(".encoder.layer." in n or n.startswith("classifier.") for n in trained)
    assert not any(".embeddings." in n for n in trained)
    assert len(clf.model.base_model.encoder.layer) == 4  # the teacher itself is untouched


def test_soft_targets_mix_label_and_teacher_only_where_the_label_is_known():
    t = Targets(ids=[[1], [2]], teacher=np.array([[0.2, 0.9, 0.0], [0.6, 0.1, 0.4]], np.float32),
                labels=np.array([[1, 0, 0], [np.nan] * 3], np.float32), n_rows=2)  # fmt: skip
    np.testing.assert_allclose(soft_targets(t, 0.25).numpy(), [[0.8, 0.225, 0.0], [0.6, 0.1, 0.4]], rtol=1e-6)


def test_a_row_with_its_own_weight_uses_it_and_the_rest_use_alpha():
    t = Targets(ids=[[1], [2], [3]], teacher=np.array([[0.2, 0.9, 0.0], [0.6, 0.1, 0.4], [0.2, 0.9, 0.0]], np.float32),
                labels=np.array([[1, 0, 0], [np.nan] * 3, [1, 0, 0]], np.float32), n_rows=3,
                alpha=np.array([0.0, 0.0, np.nan], np.float32))  # fmt: skip
    np.testing.assert_allclose(
        soft_targets(t, 0.25).numpy(), [[1.0, 0.0, 0.0], [0.6, 0.1, 0.4], [0.8, 0.225, 0.0]], rtol=1e-6
    )


def test_extra_labelled_rows_join_the_pool_with_their_labels_weight_and_variants(datasets, small_data):
    settings = Settings.load(None, [f"data.out_dir={small_data}", "distill.extra_alpha=0.1"])
    train_row = load_split("train", small_data)[0]
    extra = [
        {"id": "cand-1", "text": "你再不还钱，小心你家里人出门的时候", "labels": ["threat"], "speaker": "agent",
         "listener": "debtor", "source": "written"},
        {**train_row, "id": "cand-2", "labels": []},  # same text as a training row: the training label wins
    ]  # fmt: skip
    rows = build_pool(datasets, settings, augment_copies=1, extra=extra)
    by_id = {r["id"]: r for r in rows}
    assert by_id["cand-1"]["labels"] == ["threat"] and by_id["cand-1"]["target_alpha"] == 0.1
    assert by_id["cand-1-aug1"]["labels"] == ["threat"] and by_id["cand-1-aug1"]["target_alpha"] == 0.1
    assert "cand-2" not in by_id and by_id[train_row["id"]]["labels"] == train_row["labels"]
    assert "target_alpha" not in by_id[train_row["id"]]


def test_pool_holds_training_slices_only_and_never_a_dev_text(datasets, small_data):
    settings = Settings.load(None, [f"data.out_dir={small_data}"])
    rows = build_pool(datasets, settings, augment_copies=1)
    ids = {r["id"] for r in rows}
    assert not any(i.startswith("cold-dev:") for i in ids), "COLD dev is held out"
    from train.negatives import load_negatives

    held = {r["id"] for c in ("cped", "kdconv") for p in ("calibration", "test")
            for r in load_negatives(datasets, c, p, settings.data.heldout_fraction, settings.data.seed)}  # fmt: skip
    assert held and not ids & held
    assert any(i.startswith("cold-train:") for i in ids) and any(i.startswith("cped:") for i in ids)
    assert any(r["source"].endswith("+aug") for r in rows), "noisy variants of authored rows"
    assert all(r["labels"] is None for r in rows if r["id"].startswith(("cped:", "kdconv:", "cold-")))
    texts = [normalize(r["text"]) for r in rows]
    assert len(texts) == len(set(texts))
    dev = {normalize(json.loads(line)["text"]) for p in settings.data.real_dir.glob("dev_*.jsonl")
           for line in p.read_text(encoding="utf-8").splitlines() if line}  # fmt: skip
    assert not dev & set(texts)


def _scored(clf: Classifier, rows: list[dict], cache_dir: Path) -> Targets:
    targets = pool_windows(clf, rows)
    score_windows(clf, targets, None, cache_dir)
    return targets


def test_teacher_scores_are_cached_by_content(teacher, tmp_path, monkeypatch):
    clf = Classifier.load(teacher, config=TORCH)
    rows = [{"text": t, "speaker": "agent", "listener": "debtor", "labels": None} for t in ("你好", "请尽快还款")]
    first = _scored(clf, rows, tmp_path)
    np.testing.assert_allclose(first.teacher, clf.predict_proba(rows), atol=1e-6)  # one window per short row
    assert np.isnan(first.alpha).all()  # no row of its own weight
    weighted = _scored(clf, [{**rows[0], "target_alpha": 0.1}, rows[1]], tmp_path)
    np.testing.assert_allclose(weighted.alpha, [0.1, np.nan])

    def recompute(*args, **kwargs):
        raise RuntimeError("teacher scores were recomputed")

    monkeypatch.setattr(clf, "window_scores", recompute)
    np.testing.assert_array_equal(_scored(clf, rows, tmp_path).teacher, first.teacher)
    with pytest.raises(RuntimeError, match="recomputed"):  # another pool is scored afresh
        _scored(clf, [*rows, {**rows[0], "text": "新的一句"}], tmp_path)


def test_only_the_windows_a_run_uses_are_scored_and_the_cache_fills_in_the_rest(teacher, tmp_path, monkeypatch):
    clf = Classifier.load(teacher, config=TORCH)
    rows = [{"text": t, "speaker": "agent", "listener": "debtor", "labels": None}
            for t in ("你好", "请尽快还款", "我们下周再联系", "账单已发到您的APP")]  # fmt: skip
    full = _scored(clf, rows, tmp_path / "full").teacher
    scored: list[int] = []
    real = clf.window_scores

    def counting(windows):
        scored.append(len(windows))
        return real(windows)

    monkeypatch.setattr(clf, "window_scores", counting)
    part = pool_windows(clf, rows)
    score_windows(clf, part, np.array([1, 3]), tmp_path / "part")
    assert scored == [2] and np.isnan(part.teacher[[0, 2]]).all()
    np.testing.assert_allclose(part.teacher[[1, 3]], full[[1, 3]], atol=1e-6)
    again = pool_windows(clf, rows)  # a longer run over the same pool: only the two unscored windows
    score_windows(clf, again, None, tmp_path / "part")
    assert scored == [2, 2]
    np.testing.assert_allclose(again.teacher, full, atol=1e-6)


def test_frozen_layers_stop_training_the_lowest_layers_and_bad_counts_are_refused(teacher):
    clf = Classifier.load(teacher, config=TORCH)
    student = make_student(clf.model, [0, 1, 2, 3])
    freeze_lower_layers(student, 3)
    trained = {n for n, p in student.named_parameters() if p.requires_grad}
    assert any(".encoder.layer.3." in n for n in trained) and any(n.startswith("classifier.") for n in trained)
    assert not any(f".encoder.layer.{i}." in n for n in trained for i in range(3))
    with pytest.raises(ValueError, match=r"distill\.frozen_layers=5 must be between 0 and the encoder's 4 layers"):
        freeze_lower_layers(student, 5)


def test_distilled_student_is_an_artifact_that_reproduces_its_scores(teacher, small_data, datasets, tmp_path):
    settings = Settings.load(None, [
        f"data.out_dir={small_data}", f"data.negatives_dir={datasets}", f"distill.teacher={teacher}",
        "distill.layers=[1,3]", "distill.max_steps=3", "distill.batch_size=8", "distill.max_pool_rows=64",
        "distill.augment_copies=1", f"distill.out_dir={tmp_path / 'run'}",
    ])  # fmt: skip
    artifact = distill(settings)
    manifest = json.loads((artifact / "collectguard.json").read_text())
    assert manifest["method"] == "top" and manifest["train"]["layers"] == [1, 3]
    assert manifest["train"]["distilled_from"]["version"] == "0.0.0-test"
    assert manifest["metrics"]["steps"] == 3 and manifest["metrics"]["pool_rows"] == 64
    student = Classifier.load(artifact, config=TORCH)
    assert student.model.config.num_hidden_layers == 2
    in_memory = np.load(tmp_path / "run" / "validation_probs.npy")
    np.testing.assert_allclose(student.predict_proba(load_split("validation", small_data)), in_memory, atol=1e-6)


def test_self_distillation_trains_the_lora_teachers_own_adapters_into_an_artifact_of_its_shape(
    base4, small_data, datasets, tmp_path
):
    lora_cfg = {"lora_r": 2, "lora_alpha": 4, "lora_dropout": 0.0, "top_layers": None, "layers": None}
    lora_teacher = make_tiny_artifact(tmp_path / "lora", base4, seed=3, method="lora", train=lora_cfg)
    settings = Settings.load(None, [
        f"data.out_dir={small_data}", f"data.negatives_dir={datasets}", f"distill.teacher={lora_teacher}",
        "distill.method=lora", "distill.max_steps=3", "distill.batch_size=8", "distill.max_pool_rows=64",
        "distill.augment_copies=1", "distill.learning_rate=0.05", f"distill.out_dir={tmp_path / 'run'}",
    ])  # fmt: skip
    artifact = distill(settings)
    saved = json.loads((artifact / "collectguard.json").read_text())
    assert saved["method"] == "lora" and saved["train"]["lora_r"] == 2 and saved["train"]["layers"] is None
    assert saved["name"] == "tiny-test" and "-selfdistill-s" in saved["version"]
    student, before = Classifier.load(artifact, config=TORCH), Classifier.load(lora_teacher, config=TORCH)
    assert student.model.config.num_hidden_layers == 4  # every layer: the teacher's size
    assert saved["weights_sha256"] != before.manifest.weights_sha256  # the adapters moved
    in_memory = np.load(tmp_path / "run" / "validation_probs.npy")
    np.testing.assert_allclose(student.predict_proba(load_split("validation", small_data)), in_memory, atol=1e-5)


def test_self_distillation_with_frozen_layers_moves_only_the_upper_adapters(base4, small_data, datasets, tmp_path):
    from model.artifact import load_artifact

    lora_cfg = {"lora_r": 2, "lora_alpha": 4, "lora_dropout": 0.0, "top_layers": None, "layers": None}
    lora_teacher = make_tiny_artifact(tmp_path / "lora", base4, seed=3, method="lora", train=lora_cfg)
    settings = Settings.load(None, [
        f"data.out_dir={small_data}", f"data.negatives_dir={datasets}", f"distill.teacher={lora_teacher}",
        "distill.method=lora", "distill.frozen_layers=2", "distill.max_steps=3", "distill.batch_size=8",
        "distill.max_pool_rows=64", "distill.augment_copies=1", "distill.learning_rate=0.05",
        f"distill.out_dir={tmp_path / 'run'}",
    ])  # fmt: skip
    before = dict(load_artifact(lora_teacher, merge=False)[0].named_parameters())
    after = dict(load_artifact(distill(settings), merge=False)[0].named_parameters())
    lora = [n for n in before if ".lora_" in n]

    def moved(layer: int) -> bool:
        # the artifact stores float16; the tiny teacher's adapters were never rounded
        return any(not torch.equal(before[n].half().float(), after[n]) for n in lora if f".encoder.layer.{layer}." in n)

    assert not moved(0) and not moved(1)
    assert moved(2) and moved(3)


@pytest.mark.parametrize("autocast", ["fp32", "bf16"])
def test_bf16_autocast_runs_only_the_training_forward_in_bfloat16(base4, small_data, datasets, tmp_path, monkeypatch,
                                                                   autocast):  # fmt: skip
    import train.distill as distill_module

    lora_cfg = {"lora_r": 2, "lora_alpha": 4, "lora_dropout": 0.0, "top_layers": None, "layers": None}
    lora_teacher = make_tiny_artifact(tmp_path / "lora", base4, seed=3, method="lora", train=lora_cfg)
    seen: list[tuple[bool, torch.dtype]] = []  # (training?, dtype of each linear layer's output)
    made = distill_module.make_self_student

    def spied(path):
        model = made(path)
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.register_forward_hook(lambda mod, _, out: seen.append((mod.training, out.dtype)))
        return model

    monkeypatch.setattr(distill_module, "make_self_student", spied)
    settings = Settings.load(None, [
        f"data.out_dir={small_data}", f"data.negatives_dir={datasets}", f"distill.teacher={lora_teacher}",
        "distill.method=lora", f"distill.autocast={autocast}", "distill.max_steps=2", "distill.batch_size=8",
        "distill.max_pool_rows=32", "distill.augment_copies=1", f"distill.out_dir={tmp_path / 'run'}",
    ])  # fmt: skip
    artifact = distill(settings)
    training = {dtype for is_training, dtype in seen if is_training}
    assert training == ({torch.bfloat16} if autocast == "bf16" else {torch.float32})
    assert {dtype for is_training, dtype in seen if not is_training} == {torch.float32}  # thresholds, test metrics
    assert json.loads((artifact / "collectguard.json").read_text())["train"]["autocast"] == autocast
    student = Classifier.load(artifact, config=TORCH)
    assert all(p.dtype == torch.float32 for p in student.model.parameters())
    in_memory = np.load(tmp_path / "run" / "validation_probs.npy")
    np.testing.assert_allclose(student.predict_proba(load_split("validation", small_data)), in_memory, atol=1e-5)


def test_self_distillation_refuses_a_teacher_without_lora(teacher, small_data, datasets, tmp_path):
    settings = Settings.load(None, [
        f"data.out_dir={small_data}", f"data.negatives_dir={datasets}", f"distill.teacher={teacher}",
        "distill.method=lora", "distill.max_steps=1", "distill.max_pool_rows=16", f"distill.out_dir={tmp_path}",
    ])  # fmt: skip
    with pytest.raises(ValueError, match=r"distill\.method=lora needs a LoRA network; .* trained with 'head'"):
        distill(settings)


def test_student_gap_holds_each_measure_to_its_bar():
    from train.student_gap import gap, rows_of

    def report(dev: float, cped: float, suite: dict[str, float]) -> dict:
        return {"real_dev": {"macro_f1": dev}, "ordinary_talk_test": {"cped": {"flagged_rate": cped}},
                "behaviour": {"functionalities": {k: {"pass_rate": v} for k, v in suite.items()}}}  # fmt: skip

    manifest = {"metrics": {"test": {"written": {"macro_f1": 0.92}}}}
    teacher = rows_of(manifest, report(0.80, 0.001, {"a": 1.0, "b": 0.75}))
    close = rows_of({"metrics": {"test": {"written": {"macro_f1": 0.911}}}}, report(0.79, 0.006, {"a": 0.99, "b": 0.8}))
    assert gap(teacher, close)["meets_bar"]
    far = rows_of(manifest, report(0.80, 0.0065, {"a": 0.9167, "b": 0.75}))
    result = gap(teacher, far)
    assert not result["meets_bar"]
    assert [k for k, r in result["measures"].items() if not r["ok"]] == ["ordinary_talk_flagged:cped", "behaviour:a"]
    assert result["measures"]["behaviour:a"]["shortfall"] == 8.33


def test_sign_test_counts_only_discordant_cases():
    from train.student_gap import holm, one_sided_sign_test

    assert one_sided_sign_test(0, 0) == 1.0  # no case tells the two apart
    assert one_sided_sign_test(3, 0) == 0.125 and one_sided_sign_test(5, 0) == 1 / 32
    assert one_sided_sign_test(5, 1) == pytest.approx(7 / 64)  # C(6,5) + C(6,6) of 2^6
    assert one_sided_sign_test(0, 4) == 1.0
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})


def test_student_gap_pairs_behaviour_cases_when_the_reports_list_them(tmp_path):
    from train.student_gap import main, paired_behaviour

    def report(failed: dict[str, list[str]], with_ids: bool = True) -> dict:
        table = {k: {"n": 20, "pass_rate": 1 - len(v) / 20, **({"failed": v} if with_ids else {})}
                 for k, v in failed.items()}  # fmt: skip
        return {"real_dev": {"macro_f1": 0.8}, "ordinary_talk_test": {"cped": {"flagged_rate": 0.0}},
                "behaviour": {"functionalities": table}}  # fmt: skip

    teacher = report({"a": ["a-1"], "b": ["b-1", "b-2"]})
    # a: six more failures, all new (p = 1/64); b: the same count as the teacher, other cases
    student = report({"a": ["a-1", *(f"a-{i}" for i in range(2, 8))], "b": ["b-3", "b-4"]})
    got = paired_behaviour(teacher, student)
    assert got["functionalities"]["a"] == {"n": 20, "only_student_fails": 6, "only_teacher_fails": 0,
                                           "p_one_sided": 0.0156, "p_holm": 0.0312}  # fmt: skip
    b = got["functionalities"]["b"]
    assert (b["only_student_fails"], b["only_teacher_fails"], b["p_one_sided"]) == (2, 2, 0.6875)
    assert got["behind_unadjusted"] == got["behind_holm"] == ["a"]
    assert got["whole_suite"] == {"only_student_fails": 8, "only_teacher_fails": 2, "p_one_sided": 0.0547}
    manifest = {"metrics": {"test": {"written": {"macro_f1": 0.9}}}}
    for who in ("t", "s"):
        (tmp_path / who).mkdir()
        (tmp_path / who / "collectguard.json").write_text(json.dumps(manifest))
    paths = {}
    for name, rep in (("t", teacher), ("s", student), ("s_old", report({"a": [], "b": []}, with_ids=False))):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(rep))
    args = ["--teacher", str(tmp_path / "t"), "--teacher-eval", str(paths["t"]), "--student", str(tmp_path / "s")]
    assert main([*args, "--student-eval", str(paths["s"]), "--out", str(tmp_path / "gap.json")]) == 0
    saved = json.loads((tmp_path / "gap.json").read_text())
    assert saved["paired_behaviour"]["behind_holm"] == ["a"] and not saved["meets_bar"]
    # a report from before case ids were recorded: the rate bar only, no paired section
    assert main([*args, "--student-eval", str(paths["s_old"]), "--out", str(tmp_path / "old.json")]) == 0
    assert "paired_behaviour" not in json.loads((tmp_path / "old.json").read_text())


def _feature_gap_on(student, teacher_model, ids: torch.Tensor) -> float:
    from model.architecture import inner_model
    from train.distill import feature_gap

    mask = torch.ones_like(ids)
    with torch.no_grad():
        mine, wanted = inner_model(student).features(ids, mask), inner_model(teacher_model).features(ids, mask)
    return float(feature_gap(mine, wanted))


@pytest.mark.parametrize("weight", [0.0, 5.0])
def test_feature_distillation_pulls_the_students_features_to_the_teachers(teacher, weight):
    from train.distill import fit_student

    clf = Classifier.load(teacher, config=TORCH)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, clf.model.config.vocab_size, (32, 10), generator=gen)
    targets = Targets(ids=ids.tolist(), teacher=clf.model(input_ids=ids).logits.sigmoid().detach().numpy(),
                      labels=np.full((32, 3), np.nan, np.float32), n_rows=32)  # fmt: skip
    settings = Settings.load(None, [f"distill.feature_weight={weight}", "distill.learning_rate=0.01",
                                    "distill.head_learning_rate=0.01", "distill.warmup_ratio=0"])  # fmt: skip
    torch.manual_seed(0)
    student = make_student(clf.model, [1, 3])
    with torch.no_grad():  # start far from the teacher (a tiny random net's layers barely change its features)
        for p in student.base_model.encoder.parameters():
            p.normal_(0, 0.2, generator=gen)
    before = _feature_gap_on(student, clf.model, ids)
    fit_student(student, targets, [list(range(16)), list(range(16, 32))] * 10, settings, 0, clf.model)
    after = _feature_gap_on(student, clf.model, ids)
    if weight:
        assert after < 0.5 * before  # the features moved towards the teacher's
    else:
        assert after > 0.5 * before  # scores alone leave them where they were (the comparison's control)


def test_feature_distillation_without_the_teacher_network_is_refused(teacher):
    from train.distill import fit_student

    clf = Classifier.load(teacher, config=TORCH)
    settings = Settings.load(None, ["distill.feature_weight=1"])
    targets = Targets(ids=[[5, 6]], teacher=np.zeros((1, 3), np.float32), labels=np.zeros((1, 3), np.float32), n_rows=1)
    with pytest.raises(ValueError, match=r"distill\.feature_weight > 0 needs the teacher's network"):
        fit_student(make_student(clf.model, [1, 3]), targets, [[0]], settings, 0)


def test_a_lora_network_can_learn_another_teachers_scores(base4, teacher, small_data, datasets, tmp_path):
    lora_cfg = {"lora_r": 2, "lora_alpha": 4, "lora_dropout": 0.0, "top_layers": None, "layers": None}
    start = make_tiny_artifact(tmp_path / "lora", base4, seed=3, method="lora", train=lora_cfg)
    settings = Settings.load(None, [
        f"data.out_dir={small_data}", f"data.negatives_dir={datasets}", f"distill.teacher={teacher}",
        f"distill.start={start}", "distill.method=lora", "distill.max_steps=3", "distill.batch_size=8",
        "distill.max_pool_rows=64", "distill.augment_copies=1", "distill.learning_rate=0.05",
        f"distill.out_dir={tmp_path / 'run'}",
    ])  # fmt: skip
    artifact = distill(settings)
    saved = json.loads((artifact / "collectguard.json").read_text())
    before = json.loads((start / "collectguard.json").read_text())
    assert saved["method"] == "lora" and saved["train"]["lora_r"] == 2 and "-lora-distill-s" in saved["version"]
    assert saved["train"]["distilled_from"]["weights_sha256"] == Classifier.load(teacher).manifest.weights_sha256
    assert saved["weights_sha256"] != before["weights_sha256"]  # the start's adapters moved
    learned = Classifier.load(artifact, config=TORCH)
    assert learned.model.config.num_hidden_layers == 4
    in_memory = np.load(tmp_path / "run" / "validation_probs.npy")
    np.testing.assert_allclose(learned.predict_proba(load_split("validation", small_data)), in_memory, atol=1e-5)


def _student_run(teacher, small_data, datasets, out: Path, *extra: str) -> Path:
    return distill(Settings.load(None, [
        f"data.out_dir={small_data}", f"data.negatives_dir={datasets}", f"distill.teacher={teacher}",
        "distill.layers=[1,3]", "distill.epochs=0.25", "distill.batch_size=8", "distill.max_pool_rows=64",
        "distill.augment_copies=1", "distill.learning_rate=0.05", f"distill.out_dir={out}", *extra,
    ]))  # fmt: skip


def test_disagreements_are_the_windows_whose_scores_differ_by_the_gap_on_any_label():
    teacher = np.array([[0.9, 0.1, 0.1], [0.5, 0.5, 0.5], [0.1, 0.1, 0.8], [0.2, 0.2, 0.2]], np.float32)
    targets = Targets(ids=[[5]] * 4, teacher=teacher, labels=np.full((4, 3), np.nan, np.float32), n_rows=4)
    used = np.array([0, 1, 2])  # window 3 is not in the run: never a disagreement
    own = np.array([[0.6, 0.1, 0.1], [0.55, 0.45, 0.5], [0.1, 0.1, 0.1]], np.float32)
    np.testing.assert_array_equal(disagreements(targets, used, own, 0.2), [0, 2])


def test_boosted_schedule_repeats_only_the_hard_windows_and_keeps_every_base_batch():
    lengths = [3, 9, 4, 8, 5, 7, 6, 2, 10, 11]
    base = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    hard = np.array([1, 8])
    out = boosted_schedule(base, lengths, hard, 3, 3, seed=0)
    counts = np.bincount(np.concatenate(out), minlength=10)
    assert counts.tolist() == [1, 4, 1, 1, 1, 1, 1, 1, 4, 1]  # 3 more passes over the hard two
    assert all(b in out for b in base) and max(len(b) for b in out) <= 3
    assert boosted_schedule(base, lengths, hard, 0, 3, seed=0) == base
    assert boosted_schedule(base, lengths, np.array([], int), 3, 3, seed=0) == base


def test_a_student_continues_an_earlier_one_with_its_disagreements_repeated(
    teacher, small_data, datasets, tmp_path, capsys
):
    first = _student_run(teacher, small_data, datasets, tmp_path / "first")
    before = json.loads((first / "collectguard.json").read_text())
    capsys.readouterr()
    again = _student_run(teacher, small_data, datasets, tmp_path / "again", f"distill.start={first}",
                         "distill.disagreement_boost=2", "distill.disagreement_gap=0.001")  # fmt: skip
    hard, used = map(int, capsys.readouterr().out.split("disagreements: ")[1].split(" windows")[0].split(" of "))
    saved = json.loads((again / "collectguard.json").read_text())
    assert 0 < hard <= used
    assert saved["metrics"]["steps"] > before["metrics"]["steps"]  # the same base schedule plus the repeats
    assert saved["method"] == "top" and saved["train"]["layers"] == [1, 3] and "-cont-s13" in saved["version"]
    assert saved["train"]["started_from"] == {k: before[k] for k in ("name", "version", "weights_sha256")}
    assert saved["weights_sha256"] != before["weights_sha256"]  # it trained on from there
    in_memory = np.load(tmp_path / "again" / "validation_probs.npy")
    np.testing.assert_allclose(
        Classifier.load(again, config=TORCH).predict_proba(load_split("validation", small_data)), in_memory, atol=1e-6
    )


def test_a_student_start_must_be_a_student_on_the_same_layers(base4, teacher, small_data, datasets, tmp_path):
    lora = make_tiny_artifact(tmp_path / "lora", base4, seed=3, method="lora",
                              train={"lora_r": 2, "lora_alpha": 4, "lora_dropout": 0.0, "top_layers": None,
                                     "layers": None})  # fmt: skip
    with pytest.raises(ValueError, match=r"'lora' network .*continues a student on the same distill\.layers"):
        _student_run(teacher, small_data, datasets, tmp_path / "a", f"distill.start={lora}")
    first = _student_run(teacher, small_data, datasets, tmp_path / "first", "distill.max_steps=1")
    with pytest.raises(ValueError, match=r"on layers \[1, 3\]; .*distill\.layers=\[0, 2\]"):
        _student_run(teacher, small_data, datasets, tmp_path / "b", f"distill.start={first}", "distill.layers=[0,2]")


def test_disagreement_boost_without_a_start_is_refused(teacher, small_data, datasets, tmp_path):
    with pytest.raises(ValueError, match=r"distill\.disagreement_boost needs distill\.start"):
        _student_run(teacher, small_data, datasets, tmp_path, "distill.disagreement_boost=1")


def test_rerun_spread_counts_functionalities_more_than_the_bar_apart_each_way(tmp_path):
    from train.rerun_spread import main, spread

    a = {"x": 95.0, "y": 90.0, "z": 80.0, "only_a": 10.0}
    b = {"x": 92.9, "y": 90.0, "z": 82.0, "only_b": 99.0}
    got = spread(a, b, bar=2.0)
    assert (got["functionalities"], got["b_behind_a"], got["a_behind_b"]) == (3, 1, 0)  # z: exactly 2 is within
    assert got["b_behind_a_names"] == ["x"] and got["either_way"] == 1
    reports = []
    for name, rates in (("a", a), ("b", b)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"behaviour": {"functionalities": {k: {"pass_rate": v / 100} for k, v in
                                                                      rates.items()}}}))  # fmt: skip
        reports.append(str(path))
    assert main(["--pair", "same recipe", *reports, "--out", str(tmp_path / "out.json")]) == 0
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["same recipe"]["b_behind_a"] == 1 and saved["same recipe"]["a"] == reports[0]
    assert "paired" not in saved["same recipe"]  # rates only: no case ids to pair


def test_rerun_spread_pairs_cases_both_ways_when_the_reports_list_them(tmp_path):
    from train.rerun_spread import main

    def report(failed: dict[str, list[str]]) -> dict:
        return {"behaviour": {"functionalities": {k: {"n": 30, "pass_rate": 1 - len(v) / 30, "failed": v}
                                                  for k, v in failed.items()}}}  # fmt: skip

    a = report({"x": [f"x-{i}" for i in range(7)], "y": []})  # a fails seven x cases b passes
    b = report({"x": [], "y": ["y-1"]})
    paths = []
    for name, rep in (("a", a), ("b", b)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(rep))
    assert main(["--pair", "seeds", *map(str, paths), "--out", str(tmp_path / "out.json")]) == 0
    paired = json.loads((tmp_path / "out.json").read_text())["seeds"]["paired"]
    assert paired["a_behind_b_holm"] == ["x"] and paired["b_behind_a_holm"] == paired["b_behind_a_unadjusted"] == []
    assert paired["whole_suite"] == {"only_b_fails": 1, "only_a_fails": 7, "p_b_behind_a": 0.9961}
