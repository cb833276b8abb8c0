"""Workload -> MemoryBreakdown: pure functions, no torch.

What is modelled is the reference stack: a Hugging Face transformers model on PyTorch, SDPA
attention (or eager), torch autocast for mixed precision, fused AdamW, the KV cache grown by
`torch.cat` (DynamicCache). `peak_allocated` is what `torch.cuda.max_memory_allocated` reports;
`device_total` adds the caching allocator's reserve and the CUDA context (what nvidia-smi shows).

Every activation term is "bytes per token" x tokens. The per-token figures come from walking the
transformers 5.17 forward (modeling_llama.py and friends, integrations/sdpa_attention.py,
loss/loss_utils.py, cache_utils.py) and noting which tensors are alive at once (inference) or
saved for backward (training). Notation, all per token: H hidden size, I intermediate size,
Q = heads x head_dim, K = kv_heads x head_dim, V vocabulary; a = bytes of a linear layer's output
(the compute dtype), s = bytes of the residual stream (fp32 under autocast: the embedding is not
autocast), r = bytes of RoPE's outputs (fp32 under autocast, since cos/sin are made in fp32).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from math import ceil
from typing import NamedTuple

from llmcalc import calibration
from llmcalc.cards import ModelCard, Param, skipped
from llmcalc.errors import InputError, close_names
from llmcalc.precision import HALF_DTYPES, PRECISIONS, Precision, get_precision
from llmcalc.workload import (
    ALLOCATORS,
    ATTENTIONS,
    INT8_OUTLIERS,
    MODES,
    Workload,
    math_sdpa,
    math_sdpa_repeats_kv,
    reference_attention,
)

COMPONENTS = ("weights", "gradients", "optimizer", "activations", "kv_cache", "cuda_context", "allocator_reserve")


class Optimizer(NamedTuple):
    """An optimizer's persistent state per parameter and its step's transient."""

    name: str
    note: str
    step_copies: int = 0  # parameter-sized tensors its step allocates and frees beside the states

    def state_bytes(self, numel: int, param_bytes: int) -> int:
        return _OPTIMIZER_STATE[self.name](numel, param_bytes)

    def step_transient_bytes(self, numel: int, param_bytes: int) -> int:
        """Bytes the step allocates and frees beside the states."""
        # torch's foreach AdamW (_multi_tensor_adamw, the default of torch.optim.AdamW on CUDA,
        # and transformers' optim="adamw_torch") updates exp_avg and exp_avg_sq in place but
        # builds exp_avg_sq_sqrt = torch._foreach_sqrt(exp_avg_sqs), one new tensor per
        # parameter in the state dtype, before _foreach_addcdiv_ applies it: one more copy of
        # the parameters at the step. Measured on an H200 (torch 2.11): the optimizer step of a
        # user's pure-bf16 loop over llama-3.2-1b and qwen2.5-7b peaked 2.33 and 14.44 GiB above
        # the fused estimate, against 2.30 and 14.19 GiB of parameters (docs/watch.md). The
        # fused kernel and SGD's foreach path (all in place) allocate nothing.
        return self.step_copies * numel * param_bytes


def _adamw(numel: int, p: int) -> int:
    # torch.optim.AdamW: exp_avg and exp_avg_sq, zeros_like(param): 2 x param bytes per element.
    return 2 * numel * p


def _adamw_8bit(numel: int, p: int) -> int:
    # bitsandbytes AdamW8bit: two uint8 states with one fp32 absmax per block of 256 elements;
    # tensors under 4096 elements (min_8bit_size) keep two fp32 states.
    if numel < 4096:
        return 2 * numel * 4
    return 2 * (numel + 4 * ceil(numel / 256))


def _sgd(numel: int, p: int) -> int:
    # torch.optim.SGD(momentum>0): one momentum buffer, a clone of the gradient.
    return numel * p


_OPTIMIZER_STATE = {"adamw": _adamw, "adamw-foreach": _adamw, "adamw-8bit": _adamw_8bit, "sgd": _sgd}
OPTIMIZERS = {
    "adamw": Optimizer("adamw", "torch AdamW (fused): exp_avg + exp_avg_sq in the parameter dtype"),
    "adamw-foreach": Optimizer("adamw-foreach", "torch AdamW (foreach, its CUDA default): exp_avg + exp_avg_sq "
                                                "in the parameter dtype, and sqrt(exp_avg_sq) during the step",
                               step_copies=1),
    "adamw-8bit": Optimizer("adamw-8bit", "bitsandbytes AdamW8bit: 2 x uint8 + fp32 absmax per 256"),
    "sgd": Optimizer("sgd", "torch SGD with momentum: one buffer in the parameter dtype"),
}

# Activation -> (extra MLP-sized temporaries alive in inference, extra MLP-sized tensors saved for
# backward). gelu_new is Python in transformers: 0.5*x*(1+tanh(c*(x+0.044715*x**3))): two more
# temporaries alive at once, and tanh's output, 0.5*x and (1+tanh) saved (pow saves x, shared).
ACTIVATIONS = {"silu": (0, 0), "gelu": (0, 0), "gelu_pytorch_tanh": (0, 0), "gelu_new": (2, 3)}


def validate_workload(w: Workload, card: ModelCard | None = None) -> list[str]:
    """Raise InputError for impossible workloads; return warnings for questionable ones."""
    for name, value in (("batch", w.batch), ("seq", w.seq), ("beams", w.beams)):
        if value <= 0:
            raise InputError(f"--{name} must be a positive integer, got {value}")
    if w.gen < 0:
        raise InputError(f"--gen must be zero or a positive integer, got {w.gen}")
    if w.mode not in MODES:
        raise InputError(f"--mode must be one of {', '.join(MODES)}, got '{w.mode}'")
    if w.attention not in ATTENTIONS:
        raise InputError(f"--attention must be one of {', '.join(ATTENTIONS)}, got '{w.attention}'")
    if w.allocator not in ALLOCATORS:
        raise InputError(f"--allocator must be one of {', '.join(ALLOCATORS)}, got '{w.allocator}'")
    if w.int8_outliers not in INT8_OUTLIERS:
        raise InputError(f"--int8-outliers must be one of {', '.join(INT8_OUTLIERS)}, got '{w.int8_outliers}'")
    get_precision(w.dtype)
    if w.kv_dtype:
        get_precision(w.kv_dtype, "kv dtype")
    if w.autocast and w.autocast not in HALF_DTYPES:
        raise InputError(f"--autocast must be one of {', '.join(HALF_DTYPES)}, got '{w.autocast}'")
    if w.optimizer not in OPTIMIZERS:
        hint = close_names(w.optimizer, OPTIMIZERS)
        raise InputError(f"unknown optimizer '{w.optimizer}'; choose one of {', '.join(OPTIMIZERS)}"
                         + (f" (did you mean {hint}?)" if hint else ""))
    if w.mode == "train" and not PRECISIONS[w.dtype].is_float:
        raise InputError(f"--mode train needs float weights (fp32, fp16, bf16); {w.dtype} weights are "
                         "frozen in every framework (quantized fine-tuning trains LoRA adapters)")
    warnings = []
    if card is not None:
        length = w.seq + (w.gen if w.mode == "infer" else 0)
        if length > card.max_position_embeddings:
            warnings.append(f"sequence of {length} tokens exceeds {card.name}'s context of "
                            f"{card.max_position_embeddings}; the estimate is for the length asked")
    return warnings


class Phase(NamedTuple):
    """Bytes alive at the peak of one phase, by component."""

    name: str
    components: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.components.values())


@dataclass(frozen=True)
class MemoryBreakdown:
    """The estimate: the peak phase's components plus the allocator reserve and CUDA context."""

    model: str
    params: int
    workload: Workload
    phases: tuple[Phase, ...]
    peak_phase: str
    components: dict[str, int]  # at the peak phase, plus cuda_context and allocator_reserve
    peak_allocated_bytes: int
    device_total_bytes: int
    explain: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    calibration: str = ""  # where cuda_context / allocator figures came from
    kernel_modules_bytes: int = 0  # of cuda_context: kernel modules loaded lazily as the workload runs


