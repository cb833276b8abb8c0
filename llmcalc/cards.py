"""ModelCard: load and validate a YAML card or a Hugging Face config.json; list its parameters.

A card describes a decoder-only transformer exactly enough to count every parameter tensor and
every activation buffer the reference stack (transformers on PyTorch) allocates for it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, replace
from functools import cached_property
from math import prod
from pathlib import Path
from typing import Any, NamedTuple

from llmcalc.diskcache import YamlError, load_yaml
from llmcalc.errors import InputError
from llmcalc.precision import PRECISIONS

FAMILIES = ("llama", "mistral", "mixtral", "qwen2", "phi3", "gemma2", "gpt2", "falcon",
            "qwen3", "qwen2_moe", "qwen3_moe", "gemma3", "llama4", "deepseek_v2", "deepseek_v3", "gpt_oss",
            "glm4_moe", "olmo2", "olmo3", "granite", "granitemoe", "smollm3", "phimoe", "cohere2",
            "ernie4_5", "ernie4_5_moe", "lfm2", "qwen3_5", "qwen3_5_moe", "qwen3_next")
MLP_KINDS = ("gated", "plain")
# rmsnorm: Llama's (normalise in fp32, cast, then scale by the weight in the model dtype);
# rmsnorm_fp32: Gemma's and OLMo 2's (normalise and scale in fp32, cast last);
# layernorm_nobias: Cohere's (mean and variance in fp32, a weight and no bias, cast last).
NORMS = ("rmsnorm", "rmsnorm_fp32", "layernorm", "layernorm_nobias")
POSITION_EMBEDDINGS = ("rope", "learned", "alibi")
# What mixes tokens in a layer: full (global) attention, a sliding window, chunked attention
# (Llama 4: attends within fixed chunks, its cache holds one chunk), nope (global attention
# without rotary embeddings), conv (LFM2's gated short convolution: a fixed-size state per
# sequence, no KV cache), linear (Gated DeltaNet linear attention, Qwen3.5/3.6: a causal conv
# state and a heads x key x value recurrent state per sequence, no KV cache).
LAYER_TYPES = ("full", "sliding", "chunked", "nope", "conv", "linear")
# q/k normalisation inside attention: head (an RMSNorm over each head, weight head_dim: Qwen3,
# Gemma 3, GLM-4.5, LFM2), full (over the whole projection, weights q_dim and kv_dim: OLMo 2),
# l2 (a weightless L2 norm per head: Llama 4).
QK_NORMS = ("head", "full", "l2")
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
    # --- mechanisms of the 2025-26 families (docs/models.md) ---
    layer_types: tuple[str, ...] | None = None  # repeated over the layers (LAYER_TYPES); None: all full
    attention_chunk_size: int | None = None  # the chunk of `chunked` layers (Llama 4)
    qk_norm: str | None = None  # QK_NORMS
    post_norm: bool = False  # the norms apply to attention's and the MLP's outputs, none to their inputs (OLMo 2/3)
    attention_sinks: bool = False  # one learned logit per head joins each softmax (gpt-oss)
    sdpa: bool = True  # transformers has an SDPA path for the family (gpt-oss: eager, flash, flex only)
    lm_head_bias: bool = False
    # Mixture of experts: routed experts of width moe_intermediate_size (default intermediate_size),
    # a shared MLP of width shared_expert_intermediate_size beside them (Qwen2-MoE adds a sigmoid
    # gate to it), and dense layers of width intermediate_size: the first `first_dense_layers`,
    # those listed in dense_layers, and all but every moe_layer_step-th.
    moe_intermediate_size: int | None = None
    shared_expert_intermediate_size: int | None = None
    shared_expert_gate: bool = False
    router_bias: bool = False  # a bias on the router (gpt-oss)
    router_score_bias: bool = False  # an expert-score correction bias parameter (ERNIE 4.5: 1 x experts)
    # The routing weights reach the experts in fp32 (Mixtral's, DeepSeek's and GLM's routers),
    # not in the model's dtype (Qwen, ERNIE, Granite, gpt-oss): the weighted expert outputs
    # take their dtype.
    router_fp32: bool = False
    # Every token runs through every expert (scored zero where it is not routed): transformers'
    # Llama 4 experts are batched matmuls over all of them, not grouped GEMMs over the routed.
    moe_all_experts: bool = False
    rope_fp32: bool = False  # RoPE computed in fp32 and cast back (ERNIE 4.5)
    first_dense_layers: int = 0
    moe_layer_step: int = 1
    dense_layers: tuple[int, ...] = ()
    # Multi-head latent attention (DeepSeek-V2/V3): q through a rank-q_lora_rank bottleneck (or a
    # plain projection when None), keys and values from one latent of kv_lora_rank plus a shared
    # rotary key of qk_rope_head_dim; heads of qk_nope + qk_rope for q/k and v_head_dim for v.
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    qk_nope_head_dim: int | None = None
    v_head_dim: int | None = None
    conv_kernel: int | None = None  # `conv` and `linear` layers: the depthwise kernel (conv_L_cache, linear_conv_kernel_dim)
    conv_bias: bool = False
    # Gated DeltaNet (`linear` layers, Qwen3.5/3.6): key heads x key_head_dim for q and k, value
    # heads x value_head_dim for v, the output gate z and the recurrent state (value heads x
    # key_head_dim x value_head_dim per sequence).
    linear_key_heads: int | None = None
    linear_value_heads: int | None = None
    linear_key_head_dim: int | None = None
    linear_value_head_dim: int | None = None
    # Qwen3-Next's layout: q, k, v and z from one projection (in_proj_qkvz, grouped by key head) and
    # b, a from another (in_proj_ba), both kept alive through the layer; Qwen3.5 has four.
    linear_fused_proj: bool = False
    # Gated attention (Qwen3.5/3.6, Qwen3-Next): q_proj also makes a per-element sigmoid gate of
    # the attention output (2 x q_dim outputs).
    attn_output_gate: bool = False
    # Multi-token-prediction layers the checkpoint carries for speculative decoding (Qwen3.5/3.6:
    # one): not in the text model's count; a serving engine's MTP drafter runs them as attention
    # layers with their own KV cache.
    mtp_layers: int = 0
    # A multimodal checkpoint's vision encoder and projector, which the cards' text model does not
    # count (num_params) and transformers' CausalLM path does not build, but a serving engine loads
    # in the model's dtype: their parameters, and of those the ones every TP rank holds whole
    # (benchmarks/serve/multimodal-weights.md).
    vision_params: int = 0
    vision_replicated_params: int = 0
    # The vision encoder's width and the layer count its config names num_hidden_layers (None: the
    # config has no such key; Qwen3.5's says depth), which SGLang's default memory fraction reads.
    vision_hidden_size: int | None = None
    vision_layers: int | None = None
    # The dummy image of vLLM's multimodal profile run (benchmarks/serve/vllm-multimodal-profile.md):
    # the embeddings it becomes and the pixel values it is fed as (tiles x 3 x height x width), at
    # the processor's defaults. Unset: the profile's image inputs are not modelled.
    mm_tokens_per_image: int | None = None
    mm_image_pixels: int | None = None
    # The rows of each rotary cos/sin cache a serving engine builds, one per distinct RoPE setting
    # (default: one of max_position_embeddings rows). vLLM's linear RoPE scaling by f builds
    # max_position x f rows: Gemma 3's full-attention layers (f = 8) beside its sliding ones.
    rope_cache_rows: tuple[int, ...] = ()
    # Dimensions of each head the rotary embedding turns (partial_rotary_factor x head_dim: Qwen3.5's
    # 64 of 256); None: all of them. A serving engine's cos/sin cache has this many columns.
    rotary_dim: int | None = None
    # A pre-quantized checkpoint (config.json's quantization_config): the storage format of its
    # linear layers (llmcalc.precision), the default when --dtype is not given, and the modules it
    # leaves in 16 bits (modules_to_not_convert, ignore: Hugging Face module paths, `re:` regexes).
    quantization: str | None = None
    quant_skip: tuple[str, ...] = ()
    path: str = ""  # where the card was loaded from (not a YAML key)
    notes: tuple[str, ...] = ()  # what loading it assumed or found (not a YAML key): printed as warnings

    # --- derived shapes -------------------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def dim_head(self) -> int:
        if self.is_mla:  # the query/key head: the non-rotary and rotary parts
            return (self.qk_nope_head_dim or 0) + (self.qk_rope_head_dim or 0)
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def k_dim(self) -> int:
        """Width of the keys attention reads (and transformers caches) per token."""
        return self.num_heads * self.dim_head if self.is_mla else self.kv_dim

    @property
    def v_dim(self) -> int:
        """Width of the values attention reads (and transformers caches) per token."""
        return self.num_heads * (self.v_head_dim or 0) if self.is_mla else self.kv_dim

    @property
    def cache_widths(self) -> tuple[int, int]:
        """What a KV cache keeps per token and layer, as (key, value) widths: kv_dim each, or under
        MLA the normalised latent (kv_lora_rank) and the shared rotary key (qk_rope_head_dim),
        which transformers 5 caches as a serving engine does, expanding every head's key and
        value from them at each forward (modeling_deepseek_v2.py: past_key_values.update(k_nope,
        k_pe) "while the latent KV is still compressed", then expand_kv)."""
        if self.is_mla:
            return self.kv_lora_rank or 0, self.qk_rope_head_dim or 0
        return self.kv_dim, self.kv_dim

    @property
    def q_dim(self) -> int:  # width of the query projection
        return self.num_heads * self.dim_head

    @property
    def kv_dim(self) -> int:  # width of one of the key / value projections
        return self.kv_heads * self.dim_head

    @property
    def linear_conv_dim(self) -> int:
        """Channels of a Gated DeltaNet layer's causal conv (and its cached state): q, k and v."""
        return 2 * (self.linear_key_heads or 0) * (self.linear_key_head_dim or 0) + self.linear_value_dim

    @property
    def linear_value_dim(self) -> int:
        return (self.linear_value_heads or 0) * (self.linear_value_head_dim or 0)

    @property
    def linear_state_elements(self) -> int:
        """A Gated DeltaNet layer's recurrent state per sequence: value heads x key dim x value dim."""
        return self.linear_value_dim * (self.linear_key_head_dim or 0)

    @property
    def is_moe(self) -> bool:
        return bool(self.num_experts)

    @property
    def sliding_layers(self) -> int:
        """Layers whose KV cache is capped at the sliding window."""
        return sum(1 for spec in self.layer_specs if spec.mixer == "sliding")

    @property
    def shortest_window(self) -> int | None:
        """The shortest sliding or chunked attention window, None where every layer sees every
        position: past it transformers builds an explicit mask for SDPA."""
        return min(filter(None, (self.sliding_window if self.sliding_layers else None, self.attention_chunk_size)),
                   default=None)

    @cached_property
    def layer_specs(self) -> tuple[LayerSpec, ...]:
        """What each layer is: its token mixer (LAYER_TYPES) and whether its MLP is routed."""
        if self.layer_types:
            mixers = [self.layer_types[i % len(self.layer_types)] for i in range(self.num_layers)]
        elif self.sliding_window and self.sliding_window_pattern:  # every Nth layer global
            mixers = ["full" if (i + 1) % self.sliding_window_pattern == 0 else "sliding"
                      for i in range(self.num_layers)]
        else:
            mixers = ["sliding" if self.sliding_window else "full"] * self.num_layers
        dense = set(self.dense_layers)
        return tuple(LayerSpec(m, self.is_moe and i >= self.first_dense_layers and i not in dense
                               and (i + 1) % self.moe_layer_step == 0)
                     for i, m in enumerate(mixers))

    @cached_property
    def layer_groups(self) -> tuple[tuple[int, ModelCard], ...]:
        """The layers grouped by kind, in order of first appearance: (count, a card whose every
        layer is of that kind). The per-layer formulas of the memory and speed models read one
        homogeneous card; a model that mixes kinds is the sum (or maximum) over its groups."""
        counts: dict[LayerSpec, int] = {}
        for spec in self.layer_specs:
            counts[spec] = counts.get(spec, 0) + 1
        if len(counts) == 1 and not self.first_dense_layers and not self.dense_layers and self.moe_layer_step == 1 \
                and not self.layer_types and (self.moe_intermediate_size in (None, self.intermediate_size)):
            return ((self.num_layers, self),)  # one kind of layer, nothing to resolve: the card itself
        return tuple((n, self._group_card(spec, n)) for spec, n in counts.items())

    def _group_card(self, spec: LayerSpec, count: int) -> ModelCard:
        window = {"sliding": self.sliding_window, "chunked": self.attention_chunk_size}.get(spec.mixer)
        moe: dict[str, Any] = {} if spec.moe else {"num_experts": None, "experts_per_token": None,
                                                    "shared_expert_intermediate_size": None,
                                                    "shared_expert_gate": False}
        return replace(
            self, num_layers=count, layer_types=(spec.mixer,), sliding_window=window, sliding_window_pattern=None,
            attention_chunk_size=None, first_dense_layers=0, moe_layer_step=1, dense_layers=(),
            intermediate_size=(self.moe_intermediate_size or self.intermediate_size) if spec.moe
            else self.intermediate_size, moe_intermediate_size=None, **moe)

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


