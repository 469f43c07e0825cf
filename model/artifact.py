"""The model artifact: trained weights plus everything needed to use them correctly.

Like Detoxify's checkpoints, an artifact carries its own label list, thresholds, preprocessing
version, window settings and base-encoder fingerprint. Loading rebuilds the full network from
the base encoder and refuses anything that does not match: another label list, another
preprocessing version, a different base file or vocabulary, or weights whose hash changed.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file, save_file

from model.architecture import base_fingerprint, build_model, load_tokenizer, load_trainable, resolve_base, state_hash
from model.labels import VIOLATIONS
from model.preprocess import PREPROCESS_VERSION, check_version

FORMAT = "collectguard-artifact/1"
MANIFEST = "collectguard.json"
WEIGHTS = "weights.safetensors"
KEPT_IDS = "kept_ids.npy"


def version_stamp(kind: str) -> str:
    """A new artifact's version: UTC date and minute, then ``kind`` (e.g. ``2026.12.07.1106-student6-s7``).

    The minute is there because a day can hold several runs of one recipe (round 15's and round 19's
    students both finished on 2026-12-07), and users, the API and relabeled rows tell models apart by
    name and version.
    """
    return time.strftime("%Y.%m.%d.%H%M", time.gmtime()) + f"-{kind}"


@dataclass
class Manifest:
    """What ``collectguard.json`` records about an artifact."""

    name: str
    version: str
    method: str
    base: dict[str, Any]
    thresholds: dict[str, float]
    max_length: int
    stride: int
    labels: list[str] = field(default_factory=lambda: list(VIOLATIONS))
    preprocess_version: str = PREPROCESS_VERSION
    format: str = FORMAT
    weights_sha256: str = ""
    train: dict[str, Any] = field(default_factory=dict)
    train_data_sha256: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    #: how the thresholds were chosen when ``train.calibrate`` replaced them (rule, mix, cross-fitted dev)
    calibration: dict[str, Any] = field(default_factory=dict)

    def check(self, where: Path) -> None:
        if self.format != FORMAT:
            raise ValueError(f"{where}: artifact format {self.format!r}, this code reads {FORMAT!r}")
        if list(self.labels) != list(VIOLATIONS):
            raise ValueError(f"{where}: artifact labels {self.labels} differ from the label schema {list(VIOLATIONS)}")
        check_version(self.preprocess_version, where=str(where))
        bad = {k: v for k, v in self.thresholds.items() if k not in VIOLATIONS or not 0 <= v <= 1}
        if bad or set(self.thresholds) != set(VIOLATIONS):
            raise ValueError(f"{where}: thresholds must give every label a value in [0, 1], got {self.thresholds}")


def save_artifact(out: Path, model, tokenizer, manifest: Manifest, keep: np.ndarray | None) -> Path:
    """Write trained parameters, tokenizer and manifest; returns the folder."""
    out = write_model_files(out, model, tokenizer, manifest, keep)
    write_manifest(out, manifest)
    return out


def write_model_files(out: Path, model, tokenizer, manifest: Manifest, keep: np.ndarray | None) -> Path:
    """Everything but the manifest: trained parameters, tokenizer, kept vocabulary ids.

    Sets ``manifest.weights_sha256``; :func:`write_manifest` completes the artifact.
    """
    from model.architecture import trainable_state

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = trainable_state(model)
    if manifest.train.get("weights_dtype") == "float16":
        state = {k: v.half() for k, v in state.items()}
    save_file(state, str(out / WEIGHTS))
    manifest.weights_sha256 = state_hash(state)
    if keep is not None:
        np.save(out / KEPT_IDS, np.asarray(keep, dtype=np.int32))
    tokenizer.save_pretrained(out)
    return out


def write_manifest(out: Path, manifest: Manifest) -> None:
    """Write ``collectguard.json``, last: its presence makes the folder an artifact."""
    (Path(out) / MANIFEST).write_text(
        json.dumps(asdict(manifest), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def read_manifest(path: Path) -> Manifest:
    path = Path(path)
    file = path / MANIFEST
    if not file.exists():
        raise FileNotFoundError(f"{path} is not a collectguard model: {MANIFEST} is missing")
    manifest = Manifest(**json.loads(file.read_text(encoding="utf-8")))
    manifest.check(path)
    return manifest


def read_kept_ids(path: Path) -> np.ndarray | None:
    """The artifact's kept vocabulary ids (int64); None where it keeps the full vocabulary."""
    file = Path(path) / KEPT_IDS
    return np.load(file).astype(np.int64) if file.exists() else None


def load_artifact(path: Path, merge: bool = True):
    """Rebuild the full network from the base encoder and the artifact; returns (model, tokenizer, manifest).

    ``merge=False`` leaves LoRA adapters unmerged (and trainable), for training them further.
    """
    path = Path(path)
    manifest = read_manifest(path)
    keep = read_kept_ids(path)
    encoder = manifest.base["encoder"]
    found = base_fingerprint(encoder, keep)
    if found != manifest.base:
        raise ValueError(
            f"{path}: the base encoder differs from the one this model was trained on "
            f"(artifact {manifest.base}, installed {found}); reinstall the pinned packages or retrain"
        )
    state = load_file(str(path / WEIGHTS))
    if state_hash(state) != manifest.weights_sha256:
        raise ValueError(f"{path / WEIGHTS}: weights hash does not match the manifest (file changed or corrupted)")
    model = build_model(resolve_base(encoder, keep), manifest.method, manifest.train)
    model = load_trainable(model, state, merge=merge)
    tokenizer = load_tokenizer(path)
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"{path}: tokenizer has {len(tokenizer)} pieces, model only {model.config.vocab_size}")
    return model, tokenizer, manifest