# --- weights ------------------------------------------------------------------------------

def weight_bytes(card: ModelCard, w: Workload) -> int:
    """Quantized formats apply to the decoder's linear layers (bitsandbytes and GPTQ skip the
    embeddings, norms and lm_head; MXFP4 covers the experts only; a checkpoint's config can list
    more modules it left alone, card.quant_skip); every other tensor stays in the compute dtype."""
    return _weight_bytes(card, w.dtype, w.compute_dtype)


def quantized(card: ModelCard, p: Param, store: Precision) -> bool:
    """Whether parameter p is stored in the quantized format `store`."""
    return (p.kind == "linear" and not store.is_float and (not store.experts_only or ".experts." in p.name)
            and not skipped(p, card.quant_skip))


@lru_cache(maxsize=512)
def _weight_bytes(card: ModelCard, dtype: str, compute_dtype: str) -> int:
    # memoised: sizing searches (plan, check) estimate one card hundreds of times
    store = PRECISIONS[dtype]
    other = store if store.is_float else PRECISIONS[compute_dtype]
    total = 0
    for p in card.parameters():
        if quantized(card, p, store):
            total += store.matrix_bytes(p.shape[0], p.shape[1])
        else:
            total += other.tensor_bytes(p.numel)
    return total


def tied_head_transient(card: ModelCard, w: Workload) -> int:
    """Building a tied model, transformers allocates lm_head's own vocab x hidden weight before
    tying it to the embedding (measured at load: +V x H x bytes for gpt2, qwen2.5, llama-3.2)."""
    if not card.tie_word_embeddings:
        return 0
    store = PRECISIONS[w.dtype] if PRECISIONS[w.dtype].is_float else PRECISIONS[w.compute_dtype]
    return store.tensor_bytes(card.vocab_size * card.hidden_size)


def largest_linear_bytes(card: ModelCard, dtype: str) -> int:
    biggest = max((p for p in card.parameters() if p.kind == "linear"), key=lambda p: p.numel)
    return PRECISIONS[dtype].tensor_bytes(biggest.numel)


def dequant_transient(card: ModelCard, w: Workload, rows: int, layer_per_token: int) -> int:
    """Weight-sized buffers of a quantized matmul, beyond the `rows` x `layer_per_token` bytes the
    layer holds per token.

    bitsandbytes 4-bit: one input row takes the fused gemv_4bit kernel; more rows dequantize the
    whole weight to the compute dtype first (bitsandbytes MatMul4Bit), so the largest linear's
    16-bit copy is alive during its matmul, in prefill and in batched decode.

    LLM.int8 with every input column an outlier (`--int8-outliers all`): int8_mixed_scaled_mm."""
    if w.dtype == "nf4":
        return largest_linear_bytes(card, w.compute_dtype) if rows > 1 else 0
    if w.dtype == "int8" and w.int8_outliers == "all":
        return _int8_decomposition(card, w, rows, layer_per_token)
    return 0


def _int8_decomposition(card: ModelCard, w: Workload, rows: int, layer_per_token: int) -> int:
    """LLM.int8's mixed-precision decomposition when every input column holds an outlier
    (|x| >= 6.0), bitsandbytes 0.50 (autograd/_functions.py MatMul8bitLt, backends/default/ops.py
    int8_mixed_scaled_mm). For a linear of k inputs and n outputs over t rows, beside its input
    and what the layer holds: the input's int8 copy CA (t k) and its outlier columns in 16 bits,
    subA = A[:, cols] (t k a); then the weight's columns CB[:, cols] (n k, int8) dequantized as
    CB * SCB (fp32, 4 n k) * 1/127 (fp32, 4 n k): 9 n k at once; those give way to the 16-bit
    subB (2 n k), beside which the int8 GEMM's int32 accumulator (4 t n) and its 16-bit output
    (t n a) follow, then output.addmm(subA, subB) (t n a). So at each linear
        t (kept + k (a + 1)) + max(9 n k, 2 n k + t n (4 + a)),
    largest at the MLP's (olmo-2-7b on the H200, 4,096 rows at down_proj: the act * up input,
    CA, subA, CB's columns and two fp32 copies, 90 + 45 + 90 + 45 + 2 x 180 MB). Each call also
    leaves its outlier columns' indices in the module's state (state.idx: 8 B per input column),
    every quantized linear's to the end. Returned beyond the per-token model, whose MLP stage is
    the layer's held residuals (4 s h; see _layer_peak) plus the per-token int8 terms."""
    b = _dtypes(w)
    a, h, i = b.a, card.hidden_size, card.intermediate_size
    base = 4 * b.s * h
    # (kept per token beside the input's copies, inputs k, outputs n) for the MLP's linears
    if card.mlp == "gated":
        linears = [(0, h, i), (i * a, h, i), (i * a, i, h)]  # gate; up beside act(gate); down on act * up
    else:
        linears = [(0, h, i), (i * a, i, h)]  # fc; proj on act(fc)
    stage = max(rows * (kept + k * (a + 1)) + max(9 * n * k, 2 * n * k + rows * n * (4 + a))
                for kept, k, n in linears)
    indices = 8 * sum(p.shape[1] for p in card.parameters() if p.kind == "linear" and quantized(card, p, PRECISIONS["int8"]))
    return max(0, rows * base + stage - rows * layer_per_token) + indices


# --- KV cache -----------------------------------------------------------------------------

def kv_cache_bytes(card: ModelCard, w: Workload, length: int, windowed: bool = True) -> int:
    """Per layer, sequences x cached positions x (key width x key bytes + value width x value
    bytes): kv_heads x head_dim each, or under MLA the latent and the rotary key
    (card.cache_widths). A conv layer (LFM2) keeps a state of hidden x kernel per sequence
    whatever the length. Sliding-window and chunked layers keep at most their window's positions
    once a decode step has run; right after the prefill (`windowed` False) they still hold the
    whole prompt: transformers 5's DynamicSlidingWindowLayer keeps a view of the last
    window - 1 positions of the concatenated states, which holds their storage (gemma-3-1b on
    the H200: 22 sliding layers of 2,048 positions, not 512, at the prefill's peak). Under
    autocast the keys come out of RoPE in fp32 and DynamicCache stores them so (its dtype is
    the first key's)."""
    seqs = w.batch * w.beams
    k_bytes, v_bytes = _kv_bytes(card, w)
    total = 0.0
    for n, g in card.layer_groups:  # g holds the group's n layers
        if g.layer_specs[0].mixer == "conv":
            # Lfm2HybridConvCache: one (batch, hidden, conv_L_cache) state per conv layer
            total += n * seqs * g.hidden_size * (g.conv_kernel or 0) * v_bytes
            continue
        if g.layer_specs[0].mixer == "linear":
            total += n * seqs * linear_state_bytes(g, w)
            continue
        window = (g.sliding_window or length) if windowed else length
        positions = (n - g.sliding_layers) * length + g.sliding_layers * min(length, window)
        k_width, v_width = g.cache_widths
        total += seqs * positions * (k_width * k_bytes + v_width * v_bytes)
    return ceil(total)