_ATTENTION_PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "q_a_proj", "q_b_proj", "kv_a_proj",
                          "kv_b_proj"}


def hf_module_path(p: Param) -> str:
    """The Hugging Face module path of a decoder linear, as quantization configs name modules
    (model.layers.3.self_attn.q_proj, model.layers.3.mlp.experts.5.up_proj, ...)."""
    if p.layer is None:
        return p.name
    rest = p.name.split(".", 2)[2]
    head = rest.split(".")[0]
    if head == "linear_attn":  # Gated DeltaNet's parameters carry their module's name
        return f"model.layers.{p.layer}.{rest}"
    if head in _ATTENTION_PROJECTIONS:
        section = "self_attn"
    elif head in ("in_proj", "out_proj"):
        section = "conv"
    else:
        section = "mlp"
    return f"model.layers.{p.layer}.{section}.{rest}"


def skipped(p: Param, patterns: tuple[str, ...]) -> bool:
    """Whether a quantization config's not-converted list names this parameter's module: a
    module path or its parent (with or without `model.`; a multimodal model's
    `model.language_model.` prefix read as `model.`), a `re:` regex (compressed-tensors) or a
    glob (ModelOpt's `*`)."""
    path = hf_module_path(p)
    for pattern in patterns:
        if pattern.startswith("re:"):
            if re.match(pattern[3:], path):
                return True
            continue
        pattern = pattern.replace("model.language_model.", "model.")
        if "*" in pattern or "?" in pattern:
            if any(fnmatch.fnmatchcase(path, q) for q in (pattern, "model." + pattern)):
                return True
        elif any(path == q or path.startswith(q + ".") for q in (pattern, "model." + pattern)):
            return True
    return False


