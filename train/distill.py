"""Distillation: ``collectguard distill --config train/configs/default.yaml``.

A student with half the teacher's encoder layers (every other one, DistilBERT-style, taken from
the teacher with its LoRA merged, so it starts close) learns to reproduce the teacher's scores on
a large pool (:mod:`train.pool`): ordinary talk, crude comments, noisy variants and the labelled
corpus. On labelled rows the target mixes the teacher's score with the label (``alpha``), so the
student also learns where the teacher is wrong on the training data.

Three steps, like :mod:`train.finetune`: :func:`pool_windows` and :func:`score_windows` (the pool
cut into windows and scored once by the teacher, only the windows the run's schedule uses, cached
by content hash so a rerun skips them), :func:`fit_student`
and :func:`save_student` (per-label thresholds on validation data, test metrics, the artifact).
``distill.method=lora`` instead trains the teacher's own LoRA adapters further on the same targets
(self-distillation: a model of the teacher's size). ``distill.start`` continues another network
instead (a LoRA artifact, or an earlier student on the same layers), and
``distill.disagreement_boost`` repeats the windows where that start and the teacher disagree.
The student is an ordinary artifact (method
``top`` on the kept ``layers``, or ``lora``): ``Classifier.load``
reads it like any other, and ``python -m train.calibrate`` picks its off-domain thresholds the
same way as the teacher's.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from model.architecture import inner_model, keep_encoder_layers, trainable_state
from model.artifact import (
    MANIFEST,
    Manifest,
    load_artifact,
    read_kept_ids,
    read_manifest,
    version_stamp,
    write_manifest,
    write_model_files,
)
from model.classifier import Classifier
from model.config import SHIPPED_MODEL_DIR, Settings
from model.labels import VIOLATIONS
from model.machine import physical_cores
from model.preprocess import Segment, Window, encode_windows, make_windows
from train.dataset import hash_rows, load_authored, load_split
from train.evaluate import choose_thresholds, label_matrix
from train.finetune import make_optimizer, pad_tensors, round_to_float16, split_metrics, step_schedule
from train.pool import build_pool

TARGETS = "teacher_window_scores.npz"


@dataclass
class Targets:
    """The pool as training windows: token ids, the teacher's scores, and labels where known."""

    ids: list[list[int]]
    teacher: np.ndarray  # (windows, labels) teacher sigmoid scores
    labels: np.ndarray  # (windows, labels); rows without labels are NaN
    n_rows: int
    alpha: np.ndarray | None = None  # (windows,) the row's own teacher weight; NaN = the configured alpha
    windows: list[Window] | None = None  # the windows themselves, for scoring


def pool_windows(teacher: Classifier, rows: list[dict[str, Any]]) -> Targets:
    """Cut pool rows into windows exactly as inference does; teacher scores start unknown (NaN)."""
    segs = [Segment(r["text"], r["speaker"], r["listener"]) for r in rows]
    windows = make_windows(teacher.tokenizer, segs, teacher.manifest.max_length, teacher.manifest.stride)
    ids = encode_windows(teacher.tokenizer, windows, teacher.manifest.max_length)
    y_rows = np.array(
        [[label in r["labels"] for label in VIOLATIONS] if r["labels"] is not None else [np.nan] * 3 for r in rows],
        dtype=np.float32,
    ).reshape(-1, len(VIOLATIONS))
    alpha_rows = np.array([r.get("target_alpha", np.nan) for r in rows], dtype=np.float32)
    of_window = [w.segment for w in windows]
    unknown = np.full((len(windows), len(VIOLATIONS)), np.nan, dtype=np.float32)
    return Targets(ids, unknown, y_rows[of_window], len(rows), alpha_rows[of_window], windows)