def linear_state_bytes(card: ModelCard, w: Workload) -> int:
    """One sequence's state in one Gated DeltaNet layer (transformers' LinearAttentionLayer):
    the causal conv's last conv_kernel inputs (conv_dim x kernel, in the projections' dtype)
    and the recurrent state (value heads x key_head_dim x value_head_dim), which
    torch_chunk_gated_delta_rule computes and returns in fp32 and the cache keeps so
    (zeros_like of the first state)."""
    return card.linear_conv_dim * (card.conv_kernel or 0) * _dtypes(w).a + 4 * card.linear_state_elements


def _kv_bytes(card: ModelCard, w: Workload) -> tuple[float, float]:
    if w.kv_dtype:
        b = PRECISIONS[w.kv_dtype].bytes_per_element
        return b, b
    a = PRECISIONS[w.compute_dtype].bytes_per_element
    k = 4 if (w.autocast and card.position_embedding == "rope") else a
    return k, a


# --- activations: inference ---------------------------------------------------------------

class _Bytes(NamedTuple):
    """Bytes per element of the three activation kinds a layer holds."""

    a: int  # linear outputs
    s: int  # residual stream
    r: int  # RoPE outputs


def _dtypes(w: Workload) -> _Bytes:
    a = int(PRECISIONS[w.compute_dtype].bytes_per_element)
    if w.autocast:
        return _Bytes(a=a, s=4, r=4)
    return _Bytes(a=a, s=a, r=a)


def _norm_transient(card: ModelCard) -> int:
    """Bytes/token an RMSNorm holds beyond its input (output included). transformers' RMSNorm:
    x32 = x.to(fp32); var = x32.pow(2).mean(-1); y = x32 * rsqrt(var + eps); w * y.to(dtype).
    Alive at worst {x32, pow} = 8H, or {y, y.to(dtype), w*...} = (4 + 2*2)H for 16-bit input;
    for fp32 input .to() is a no-op and {pow or y, out} = 8H again. Gemma's RMSNorm
    (rmsnorm_fp32): y = x32 * rsqrt(...), y * (1 + w.float()), .type_as(x): {x32, pow},
    {y, y * (1 + w)}, then {fp32 out, cast} = 8H at worst too. LayerNorm is one kernel. Cohere's
    bias-free LayerNorm (layernorm_nobias) in Python: x32, x32 - mean and its square, then x32,
    x32 - mean and the normalised product: 12H."""
    h = card.hidden_size
    return {"layernorm": 4 * h, "layernorm_nobias": 12 * h}.get(card.norm, 8 * h)


def _norm_saved(card: ModelCard, b: _Bytes) -> int:
    """Bytes/token one norm saves for backward. Llama's RMSNorm: pow saves x32 (4H; the fp32
    input itself when the stream is fp32) and w * y.to(dtype) saves y.to(dtype) (s). Gemma's:
    x32 (4H) and, for the weight's gradient, the fp32 y that y * (1 + w) reads (4H; a memory
    trace of gemma-2-2b on the H100: two fp32 B x S x H tensors per norm, 105 norms).
    LayerNorm saves its input (and fp32 mean/rstd per row)."""
    h = card.hidden_size
    if card.norm == "rmsnorm":
        return 4 * h + b.s * h
    if card.norm == "rmsnorm_fp32":
        return 8 * h
    if card.norm == "layernorm_nobias":
        # Cohere: x32 (the mean's), x32 - mean (pow's and the product's) and the fp32 product
        # (the weight's): 12H (cohere2-mini on the H200: three fp32 h-wide tensors per norm)
        return 12 * h
    return b.s * h


def prefill_layer_peak_per_token(card: ModelCard, w: Workload, decode: bool = False) -> int:
    """Largest set of non-cache buffers alive at once inside one decoder layer, bytes per token,
    including the residual stream the layer was given (the largest over the card's layer kinds).
    `decode`: one new token per sequence against w.seq cached positions."""
    return max(_layer_peak(g, w, decode) for _, g in card.layer_groups)


def _attn_widths(card: ModelCard) -> tuple[int, int]:
    """(q, k): the query width and the mean of the key and value widths (equal but under MLA,
    whose values are narrower than its keys)."""
    return card.q_dim, (card.k_dim + card.v_dim) // 2


def _qk_norm_saved(card: ModelCard, a: int) -> int:
    """Bytes per element of q and k that their norms save for backward: Llama's RMSNorm (Qwen3,
    GLM, LFM2) its fp32 input and the cast output (4 + a; qwen3-1.7b on the H200: 64 + 32 MiB
    per q_norm of 8,192 x 2,048), Gemma's and OLMo 2's fp32 one its fp32 input and output (8),
    Llama 4's weightless L2 norm its fp32 input (4)."""
    if not card.qk_norm:
        return 0
    if card.qk_norm == "l2":
        return 4
    return 8 if card.norm == "rmsnorm_fp32" else 4 + a


