"""Hugging Face config.json <-> ModelCard, as plain dicts (no transformers import here).

`card_from_hf_config` lets MODEL be a private or offline model's config.json; `to_hf_config`
gives the keyword arguments transformers needs to build the card (profiler, parameter tests).
Defaults mirror the transformers configuration classes of each family (v5).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from llmcalc.cards import FAMILIES, ModelCard, card_from_mapping
from llmcalc.errors import InputError

# model_type in config.json -> family. Falcon's first checkpoints said "RefinedWebModel"; the
# multimodal Gemma 3 and Llama 4 configs hold their language model under text_config (only the
# text model is counted: the vision tower is not).
MODEL_TYPES = {f: f for f in FAMILIES} | {"RefinedWebModel": "falcon", "RefinedWeb": "falcon",
                                          "gemma3_text": "gemma3", "llama4_text": "llama4",
                                          "qwen3_5_text": "qwen3_5", "qwen3_5_moe_text": "qwen3_5_moe"}
NESTED_TEXT = ("gemma3", "llama4", "qwen3_5", "qwen3_5_moe")
# tie_word_embeddings when config.json does not say (the transformers config class defaults).
TIE_DEFAULT = {"gemma2": True, "gpt2": True, "falcon": True, "gemma3": True, "smollm3": True, "cohere2": True,
               "ernie4_5": True, "ernie4_5_moe": True, "lfm2": True}


def card_from_hf_config(config: Any, source: str, as_family: str | None = None) -> ModelCard:
    """A card from a config.json's mapping. `as_family` reads it as that family's config (a
    fine-tune that renamed a known architecture)."""
    if not isinstance(config, Mapping):
        raise InputError(f"{source}: a config.json must hold a JSON object")
    model_type = config.get("model_type")
    if as_family is not None and as_family not in FAMILIES:
        raise InputError(f"--as-family: unknown family {as_family!r}; supported: {', '.join(FAMILIES)}")
    family = as_family or MODEL_TYPES.get(str(model_type))
    if family is None:
        raise InputError(
            f"{source}: model_type {model_type!r} is not supported; supported: {', '.join(FAMILIES)}"
            " (--as-family NAME reads it as one of them)"
        )
    c = dict(config)
    if family in NESTED_TEXT and isinstance(c.get("text_config"), Mapping):
        c = {"_name_or_path": c.get("_name_or_path"), "tie_word_embeddings": c.get("tie_word_embeddings")} \
            | dict(c["text_config"])
        c = {k: v for k, v in c.items() if v is not None}
    try:
        card = _READERS[family](c)
    except KeyError as exc:
        raise InputError(f"{source}: missing key {exc.args[0]!r} for model_type {model_type!r}") from None
    name = str(c.get("_name_or_path") or source).rstrip("/").split("/")[-1] or "config"
    card = {"name": name, "family": family, "source": source} | {k: v for k, v in card.items() if v is not None}
    vision = config.get("vision_config")
    if family in _VISION and isinstance(vision, Mapping):
        card["vision_params"] = _VISION[family](vision)
        card["vision_hidden_size"] = int(vision.get("hidden_size", 1152))
        card["vision_layers"] = vision.get("num_hidden_layers")
    qc = config.get("quantization_config") or config.get("compression_config")
    if isinstance(qc, Mapping):
        card |= quantization_from_config(qc, source)
    card.setdefault("tie_word_embeddings", c.get("tie_word_embeddings", TIE_DEFAULT.get(family, False)))
    return card_from_mapping(card, source)


def _llama_like(c: dict[str, Any]) -> dict[str, Any]:
    return {
        "hidden_size": c["hidden_size"],
        "intermediate_size": c["intermediate_size"],
        "num_layers": c["num_hidden_layers"],
        "num_heads": c["num_attention_heads"],
        "num_kv_heads": c.get("num_key_value_heads"),
        "head_dim": c.get("head_dim"),
        "vocab_size": c["vocab_size"],
        "max_position_embeddings": c.get("max_position_embeddings", 2048),
        "activation": c.get("hidden_act", "silu"),
    }


def _llama(c: dict[str, Any]) -> dict[str, Any]:
    bias = bool(c.get("attention_bias", False))
    return _llama_like(c) | {"qkv_bias": bias, "o_bias": bias, "mlp_bias": bool(c.get("mlp_bias", False))}


def _mistral(c: dict[str, Any]) -> dict[str, Any]:
    return _llama_like(c) | {"sliding_window": c.get("sliding_window")}


def _mixtral(c: dict[str, Any]) -> dict[str, Any]:
    return _mistral(c) | {"num_experts": c["num_local_experts"], "experts_per_token": c["num_experts_per_tok"],
                          "router_fp32": True}


def _qwen2(c: dict[str, Any]) -> dict[str, Any]:
    window = c.get("sliding_window") if c.get("use_sliding_window") else None
    return _llama_like(c) | {"qkv_bias": True, "sliding_window": window}


def _phi3(c: dict[str, Any]) -> dict[str, Any]:
    return _mistral(c) | {"fused_qkv": True}


def _gemma2(c: dict[str, Any]) -> dict[str, Any]:
    return _llama_like(c) | {
        "activation": c.get("hidden_activation") or c.get("hidden_act") or "gelu_pytorch_tanh",
        "norms_per_layer": 4,
        "norm": "rmsnorm_fp32",
        "final_logit_softcapping": c.get("final_logit_softcapping", 30.0),
        "sliding_window": c.get("sliding_window", 4096),
        "sliding_window_pattern": 2,
    }


def _gpt2(c: dict[str, Any]) -> dict[str, Any]:
    h = c.get("n_embd", 768)
    return {
        "hidden_size": h,
        "intermediate_size": c.get("n_inner") or 4 * h,
        "num_layers": c.get("n_layer", 12),
        "num_heads": c.get("n_head", 12),
        "vocab_size": c.get("vocab_size", 50257),
        "max_position_embeddings": c.get("n_positions", 1024),
        "activation": c.get("activation_function", "gelu_new"),
        "mlp": "plain", "norm": "layernorm", "position_embedding": "learned", "fused_qkv": True,
        "qkv_bias": True, "o_bias": True, "mlp_bias": True,
    }


def _falcon(c: dict[str, Any]) -> dict[str, Any]:
    h, heads = c["hidden_size"], c["num_attention_heads"]
    new_arch = bool(c.get("new_decoder_architecture", False))
    if new_arch:
        kv = c.get("num_kv_heads", heads)
    else:
        kv = 1 if c.get("multi_query", True) else heads
    bias = bool(c.get("bias", False))
    return {
        "hidden_size": h,
        "intermediate_size": c.get("ffn_hidden_size") or 4 * h,
        "num_layers": c.get("num_hidden_layers", c.get("n_layer")),
        "num_heads": heads,
        "num_kv_heads": kv,
        "vocab_size": c["vocab_size"],
        "max_position_embeddings": c.get("max_position_embeddings", 2048),
        "activation": "gelu", "mlp": "plain", "norm": "layernorm", "fused_qkv": True,
        "norms_per_layer": 2 if new_arch or not c.get("parallel_attn", True) else 1,
        "position_embedding": "alibi" if c.get("alibi") else "rope",
        "qkv_bias": bias, "o_bias": bias, "mlp_bias": bias,
    }


# --- pre-quantized checkpoints ---------------------------------------------------------------

def quantization_from_config(qc: Mapping[str, Any], source: str) -> dict[str, Any]:
    """config.json's quantization_config -> the card's `quantization` (a format of
    llmcalc.precision) and `quant_skip` (the modules it leaves unquantized). Formats and what each
    stores: docs/models.md."""
    method = str(qc.get("quant_method", "")).lower()
    skip = list(qc.get("modules_to_not_convert") or qc.get("ignore") or qc.get("exclude_modules")
                or qc.get("llm_int8_skip_modules") or [])
    fmt: str | None = None
    if method == "awq" and qc.get("bits", 4) == 4:
        fmt = f"awq-int4-g{_group(qc.get('group_size', 128))}"
    elif method == "gptq" and qc.get("bits", 4) in (4, 8):
        fmt = f"gptq-int{qc.get('bits', 4)}-g{_group(qc.get('group_size', 128))}"
    elif method == "bitsandbytes":
        if qc.get("load_in_4bit"):
            fmt = "nf4-dq" if qc.get("bnb_4bit_use_double_quant") else "nf4"  # fp4 stores the same bytes
        elif qc.get("load_in_8bit"):
            fmt = "int8"
    elif method == "fp8":  # transformers' FineGrainedFP8 (DeepSeek-V3, Qwen3-FP8)
        fmt = "fp8-block" if qc.get("weight_block_size") else "fp8"
    elif method == "mxfp4":
        fmt = "mxfp4"
    elif method == "modelopt":
        algo = str(qc.get("quant_algo", "")).upper()
        fmt = {"NVFP4": "nvfp4", "FP8": "fp8"}.get(algo)
    elif method == "compressed-tensors":
        fmt = _compressed_tensors(qc)
    elif method in ("auto-round", "intel/auto-round", "auto_round"):
        # Intel's AutoRound (vLLM's INC / auto_round loader): integers packed as GPTQ's (or AWQ's)
        # qweight, scales and zeros per group; extra_config names the modules left at 16 bits
        # (a module path or a regex), block_name_to_quantize the only blocks quantized
        packing = str(qc.get("packing_format", "auto_round:auto_gptq"))
        bits = qc.get("bits", 4)
        if str(qc.get("data_type", "int")) == "int" and bits in (4, 8):
            fmt = (f"awq-int4-g{_group(qc.get('group_size', 128))}" if "awq" in packing and bits == 4
                   else f"gptq-int{bits}-g{_group(qc.get('group_size', 128))}")
        extra = qc.get("extra_config") or {}
        skip += [name if re.fullmatch(r"[\w.]+", name) else f"re:{name}" for name, cfg in extra.items()
                 if isinstance(cfg, Mapping) and (cfg.get("bits") or bits) >= 16]
        blocks = qc.get("block_name_to_quantize") or qc.get("to_quant_block_names")
        if isinstance(blocks, str):
            blocks = blocks.split(",")
        if blocks:
            # outside the quantized blocks (lm_head; the embeddings are never quantized)
            skip.append("lm_head")
    if fmt is None:
        raise InputError(f"{source}: quantization_config {dict(qc).get('quant_method')!r} "
                         f"({_describe(qc)}) is not modelled; pass --dtype to say how the weights are stored")
    return {"quantization": fmt, "quant_skip": [str(m) for m in skip] or None}


def _group(size: Any) -> int:
    return 0 if size in (-1, None) else int(size)  # -1: one group per row


def _compressed_tensors(qc: Mapping[str, Any]) -> str | None:
    """The first config group's weight scheme (llm-compressor writes one per scheme)."""
    groups = qc.get("config_groups") or {}
    weights = next((g.get("weights") for g in groups.values() if isinstance(g, Mapping) and g.get("weights")), None)
    if not isinstance(weights, Mapping):
        return None
    bits, kind, strategy = weights.get("num_bits"), weights.get("type"), weights.get("strategy")
    if kind == "float" and bits == 4:
        return "nvfp4"
    if kind == "float" and bits == 8:
        return {"channel": "fp8-channel", "block": "fp8-block"}.get(str(strategy), "fp8")
    if kind == "int" and bits == 8 and strategy == "channel":
        return "int8-channel"
    if kind == "int" and bits == 4 and strategy in ("group", "channel") and weights.get("symmetric", True):
        return f"w4a16-g{_group(weights.get('group_size') if strategy == 'group' else -1)}"
    return None