def score_windows(teacher: Classifier, targets: Targets, needed: np.ndarray | None, cache_dir: Path) -> None:
    """Fill ``targets.teacher`` with the teacher's scores on the ``needed`` windows (None = all).

    A run shorter than an epoch never sees most windows, so only those its schedule uses are
    scored: at 0.5 epoch that halves the teacher's pass over the pool. Scores are cached per
    window (NaN = not yet scored), keyed by the teacher's weights and the pool's token ids, so a
    rerun or a longer run scores only what the cache lacks.
    """
    key = hashlib.sha256(
        (teacher.manifest.weights_sha256 + json.dumps(targets.ids, separators=(",", ":"))).encode()
    ).hexdigest()[:16]
    cache = Path(cache_dir) / TARGETS
    if cache.exists():
        with np.load(cache) as saved:
            if str(saved["key"]) == key:
                targets.teacher[:] = saved["scores"]
    wanted = np.arange(len(targets.ids)) if needed is None else np.asarray(needed)
    missing = wanted[np.isnan(targets.teacher[wanted]).any(axis=1)]
    if not len(missing):
        return
    print(f"teacher scores: {len(missing)} of {len(targets.ids)} windows (the rest are cached or never used)")
    targets.teacher[missing] = scores_in_chunks(teacher, [targets.windows[i] for i in missing], "teacher scores")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, key=key, scores=targets.teacher)


def scores_in_chunks(clf: Classifier, windows: list[Window], desc: str, step: int = 4096) -> np.ndarray:
    """``clf``'s scores on ``windows``, in chunks only for the progress bar (each is length-bucketed inside)."""
    out = np.empty((len(windows), len(VIOLATIONS)), dtype=np.float32)
    for start in tqdm(range(0, len(windows), step), desc=desc, unit="chunk"):
        out[start : start + step] = clf.window_scores(windows[start : start + step])
    return out


def disagreements(targets: Targets, used: np.ndarray, start_scores: np.ndarray, gap: float) -> np.ndarray:
    """The windows of ``used`` where the start's scores differ from the teacher's by ``gap`` or more on a label."""
    return used[(np.abs(targets.teacher[used] - start_scores) >= gap).any(axis=1)]


def boosted_schedule(
    schedule: list[list[int]], lengths: list[int], hard: np.ndarray, boost: int, batch_size: int, seed: int
) -> list[list[int]]:
    """``schedule`` plus ``boost`` passes over the ``hard`` windows, the batches shuffled together.

    A student that continues from an earlier one already agrees with the teacher on most of the
    pool; repeating where it does not spends the steps there (hard-example mining on the teacher's
    own scores, so no labels are involved). Extra batches are length-bucketed like any epoch's.
    """
    if not boost or not len(hard):
        return schedule
    extra = step_schedule([lengths[i] for i in hard], batch_size, seed, float(boost), None)
    merged = schedule + [[int(hard[j]) for j in batch] for batch in extra]
    order = np.random.default_rng(seed).permutation(len(merged))
    return [merged[i] for i in order]


def freeze_lower_layers(model, n: int) -> list[tuple[str, torch.nn.Parameter]]:
    """Stop training the lowest ``n`` encoder layers (``distill.frozen_layers``); returns what it froze.

    Backpropagation then ends above them: with 8 of 12 frozen a LoRA self-distillation step took
    1.40 s against 1.92 s on this 2-core CPU, and the frozen layers keep what the teacher learned
    (round 17: cheaper, but short of what all twelve layers reach; model card).
    """
    n_layers = inner_model(model).config.num_hidden_layers
    if not 0 <= n <= n_layers:
        raise ValueError(f"distill.frozen_layers={n} must be between 0 and the encoder's {n_layers} layers")
    bottom = tuple(f".encoder.layer.{i}." for i in range(n))  # parameter names, as build_model matches them
    frozen = [(name, p) for name, p in model.named_parameters() if p.requires_grad and any(b in name for b in bottom)]
    for _, p in frozen:
        p.requires_grad = False
    return frozen


def train_layers_and_head(student):
    """A student's encoder layers and head train; its embeddings stay frozen.

    They are the base encoder's (LoRA never touched them), so the artifact stores only the kept
    layers and the head, and loading rebuilds the rest.
    """
    for name, p in student.named_parameters():
        p.requires_grad = ".encoder." in name or name.startswith("classifier.")
    return student