def _layer_peak(card: ModelCard, w: Workload, decode: bool = False) -> int:
    """prefill_layer_peak_per_token for a card whose layers are all of one kind."""
    b = _dtypes(w)
    h, i = card.hidden_size, card.intermediate_size
    q, k = _attn_widths(card)
    # The model's forward keeps `inputs_embeds` alive to the end, and the layer loop's caller
    # holds the layer's input while the layer builds its new residual: two residual-sized
    # tensors besides the one the layer works on (measured on the H100: +4H B/token in bf16).
    held = 2 * b.s * h
    # a pre-norm layer's attention and MLP read the norm's output; a post-norm one (OLMo 2/3) reads
    # the residual stream itself (olmo3-mini on the H200: at the MLP's peak three hidden-sized
    # tensors beside it, not four)
    resid, normed = b.s * h, (0 if card.post_norm else b.s * h)
    norm_phase = held + resid + _norm_transient(card)
    if card.position_embedding == "rope":
        # q, k, v projections alive; apply_rotary_pos_emb: q*cos, rotate_half(q), *sin, sum.
        q_rope = q * (2 * b.a + 2 * b.r) + 2 * k * b.a  # {q, q*cos, rot(q), rot(q)*sin} + k + v
        k_rope = q * (b.a + b.r) + k * (3 * b.a + 2 * b.r)  # {q, q_emb} + {k, k*cos, rot, *sin} + v
        casts = (q + 2 * k) * b.a if b.r != b.a else 0  # SDPA's autocast copies of q, k, v
        attn_core = q * (b.r + b.a) + casts  # {q_emb, out} (the output needs no contiguous copy)
        if card.rope_fp32:
            # ERNIE 4.5: (q.float() * cos) + (rotate_half(q).float() * sin), cast back: beside q,
            # k and v, three fp32 q-sized tensors at once (q*cos, rot.float(), its product with
            # sin; ernie-4.5-0.3b on the H200: 3 x 256 MiB for 32,768 x 2,048), then for k with
            # the fp32 q_embed alive; the casts back make q_emb and k_emb in the model's dtype.
            q_rope = q * (b.a + 12) + 2 * k * b.a
            k_rope = q * (b.a + 4) + k * (2 * b.a + 12)
            attn_core = q * (2 * b.a)
        attn = max(q_rope, k_rope, attn_core)
        if card.layer_specs[0].mixer == "nope":  # no rotary embedding: q, k, v, then the output
            attn = (q + 2 * k) * b.a + q * b.a
    else:
        # fused c_attn: q, k, v are views of one (Q+2K) tensor, alive until attention returns
        attn = (q + 2 * k) * b.a + 2 * q * b.a
    if card.qk_norm:
        # q_norm(q_proj(x)) before RoPE: q, its norm's fp32 temporaries (Qwen3, Gemma 3, OLMo 2)
        # (the fp32 copy and its square: 8 B per element, as in the layer norms)
        attn = max(attn, q * (b.a + 8) + q * b.a + 2 * k * b.a)
    if card.is_mla:
        # MLA (modeling_deepseek_v3.py): kv_b's output (every head's k_nope and v) stays alive
        # beside the concatenated q and k it feeds: + heads x (nope + v) per token.
        attn += card.num_heads * ((card.qk_nope_head_dim or 0) + (card.v_head_dim or 0)) * b.a
    if w.attention == "eager":
        # scores (a) -> + mask -> softmax(dtype=fp32) -> .to(a): {scores, fp32 probs, cast}
        # per query row: heads x keys x softmax_bytes; repeat_kv copies of k and v to all heads.
        # With attention sinks (gpt-oss) the scores are concatenated with the sink logits, shifted
        # by their maximum (the shifted copy replaces the concatenation) and soft-maxed in the
        # scores' dtype: {scores, shifted, probs} (gpt-oss-20b on the H200: three 1 GiB
        # tensors of 2 x 64 heads x 2,048 x 2,048 in bf16).
        per_score = 3 * b.a if card.attention_sinks else _eager_softmax_bytes(w)
        attn = max(attn, q * b.r + 2 * q * b.a + card.num_heads * w.seq * per_score)
    elif math_sdpa(card, w):
        # SDPA's math path (PyTorch 2.11 attention.cpp) computes in fp32, upcasting 16-bit q, k,
        # v (.to(float)); it scales q, repeats k and v to all heads when asked to (enable_gqa,
        # the Llama family) and scales k; then per query row (heads x keys) the fp32 scores
        # (4 B), and inside _safe_softmax the probabilities (4 B) and scores.isneginf() (a 1 B
        # bool mask; `where` then writes into the probabilities): 9 B per score. Alive beside
        # them: q_emb (a), its fp32 copy (16-bit only), the scaled q, the k and v copies and
        # the scaled k (falcon-7b bf16 on the H100: two fp32 q copies and 9 B per score).
        kv_copy = q if math_sdpa_repeats_kv(card) else k
        copies = q * b.a + (4 * q if b.a < 4 else 0) + 4 * q + 3 * 4 * kv_copy
        attn = max(attn, copies + (4 + 4 + 1) * card.num_heads * w.seq)
    act_tmp, _ = ACTIVATIONS[card.activation]
    if card.mlp == "gated":
        # {gate, act(gate)} then {act, up, act*up}
        mlp = i * b.a * max(2 + act_tmp, 3)
    else:
        mlp = i * b.a * (2 + act_tmp)  # {fc, act(fc)} (+ gelu_new's temporaries)
    if w.dtype == "int8":
        # LLM.int8 matmul (bitsandbytes int8_vectorwise_quant + int8 GEMM + dequant): the input's
        # int8 copy (k B/token) and the int32 accumulator (4m B/token) live beside the 16-bit
        # output. Worst in the MLP at up (or fc): act(gate) + {int8 x, int32, out}.
        kept = i * b.a if card.mlp == "gated" else 0
        mlp = max(mlp, kept + h + 4 * i + i * b.a)
    if card.is_moe:
        # transformers 5 runs the experts as grouped GEMMs over all k routed copies of every token
        # at once (integrations/moe.py, grouped_mm): the gathered inputs (k h a), the gate_up
        # output (k 2i a) and an out-of-place copy of it (k 2i a), then act(gate) and act * up
        # replace them (k i a each); after the down GEMM, its output, the routing-weighted one
        # and two fp32 copies (k h (2a + 8)). Router logits and weights: 8 B per expert.
        # (mixtral-8x7b bf16 on an H200: 245,760 B per token at the first stage.) torch's
        # grouped GEMM is not on autocast's list: the experts run in the stream's dtype (s).
        # The weighted copies take the routing weights' dtype: fp32 for Mixtral's, DeepSeek's and
        # GLM's routers, the model's for Qwen's, ERNIE's, Granite's and gpt-oss's (granite-3.1-3b-
        # a800m on the H200: four k x tokens x h bf16 tensors at the MoE's peak, not 2a + 8).
        k = _routed_copies(card)
        weighted = 4 if card.router_fp32 else b.s
        mlp = k * max(b.s * (h + 4 * i), h * 2 * (b.s + weighted)) + 8 * (card.num_experts or 0)
        if card.shared_expert_intermediate_size:
            # then the shared expert, a dense MLP, beside the routed output (h)
            mlp = max(mlp, h * b.a + card.shared_expert_intermediate_size * b.a * max(2 + act_tmp, 3))
    if card.attn_output_gate:
        # gated attention (Qwen3.5): q_proj's second half, copied contiguous (gate.reshape), waits
        # beside attention for attn_output * sigmoid(gate)
        attn += q * b.a
    if card.layer_specs[0].mixer == "conv":
        # LFM2's short conv (Lfm2ShortConv.slow_forward): in_proj's B, C, x (3h), B * x, the conv's
        # padded output, C * conv, its contiguous transpose: 6h at once, no attention.
        attn = 6 * h * b.a
    if card.layer_specs[0].mixer == "linear":
        attn = _gated_delta_net(card, w, b, decode)
    if card.norms_per_layer == 1:
        # Parallel attention and MLP (Falcon, Cohere): the attention output waits for the MLP's,
        # and the residual is the layer's input itself (held by the caller), not a new sum:
        # inputs_embeds, the input, the norm's output and the attention's at the MLP (cohere2-mini
        # on the H200: four h-wide tensors beside the MLP's three).
        mlp += b.a * h - resid
    return max(norm_phase, held - b.s * h + resid + normed + attn, held + resid + normed + mlp)


# torch_chunk_gated_delta_rule's chunk: the prefill runs the delta rule 64 positions at a time
GDN_CHUNK = 64