def _describe(qc: Mapping[str, Any]) -> str:
    keys = ("bits", "group_size", "quant_algo", "format", "load_in_4bit", "load_in_8bit")
    return ", ".join(f"{k}={qc[k]}" for k in keys if k in qc) or "no details"


# --- the 2025-26 families (transformers 5 configuration classes; defaults as theirs) ----------

def _layer_types(c: dict[str, Any], rope_off: list[int] | None = None) -> list[str] | None:
    """config.json's layer_types (full_attention, sliding_attention, chunked_attention,
    conv/linear...) in the card's names; a global layer without rotary embeddings is `nope`."""
    names = {"full_attention": "full", "sliding_attention": "sliding", "chunked_attention": "chunked", "conv": "conv"}
    types = c.get("layer_types")
    if not types:
        return None
    out = [names.get(t, t) for t in types]
    for i in rope_off or []:
        if out[i] == "full":
            out[i] = "nope"
    return None if set(out) == {"full"} else out


def _qwen3(c: dict[str, Any]) -> dict[str, Any]:
    return _qwen2(c) | {"qkv_bias": bool(c.get("attention_bias", False)), "o_bias": bool(c.get("attention_bias", False)),
                        "qk_norm": "head", "head_dim": c.get("head_dim", 128)}


def _qwen_moe(c: dict[str, Any]) -> dict[str, Any]:
    return {"num_experts": c.get("num_experts") or c["num_local_experts"],
            "experts_per_token": c["num_experts_per_tok"],
            "moe_intermediate_size": c["moe_intermediate_size"],
            "moe_layer_step": c.get("decoder_sparse_step", 1),
            "dense_layers": list(c.get("mlp_only_layers") or []) or None}