def make_student(teacher_model, layers: list[int]):
    """The teacher's network (LoRA merged) keeping only ``layers``, trainable as :func:`train_layers_and_head` says."""
    student = copy.deepcopy(teacher_model)
    keep_encoder_layers(student, layers)
    return train_layers_and_head(student)


def continue_student(start_dir: Path, layers: list[int]):
    """An earlier student (method ``top`` on the same ``layers``) to train further, trainable as a new one."""
    model, _, manifest = load_artifact(start_dir)
    if manifest.method != "top" or list(manifest.train.get("layers") or []) != list(layers):
        raise ValueError(
            f"distill.start={start_dir} is a {manifest.method!r} network on layers {manifest.train.get('layers')}; "
            f"method=top continues a student on the same distill.layers={list(layers)}"
        )
    return train_layers_and_head(model)


def make_self_student(start_dir: Path):
    """A LoRA network with its adapters unmerged: adapters and head train, the rest is frozen.

    Self-distillation (born-again networks): the 6-layer students trained on this pool ended
    ahead of their teacher on the real dev set and the written test, so the same targets may
    lift a network of the teacher's size. Continuing the teacher's adapters (``start_dir`` is the
    teacher) keeps the artifact the teacher's shape (LoRA factors + head, 2.7 MB in float16) and
    its start the teacher's scores; ``distill.start`` names another LoRA artifact to continue.
    """
    model, _, manifest = load_artifact(start_dir, merge=False)
    if manifest.method != "lora":
        raise ValueError(f"distill.method=lora needs a LoRA network; {start_dir} was trained with {manifest.method!r}")
    return model


@dataclass
class Fitted:
    steps: int
    seconds: float
    losses: list[float]


def soft_targets(targets: Targets, alpha: float) -> torch.Tensor:
    """The teacher's scores; on labelled windows ``alpha`` × teacher + (1 − ``alpha``) × label.

    A window whose row carries its own weight (``targets.alpha``, rows the teacher never trained
    on) uses that instead: there the teacher's score is a guess and the label is the answer.
    """
    known = ~np.isnan(targets.labels)
    a = np.full(len(targets.ids), alpha, np.float32) if targets.alpha is None else targets.alpha
    a = np.where(np.isnan(a), alpha, a)[:, None]
    mixed = np.where(known, a * targets.teacher + (1 - a) * np.nan_to_num(targets.labels), targets.teacher)
    return torch.from_numpy(mixed.astype(np.float32))