def _gated_delta_net(card: ModelCard, w: Workload, b: _Bytes, decode: bool) -> int:
    """Bytes per token a Gated DeltaNet layer holds at its peak beside the residual stream
    (transformers' torch path, modeling_qwen3_5.py: flash-linear-attention's kernels are not
    used). Beside the layer's input, in the projections' dtype: z (value dim), the conv's SiLU
    output whose views are q, k, v (conv dim), b, a and beta (a scalar per value head each), g
    in fp32, and q and k repeated to every value head when there are fewer key heads.
    Qwen3-Next's fused projections stay alive beside them. Prefill
    (torch_chunk_gated_delta_rule): every head's q, k, v in fp32, padded to a multiple
    of the 64-position chunk, then v*beta, k*beta, the decayed k*beta, the two triangular
    solves' outputs and the output buffer (5 key-wide and 4 value-wide fp32 tensors), the
    pairwise decays, the UT system and the intra-chunk scores (chunk-wide each), beta, the
    decays and their cumulative sum; its peak is `query * cum_decay.exp()`, a sixth key-wide
    tensor beside them all. Decode (torch_recurrent_gated_delta_rule) holds q, k, v and the
    output in fp32; its state products are per sequence (linear_state_transient)."""
    kh, vh = card.linear_key_heads or 0, card.linear_value_heads or 0
    dk, dv = card.linear_key_head_dim or 0, card.linear_value_head_dim or 0
    outside = b.a * (card.linear_value_dim + card.linear_conv_dim + 3 * vh) + 4 * vh
    if card.linear_fused_proj:
        # Qwen3-Next: the forward keeps in_proj_qkvz's and in_proj_ba's outputs to its end, and z,
        # b, a are contiguous copies of their slices
        outside += b.a * (card.linear_conv_dim + card.linear_value_dim + 2 * vh)
    if vh > kh:
        outside += 2 * vh * dk * b.a  # repeat_interleave's copies of q and k
    if decode:
        return outside + 4 * vh * (2 * dk + 2 * dv)
    padded = ceil(w.seq / GDN_CHUNK) * GDN_CHUNK
    return outside + ceil(4 * vh * (6 * dk + 4 * dv + 3 * GDN_CHUNK + 4) * padded / w.seq)


def linear_state_transient(card: ModelCard, w: Workload) -> int:
    """Bytes per sequence beside the cache while a Gated DeltaNet layer runs: three recurrent
    states at once (prefill: the zero initial state, its decayed copy and k^T v_new; decode: the
    decayed state, k (x) delta and their sum)."""
    return max((3 * 4 * g.linear_state_elements for _, g in card.layer_groups
                if g.layer_specs[0].mixer == "linear"), default=0)


def _routed_copies(card: ModelCard) -> int:
    """Copies of each token the experts process: the routed ones (grouped GEMMs over the top k),
    or every expert's (Llama 4's batched matmuls over all experts: llama-4-scout on the H200,
    a 16 x tokens x 2 x 8,192 gate_up output)."""
    return (card.num_experts if card.moe_all_experts else card.experts_per_token) or 1


def _eager_softmax_bytes(w: Workload) -> int:
    """Bytes per score alive in eager attention's softmax(x, dtype=fp32).to(dtype): fp16 has a
    fused half-to-float kernel (x, probs32, cast: 2+4+2); bf16 is first copied to fp32
    (x, x32, probs32: 2+4+4); fp32 needs no cast (x, probs: 4+4)."""
    return {"fp16": 8, "bf16": 10, "fp32": 8}[w.compute_dtype]


def window_mask_bytes(card: ModelCard, w: Workload) -> int:
    """A prompt longer than a sliding or chunked window makes transformers build an explicit mask
    for SDPA, one bool per query and key shared by the batch ([1, 1, S, S]: masking_utils
    sdpa_mask), alive through the prefill's forward (olmo3-mini on the H200: 64 MiB at 8,192
    tokens, at any batch)."""
    window = card.shortest_window
    return w.seq * w.seq if window and w.seq > window and w.attention == "sdpa" and w.mode == "infer" else 0


def load_phase(card: ModelCard, w: Workload, weights: int) -> Phase:
    """Building the model (the profiler's load phase; inference or training alike)."""
    if PRECISIONS[w.dtype].is_float:
        return Phase("load", {"weights": weights, "activations": tied_head_transient(card, w)})
    # Quantized weights load tensor by tensor (from a checkpoint, or from the profiler's CPU
    # copy): one 16-bit matrix on the GPU at a time, and no tied-head transient (measured:
    # load peak = weights + the largest linear in 16-bit + the cuBLAS workspace, 6 H100 cases).
    return Phase("load", {"weights": weights, "activations": largest_linear_bytes(card, w.compute_dtype)})


def inference_phases(card: ModelCard, w: Workload) -> tuple[list[Phase], dict[str, str]]:
    b = _dtypes(w)
    seqs = w.batch * w.beams
    tokens = seqs * w.seq
    weights = weight_bytes(card, w)
    explain: dict[str, str] = {}
    # Prompt ids (int64) and RoPE's cos/sin (positions are shared across the batch).
    inputs = 8 * tokens + 2 * w.seq * (card.rotary_dim or card.dim_head) * 4
    layer = prefill_layer_peak_per_token(card, w) * tokens
    # After the last layer: final norm over all tokens, then logits for the last position only
    # (generate's logits_to_keep=1) and their fp32 copy for sampling.
    # inputs_embeds is still alive here (one residual-sized tensor per token).
    final_norm = tokens * (2 * b.s * card.hidden_size + _norm_transient(card))
    logits = seqs * card.vocab_size * (b.a + 4) + 2 * tokens * b.s * card.hidden_size
    layer += seqs * linear_state_transient(card, w)
    prefill_act = (inputs + window_mask_bytes(card, w) + max(layer, final_norm, logits)
                   + dequant_transient(card, w, tokens, prefill_layer_peak_per_token(card, w)))
    kv_prompt = kv_cache_bytes(card, w, w.seq, windowed=False)  # sliding layers hold the prompt
    phases = [
        load_phase(card, w, weights),
        Phase("prefill", {"weights": weights, "kv_cache": kv_prompt, "activations": prefill_act}),
    ]
    explain["activations"] = (
        f"prefill: max(layer {prefill_layer_peak_per_token(card, w)} B/token, final norm, logits) x {tokens} tokens"
        f" + inputs {inputs} B"
    )
    kv_final = kv_prompt
    if w.gen > 1:
        # The last generated token is never fed back: the cache ends at prompt + gen - 1.
        length = w.seq + w.gen - 1
        kv_final = kv_cache_bytes(card, w, length)
        # torch.cat grows one layer's K (then V) at a time: old and new copies coexist.
        k_bytes, _ = _kv_bytes(card, w)
        cat_copy = ceil(seqs * (length - 1) * card.cache_widths[0] * k_bytes)
        step_logits = seqs * card.vocab_size * (b.a + 4)
        # MLA expands every head's key and value from the whole cached latent at each step, one
        # layer at a time: kv_b's output (nope + v per head) and the assembled keys (nope + rope).
        expand = seqs * length * (card.num_heads * ((card.qk_nope_head_dim or 0) + (card.v_head_dim or 0))
                                  + card.k_dim) * b.a if card.is_mla else 0
        step_layer = prefill_layer_peak_per_token(card, replace(w, seq=length), decode=True)
        step = (seqs * (step_layer + linear_state_transient(card, w)) + max(cat_copy, step_logits, expand)
                + dequant_transient(card, w, seqs, step_layer))
        ids = 8 * seqs * (w.seq + w.gen)
        # The first step still holds the prompt in the sliding layers' caches (each sheds it at its
        # own update), so over the decode the cache is at most the larger of the two.
        phases.append(Phase("decode", {"weights": weights, "kv_cache": max(kv_final, kv_prompt),
                                       "activations": step + ids}))
    explain["kv_cache"] = (
        f"{seqs} seq x {w.seq + max(w.gen - 1, 0)} positions x {card.num_layers} layers x 2 x "
        f"{card.kv_heads} kv heads x {card.dim_head} head_dim x bytes = {kv_final}"
    )
    return phases, explain


# --- activations: training ----------------------------------------------------------------