class LayerSpec(NamedTuple):
    """One decoder layer's kind: its token mixer and whether its MLP is a routed MoE."""

    mixer: str  # LAYER_TYPES
    moe: bool


class Param(NamedTuple):
    """One parameter tensor. Linear weights are (out_features, in_features)."""

    name: str
    shape: tuple[int, ...]
    kind: str  # linear | bias | norm | embedding | position_embedding | lm_head | router | conv | sinks | frozen
    layer: int | None = None

    @property
    def numel(self) -> int:
        return prod(self.shape)


def parameter_tensors(card: ModelCard) -> list[Param]:
    """Every parameter tensor the transformers implementation of the card creates, in order
    (transformers 5 stores an MoE layer's experts fused, experts x out x in: listed per expert
    here, the same elements)."""
    h, v = card.hidden_size, card.vocab_size
    params = [Param("embed_tokens", (v, h), "embedding")]
    if card.position_embedding == "learned":
        params.append(Param("embed_positions", (card.max_position_embeddings, h), "position_embedding"))
    for layer, spec in enumerate(card.layer_specs):
        lp = _mixer_params(card, spec.mixer) + _mlp_params(card, spec.moe)
        lp += [Param(f"norm{n}.{j}", shape, "norm") for n in range(card.norms_per_layer)
               for j, shape in enumerate(_norm_shapes(card, h))]
        params += [Param(f"layers.{layer}.{p.name}", p.shape, p.kind, layer) for p in lp]
    params += [Param(f"final_norm.{j}", shape, "norm") for j, shape in enumerate(_norm_shapes(card, h))]
    if not card.tie_word_embeddings:
        params.append(Param("lm_head", (v, h), "lm_head"))
        if card.lm_head_bias:
            params.append(Param("lm_head.bias", (v,), "bias"))
    return params


