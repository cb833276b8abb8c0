"""ModelCard: load and validate a YAML card or a Hugging Face config.json; list its parameters.

A card describes a decoder-only transformer exactly enough to count every parameter tensor and
every activation buffer the reference stack (transformers on PyTorch) allocates for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from functools import cached_property
from math import prod
from pathlib import Path
from typing import Any

import yaml

from llmcalc.errors import InputError, close_names

# libyaml's safe loader when PyYAML was built with it (the same safe subset, several times faster).
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

FAMILIES = ("llama", "mistral", "mixtral", "qwen2", "phi3", "gemma2", "gpt2", "falcon")
MLP_KINDS = ("gated", "plain")
# rmsnorm: Llama's (normalise in fp32, cast, then scale by the weight in the model dtype);
# rmsnorm_fp32: Gemma's (normalise and scale by 1 + weight in fp32, cast last).
NORMS = ("rmsnorm", "rmsnorm_fp32", "layernorm")
POSITION_EMBEDDINGS = ("rope", "learned", "alibi")
# Activation functions the memory model knows (memory.ACTIVATIONS holds their costs).
ACTIVATIONS = ("silu", "gelu", "gelu_pytorch_tanh", "gelu_new")


@dataclass(frozen=True)
class ModelCard:
    """A decoder-only transformer's shape: everything the memory and speed models need."""

    name: str
    family: str
    source: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    vocab_size: int
    max_position_embeddings: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    tie_word_embeddings: bool = False
    mlp: str = "gated"
    activation: str = "silu"
    norm: str = "rmsnorm"
    norms_per_layer: int = 2
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    fused_qkv: bool = False
    position_embedding: str = "rope"
    num_experts: int | None = None
    experts_per_token: int | None = None
    sliding_window: int | None = None
    sliding_window_pattern: int | None = None  # every Nth layer is global; None: all layers slide
    final_logit_softcapping: float | None = None  # logits = cap * tanh(logits / cap) (Gemma 2)
    path: str = ""  # where the card was loaded from (not a YAML key)

    # --- derived shapes -------------------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def dim_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def q_dim(self) -> int:  # width of the query projection
        return self.num_heads * self.dim_head

    @property
    def kv_dim(self) -> int:  # width of one of the key / value projections
        return self.kv_heads * self.dim_head

    @property
    def is_moe(self) -> bool:
        return bool(self.num_experts)

    @property
    def sliding_layers(self) -> int:
        """Layers whose KV cache is capped at the sliding window."""
        if not self.sliding_window:
            return 0
        if self.sliding_window_pattern:
            return self.num_layers - self.num_layers // self.sliding_window_pattern
        return self.num_layers

    # --- parameters -----------------------------------------------------------------------
    def parameters(self) -> tuple[Param, ...]:
        return self._parameters

    @cached_property
    def _parameters(self) -> tuple[Param, ...]:
        # Built once per card: estimate() walks the list several times (weights, gradients, the
        # largest linear), and a 405B card has over a thousand tensors.
        return tuple(parameter_tensors(self))

    @cached_property
    def num_params(self) -> int:
        return sum(p.numel for p in self.parameters())


@dataclass(frozen=True)
class Param:
    """One parameter tensor. Linear weights are (out_features, in_features)."""

    name: str
    shape: tuple[int, ...]
    kind: str  # linear | bias | norm | embedding | position_embedding | lm_head | router
    layer: int | None = None

    @property
    def numel(self) -> int:
        return prod(self.shape)


def parameter_tensors(card: ModelCard) -> list[Param]:
    """Every parameter tensor the transformers implementation of the card creates, in order."""
    h, i, v = card.hidden_size, card.intermediate_size, card.vocab_size
    params = [Param("embed_tokens", (v, h), "embedding")]
    if card.position_embedding == "learned":
        params.append(Param("embed_positions", (card.max_position_embeddings, h), "position_embedding"))
    norm_shapes = [(h,), (h,)] if card.norm == "layernorm" else [(h,)]  # weight (+ bias)
    for layer in range(card.num_layers):
        lp: list[Param] = []
        if card.fused_qkv:
            qkv_out = card.q_dim + 2 * card.kv_dim
            lp.append(Param("qkv_proj", (qkv_out, h), "linear"))
            if card.qkv_bias:
                lp.append(Param("qkv_proj.bias", (qkv_out,), "bias"))
        else:
            for proj, out in (("q_proj", card.q_dim), ("k_proj", card.kv_dim), ("v_proj", card.kv_dim)):
                lp.append(Param(proj, (out, h), "linear"))
                if card.qkv_bias:
                    lp.append(Param(proj + ".bias", (out,), "bias"))
        lp.append(Param("o_proj", (h, card.q_dim), "linear"))
        if card.o_bias:
            lp.append(Param("o_proj.bias", (h,), "bias"))
        if card.is_moe:
            lp.append(Param("router", (card.num_experts or 0, h), "router"))
            experts = card.num_experts or 0
        else:
            experts = 1
        for e in range(experts):
            prefix = f"experts.{e}." if card.is_moe else ""
            if card.mlp == "gated":
                lp += [Param(prefix + "gate_proj", (i, h), "linear"), Param(prefix + "up_proj", (i, h), "linear")]
            else:
                lp.append(Param(prefix + "fc_in", (i, h), "linear"))
                if card.mlp_bias:
                    lp.append(Param(prefix + "fc_in.bias", (i,), "bias"))
            lp.append(Param(prefix + "down_proj", (h, i), "linear"))
            if card.mlp_bias:
                lp.append(Param(prefix + "down_proj.bias", (h,), "bias"))
        for n in range(card.norms_per_layer):
            lp += [Param(f"norm{n}.{j}", shape, "norm") for j, shape in enumerate(norm_shapes)]
        params += [Param(f"layers.{layer}.{p.name}", p.shape, p.kind, layer) for p in lp]
    params += [Param(f"final_norm.{j}", shape, "norm") for j, shape in enumerate(norm_shapes)]
    if not card.tie_word_embeddings:
        params.append(Param("lm_head", (v, h), "lm_head"))
    return params