def saved_layer_per_token(card: ModelCard, w: Workload) -> int:
    """Bytes per token the largest decoder layer saves for backward (no checkpointing)."""
    return max(_saved(g, w) for _, g in card.layer_groups)


def saved_layers_per_token(card: ModelCard, w: Workload) -> int:
    """Bytes per token all decoder layers save for backward (no checkpointing)."""
    return sum(n * _saved(g, w) for n, g in card.layer_groups)


def _first_layer_group(card: ModelCard) -> ModelCard:
    spec = card.layer_specs[0]
    return next(g for _, g in card.layer_groups if g.layer_specs[0] == spec)


def _saved(card: ModelCard, w: Workload) -> int:
    """saved_layer_per_token for a card whose layers are all of one kind."""
    b = _dtypes(w)
    h, i = card.hidden_size, card.intermediate_size
    q, k = _attn_widths(card)
    norm = _norm_saved(card, b)
    # Linear inputs: the norm output once, or under autocast one bf16 copy per projection.
    qkv_in = (1 if card.fused_qkv else 3) * b.a * h if w.autocast else b.s * h
    gated_fused = card.fused_qkv and card.mlp == "gated"  # phi3's gate_up_proj
    mlp_in_count = 1 if (card.mlp == "plain" or gated_fused) else 2
    mlp_in = mlp_in_count * b.a * h if w.autocast else b.s * h
    if card.norms_per_layer == 1 and not w.autocast:
        mlp_in = 0  # parallel attention: the MLP reads the same saved norm output
    # Attention. SDPA saves its inputs q, k, v, output and the fp32 logsumexp (heads per token).
    # Its flash and memory-efficient kernels write the output as (batch, seq, heads, dim), so the
    # transpose and .contiguous() before o_proj copy nothing and o_proj saves that same tensor
    # (memory snapshot of gpt2-medium on the H100: 16 MiB per layer, one q-sized tensor; the
    # training rows at +1.0 to +2.1% came within 0.2%). RoPE makes q and k new tensors; v is a view of
    # the projection output, so a fused qkv tensor stays alive in full through v.
    if card.position_embedding == "rope":
        qkv_saved = q * b.a + k * b.a + ((q + 2 * k) if card.fused_qkv else k) * b.a
    else:
        qkv_saved = (q + 2 * k) * b.a
    attn = qkv_saved + q * b.a + 4 * card.num_heads
    if w.attention == "eager":
        # eager: repeat_kv copies k, v to every head; softmax's fp32 output and its cast saved.
        attn = (3 * q + q) * b.a + card.num_heads * w.seq * (4 + b.a)
    elif math_sdpa(card, w):
        # math SDPA saves the scaled fp32 q, the scaled k and v in fp32 (repeated to all heads
        # under enable_gqa) and the fp32 softmax (heads x keys per token); o_proj saves the
        # output's contiguous copy (a).
        kv_copy = q if math_sdpa_repeats_kv(card) else k
        attn = 4 * (q + 2 * kv_copy) + q * b.a + 4 * card.num_heads * w.seq
    if card.qk_norm:
        attn += (q + k) * _qk_norm_saved(card, b.a)
    if card.sliding_layers and w.seq > (card.sliding_window or w.seq) and w.attention == "sdpa":
        # A window that binds makes transformers pass SDPA an explicit mask, which the memory-efficient
        # kernel saves as a (batch, 1, seq, seq) bias in the compute dtype, per sliding layer:
        # seq x a per token (gemma-3-1b on the H200: 22 x 64 MiB for 2 x 4,096 tokens).
        attn += w.seq * b.a * card.sliding_layers // card.num_layers
    if card.is_mla:
        # the low-rank paths: q_a's output and its norm (q_lora_rank), the latent and its norm
        # (kv_lora_rank): each saved as input (a), fp32 copy and output (4 + a)
        attn += ((card.q_lora_rank or 0) + (card.kv_lora_rank or 0)) * (4 + 2 * b.a)
    if card.layer_specs[0].mixer == "conv":
        # in_proj's output (B, C, x: 3h, saved by the products), B * x (the conv's input), the
        # conv output (C * conv's), the contiguous transpose (out_proj's input)
        attn = 6 * h * b.a
    if card.layer_specs[0].mixer == "linear":
        attn = _gated_delta_net_saved(card, w, b)
    _, act_saved = ACTIVATIONS[card.activation]
    # gated: silu saves gate, mul saves act and up, down saves the product; plain: the
    # activation saves fc's output, fc_out saves the activation's.
    mlp = (4 if card.mlp == "gated" else 2 + act_saved) * i * b.a
    if card.activation == "gelu_new" and w.autocast:
        # autocast runs pow in fp32: pow saves its fp32 copy of x, and tanh's output and
        # (1 + tanh) are fp32 (4 B each); 0.5*x and the cast of the (fp32) product for the next
        # linear are 16-bit: 12 + 2a B per element (a memory snapshot of gpt2-medium on the H100:
        # 448 MiB in gelu per layer for 8192 x 4096 elements, 14 B, plus c_proj's 2 B input copy).
        mlp = (12 + 2 * b.a) * i
    if card.is_moe:
        # grouped GEMMs over the k routed copies of each token: the gathered inputs (saved by the
        # gate_up GEMM), the gate_up output, act(gate), act * up (saved by the down GEMM) and the
        # down output (read by the routing weights' gradient): k (2h + 4i) s, plus the router.
        # Under autocast the experts stay in fp32: grouped_mm is not on autocast's list
        # (a scaled-down Mixtral on the H100: gate_up 4 B per element).
        k = _routed_copies(card)
        mlp = k * b.s * (2 * h + 4 * i) + 12 * (card.num_experts or 0)
        if card.shared_expert_intermediate_size:  # a dense gated MLP beside the experts
            mlp += 4 * card.shared_expert_intermediate_size * b.a
    norms = card.norms_per_layer * norm
    return norms + qkv_in + attn + mlp_in + mlp


def _gated_delta_net_saved(card: ModelCard, w: Workload, b: _Bytes) -> int:
    """Bytes per token a Gated DeltaNet layer saves for backward (transformers' torch path, read
    op by op from modeling_qwen3_5.py): in the projections' dtype the projection output (the conv's
    input), the conv's padded output (SiLU's input), beta and out_proj's input; in fp32 the decay's
    softplus input and product, the gated RMSNorm's input, gate and SiLU(gate) (12 B per value-dim
    element) beside its two 16-bit products; and per value head, per position padded to the
    64-token chunk, eight key-wide tensors (q and k before and after their L2 norm and padding,
    k*beta, the solved k_cumdecay, the decayed q and k the chunk loop reads), three value-wide (v,
    the solved values, v_new), five chunk-wide (the pairwise decays, the UT system before and after
    the decay, the intra-chunk scores before and after it), the state each chunk starts from (key x
    value dims per 64 positions) and six scalars."""
    vh = card.linear_value_heads or 0
    dk, dv = card.linear_key_head_dim or 0, card.linear_value_head_dim or 0
    conv, vdim, c = card.linear_conv_dim, card.linear_value_dim, GDN_CHUNK
    padded = ceil(w.seq / c) * c
    outside = b.a * (2 * conv + vh + vdim) + 8 * vh + vdim * (12 + 2 * b.a)
    chunk = 4 * vh * (8 * dk + 3 * dv + 5 * c + dk * dv / c + 6)
    if w.autocast:
        # Autocast runs every matmul of the delta rule in bf16 and saves its own bf16 copies of the
        # operands (it caches casts of weights only): k*beta, k and q for the two chunk-wide
        # products, whose outputs are then bf16 (and the intra-chunk scores after the decay are no
        # longer saved); in the chunk loop k_cumdecay, q, the state, the scores, v_new (twice) and k;
        # the decayed q and k themselves are no longer saved in fp32. Outside: the conv's bf16 input
        # (cast from the fp32 copy .to(weight.dtype) makes), the fourth projection's cast of x, z and
        # b, a themselves, and the gated norm's weighted product and out_proj's input one more
        # 16-bit copy each (qwen3.5-0.8b under autocast on the H200: 53.4 KB per token and layer
        # above the bf16 run's set, from its allocation trace).
        chunk += vh * (b.a * (3 * dk + 2 * dv + c + dk * dv / c) + b.a * 4 * dk - 2 * c * b.a - 4 * c - 8 * dk)
        outside += b.a * (conv + card.hidden_size + vdim + 2 * vh + 2 * vdim)
    return outside + ceil(chunk * padded / w.seq)