def _norm_shapes(card: ModelCard, width: int) -> list[tuple[int, ...]]:
    return [(width,), (width,)] if card.norm == "layernorm" else [(width,)]  # weight (+ bias)


def _linear(name: str, out: int, inp: int, bias: bool) -> list[Param]:
    return [Param(name, (out, inp), "linear")] + ([Param(name + ".bias", (out,), "bias")] if bias else [])


def _mixer_params(card: ModelCard, mixer: str) -> list[Param]:
    h = card.hidden_size
    if mixer == "conv":
        # LFM2's short convolution: in_proj to B, C and x (3h), a depthwise conv over the
        # sequence (h x 1 x kernel), out_proj.
        k = card.conv_kernel or 0
        return (_linear("in_proj", 3 * h, h, card.conv_bias) + [Param("conv", (h, 1, k), "conv")]
                + ([Param("conv.bias", (h,), "bias")] if card.conv_bias else []) + _linear("out_proj", h, h, card.conv_bias))
    if mixer == "linear":
        # Gated DeltaNet (modeling_qwen3_5.py Qwen3_5GatedDeltaNet): in_proj_qkv to q, k (key
        # heads x key dim each) and v (value heads x value dim), in_proj_z to the output gate,
        # in_proj_b and in_proj_a to one scalar per value head (beta, the decay's input), a
        # depthwise causal conv over q, k, v without bias, dt_bias and A_log per value head, a
        # gated RMSNorm of value_head_dim, out_proj.
        conv, vdim, vh = card.linear_conv_dim, card.linear_value_dim, card.linear_value_heads or 0
        projections = (_linear("in_proj_qkvz", conv + vdim, h, False) + _linear("in_proj_ba", 2 * vh, h, False)
                       if card.linear_fused_proj else
                       _linear("in_proj_qkv", conv, h, False) + _linear("in_proj_z", vdim, h, False)
                       + _linear("in_proj_b", vh, h, False) + _linear("in_proj_a", vh, h, False))
        lp = (projections
              + [Param("conv1d", (conv, 1, card.conv_kernel or 0), "conv"), Param("dt_bias", (vh,), "norm"),
                 Param("A_log", (vh,), "norm"), Param("norm", (card.linear_value_head_dim or 0,), "norm")]
              + _linear("out_proj", h, vdim, False))
        return [p._replace(name="linear_attn." + p.name) for p in lp]
    lp: list[Param] = []
    if card.attention_sinks:
        lp.append(Param("sinks", (card.num_heads,), "sinks"))
    if card.is_mla:
        # DeepSeek-V2/V3 (modeling_deepseek_v3.py): q_a -> norm -> q_b, or one q_proj; kv_a makes the
        # latent and the shared rotary key, kv_b expands the latent to every head's k_nope and v.
        r = card.qk_rope_head_dim or 0
        latent, heads = card.kv_lora_rank or 0, card.num_heads
        if card.q_lora_rank:
            lp += [Param("q_a_proj", (card.q_lora_rank, h), "linear"), Param("q_a_norm", (card.q_lora_rank,), "norm"),
                   Param("q_b_proj", (card.q_dim, card.q_lora_rank), "linear")]
        else:
            lp.append(Param("q_proj", (card.q_dim, h), "linear"))
        lp += [Param("kv_a_proj", (latent + r, h), "linear"), Param("kv_a_norm", (latent,), "norm"),
               Param("kv_b_proj", (heads * ((card.qk_nope_head_dim or 0) + (card.v_head_dim or 0)), latent), "linear"),
               Param("o_proj", (h, heads * (card.v_head_dim or 0)), "linear")]
        return lp
    if card.fused_qkv:
        lp += _linear("qkv_proj", card.q_dim + 2 * card.kv_dim, h, card.qkv_bias)
    else:
        q_out = 2 * card.q_dim if card.attn_output_gate else card.q_dim  # the gate's half
        for proj, out in (("q_proj", q_out), ("k_proj", card.kv_dim), ("v_proj", card.kv_dim)):
            lp += _linear(proj, out, h, card.qkv_bias)
    lp += _linear("o_proj", h, card.q_dim, card.o_bias)
    if card.qk_norm in ("head", "full"):
        q, k = (card.dim_head, card.dim_head) if card.qk_norm == "head" else (card.q_dim, card.kv_dim)
        lp += [Param("q_norm", (q,), "norm"), Param("k_norm", (k,), "norm")]
    return lp