def _qwen2_moe(c: dict[str, Any]) -> dict[str, Any]:
    shared = c.get("shared_expert_intermediate_size")
    return _qwen2(c) | {"qkv_bias": bool(c.get("qkv_bias", True))} | _qwen_moe(c) | {
        "shared_expert_intermediate_size": shared, "shared_expert_gate": bool(shared)}


def _qwen3_moe(c: dict[str, Any]) -> dict[str, Any]:
    return _qwen3(c) | _qwen_moe(c)


def _gemma3(c: dict[str, Any]) -> dict[str, Any]:
    c = {"vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
         "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "max_position_embeddings": 131072} | c
    types = _layer_types(c)
    if types is None and c.get("sliding_window_pattern", 6) > 1:  # transformers' default: 5 local : 1 global
        n = c.get("sliding_window_pattern", 6)
        types = ["sliding"] * (n - 1) + ["full"]
    return _gemma2(c) | {"final_logit_softcapping": c.get("final_logit_softcapping"), "qk_norm": "head",
                         "sliding_window": c.get("sliding_window", 4096), "sliding_window_pattern": None,
                         "layer_types": types}


def _llama4(c: dict[str, Any]) -> dict[str, Any]:
    c = {"vocab_size": 202048, "hidden_size": 5120, "intermediate_size": 8192, "intermediate_size_mlp": 16384,
         "num_hidden_layers": 48, "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128,
         "max_position_embeddings": 131072, "num_local_experts": 16, "num_experts_per_tok": 1} | c
    n = c["num_hidden_layers"]
    # no_rope_layers[i] == 0: layer i has no rotary embedding (every 4th by default), and it
    # attends globally; the others attend within chunks of attention_chunk_size.
    rope = c.get("no_rope_layers") or [int((i + 1) % c.get("no_rope_layer_interval", 4) != 0) for i in range(n)]
    types = ["chunked" if r else "nope" for r in rope]
    if c.get("attention_chunk_size") is None:
        types = ["full" if r else "nope" for r in rope]
    step = c.get("interleave_moe_layer_step", 1)
    moe_layers = c.get("moe_layers")
    dense = [i for i in range(n) if i not in moe_layers] if moe_layers is not None else None
    return _llama_like(c) | {
        "intermediate_size": c["intermediate_size_mlp"], "moe_intermediate_size": c["intermediate_size"],
        "num_experts": c["num_local_experts"], "experts_per_token": c["num_experts_per_tok"],
        "shared_expert_intermediate_size": c["intermediate_size"],
        "moe_layer_step": 1 if dense is not None else step, "dense_layers": dense or None,
        "qk_norm": "l2" if c.get("use_qk_norm", True) else None, "layer_types": types, "moe_all_experts": True,
        "attention_chunk_size": c.get("attention_chunk_size", 8192),
        "qkv_bias": bool(c.get("attention_bias", False)), "o_bias": bool(c.get("attention_bias", False))}


def _deepseek(c: dict[str, Any]) -> dict[str, Any]:
    experts = c.get("n_routed_experts")
    return _llama_like(c) | {
        "head_dim": None, "num_kv_heads": None,
        "q_lora_rank": c.get("q_lora_rank"), "kv_lora_rank": c["kv_lora_rank"],
        "qk_rope_head_dim": c["qk_rope_head_dim"], "qk_nope_head_dim": c["qk_nope_head_dim"],
        "v_head_dim": c["v_head_dim"],
        "num_experts": experts, "experts_per_token": c.get("num_experts_per_tok") if experts else None,
        "moe_intermediate_size": c["moe_intermediate_size"] if experts else None,
        "shared_expert_intermediate_size": (c.get("n_shared_experts") or 0) * c["moe_intermediate_size"] or None
        if experts else None,
        "first_dense_layers": c.get("first_k_dense_replace", 0), "moe_layer_step": c.get("moe_layer_freq", 1),
        "router_fp32": bool(experts)}


def _gpt_oss(c: dict[str, Any]) -> dict[str, Any]:
    bias = bool(c.get("attention_bias", True))
    return _llama_like(c) | {
        "head_dim": c.get("head_dim", 64), "qkv_bias": bias, "o_bias": bias, "mlp_bias": True,
        "attention_sinks": True, "sdpa": False, "router_bias": True,
        "num_experts": c["num_local_experts"], "experts_per_token": c.get("num_experts_per_tok") or c["experts_per_token"],
        "sliding_window": c.get("sliding_window", 128),
        "layer_types": _layer_types(c) or ["sliding", "full"]}


def _glm4_moe(c: dict[str, Any]) -> dict[str, Any]:
    return _llama_like(c) | {
        "head_dim": c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"],
        "qkv_bias": bool(c.get("attention_bias", False)), "qk_norm": "head" if c.get("use_qk_norm") else None,
        "num_experts": c["n_routed_experts"], "experts_per_token": c["num_experts_per_tok"],
        "moe_intermediate_size": c["moe_intermediate_size"],
        "shared_expert_intermediate_size": (c.get("n_shared_experts") or 0) * c["moe_intermediate_size"] or None,
        "first_dense_layers": c.get("first_k_dense_replace", 1), "router_fp32": True}


def _olmo2(c: dict[str, Any]) -> dict[str, Any]:
    # post-norms (after attention and after the MLP, none before), q/k normalised over the whole
    # projection; OLMo 2's RMSNorm scales in fp32 and casts last.
    bias = bool(c.get("attention_bias", False))
    return _llama_like(c) | {"qkv_bias": bias, "o_bias": bias, "norm": "rmsnorm_fp32", "qk_norm": "full",
                             "post_norm": True}


def _olmo3(c: dict[str, Any]) -> dict[str, Any]:
    types = _layer_types(c)
    return _olmo2(c) | {"layer_types": types, "sliding_window": c.get("sliding_window", 4096) if types else None}


def _granite(c: dict[str, Any]) -> dict[str, Any]:
    return _llama(c)


def _granitemoe(c: dict[str, Any]) -> dict[str, Any]:
    return _llama(c) | {"num_experts": c["num_local_experts"], "experts_per_token": c["num_experts_per_tok"]}


def _smollm3(c: dict[str, Any]) -> dict[str, Any]:
    n = c["num_hidden_layers"]
    rope = c.get("no_rope_layers") or [int((i + 1) % c.get("no_rope_layer_interval", 4) != 0) for i in range(n)]
    types = ["full" if r else "nope" for r in rope]
    return _llama(c) | {"layer_types": types if "nope" in types else None}


def _phimoe(c: dict[str, Any]) -> dict[str, Any]:
    bias = bool(c.get("attention_bias", False))
    # sparsemixer's routing weights stay in the model's dtype
    return _mixtral(c) | {"norm": "layernorm", "qkv_bias": bias, "o_bias": bias, "router_fp32": False,
                          "lm_head_bias": bool(c.get("lm_head_bias", False))}


def _cohere2(c: dict[str, Any]) -> dict[str, Any]:
    # one LayerNorm (no bias) before attention and MLP, which run in parallel; sliding layers
    # use rotary embeddings, global ones none.
    types = _layer_types(c)
    if types is None:
        n = c.get("sliding_window_pattern", 4)
        types = ["sliding"] * (n - 1) + ["full"]
    bias = bool(c.get("attention_bias", False))
    return _llama_like(c) | {"norm": "layernorm_nobias", "norms_per_layer": 1, "qkv_bias": bias, "o_bias": bias,
                             "sliding_window": c.get("sliding_window", 4096),
                             "layer_types": ["nope" if t == "full" else t for t in types]}


def _ernie4_5(c: dict[str, Any]) -> dict[str, Any]:
    bias = bool(c.get("use_bias", False))
    return _llama_like(c) | {"head_dim": c.get("head_dim", 128), "qkv_bias": bias, "o_bias": bias, "mlp_bias": bias,
                             "rope_fp32": True}


def _ernie4_5_moe(c: dict[str, Any]) -> dict[str, Any]:
    n, start = c["num_hidden_layers"], c.get("moe_layer_start_index", 1)
    end = c.get("moe_layer_end_index", n - 1)
    end = n - 1 if end in (None, -1) else end
    shared = (c.get("moe_num_shared_experts") or 0) * c["moe_intermediate_size"]
    return _ernie4_5(c) | {
        "head_dim": c.get("head_dim"), "num_experts": c["moe_num_experts"], "experts_per_token": c["moe_k"],
        "moe_intermediate_size": c["moe_intermediate_size"], "shared_expert_intermediate_size": shared or None,
        "first_dense_layers": start, "moe_layer_step": c.get("moe_layer_interval", 1),
        "dense_layers": list(range(end + 1, n)) or None, "router_score_bias": True}


def _lfm2(c: dict[str, Any]) -> dict[str, Any]:
    # Lfm2MLP: the width is adjusted to 2/3, times the multiplier, rounded up to a multiple.
    # (The first LFM2 configs named the widths block_ff_dim and block_dim.)
    c = {"intermediate_size": c.get("block_ff_dim"), "hidden_size": c.get("block_dim")} | c
    c = {k: v for k, v in c.items() if v is not None}
    i = c["intermediate_size"]
    if c.get("block_auto_adjust_ff_dim", True):
        i = int(2 * i / 3)
        if c.get("block_ffn_dim_multiplier", 1.0) is not None:
            multiple = c.get("block_multiple_of", 256)
            i = int(c.get("block_ffn_dim_multiplier", 1.0) * i)
            i = multiple * ((i + multiple - 1) // multiple)
    types = _layer_types(c)
    if types is None and c.get("full_attn_idxs") is not None:
        types = ["full" if j in c["full_attn_idxs"] else "conv" for j in range(c["num_hidden_layers"])]
    return _llama_like(c) | {"intermediate_size": i, "qk_norm": "head", "layer_types": types,
                             "conv_kernel": c.get("conv_L_cache", 3), "conv_bias": bool(c.get("conv_bias", False))}


def _qwen3_5(c: dict[str, Any]) -> dict[str, Any]:
    # Qwen3.5 / Qwen3.6 (configuration_qwen3_5.py): Gated DeltaNet layers, every
    # full_attention_interval-th layer a gated attention layer (q_proj doubled, q/k norms);
    # zero-centred RMSNorms computed in fp32 (output * (1 + w.float())).
    c = {"vocab_size": 248320, "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 32,
         "num_attention_heads": 16, "num_key_value_heads": 4, "max_position_embeddings": 32768} | c
    types = c.get("layer_types")
    if not types:
        n = c.get("full_attention_interval", 4)
        types = ["linear_attention" if (i + 1) % n else "full_attention" for i in range(c["num_hidden_layers"])]
    return _llama_like(c) | {
        "head_dim": c.get("head_dim", 256), "qk_norm": "head", "norm": "rmsnorm_fp32",
        "qkv_bias": bool(c.get("attention_bias", False)), "o_bias": bool(c.get("attention_bias", False)),
        "attn_output_gate": bool(c.get("attn_output_gate", True)),
        "layer_types": [{"linear_attention": "linear", "full_attention": "full"}[t] for t in types],
        "conv_kernel": c.get("linear_conv_kernel_dim", 4), "linear_key_heads": c.get("linear_num_key_heads", 16),
        "linear_value_heads": c.get("linear_num_value_heads", 32),
        "linear_key_head_dim": c.get("linear_key_head_dim", 128),
        "linear_value_head_dim": c.get("linear_value_head_dim", 128), "mtp_layers": c.get("mtp_num_hidden_layers", 0),
        "rotary_dim": int(c.get("head_dim", 256) * _partial_rotary(c))}


def _partial_rotary(c: dict[str, Any]) -> float:
    """partial_rotary_factor, at the top of a text config or (transformers 5) in rope_parameters;
    Qwen3.5's default 0.25."""
    rope = c.get("rope_parameters") if isinstance(c.get("rope_parameters"), Mapping) else {}
    return float(c.get("partial_rotary_factor") or rope.get("partial_rotary_factor") or 0.25)


def _qwen3_5_moe(c: dict[str, Any]) -> dict[str, Any]:
    c = {"hidden_size": 2048, "num_hidden_layers": 40, "num_attention_heads": 16, "num_key_value_heads": 2,
         "intermediate_size": c.get("moe_intermediate_size", 512)} | c
    return _qwen3_5(c) | {
        "num_experts": c.get("num_experts", 256), "experts_per_token": c.get("num_experts_per_tok", 8),
        "moe_intermediate_size": c.get("moe_intermediate_size", 512),
        "shared_expert_intermediate_size": c.get("shared_expert_intermediate_size", 512), "shared_expert_gate": True}


def _qwen3_5_vision(v: Mapping[str, Any]) -> int:
    """Qwen3.5/3.6's vision tower (Qwen3_5VisionModel: a Conv3d patch embedding, learned position
    embeddings, ViT blocks with biased qkv/proj and MLP, the 2 x 2 patch merger), which vLLM loads
    beside the text model. benchmarks/serve/qwen35-configs.md: with the text model and the MTP
    layer it gives the Hub's totals of all nine checkpoints exactly (27B: 460,730,096)."""
    v = {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "patch_size": 16, "temporal_patch_size": 2,
         "in_channels": 3, "spatial_merge_size": 2, "out_hidden_size": 3584, "num_position_embeddings": 2304} | dict(v)
    h, i, out = v["hidden_size"], v["intermediate_size"], v["out_hidden_size"]
    merged = h * v["spatial_merge_size"] ** 2
    patch = v["in_channels"] * v["temporal_patch_size"] * v["patch_size"] ** 2 * h + h
    block = 4 * h + (3 * h * h + 3 * h) + (h * h + h) + (h * i + i) + (i * h + h)
    merger = 2 * h + (merged * merged + merged) + (merged * out + out)
    return int(patch + v["num_position_embeddings"] * h + v["depth"] * block + merger)


def _qwen3_next(c: dict[str, Any]) -> dict[str, Any]:
    # Qwen3-Next (configuration_qwen3_next.py): Qwen3.5's layers with fused GDN projections, a
    # 151,936-token vocabulary, MoE layers by decoder_sparse_step and mlp_only_layers
    c = {"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 48,
         "num_attention_heads": 16, "num_key_value_heads": 2} | c
    moe = {"num_experts": c.get("num_experts", 512), "num_experts_per_tok": c.get("num_experts_per_tok", 10),
           "moe_intermediate_size": c.get("moe_intermediate_size", 512), "decoder_sparse_step": c.get("decoder_sparse_step", 1)}
    card = _qwen3_5(c) | {"linear_fused_proj": True}
    if moe["num_experts"]:
        card |= _qwen_moe(c | moe) | {
            "shared_expert_intermediate_size": c.get("shared_expert_intermediate_size", 512) or None,
            "shared_expert_gate": bool(c.get("shared_expert_intermediate_size", 512))}
    return card


_READERS = {"llama": _llama, "mistral": _mistral, "mixtral": _mixtral, "qwen2": _qwen2, "phi3": _phi3,
            "gemma2": _gemma2, "gpt2": _gpt2, "falcon": _falcon, "qwen3": _qwen3, "qwen2_moe": _qwen2_moe,
            "qwen3_moe": _qwen3_moe, "gemma3": _gemma3, "llama4": _llama4, "deepseek_v2": _deepseek,
            "deepseek_v3": _deepseek, "gpt_oss": _gpt_oss, "glm4_moe": _glm4_moe, "olmo2": _olmo2, "olmo3": _olmo3,
            "granite": _granite, "granitemoe": _granitemoe, "smollm3": _smollm3, "phimoe": _phimoe,
            "cohere2": _cohere2, "ernie4_5": _ernie4_5, "ernie4_5_moe": _ernie4_5_moe, "lfm2": _lfm2,
            "qwen3_5": _qwen3_5, "qwen3_5_moe": _qwen3_5_moe, "qwen3_next": _qwen3_next}


# the vision towers read from a multimodal config's vision_config (serving loads them)
_VISION = {"qwen3_5": _qwen3_5_vision, "qwen3_5_moe": _qwen3_5_vision}


def to_hf_config(card: ModelCard) -> dict[str, Any]:
    """Keyword arguments for transformers.AutoConfig.for_model(**kwargs) that rebuild the card."""
    if card.family == "gpt2":
        return {"model_type": "gpt2", "n_embd": card.hidden_size, "n_inner": card.intermediate_size,
                "n_layer": card.num_layers, "n_head": card.num_heads, "vocab_size": card.vocab_size,
                "n_positions": card.max_position_embeddings, "activation_function": card.activation,
                "tie_word_embeddings": card.tie_word_embeddings,
                "bos_token_id": 0, "eos_token_id": 0}
    if card.family == "falcon":
        new_arch = card.norms_per_layer == 2
        return {"model_type": "falcon", "hidden_size": card.hidden_size, "num_hidden_layers": card.num_layers,
                "num_attention_heads": card.num_heads, "num_kv_heads": card.kv_heads,
                "multi_query": card.kv_heads == 1, "new_decoder_architecture": new_arch,
                "parallel_attn": True, "bias": card.qkv_bias, "alibi": card.position_embedding == "alibi",
                "vocab_size": card.vocab_size, "ffn_hidden_size": card.intermediate_size,
                "max_position_embeddings": card.max_position_embeddings,
                "tie_word_embeddings": card.tie_word_embeddings, "bos_token_id": 0, "eos_token_id": 0}
    config: dict[str, Any] = {
        "model_type": card.family, "hidden_size": card.hidden_size, "intermediate_size": card.intermediate_size,
        "num_hidden_layers": card.num_layers, "num_attention_heads": card.num_heads,
        "num_key_value_heads": card.kv_heads, "head_dim": card.dim_head, "vocab_size": card.vocab_size,
        "max_position_embeddings": card.max_position_embeddings,
        "tie_word_embeddings": card.tie_word_embeddings, "bos_token_id": 0, "eos_token_id": 0,
    }
    if card.family == "gemma2":
        config |= {"hidden_activation": card.activation, "sliding_window": card.sliding_window,
                   "final_logit_softcapping": card.final_logit_softcapping}
    else:
        config["hidden_act"] = card.activation
    if card.family == "llama":
        config |= {"attention_bias": card.qkv_bias, "mlp_bias": card.mlp_bias}
    if card.family in ("mistral", "mixtral", "phi3"):
        config["sliding_window"] = card.sliding_window
    if card.family == "qwen2" and card.sliding_window:
        config |= {"use_sliding_window": True, "sliding_window": card.sliding_window}
    if card.family in _WRITERS:
        config |= _WRITERS[card.family](card)
        return {k: v for k, v in config.items() if not (k == "hidden_act" and v is None)}
    if card.is_moe:
        config |= {"num_local_experts": card.num_experts, "num_experts_per_tok": card.experts_per_token}
    return config


def _hf_layer_types(card: ModelCard) -> list[str]:
    names = {"full": "full_attention", "nope": "full_attention", "sliding": "sliding_attention",
             "chunked": "chunked_attention", "conv": "conv", "linear": "linear_attention"}
    return [names[spec.mixer] for spec in card.layer_specs]


def _moe_layers(card: ModelCard) -> list[int]:
    return [i for i, spec in enumerate(card.layer_specs) if spec.moe]


def _dense_layers(card: ModelCard) -> list[int]:
    return [i for i, spec in enumerate(card.layer_specs) if not spec.moe]


def _shared_count(card: ModelCard) -> int:
    """Shared experts as the DeepSeek-style configs count them (of the routed experts' width)."""
    return (card.shared_expert_intermediate_size or 0) // (card.moe_intermediate_size or card.intermediate_size)


def _sparse_step_layers(card: ModelCard) -> dict[str, Any]:
    # Qwen's rule: layer i is sparse when (i + 1) % decoder_sparse_step == 0 and i not in mlp_only_layers
    return {"decoder_sparse_step": card.moe_layer_step,
            "mlp_only_layers": [i for i in _dense_layers(card) if (i + 1) % card.moe_layer_step == 0]}


_WRITERS: dict[str, Any] = {
    "qwen3": lambda c: {"attention_bias": c.qkv_bias, "hidden_act": c.activation},
    "qwen2_moe": lambda c: {"qkv_bias": c.qkv_bias, "num_experts": c.num_experts, "num_experts_per_tok": c.experts_per_token,
                            "moe_intermediate_size": c.moe_intermediate_size or c.intermediate_size,
                            "shared_expert_intermediate_size": c.shared_expert_intermediate_size or 0}
    | _sparse_step_layers(c),
    "qwen3_moe": lambda c: {"attention_bias": c.qkv_bias, "num_experts": c.num_experts,
                            "num_experts_per_tok": c.experts_per_token,
                            "moe_intermediate_size": c.moe_intermediate_size or c.intermediate_size}
    | _sparse_step_layers(c),
    "gemma3": lambda c: {"model_type": "gemma3_text", "hidden_activation": c.activation, "hidden_act": None,
                         "sliding_window": c.sliding_window or 4096, "layer_types": _hf_layer_types(c),
                         "final_logit_softcapping": c.final_logit_softcapping, "query_pre_attn_scalar": c.dim_head},
    "llama4": lambda c: {"model_type": "llama4_text", "intermediate_size": c.moe_intermediate_size or c.intermediate_size,
                         "intermediate_size_mlp": c.intermediate_size, "num_local_experts": c.num_experts or 1,
                         "num_experts_per_tok": c.experts_per_token or 1, "moe_layers": _moe_layers(c),
                         "no_rope_layers": [int(s.mixer != "nope") for s in c.layer_specs],
                         "attention_chunk_size": c.attention_chunk_size, "use_qk_norm": c.qk_norm == "l2",
                         "layer_types": _hf_layer_types(c), "attention_bias": c.qkv_bias},
    "deepseek_v2": lambda c: _deepseek_config(c),
    "deepseek_v3": lambda c: _deepseek_config(c),
    "gpt_oss": lambda c: {"num_local_experts": c.num_experts, "num_experts_per_tok": c.experts_per_token,
                          "sliding_window": c.sliding_window, "layer_types": _hf_layer_types(c),
                          "attention_bias": c.qkv_bias},
    "glm4_moe": lambda c: {"n_routed_experts": c.num_experts, "num_experts_per_tok": c.experts_per_token,
                           "moe_intermediate_size": c.moe_intermediate_size or c.intermediate_size,
                           "n_shared_experts": _shared_count(c), "first_k_dense_replace": c.first_dense_layers,
                           "use_qk_norm": c.qk_norm == "head", "attention_bias": c.qkv_bias, "n_group": 1, "topk_group": 1},
    "olmo2": lambda c: {"attention_bias": c.qkv_bias},
    "olmo3": lambda c: {"attention_bias": c.qkv_bias, "sliding_window": c.sliding_window or 4096,
                        "layer_types": _hf_layer_types(c)},
    "granite": lambda c: {"attention_bias": c.qkv_bias, "mlp_bias": c.mlp_bias},
    "granitemoe": lambda c: {"attention_bias": c.qkv_bias, "num_local_experts": c.num_experts,
                             "num_experts_per_tok": c.experts_per_token},
    "smollm3": lambda c: {"attention_bias": c.qkv_bias, "mlp_bias": c.mlp_bias, "pad_token_id": 0,
                          "no_rope_layers": [int(s.mixer != "nope") for s in c.layer_specs]},
    "phimoe": lambda c: {"num_local_experts": c.num_experts, "num_experts_per_tok": c.experts_per_token,
                         "attention_bias": c.qkv_bias, "lm_head_bias": c.lm_head_bias, "sliding_window": c.sliding_window},
    "cohere2": lambda c: {"layer_types": _hf_layer_types(c), "sliding_window": c.sliding_window or 4096,
                          "attention_bias": c.qkv_bias},
    "ernie4_5": lambda c: {"use_bias": c.qkv_bias},
    "ernie4_5_moe": lambda c: {"use_bias": c.qkv_bias, "moe_num_experts": c.num_experts, "moe_k": c.experts_per_token,
                               "moe_intermediate_size": c.moe_intermediate_size or c.intermediate_size,
                               "moe_num_shared_experts": _shared_count(c),
                               "moe_layer_start_index": c.first_dense_layers, "moe_layer_interval": c.moe_layer_step,
                               "moe_layer_end_index": max(_moe_layers(c), default=0)},
    "lfm2": lambda c: {"layer_types": _hf_layer_types(c), "conv_L_cache": c.conv_kernel, "conv_bias": c.conv_bias,
                       "block_auto_adjust_ff_dim": False,
                       "full_attn_idxs": [i for i, s in enumerate(c.layer_specs) if s.mixer != "conv"]},
    "qwen3_5": lambda c: _qwen3_5_config(c),
    "qwen3_5_moe": lambda c: _qwen3_5_config(c) | {
        "model_type": "qwen3_5_moe_text", "num_experts": c.num_experts, "num_experts_per_tok": c.experts_per_token,
        "moe_intermediate_size": c.moe_intermediate_size or c.intermediate_size,
        "shared_expert_intermediate_size": c.shared_expert_intermediate_size or 0},
    "qwen3_next": lambda c: _qwen3_5_config(c) | {
        "model_type": "qwen3_next", "num_experts": c.num_experts or 0, "num_experts_per_tok": c.experts_per_token or 1,
        "moe_intermediate_size": c.moe_intermediate_size or c.intermediate_size,
        "shared_expert_intermediate_size": c.shared_expert_intermediate_size or 0} | _sparse_step_layers(c),
}


def _qwen3_5_config(c: ModelCard) -> dict[str, Any]:
    # the text model alone (Qwen3_5ForCausalLM), as the profiler builds every family
    return {"model_type": "qwen3_5_text", "layer_types": _hf_layer_types(c), "attention_bias": c.qkv_bias,
            "linear_conv_kernel_dim": c.conv_kernel, "linear_num_key_heads": c.linear_key_heads,
            "linear_num_value_heads": c.linear_value_heads, "linear_key_head_dim": c.linear_key_head_dim,
            "linear_value_head_dim": c.linear_value_head_dim}


def _deepseek_config(c: ModelCard) -> dict[str, Any]:
    return {"q_lora_rank": c.q_lora_rank, "kv_lora_rank": c.kv_lora_rank, "qk_rope_head_dim": c.qk_rope_head_dim,
            "qk_nope_head_dim": c.qk_nope_head_dim, "v_head_dim": c.v_head_dim, "head_dim": c.qk_rope_head_dim,
            "num_key_value_heads": c.num_heads, "n_routed_experts": c.num_experts,
            "num_experts_per_tok": c.experts_per_token,
            "moe_intermediate_size": c.moe_intermediate_size or c.intermediate_size,
            "n_shared_experts": _shared_count(c), "first_k_dense_replace": c.first_dense_layers,
            "moe_layer_freq": c.moe_layer_step, "n_group": 1, "topk_group": 1, "topk_method": "greedy"}