def _layer_backward_transient(card: ModelCard, w: Workload) -> int:
    """Gradient buffers alive while one layer runs backward, bytes per token: the incoming
    and outgoing residual gradients, plus for the MLP grad(prod), grad(act), grad(up); for flash
    attention dq, dk, dv, dout and its fp32 dq accumulator (the largest over the layer kinds)."""
    return max(_backward(g, w) for _, g in card.layer_groups)


def _backward(card: ModelCard, w: Workload) -> int:
    b = _dtypes(w)
    h, i = card.hidden_size, card.intermediate_size
    q, k = _attn_widths(card)
    mlp = (3 if card.mlp == "gated" else 2) * i * b.a
    if card.is_moe:
        # grouped GEMMs over the k routed copies, in the stream's dtype: grad(prod), grad(act)
        # and the gate_up gradient (2i)
        mlp = _routed_copies(card) * 4 * i * b.s
    attn = (2 * q + 2 * k) * b.a + 4 * q
    if card.layer_specs[0].mixer == "linear":
        # the chunk loop's backward accumulates full-length gradients of the five tensors it slices
        # per chunk (new values, k_cumdecay, the decayed q and k: 3 key-wide and 1 value-wide; the
        # intra-chunk scores, chunk-wide), each beside the zero-filled full-length gradient of one
        # slice, then q's and k's gradients (first cut, fp32, per value head and padded position)
        dk, dv, c = card.linear_key_head_dim or 0, card.linear_value_head_dim or 0, GDN_CHUNK
        padded = ceil(w.seq / c) * c
        attn = ceil(4 * (card.linear_value_heads or 0) * (2 * (3 * dk + dv + c) + dk + dv) * padded / w.seq)
    return 2 * b.s * h + max(mlp, attn)


def training_phases(card: ModelCard, w: Workload) -> tuple[list[Phase], dict[str, str]]:
    b = _dtypes(w)
    tokens = w.batch * w.seq
    p_bytes = int(PRECISIONS[w.dtype].bytes_per_element)
    params = card.parameters()
    weights = weight_bytes(card, w)
    trainable = [p for p in params if p.kind != "frozen"]  # ERNIE's score-correction bias has no gradient
    grads = sum(p.numel for p in trainable) * p_bytes
    opt = OPTIMIZERS[w.optimizer]
    states = sum(opt.state_bytes(p.numel, p_bytes) for p in trainable)
    step_transient = sum(opt.step_transient_bytes(p.numel, p_bytes) for p in trainable)
    h, vocab = card.hidden_size, card.vocab_size
    # input_ids and labels (int64), the loss's padded and shifted labels.
    inputs = 4 * 8 * tokens
    per_layer = saved_layer_per_token(card, w)
    if w.grad_checkpointing:
        # Non-reentrant checkpointing (transformers' default) keeps each layer's input;
        # backward recomputes one layer at a time, so one layer's saved set comes back.
        layers_saved = card.num_layers * b.s * h * tokens
        recompute = per_layer * tokens
    else:
        layers_saved = saved_layers_per_token(card, w) * tokens
        recompute = 0
    # Final norm (saved like a layer norm) and lm_head's input (a bf16 copy under autocast).
    final = _norm_saved(card, b) + (b.a if w.autocast else b.s) * h
    saved = inputs + layers_saved + final * tokens
    # Under autocast every linear weight is cast to bf16 once (autocast's weight cache) and the
    # copy is saved for backward; with checkpointing only lm_head's copy outlives the forward.
    # (MoE experts run as grouped GEMMs, which autocast does not cast: no copies of theirs.)
    linear_params = sum(p.numel for p in params if p.kind in ("linear", "lm_head") and ".experts." not in p.name)
    head_params = vocab * h
    if card.tie_word_embeddings:
        linear_params += head_params
    copies_fwd = b.a * linear_params if w.autocast else 0
    copies_bwd = (b.a * head_params if w.grad_checkpointing else copies_fwd) if w.autocast else 0
    # Loss (loss_utils.ForCausalLMLoss): logits (a) -> .float() (4, a no-op in fp32) ->
    # log_softmax (4, saved) -> nll. Backward: nll's grad (4) + log_softmax's grad (4) while its
    # saved output (4) is still alive: 12 bytes per token per vocabulary entry. Soft-capping
    # (cap * tanh(logits / cap)) adds tanh's output (a), saved until its backward (gemma-2-2b on
    # the H100: 12 B per entry at the loss, 14 at the start of backward, in bf16).
    softcap = b.a if card.final_logit_softcapping else 0
    logits_fwd = tokens * vocab * (b.a + (4 if b.a < 4 else 0) + 4 + softcap)
    logits_bwd = tokens * vocab * (12 + softcap)
    # lm_head backward: grad logits (a), grad hidden, weight grad (+ the bf16 grad of the
    # autocast copy before it is cast to the fp32 .grad).
    head_bwd = tokens * (vocab * b.a + h * b.a) + head_params * (p_bytes + (b.a if w.autocast else 0))
    layer_fwd_transient = tokens * max(_norm_transient(card), prefill_layer_peak_per_token(card, w) if w.grad_checkpointing else 0)
    fwd_act = saved + copies_fwd + max(logits_fwd, layer_fwd_transient)
    bwd_start = saved + copies_bwd + max(logits_bwd, head_bwd,
                                         head_params * p_bytes + recompute + _layer_backward_transient(card, w) * tokens)
    # At the end of backward every gradient exists. The embedding's backward builds a dense V x H
    # gradient; a tied weight already holds lm_head's in .grad, and autograd accumulates the two
    # out of place: .grad, the embedding's gradient and their sum are alive at once (a memory
    # snapshot of llama-3.2-3b on the H100: three V x H blocks at the peak). Untied, the
    # embedding's gradient is its own .grad (counted in gradients).
    tied_extra = 2 * head_params * p_bytes if card.tie_word_embeddings else 0
    # The first decoder layer runs its backward last: every later gradient exists by then
    # (lm_head's, the final norm's, layers 1..L-1; a tied embedding's .grad holds lm_head's),
    # beside layer 0's saved set (checkpointed: its input and its recomputed set), its autocast
    # weight copies and its backward's buffers. Where the experts of an MoE hold most of the
    # parameters this is the peak (a scaled-down Mixtral under autocast with checkpointing on
    # the H100: -4.1% -> -0.1%).
    first = [p for p in params if p.layer == 0]
    later_grads = grads - p_bytes * (sum(p.numel for p in first if p.kind != "frozen") + sum(
        p.numel for p in params if p.kind == "position_embedding" or (p.kind == "embedding" and not card.tie_word_embeddings)))
    first_layer = _saved(_first_layer_group(card), w) * tokens
    first_saved = (b.s * h * tokens + first_layer) if w.grad_checkpointing else first_layer
    first_copies = b.a * sum(p.numel for p in first if p.kind == "linear" and ".experts." not in p.name) if w.autocast else 0
    first_act = inputs + first_saved + first_copies + _layer_backward_transient(card, w) * tokens
    phases = [
        load_phase(card, w, weights),  # what the profiler's load phase measures; never the peak
        Phase("forward", {"weights": weights, "optimizer": states, "activations": fwd_act}),
        Phase("backward", {"weights": weights, "optimizer": states, "activations": bwd_start}),
        Phase("backward_layer_0", {"weights": weights, "optimizer": states, "gradients": later_grads,
                                   "activations": first_act}),
        Phase("backward_end", {"weights": weights, "optimizer": states, "gradients": grads,
                               "activations": tied_extra}),
        Phase("optimizer_step", {"weights": weights, "gradients": grads, "optimizer": states + step_transient}),
    ]
    explain = {
        "gradients": f"{sum(p.numel for p in trainable)} trainable params x {p_bytes} B",
        "optimizer": f"{opt.note}: {states} B",
        "activations": (
            f"saved per layer {per_layer} B/token"
            + (" (checkpointed: layer inputs only)" if w.grad_checkpointing else "")
            + f" x {card.num_layers} layers x {tokens} tokens; loss {12 * vocab} B/token at backward start"
            + (f"; autocast weight copies {copies_fwd} B" if w.autocast else "")
        ),
    }
    return phases, explain