# --- loading and validation ---------------------------------------------------------------

_CARD_FIELDS = {f.name: f for f in fields(ModelCard) if f.name != "path"}
_REQUIRED = [n for n, f in _CARD_FIELDS.items() if f.default is MISSING]
_POSITIVE_INTS = (
    "hidden_size intermediate_size num_layers num_heads vocab_size max_position_embeddings "
    "num_kv_heads head_dim norms_per_layer num_experts experts_per_token sliding_window "
    "sliding_window_pattern"
).split()
_POSITIVE_NUMBERS = ("final_logit_softcapping",)
_BOOLS = "tie_word_embeddings qkv_bias o_bias mlp_bias fused_qkv".split()
_CHOICES: dict[str, tuple[str, ...]] = {
    "family": FAMILIES,
    "mlp": MLP_KINDS,
    "norm": NORMS,
    "position_embedding": POSITION_EMBEDDINGS,
    "activation": ACTIVATIONS,
}


def card_from_mapping(data: Any, path: str) -> ModelCard:
    """Validate a mapping of card keys and build the card; one InputError lists every problem."""
    if not isinstance(data, Mapping):
        raise InputError(f"{path}: a model card must be a mapping of keys to values")
    problems: list[str] = []
    unknown = sorted(set(map(str, data)) - set(_CARD_FIELDS))
    if unknown:
        problems.append("unknown keys: " + ", ".join(unknown))
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    for key in ("name", "source"):
        if key in data and not (isinstance(data[key], str) and data[key].strip()):
            problems.append(f"{key}: must be a non-empty string")
    for key in _POSITIVE_INTS:
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            problems.append(f"{key}: must be a positive integer, got {value!r}")
    for key in _POSITIVE_NUMBERS:
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            problems.append(f"{key}: must be a positive number, got {value!r}")
    for key in _BOOLS:
        if key in data and not isinstance(data[key], bool):
            problems.append(f"{key}: must be true or false, got {data[key]!r}")
    for key, choices in _CHOICES.items():
        if key in data and data[key] not in choices:
            problems.append(f"{key}: must be one of {', '.join(choices)}, got {data[key]!r}")
    if not problems:
        problems += _shape_problems(data)
    if problems:
        raise InputError(f"{path}: " + "; ".join(problems))
    return ModelCard(**{k: data[k] for k in data}, path=path)


def _shape_problems(d: Mapping[str, Any]) -> list[str]:
    problems = []
    heads, kv = d["num_heads"], d.get("num_kv_heads") or d["num_heads"]
    if d.get("head_dim") is None and d["hidden_size"] % heads:
        problems.append(f"num_heads: {heads} does not divide hidden_size {d['hidden_size']} (set head_dim)")
    if heads % kv:
        problems.append(f"num_kv_heads: {kv} does not divide num_heads {heads}")
    if (d.get("num_experts") is None) != (d.get("experts_per_token") is None):
        problems.append("num_experts and experts_per_token: give both or neither")
    elif d.get("num_experts") and d["experts_per_token"] > d["num_experts"]:
        problems.append(f"experts_per_token: {d['experts_per_token']} exceeds num_experts {d['num_experts']}")
    if d.get("sliding_window_pattern") and not d.get("sliding_window"):
        problems.append("sliding_window_pattern: needs sliding_window")
    if d.get("norms_per_layer", 2) not in (1, 2, 4):
        problems.append(f"norms_per_layer: must be 1, 2 or 4, got {d['norms_per_layer']}")
    return problems


def load_card_file(path: Path) -> ModelCard:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if path.suffix == ".json":
        import json  # only here: `estimate CARD` does not pay for it

        from llmcalc.hf import card_from_hf_config

        try:
            config = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
        return card_from_hf_config(config, str(path))
    try:
        data = yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise InputError(f"{path}: not valid YAML{where}") from None
    return card_from_mapping(data, str(path))


def cards_dir() -> Path:
    """model_cards/ of an installed package, or of the source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "model_cards", here.parent / "model_cards"):
        if candidate.is_dir():
            return candidate
    raise InputError("model_cards/ not found next to the llmcalc package")


def card_names() -> list[str]:
    return sorted(p.stem for p in cards_dir().glob("*.yaml"))


def load_all_cards() -> list[ModelCard]:
    return [load_card_file(p) for p in sorted(cards_dir().glob("*.yaml"))]


def load_card(model: str) -> ModelCard:
    """MODEL is a card name, a card file, or a config.json (the file or its directory)."""
    path = Path(model)
    if path.is_dir() and (path / "config.json").is_file():
        return load_card_file(path / "config.json")
    if path.suffix in (".json", ".yaml", ".yml") and path.is_file():
        return load_card_file(path)
    if path.suffix in (".json", ".yaml", ".yml") or "/" in model:
        raise InputError(f"{model}: no such file")
    card_path = cards_dir() / f"{model.lower()}.yaml"
    if card_path.is_file():
        card = load_card_file(card_path)
        if card.name != card_path.stem:
            raise InputError(f"{card_path}: name: '{card.name}' differs from the file name '{card_path.stem}'")
        return card
    hint = close_names(model.lower(), card_names())
    raise InputError(f"unknown model '{model}'" + (f"; closest: {hint}" if hint else "; see `llmcalc models`"))