def _mlp_params(card: ModelCard, moe: bool) -> list[Param]:
    h = card.hidden_size
    if not moe:
        return _mlp(card, "", card.intermediate_size)
    experts = card.num_experts or 0
    lp = [Param("router", (experts, h), "router")]
    if card.router_bias:
        lp.append(Param("router.bias", (experts,), "router"))
    if card.router_score_bias:
        lp.append(Param("router.score_bias", (1, experts), "frozen"))  # requires_grad=False in transformers
    for e in range(experts):
        lp += _mlp(card, f"experts.{e}.", card.moe_intermediate_size or card.intermediate_size)
    if card.shared_expert_intermediate_size:
        lp += _mlp(card, "shared_expert.", card.shared_expert_intermediate_size)
        if card.shared_expert_gate:
            lp.append(Param("shared_expert_gate", (1, h), "router"))
    return lp


def _mlp(card: ModelCard, prefix: str, i: int) -> list[Param]:
    h, bias = card.hidden_size, card.mlp_bias
    if card.mlp == "gated":
        lp = _linear(prefix + "gate_proj", i, h, bias) + _linear(prefix + "up_proj", i, h, bias)
    else:
        lp = _linear(prefix + "fc_in", i, h, bias)
    return lp + _linear(prefix + "down_proj", h, i, bias)


