"""Shared fixtures: a real (tiny, randomly initialised) transformers model packaged as a
collectguard artifact, for tests of mechanics (API, relabeling, export). Behaviour tests use
the shipped model instead."""

from __future__ import annotations

import json
import os
from pathlib import Path

# Model hubs are unreachable here and in CI: any accidental download must fail fast, not hang.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest

from model.artifact import Manifest, save_artifact
from model.labels import VIOLATIONS

TINY_CORPUS = [
    "您好，我是瑞丰消费金融的工作人员，您的账单已经逾期了。",
    "你再不还钱我就去你单位找你领导",
    "麻烦您转告他给我们回个电话",
    "你个老赖，不要脸",
    "他在我们这欠了两万三千块",
]


@pytest.fixture(scope="session", autouse=True)
def _user_data_dir(tmp_path_factory):
    """Stores that default to the user data dir (the review store) write under a temporary one."""
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    from model.base import kept_piece_ids, load_tokenizer_json, trim_tokenizer_json, write_tokenizer

    tok = load_tokenizer_json()
    keep = kept_piece_ids(tok, TINY_CORPUS)
    return write_tokenizer(tmp_path_factory.mktemp("tok"), trim_tokenizer_json(tok, keep))


def tiny_bert(out: Path, tokenizer_src: str | Path, seed: int = 0, layers: int = 2) -> Path:
    """A tiny randomly initialised BERT with a real tokenizer: for mechanics tests only."""

    import torch
    from transformers import BertConfig, BertModel

    from model.architecture import load_tokenizer

    tok = load_tokenizer(tokenizer_src)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=512, type_vocab_size=2, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    BertModel(config, add_pooling_layer=False).save_pretrained(out)
    tok.save_pretrained(out)
    (Path(out) / "tiny.json").write_text(json.dumps({"seed": seed}))
    return Path(out)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny_base"), tiny_tokenizer_dir, seed=0)


@pytest.fixture(scope="session")
def base4(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A tiny 4-layer base, so a student can keep some of its layers (distillation, soups)."""
    return tiny_bert(tmp_path_factory.mktemp("base4"), tiny_tokenizer_dir, seed=3, layers=4)


def make_tiny_artifact(
    out: Path,
    base: Path,
    thresholds: dict[str, float] | None = None,
    seed: int = 1,
    method: str = "head",
    train: dict | None = None,
) -> Path:
    """An untrained (random head) artifact over the tiny base: real model, meaningless scores.

    ``method`` and ``train`` build it another way, e.g. ``lora`` with its settings (untrained adapters).
    """
    from model.architecture import base_fingerprint, build_model, load_tokenizer

    model = build_model(str(base), method, train or {}, seed=seed)
    manifest = Manifest(
        name="tiny-test",
        version="0.0.0-test",
        method=method,
        base=base_fingerprint(str(base), None),
        thresholds=thresholds or dict.fromkeys(VIOLATIONS, 0.5),
        max_length=32,
        stride=8,
        train=dict(train or {}),
    )
    return save_artifact(out, model, load_tokenizer(base), manifest, keep=None)


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory, tiny_base) -> Path:
    return make_tiny_artifact(tmp_path_factory.mktemp("tiny_artifact"), tiny_base)


@pytest.fixture(scope="session")
def tiny_classifier(tiny_artifact):
    """The tiny model on PyTorch: mechanics tests compare exact scores with the in-memory network
    (int8 scores differ from it a little; tests/test_backend.py and test_onnx.py cover int8)."""
    from model.classifier import Classifier
    from model.config import InferenceConfig

    return Classifier.load(tiny_artifact, config=InferenceConfig(backend="torch"))


@pytest.fixture()
def datasets(tmp_path):
    """A tiny stand-in for ../shared/datasets: CPED and KdConv dialogues, COLD train and dev comments."""
    for corpus in ("cped", "kdconv"):
        (tmp_path / corpus).mkdir()
        with open(tmp_path / corpus / "utterances.jsonl", "w", encoding="utf-8") as f:
            for d in range(200):
                for t in range(3):
                    rec = {
                        "text": f"{corpus}第{d}段第{t}句",
                        "speaker_role": None,
                        "dialogue_id": f"{d:03d}",
                        "turn": t,
                    }
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    (tmp_path / "cold").mkdir()
    for split in ("train", "dev"):
        lines = [",split,topic,label,TEXT"] + [f"{i},{split},race,{i % 2},评论{split}{i}" for i in range(100)]
        (tmp_path / "cold" / f"{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    return tmp_path


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """A small slice of the committed processed splits (every label present), for training mechanics."""
    from train.dataset import load_split, write_jsonl

    committed = Path(__file__).resolve().parent.parent / "data" / "processed"
    out = tmp_path_factory.mktemp("data")
    for split, n in (("train", 64), ("validation", 40), ("test", 24)):
        write_jsonl(out / f"{split}.jsonl", load_split(split, committed)[:n])
    return out
