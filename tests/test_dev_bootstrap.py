"""The paired source bootstrap behind ``python -m train.dev_bootstrap``: its macro-F1 is the
evaluation's, sources are resampled whole, and the interval of a difference is paired."""

from __future__ import annotations

import json

import numpy as np
import pytest

from train.dev_bootstrap import macro_f1, main, paired_bootstrap
from train.evaluate import metrics


def _random(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 3)) < 0.3, rng.random((n, 3)) < 0.3


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_is_the_evaluations(seed):
    y, pred = _random(seed)
    pred[:, 2] = False  # a label never predicted: zero_division=0, as sklearn's
    assert macro_f1(y, pred) == pytest.approx(metrics(y, pred)["macro_f1"], abs=5e-5)


def test_the_same_predictions_differ_by_exactly_zero():
    y, pred = _random(0)
    groups = [f"page{i % 17}" for i in range(len(y))]
    out = paired_bootstrap(y, pred, pred, groups, samples=200)
    assert out["b_minus_a"]["interval_95"] == [0.0, 0.0] and out["sources"] == 17
    lo, hi = out["a"]["interval_95"]
    assert lo < out["a"]["macro_f1"] < hi


def test_one_source_cannot_spread_and_a_better_model_is_ahead_on_every_draw():
    y, pred = _random(1)
    one = paired_bootstrap(y, pred, pred, ["page"] * len(y), samples=50)
    assert one["a"]["interval_95"][0] == one["a"]["interval_95"][1] == one["a"]["macro_f1"]
    perfect = paired_bootstrap(y, pred, y, [f"p{i % 9}" for i in range(len(y))], samples=300)
    assert perfect["b"]["macro_f1"] == 1.0 and perfect["b_minus_a"]["share_of_draws_b_ahead"] == 1.0
    assert perfect["b_minus_a"]["interval_95"][0] > 0


def test_the_command_compares_two_artifacts_on_a_dev_folder(tmp_path, base4, capsys):
    from tests.conftest import make_tiny_artifact

    a, b = make_tiny_artifact(tmp_path / "a", base4, seed=1), make_tiny_artifact(tmp_path / "b", base4, seed=2)
    real = tmp_path / "real"
    real.mkdir()
    cases = [("你再不还钱我就去你单位", ["threat"]), ("您好，提醒您按时还款", []),
             ("你个老赖", ["insult"]), ("他欠了我们两万", ["third_party_disclosure"])] * 3  # fmt: skip
    rows = [{"id": f"r{i}", "text": t, "speaker": "agent", "listener": "debtor", "labels": lab,
             "source": f"https://example.org/page{i % 3}#q{i}"} for i, (t, lab) in enumerate(cases)]  # fmt: skip
    (real / "dev_test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    out = tmp_path / "boot.json"
    assert main(["--model", str(a), "--against", str(b), "--real-dir", str(real), "--samples", "100",
                 "--out", str(out)]) == 0  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved == json.loads(capsys.readouterr().out)
    assert (saved["rows"], saved["sources"], saved["model_a"], saved["model_b"]) == (12, 3, str(a), str(b))