# --- loading and validation ---------------------------------------------------------------

_CARD_FIELDS = {f.name: f for f in fields(ModelCard) if f.name not in ("path", "notes")}
_REQUIRED = [n for n, f in _CARD_FIELDS.items() if f.default is MISSING]
_POSITIVE_INTS = (
    "hidden_size intermediate_size num_layers num_heads vocab_size max_position_embeddings "
    "num_kv_heads head_dim norms_per_layer num_experts experts_per_token sliding_window "
    "sliding_window_pattern attention_chunk_size moe_intermediate_size shared_expert_intermediate_size "
    "moe_layer_step q_lora_rank kv_lora_rank qk_rope_head_dim qk_nope_head_dim v_head_dim conv_kernel "
    "mm_tokens_per_image mm_image_pixels linear_key_heads linear_value_heads linear_key_head_dim linear_value_head_dim "
    "rotary_dim vision_hidden_size vision_layers"
).split()
_NON_NEGATIVE_INTS = ("first_dense_layers", "vision_params", "vision_replicated_params", "mtp_layers")
_POSITIVE_NUMBERS = ("final_logit_softcapping",)
_BOOLS = ("tie_word_embeddings qkv_bias o_bias mlp_bias fused_qkv attention_sinks sdpa lm_head_bias post_norm "
          "shared_expert_gate router_bias router_score_bias conv_bias router_fp32 moe_all_experts rope_fp32 attn_output_gate linear_fused_proj").split()
