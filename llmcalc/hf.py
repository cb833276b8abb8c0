"""Hugging Face config.json <-> ModelCard, as plain dicts (no transformers import here).

`card_from_hf_config` lets MODEL be a private or offline model's config.json; `to_hf_config`
gives the keyword arguments transformers needs to build the card (profiler, parameter tests).
Defaults mirror the transformers configuration classes of each family (v5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmcalc.cards import FAMILIES, ModelCard, card_from_mapping
from llmcalc.errors import InputError

# model_type in config.json -> family. Falcon's first checkpoints said "RefinedWebModel".
MODEL_TYPES = {f: f for f in FAMILIES} | {"RefinedWebModel": "falcon", "RefinedWeb": "falcon"}
# tie_word_embeddings when config.json does not say (the transformers config class defaults).
TIE_DEFAULT = {"llama": False, "mistral": False, "mixtral": False, "qwen2": False, "phi3": False,
               "gemma2": True, "gpt2": True, "falcon": True}
HF_ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "mixtral": "MixtralForCausalLM",
                    "qwen2": "Qwen2ForCausalLM", "phi3": "Phi3ForCausalLM", "gemma2": "Gemma2ForCausalLM",
                    "gpt2": "GPT2LMHeadModel", "falcon": "FalconForCausalLM"}


def card_from_hf_config(config: Any, source: str) -> ModelCard:
    if not isinstance(config, Mapping):
        raise InputError(f"{source}: a config.json must hold a JSON object")
    model_type = config.get("model_type")
    family = MODEL_TYPES.get(str(model_type))
    if family is None:
        raise InputError(
            f"{source}: model_type {model_type!r} is not supported; supported: {', '.join(FAMILIES)}"
        )
    c = dict(config)
    try:
        card = _READERS[family](c)
    except KeyError as exc:
        raise InputError(f"{source}: missing key {exc.args[0]!r} for model_type {model_type!r}") from None
    name = str(c.get("_name_or_path") or source).rstrip("/").split("/")[-1] or "config"
    card = {"name": name, "family": family, "source": source} | {k: v for k, v in card.items() if v is not None}
    card.setdefault("tie_word_embeddings", c.get("tie_word_embeddings", TIE_DEFAULT[family]))
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
    return _mistral(c) | {"num_experts": c["num_local_experts"], "experts_per_token": c["num_experts_per_tok"]}


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


_READERS = {"llama": _llama, "mistral": _mistral, "mixtral": _mixtral, "qwen2": _qwen2, "phi3": _phi3,
            "gemma2": _gemma2, "gpt2": _gpt2, "falcon": _falcon}


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
    if card.is_moe:
        config |= {"num_local_experts": card.num_experts, "num_experts_per_tok": card.experts_per_token}
    return config