def feature_gap(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """Mean squared distance to the teacher's features over the teacher's feature variance in the batch.

    E5's pooled features share a large common direction, so a plain relative error is small
    even where the parts that tell windows apart differ; dividing by the variance across the
    batch makes 1.0 mean "no better than the batch mean" whatever the features' scale.
    """
    spread = teacher_features.var(dim=0, unbiased=False).mean().clamp(min=1e-6)
    return (student_features - teacher_features).pow(2).mean() / spread


def fit_student(
    student, targets: Targets, schedule: list[list[int]], settings: Settings, pad_id: int, teacher_model=None
) -> Fitted:
    """AdamW on soft binary cross-entropy against :func:`soft_targets`; warm-up then linear decay.

    With ``distill.feature_weight`` > 0 the loss adds that weight times :func:`feature_gap` to
    ``teacher_model``'s pooled features on the same batch: three scores per window say little
    about how the teacher reaches them, its 384 features say more, so the student should agree
    with it on text the pool never held.

    With ``distill.autocast=bf16`` only the forward passes are bfloat16; the loss, gradients and
    AdamW's state stay float32, so the saved weights are float32 rounded to float16 as always.
    """
    cfg = settings.distill
    if cfg.feature_weight and teacher_model is None:
        raise ValueError("distill.feature_weight > 0 needs the teacher's network")
    t0 = time.perf_counter()
    y = soft_targets(targets, cfg.alpha)
    total = len(schedule)
    params = [(n, p) for n, p in student.named_parameters() if p.requires_grad]
    optimizer, scheduler = make_optimizer(params, cfg.learning_rate, cfg.head_learning_rate, cfg.weight_decay,
                                          cfg.warmup_ratio, total)  # fmt: skip
    loss_fn = torch.nn.BCEWithLogitsLoss()
    n_params = sum(p.numel() for _, p in params)
    print(f"distilling: {targets.n_rows} pool rows, {len(targets.ids)} windows, {total} steps, {n_params:,} parameters")
    student.train()
    net = inner_model(student)  # a peft wrapper's layers are patched in place, so its base model runs them
    teacher_net = inner_model(teacher_model).eval() if cfg.feature_weight else None
    losses: list[float] = []
    bar = tqdm(range(total), desc="distill", unit="step")
    for step in bar:
        batch = schedule[step]
        input_ids, mask = pad_tensors([targets.ids[i] for i in batch], pad_id)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.autocast == "bf16"):
            features = net.features(input_ids, mask)
            logits = net.head(features)
        loss = loss_fn(logits.float(), y[batch])
        if teacher_net is not None:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.autocast == "bf16"):
                wanted = teacher_net.features(input_ids, mask)
            loss = loss + cfg.feature_weight * feature_gap(features.float(), wanted.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    student.eval()
    round_to_float16(params)  # saved as float16
    return Fitted(total, time.perf_counter() - t0, losses)


def student_manifest(
    teacher: Classifier, settings: Settings, pool_rows: int, start: Manifest | None = None
) -> Manifest:
    """The student's manifest: the teacher's base and windows; ``top`` on the kept layers, or the LoRA shape
    and name of the network that continued (``start``, the teacher's own when None)."""
    cfg = settings.distill
    started = {"started_from": {"name": start.name, "version": start.version,
                                "weights_sha256": start.weights_sha256}} if start else {}  # fmt: skip
    if cfg.method == "lora":
        start = start or teacher.manifest
        shape = {k: start.train.get(k) for k in ("lora_r", "lora_alpha", "lora_dropout", "top_layers")}
        shape["layers"] = None
        name, kind = start.name, f"selfdistill-s{cfg.seed}" if cfg.start is None else f"lora-distill-s{cfg.seed}"
    else:
        shape = {"layers": list(cfg.layers), "top_layers": len(cfg.layers)}
        name, kind = "collectguard-student", f"student{len(cfg.layers)}{'' if start is None else '-cont'}-s{cfg.seed}"
    train = {
        "method": cfg.method, **shape, "weights_dtype": "float16",
        "distilled_from": {"name": teacher.name, "version": teacher.version,
                           "weights_sha256": teacher.manifest.weights_sha256},
        "pool_rows": pool_rows, **started,
        **cfg.model_dump(mode="json", exclude={"layers", "teacher", "out_dir", "method", "start"}),
    }  # fmt: skip
    return Manifest(
        name=name, version=version_stamp(kind),
        method=cfg.method, base=dict(teacher.manifest.base), thresholds=dict.fromkeys(VIOLATIONS, 0.5),
        max_length=teacher.manifest.max_length, stride=teacher.manifest.stride, train=train,
    )  # fmt: skip


def save_student(
    settings: Settings, teacher: Classifier, student, fitted: Fitted, pool_rows: int, keep, start: Manifest | None
) -> Path:
    """Thresholds on authored validation rows (as training does), test metrics, then the artifact."""
    out_dir = Path(settings.distill.out_dir)
    manifest = student_manifest(teacher, settings, pool_rows, start)
    clf = Classifier(student, teacher.tokenizer, manifest, settings.inference)
    val, test = load_split("validation", settings.data.out_dir), load_split("test", settings.data.out_dir)
    p_val = clf.predict_proba(val)
    np.save(out_dir / "validation_probs.npy", p_val)  # the saved artifact must reproduce these (tested)
    manifest.thresholds = choose_thresholds(label_matrix(val), p_val, settings.train.precision_floor)
    manifest.train_data_sha256 = hash_rows(load_split("train", settings.data.out_dir) + val)
    artifact = write_model_files(out_dir / "artifact", student, teacher.tokenizer, manifest, keep)
    manifest.metrics = {
        "validation": split_metrics(val, p_val, manifest.thresholds),
        "test": split_metrics(test, clf.predict_proba(test), manifest.thresholds),
        "pool_rows": pool_rows,
        "steps": fitted.steps,
        "train_seconds": round(fitted.seconds, 1),
        "trainable_parameters": sum(v.numel() for v in trainable_state(student).values()),
        "artifact_bytes": sum(f.stat().st_size for f in artifact.iterdir() if f.name != MANIFEST),
    }
    write_manifest(artifact, manifest)
    (out_dir / "metrics.json").write_text(json.dumps(manifest.metrics, indent=2) + "\n")
    return artifact


def distill(settings: Settings) -> Path:
    """Run one distillation; returns the student's artifact folder (``<out_dir>/artifact``)."""
    cfg = settings.distill
    if cfg.disagreement_boost and not cfg.start:
        raise ValueError("distill.disagreement_boost needs distill.start: the network whose disagreements it repeats")
    torch.set_num_threads(cfg.threads or physical_cores())
    torch.manual_seed(cfg.seed)
    teacher_dir = Path(cfg.teacher or SHIPPED_MODEL_DIR)
    scoring = settings.inference.model_copy(update={"backend": cfg.teacher_backend})
    teacher = Classifier.load(teacher_dir, config=scoring)
    start_dir = Path(cfg.start or teacher_dir)
    start = read_manifest(start_dir) if cfg.start else None
    if start is not None and start.base != teacher.manifest.base:  # encoder, its weights and the kept vocabulary
        raise ValueError(
            f"distill.start={start_dir} sits on base {start.base}, the teacher {teacher_dir} on "
            f"{teacher.manifest.base}: the teacher's token ids would mean other pieces"
        )
    keep = read_kept_ids(teacher_dir)
    if settings.data.negatives_dir is None:
        raise ValueError("distill needs the public datasets: set data.negatives_dir (e.g. ../shared/datasets)")
    extra = load_authored(cfg.extra_labelled_dir) if cfg.extra_labelled_dir else None
    rows = build_pool(Path(settings.data.negatives_dir), settings, cfg.augment_copies, extra)
    if cfg.max_pool_rows:
        rows = rows[:: max(1, len(rows) // cfg.max_pool_rows)][: cfg.max_pool_rows]
    if cfg.method == "lora":
        student = make_self_student(start_dir)
    elif cfg.start:
        student = continue_student(start_dir, list(cfg.layers))
    else:
        student = make_student(teacher.model, list(cfg.layers))
    frozen = freeze_lower_layers(student, cfg.frozen_layers)
    targets = pool_windows(teacher, rows)
    lengths = [len(x) for x in targets.ids]
    schedule = step_schedule(lengths, cfg.batch_size, cfg.seed, cfg.epochs, cfg.max_steps)
    used = np.unique(np.concatenate(schedule))
    score_windows(teacher, targets, used, Path(cfg.out_dir))
    if cfg.disagreement_boost:
        start_clf = Classifier.load(start_dir, config=scoring)
        own = scores_in_chunks(start_clf, [targets.windows[i] for i in used], "start's scores")
        hard = disagreements(targets, used, own, cfg.disagreement_gap)
        print(f"disagreements: {len(hard)} of {len(used)} windows (gap >= {cfg.disagreement_gap}), "
              f"{cfg.disagreement_boost} more passes over them")  # fmt: skip
        schedule = boosted_schedule(schedule, lengths, hard, cfg.disagreement_boost, cfg.batch_size, cfg.seed)
        schedule = schedule[: cfg.max_steps or None]
    fitted = fit_student(student, targets, schedule, settings, teacher.tokenizer.pad_token_id, teacher.model)
    for _, p in frozen:  # the artifact stores every trainable parameter, the frozen layers' as well
        p.requires_grad = True
    round_to_float16(frozen)
    return save_student(settings, teacher, student, fitted, len(rows), keep, start)


def run(args: argparse.Namespace) -> int:
    artifact = distill(Settings.from_args(args))
    metrics_ = json.loads((artifact / MANIFEST).read_text())["metrics"]
    print(json.dumps({"artifact": str(artifact), "test": metrics_["test"]}, indent=2))
    return 0