_LISTS: dict[str, tuple[str, ...] | None] = {"layer_types": LAYER_TYPES, "dense_layers": None, "quant_skip": (),
                                             "rope_cache_rows": None}
# lists: of these choices, of layer indices (None), or of strings (())
_CHOICES: dict[str, tuple[str, ...]] = {
    "family": FAMILIES,
    "mlp": MLP_KINDS,
    "norm": NORMS,
    "position_embedding": POSITION_EMBEDDINGS,
    "activation": ACTIVATIONS,
    "qk_norm": QK_NORMS,
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
    for key in _NON_NEGATIVE_INTS:
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            problems.append(f"{key}: must be zero or a positive integer, got {value!r}")
    for key, choices in _LISTS.items():
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, (list, tuple)) or (not value and choices):
            problems.append(f"{key}: must be a list, got {value!r}")
        elif choices and any(x not in choices for x in value):
            problems.append(f"{key}: entries must be among {', '.join(choices)}, got {list(value)!r}")
        elif choices == () and any(not isinstance(x, str) for x in value):
            problems.append(f"{key}: entries must be strings, got {list(value)!r}")
        elif choices is None and any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in value):
            problems.append(f"{key}: entries must be layer indices (integers from 0), got {list(value)!r}")
    for key in _BOOLS:
        if key in data and data[key] is not None and not isinstance(data[key], bool):
            problems.append(f"{key}: must be true or false, got {data[key]!r}")
    for key, choices in _CHOICES.items():
        if key in data and data[key] not in choices:
            problems.append(f"{key}: must be one of {', '.join(choices)}, got {data[key]!r}")
    if data.get("quantization") is not None:
        try:
            store = PRECISIONS[str(data["quantization"])]
            if store.is_float:
                problems.append(f"quantization: {data['quantization']} is not a quantized format")
        except KeyError:
            problems.append(f"quantization: unknown format {data['quantization']!r}")
    if not problems:
        problems += _shape_problems(data)
    if problems:
        raise InputError(f"{path}: " + "; ".join(problems))
    values: dict[str, Any] = {k: tuple(v) if k in _LISTS else v for k, v in data.items()
                              if v is not None or _CARD_FIELDS[k].default is None}
    return ModelCard(**values, path=path)


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
    mla = [k for k in ("kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim") if d.get(k)]
    if mla and len(mla) < 4:
        problems.append("kv_lora_rank, qk_rope_head_dim, qk_nope_head_dim, v_head_dim: give all four (MLA) or none")
    if d.get("q_lora_rank") and not mla:
        problems.append("q_lora_rank: needs kv_lora_rank (MLA)")
    types = d.get("layer_types") or ()
    if "sliding" in types and not d.get("sliding_window"):
        problems.append("layer_types: sliding layers need sliding_window")
    if "chunked" in types and not d.get("attention_chunk_size"):
        problems.append("layer_types: chunked layers need attention_chunk_size")
    if "conv" in types and not d.get("conv_kernel"):
        problems.append("layer_types: conv layers need conv_kernel")
    linear = ("conv_kernel", "linear_key_heads", "linear_value_heads", "linear_key_head_dim", "linear_value_head_dim")
    if "linear" in types and not all(d.get(k) for k in linear):
        problems.append("layer_types: linear layers need " + ", ".join(linear))
    elif "linear" in types and d["linear_value_heads"] % d["linear_key_heads"]:
        problems.append(f"linear_key_heads: {d['linear_key_heads']} does not divide linear_value_heads "
                        f"{d['linear_value_heads']}")
    moe_keys = [k for k in ("moe_intermediate_size", "shared_expert_intermediate_size") if d.get(k)]
    if moe_keys and not d.get("num_experts"):
        problems.append(f"{', '.join(moe_keys)}: needs num_experts")
    return problems


def load_card_file(path: Path) -> ModelCard:
    """A YAML card (config.json files go through llmcalc.resolve)."""
    try:
        data = load_yaml(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except YamlError as exc:
        where = f" (line {exc.line})" if exc.line else ""
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