# --- the estimate -------------------------------------------------------------------------

def estimate(card: ModelCard, w: Workload, cuda_context: tuple[int, str] | None = None,
             simulate_allocator: bool = True) -> MemoryBreakdown:
    """The memory of workload `w` at its peak phase. `cuda_context` = (bytes, where from)
    replaces the built-in H100 measurement (a calibration of the target GPU).
    `simulate_allocator`: where llmcalc.alloc_order has the workload's allocation order, the
    allocator's reserve comes from replaying it through the caching-allocator model (tens of ms);
    otherwise, or when False (searches that call this many times), the measured median fraction."""
    w, assumed = reference_attention(card, w)
    warnings = [*card.notes, *assumed, *validate_workload(w, card)]
    if w.mode == "infer":
        phases, explain = inference_phases(card, w)
    else:
        phases, explain = training_phases(card, w)
    # Ties go to the earlier phase; every phase lists all components.
    phases = [Phase(p.name, {c: p.components.get(c, 0) for c in COMPONENTS[:5]}) for p in phases]
    peak = max(phases, key=lambda p: p.total)
    allocated = peak.total + calibration.CUBLAS_WORKSPACE_BYTES
    reserve = calibration.allocator_reserve_bytes(allocated, w.mode, w.allocator)
    reserve_source = calibration.ALLOCATOR_SOURCE
    on_gpu = cuda_context is None or cuda_context[0] > 0
    if simulate_allocator and on_gpu:
        from llmcalc import (
            alloc_order,  # only here: `models`, `gpus` and plan's searches do not pay for it
        )

        events = alloc_order.events(card, w) if alloc_order.covers(card, w) else 0
        if events > alloc_order.MAX_EVENTS:
            reserve_source += f" (this workload's allocation order, ~{events:,} events, is too long to replay quickly)"
        elif events:
            # Fragmentation follows the order of allocations: replay the reference stack's order
            # through PyTorch's allocator rules (on the H100 the covered traces' reserves, up to
            # 24% of peak allocated, within 0.2 points but for three small runs, and 16 held-out
            # rows' device totals within 0.8%; docs/allocator.md, docs/validation-corrections.md).
            sim_allocated, sim_reserved = alloc_order.replayed_peaks(card, w)
            reserve = sim_reserved - sim_allocated
            reserve_source = (f"PyTorch's caching allocator simulated over the workload's allocation order "
                              f"(llmcalc.alloc_order): {100 * reserve / max(sim_allocated, 1):.1f}% of its "
                              f"peak allocated")
        else:
            from llmcalc import recorded

            entry = recorded.find(card, w)
            if entry is not None:
                length, sim_allocated, sim_reserved = recorded.replayed_peaks(entry, w, alloc_order.MAX_EVENTS)
                if length > alloc_order.MAX_EVENTS:
                    reserve_source += (f" (this workload's recorded allocation order, ~{length:,} events, is too "
                                       f"long to replay quickly)")
                else:
                    # an order generated from PyTorch's traces of this card and workload at three
                    # smaller shapes (held-out rows' reserves exact; docs/validation-corrections.md, 28)
                    reserve = sim_reserved - sim_allocated
                    reserve_source = (f"PyTorch's caching allocator simulated over an allocation order generated "
                                      f"from recorded traces (llmcalc.recorded, {entry['case']} scaled): "
                                      f"{100 * reserve / max(sim_allocated, 1):.1f}% of its peak allocated")
    context, context_source = cuda_context or (calibration.CUDA_CONTEXT_BYTES, calibration.CUDA_CONTEXT_SOURCE)
    # Kernel modules load lazily as the workload first runs them (flash: 16-bit SDPA).
    flash = w.attention == "sdpa" and PRECISIONS[w.compute_dtype].bits == 16
    bnb = w.dtype if w.dtype in ("int8", "nf4") else None
    modules = 0
    if context:  # a CUDA context (none on a CPU)
        modules = calibration.kernel_modules_bytes(w.mode, flash, bnb)
        context += modules
        context_source += f"; + {modules // calibration.MiB} MiB of lazily loaded kernel modules ({w.mode}" + \
            (", flash attention" if flash else "") + (f", bitsandbytes {bnb}" if bnb else "") + ")"
    components = dict(peak.components)
    components["activations"] += calibration.CUBLAS_WORKSPACE_BYTES
    components["cuda_context"] = context
    components["allocator_reserve"] = reserve
    explain["weights"] = _explain_weights(card, w)
    explain["cuda_context"] = context_source
    explain["allocator_reserve"] = reserve_source
    return MemoryBreakdown(
        model=card.name,
        params=card.num_params,
        workload=w,
        phases=tuple(phases),
        peak_phase=peak.name,
        components=components,
        peak_allocated_bytes=allocated,
        device_total_bytes=allocated + reserve + context,
        explain=explain,
        warnings=tuple(warnings),
        calibration=calibration.SOURCE if cuda_context is None else f"{context_source}; allocator: {calibration.SOURCE}",
        kernel_modules_bytes=modules,
    )


def _explain_weights(card: ModelCard, w: Workload) -> str:
    store = PRECISIONS[w.dtype]
    if store.is_float:
        return f"{card.num_params} params x {store.bytes_per_element:g} B ({w.dtype})"
    linear = sum(p.numel for p in card.parameters() if quantized(card, p, store))
    source = " (the checkpoint's quantization_config)" if w.dtype == card.quantization else ""
    return (f"{linear} linear params in {w.dtype}{source} ({store.note}) + {card.num_params - linear} "
            f"others in {w.compute_dtype}")
