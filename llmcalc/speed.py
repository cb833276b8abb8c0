"""Workload + hardware -> time per prefill and per decode step (pure Python, no torch).

A step is the sum of its kernels, each timed by its own roofline (LLM-Viewer's per-layer view,
taken down to the kernels the reference stack launches):

    t_op = max(flops / (peak_rate[dtype] x matmul_eff),
               bytes / (peak_bandwidth x bandwidth_eff),
               kernels x kernel_floor)

The last term is the smallest kernel's GPU time: a decode step of an eager transformers model
launches ~40 kernels per layer, most of them elementwise ops on a few KiB, and at batch 1 those
cost as much GPU time as reading the weights. The sum is the step's GPU kernel time (what a
profiler's kernel trace adds up). The wall clock is longer when the host cannot launch kernels
as fast as the GPU retires them: host_s = forward_s + kernels x launch_s, wall = max(kernel
time, host_s)
(on a CPU the two add up).

The reference workload is the profiler's (docs/throughput.md): transformers with SDPA, a
DynamicCache that grows by torch.cat (every decode step copies each layer's K and V), logits
for the last prompt position only, greedy decode. The efficiencies are measured (calibration.py,
or `llmcalc calibrate` on your GPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from math import ceil

from llmcalc import calibration
from llmcalc.calibration import ENGINE_DECODE_ATTENTION_S, INT8_QUANT_BYTES_PER_INPUT
from llmcalc.cards import ModelCard
from llmcalc.errors import InputError
from llmcalc.hardware import GpuSpec
from llmcalc.memory import GDN_CHUNK
from llmcalc.precision import PRECISIONS
from llmcalc.workload import Workload, math_sdpa

# GPU kernels one decoder layer launches per forward in transformers' eager modules, beyond the
# projections (counted per linear below). RMSNorm: to(fp32), pow, mean, add eps, rsqrt, mul,
# to(dtype), mul weight = 8; LayerNorm: 1. RoPE per tensor: q*cos, -x2, cat (rotate_half),
# *sin, add = 5. Residual add: 1. Cache update: torch.cat for K and V = 2. SDPA: 1, plus the
# output's transpose-contiguous: 1. Gated MLP: act, mul = 2; plain: act.
RMSNORM_KERNELS = 8
# Gemma's RMSNorm (rmsnorm_fp32): x.float(), pow, mean, + eps, rsqrt, mul, weight.float(), 1 + w,
# mul, type_as = 10 (traced per layer on the H100: 4 norms, 12 copies, 8 adds, 8 muls).
RMSNORM_FP32_KERNELS = 10
ROPE_KERNELS_PER_TENSOR = 5
# SDPA's math path per layer (falcon-7b on the H100, torch 2.11): q, k, v upcast, q and k scaled,
# k and v expanded to every head, two batched matmuls, the mask added, _safe_softmax (softmax,
# isneginf, all, where), the output and the probabilities cast back, mask fills and indexing: 23.
MATH_SDPA_KERNELS = 23
# Bytes per score on the math path: scores written (4), the mask added in place (8), softmax (8),
# isneginf (5), all (1), where (9), read by P V (4), the probabilities cast back to 16 bits (6).
MATH_SDPA_BYTES_PER_SCORE = 45
# transformers 5.17's grouped-GEMM experts, per MoE layer, beyond the router's linear and the two
# grouped GEMMs: softmax, top-k, normalisation, sort, histc, cumsum, gathers, index_put, masked
# fills, the routing-weight product, fp32 casts and the sum over the k copies (a scaled-down
# Mixtral traced on the H100: 37.5 MoE kernels per layer with the GEMMs and act * up).
MOE_ROUTING_KERNELS = 30
# Per forward, outside the layers: embedding gather, RoPE cos/sin (inv_freq matmul, cat, cos,
# sin, casts), final norm, logits .float(), argmax, position ids and cache bookkeeping.
HEAD_KERNELS = 14
# Activation kernels (transformers' ACT2FN): gelu_new is a chain of elementwise ops.
ACT_KERNELS = {"silu": 1, "gelu": 1, "gelu_pytorch_tanh": 1, "gelu_new": 8}


@dataclass(frozen=True)
class Efficiency:
    """Achieved fractions of the datasheet peaks, and the two per-kernel costs."""

    bandwidth: float  # achieved / peak bandwidth, large device-to-device copy
    matmul: dict[str, float]  # achieved / peak dense rate per dtype, large square GEMM
    kernel_floor_s: float  # GPU time of a small kernel (profiler trace median)
    launch_s: float  # host time per kernel launched from eager PyTorch modules
    source: str
    gemv: float = 0.0  # achieved / peak bandwidth of a matrix-vector product (0: as `bandwidth`)
    forward_s: float = 0.0  # host time per forward beyond its kernels' launches
    # host time of one quantized linear call beyond its launches, by (dtype, more than one row)
    quant_call_s: dict[tuple[str, bool], float] = field(default_factory=dict)
    # GPU time of a small-batch quantized linear: (fixed seconds, weight bytes/s as a fraction of peak)
    quant_linear: dict[tuple[str, bool], tuple[float, float]] = field(default_factory=dict)
    quant_linear_max_rows: int = 256
    # achieved / peak bandwidth of a serving engine's weight GEMMs beyond their fixed latency
    # (engine_step_time; 0: as `gemv`)
    engine_gemv: float = 0.0
    # achieved / peak matrix rate of a serving engine's grouped expert GEMMs (vLLM's Triton
    # fused_moe) where they are compute-bound (0: as `matmul`)
    engine_moe: float = 0.0
    link: float = 0.8  # achieved / peak interconnect bandwidth of an all-reduce (assumed)
    link_latency_s: float = 10e-6  # per collective (assumed)


@dataclass(frozen=True)
class Op:
    """One or more kernels of the same kind: their FLOPs, bytes moved and count."""

    name: str
    flops: float
    bytes: float
    kernels: int
    rate: str = ""  # dtype whose matrix rate applies; "" for elementwise work
    streams_weights: bool = False  # a projection: its bytes stream at matrix-vector bandwidth
    calls: tuple[str, bool] | None = None  # a quantized linear call: (dtype, more than one row)
    count: float = 1.0  # how many such calls (layers x experts)
    quant: tuple[str, bool] | None = None  # timed by Efficiency.quant_linear (bytes = weight bytes)
    link_bytes: float = 0.0  # a tensor-parallel collective: ring all-reduce bytes per GPU
    fixed_s: float = 0.0  # engine_step_time: the kernels' measured fixed time, in place of kernels x floor
    grouped: bool = False  # an engine's grouped expert GEMM: its FLOPs at Efficiency.engine_moe
    bandwidth: float = 0.0  # engine_step_time: the kernel's measured fraction of peak bandwidth (0: the copy rate)


@dataclass(frozen=True)
class StepTime:
    """Predicted time of one forward (a prefill, or one decode step for the whole batch)."""

    kernel_s: float  # sum over ops of their roofline time: the GPU kernel time
    host_s: float  # kernels x launch_s
    wall_s: float  # max(kernel_s, host_s)
    flops: float
    bytes: float
    kernels: int
    compute_s: float  # part of kernel_s where the matrix rate binds
    memory_s: float  # part where bandwidth binds
    floor_s: float  # part where the per-kernel floor binds
    comm_s: float = 0.0  # tensor-parallel collectives

    @property
    def bound(self) -> str:
        """What sets the GPU time: compute, memory (bandwidth), kernel overhead or communication."""
        parts = {"compute": self.compute_s, "memory": self.memory_s, "overhead": self.floor_s,
                 "communication": self.comm_s}
        return max(parts, key=lambda k: parts[k])

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOP per byte moved."""
        return self.flops / self.bytes if self.bytes else 0.0


def matmul_rate_dtype(w: Workload, hw: GpuSpec) -> str:
    """The matrix-unit dtype a workload's GEMMs run in: fp32 without TF32 (PyTorch's default
    for matmuls), the 16-bit compute dtype, or int8/fp8 units for those weights."""
    if w.dtype in ("int8", "fp8") and w.dtype in hw.peak_flops:
        return w.dtype
    return w.compute_dtype


def _rate(hw: GpuSpec, dtype: str) -> float:
    if dtype in hw.peak_flops:
        return hw.peak_flops[dtype]
    if dtype in ("fp16", "bf16"):  # the other 16-bit rate, else fp32
        other = "bf16" if dtype == "fp16" else "fp16"
        if other in hw.peak_flops:
            return hw.peak_flops[other]
    return hw.peak_flops.get("fp32", min(hw.peak_flops.values()))


def _linear_ops(name: str, rows: int, out_f: int, in_f: int, w: Workload, a: int, eff: Efficiency) -> list[Op]:
    """A linear layer on `rows` input rows: weight (out_f x in_f) in the stored format. Kernel
    counts per quantized linear were traced on the H100 (benchmarks/results/h100-calibration.json):
    Linear8bitLt 7 kernels for one row, 8 for more; Linear4bit 1 and 3."""
    flops = 2.0 * rows * out_f * in_f
    act_io = rows * (in_f + out_f) * a
    store = PRECISIONS[w.dtype]
    wbytes = store.matrix_bytes(out_f, in_f) if not store.is_float else out_f * in_f * store.bytes_per_element
    key = (w.dtype, rows > 1)
    if key in eff.quant_linear and rows <= eff.quant_linear_max_rows:
        # bitsandbytes at small batch: the layer's measured time, fixed + weight bytes / rate
        kernels = {("int8", False): 7, ("int8", True): 8, ("nf4", False): 1, ("nf4", True): 3}[key]
        return [Op(name, flops, wbytes, kernels, calls=key, quant=key)]
    if w.dtype == "int8":
        # bitsandbytes LLM.int8: quantize the input rows (absmax, int8 copy, outlier columns), an
        # int8 GEMM into an int32 accumulator, dequantize to 16-bit with the row and column scales.
        # (the in-model cost of quantization and outlier detection, as bytes at the copy rate)
        quant = Op(name + ".quant", 0, rows * in_f * INT8_QUANT_BYTES_PER_INPUT, 5 if rows == 1 else 6)
        gemm = Op(name, flops, wbytes + rows * in_f + 4 * rows * out_f, 1, "int8", True)
        dequant = Op(name + ".dequant", 0, rows * out_f * (4 + a), 1, calls=("int8", rows > 1))
        return [quant, gemm, dequant]
    if w.dtype == "nf4":
        if rows == 1:  # bitsandbytes gemv_4bit reads the packed weight directly
            return [Op(name, flops, wbytes + act_io, 1, "", True, ("nf4", False))]
        # more rows: dequantize the whole weight to 16-bit, then a 16-bit GEMM over it
        dequant = Op(name + ".dequant", 0, wbytes + out_f * in_f * a, 2, calls=("nf4", True))
        return [dequant, Op(name, flops, out_f * in_f * a + act_io, 1, w.compute_dtype, True)]
    return [Op(name, flops, wbytes + act_io, 1, "fp8" if w.dtype == "fp8" else w.compute_dtype, True)]


def forward_ops(card: ModelCard, w: Workload, rows: int, new_tokens: int, context: int, head_rows: int,
                eff: Efficiency, tp: int = 1) -> list[Op]:
    """Kernels of one forward on one GPU: `rows` = sequences x new tokens each; attention over
    `context` keys (for a prompt: causal, so on average half); logits for `head_rows` rows.
    With tensor parallelism over `tp` GPUs (Megatron): q/k/v, gate/up and lm_head split by
    output, o and down by input, heads and the KV cache split, norms and residual adds
    replicated, and two all-reduces of the residual stream per layer (after o and down)."""
    ops: list[Op] = []
    for n, group in card.layer_groups:  # each kind of layer, times its count
        window = group.sliding_window if group.sliding_layers else None
        keys = min(context, window) if window else context
        ops += [_scaled(op, n) for op in _layer_ops(group, w, rows, new_tokens, keys, eff, tp)]
    a = int(PRECISIONS[w.compute_dtype].bytes_per_element)
    h = card.hidden_size

    def norm(label: str, n: int) -> Op:
        return _norm_op(card, label, n, w)

    # outside the layers
    head_store = PRECISIONS[w.dtype] if PRECISIONS[w.dtype].is_float else PRECISIONS[w.compute_dtype]
    v = ceil(card.vocab_size / tp)  # vocabulary-parallel lm_head; logits gathered for sampling
    ops.append(Op("embedding", 0, rows * h * a * 2, 1))
    if tp > 1:
        ops.append(Op("logits_gather", 0, 0, 1, link_bytes=(tp - 1) * head_rows * v * a))
    ops.append(norm("final_norm", rows))
    ops.append(Op("lm_head", 2.0 * head_rows * v * h, v * h * head_store.bytes_per_element + head_rows * (h + v) * a,
                  1, w.compute_dtype, True))
    # logits .float() and argmax over the vocabulary
    ops.append(Op("sampling", 0, head_rows * v * tp * (a + 4 + 4), HEAD_KERNELS))
    return ops


def _layer_ops(card: ModelCard, w: Workload, rows: int, new_tokens: int, context: int, eff: Efficiency,
               tp: int) -> list[Op]:
    """One decoder layer's kernels (forward_ops), for a card whose layers are all of one kind."""
    a = int(PRECISIONS[w.compute_dtype].bytes_per_element)
    s = 4 if w.autocast else a  # residual stream dtype
    kvb = PRECISIONS[w.kv_dtype or w.compute_dtype].bytes_per_element
    h, i, q, kv, heads = card.hidden_size, card.intermediate_size, card.q_dim, card.kv_dim, card.num_heads
    if tp > 1:  # this rank's share
        kv = kv * ceil(card.kv_heads / tp) // card.kv_heads
        q, heads, i = q // tp, heads // tp, i // tp
    seqs = max(rows // max(new_tokens, 1), 1)
    # ring all-reduce: each GPU sends and receives 2 (t - 1) / t of the tensor
    allreduce = Op("allreduce", 0, 0, 1, link_bytes=2 * (tp - 1) / tp * rows * h * a) if tp > 1 else None

    def norm(label: str, n: int) -> Op:
        return _norm_op(card, label, n, w)

    layer: list[Op] = [norm("norm", rows)]
    if card.layer_specs[0].mixer == "linear":
        layer += _gated_delta_net_ops(card, w, rows, new_tokens, a, eff, tp)
        layer.append(Op("residual", 0, 3 * rows * h * s, 1))
        layer += [norm("norm", rows)] * (card.norms_per_layer - 1) + _mlp_ops(card, w, rows, a, s, eff, tp, allreduce)
        return layer
    if card.layer_specs[0].mixer == "conv":
        # LFM2's short conv: in_proj (3h), B * x, a depthwise conv over the sequence (the cached
        # state in decode), C * y, out_proj; no attention.
        layer += _linear_ops("in_proj", rows, 3 * h, h, w, a, eff)
        layer.append(Op("conv", 2.0 * rows * h * (card.conv_kernel or 0), 8 * rows * h * a, 4))
        layer += _linear_ops("out_proj", rows, h, h, w, a, eff)
        layer.append(Op("residual", 0, 3 * rows * h * s, 1))
        layer += [norm("norm", rows)] * (card.norms_per_layer - 1) + _mlp_ops(card, w, rows, a, s, eff, tp, allreduce)
        return layer
    if card.is_mla:
        # MLA as transformers runs it: the low-rank projections, then every head's key (nope +
        # rope) and value decompressed; attention reads and caches those (k_dim, v_dim)
        lat, ql = card.kv_lora_rank or 0, card.q_lora_rank
        layer += (_linear_ops("q_a_proj", rows, ql, h, w, a, eff) + _linear_ops("q_b_proj", rows, q, ql, w, a, eff)
                  if ql else _linear_ops("q_proj", rows, q, h, w, a, eff))
        layer += _linear_ops("kv_a_proj", rows, lat + (card.qk_rope_head_dim or 0), h, w, a, eff)
        # transformers caches the latent and expands it at every forward: kv_b runs over every
        # cached position of every sequence, not only the new tokens
        layer += _linear_ops("kv_b_proj", seqs * context, card.num_heads * ((card.qk_nope_head_dim or 0)
                                                                            + (card.v_head_dim or 0)), lat, w, a, eff)
        kv = (card.k_dim + card.v_dim) // 2 // tp
    elif card.fused_qkv:
        layer += _linear_ops("qkv_proj", rows, q + 2 * kv, h, w, a, eff)
    else:
        layer += _linear_ops("q_proj", rows, q, h, w, a, eff)
        layer += _linear_ops("k_proj", rows, kv, h, w, a, eff)
        layer += _linear_ops("v_proj", rows, kv, h, w, a, eff)
    if card.qk_norm:  # an RMSNorm over q and one over k: the layer norm's passes
        layer.append(Op("qk_norm", 0, rows * (q + kv) * (a + 4 + 8 + 8 + 8 + 4 + a + 2 * a), 2 * RMSNORM_KERNELS))
    if card.position_embedding == "rope" and card.layer_specs[0].mixer != "nope":
        # five elementwise passes, each reading (one or two inputs) and writing the tensor
        layer.append(Op("rope", 0, 12 * rows * (q + kv) * a, 2 * ROPE_KERNELS_PER_TENSOR))
    # DynamicCache.update: torch.cat(old, new) for K and V reads the old cache and writes the
    # grown one: each step moves the whole layer cache twice (read + write).
    old = context - new_tokens
    if old > 0:  # the first update stores the prompt's K and V as they are
        layer.append(Op("cache_cat", 0, 2 * seqs * (2 * old + new_tokens) * kv * kvb, 2))
    # Attention: QK^T and PV, 2 x 2 x d FLOPs per (query, key, head); a prompt attends causally,
    # so on average over half its keys (flash/efficient kernels skip the masked blocks).
    keys = context / 2 if new_tokens > 1 else context
    attn_flops = 4.0 * rows * keys * heads * card.dim_head
    kv_read = 2 * seqs * context * kv * kvb
    if w.attention == "eager":
        # scores materialised: write, softmax (fp32) and cast, read for PV
        scores = rows * heads * keys
        layer.append(Op("attention", attn_flops, kv_read + 2 * rows * q * a + scores * (4 * a + 8), 6,
                        w.compute_dtype))
    elif math_sdpa(card, w):
        # SDPA's math path (memory.py says when): everything in fp32, GEMMs at the fp32 rate (TF32
        # is off), and every key scored, the masked ones too. Upcasts of q and of the whole K/V
        # cache (16-bit only), q scaled, K and V expanded to every head as contiguous fp32 copies
        # (written, then read by the batched matmuls), the scores, the fp32 output and its cast.
        d = card.dim_head
        scores = rows * heads * context
        upcast = 0 if a == 4 else rows * q * (a + 4) + 2 * seqs * context * kv * (kvb + 4)
        expand = 2 * 2 * seqs * heads * context * d * 4
        layer.append(Op("attention", 4.0 * rows * context * heads * d,
                        kv_read + upcast + 8 * rows * q + expand + scores * MATH_SDPA_BYTES_PER_SCORE
                        + rows * q * (8 + a), MATH_SDPA_KERNELS, "fp32"))
    else:
        layer.append(Op("attention", attn_flops, kv_read + 2 * rows * q * a, 1, w.compute_dtype))
    layer.append(Op("attn_out_copy", 0, 2 * rows * q * a, 1))
    layer += _linear_ops("o_proj", rows, h, q, w, a, eff)
    if allreduce:
        layer.append(allreduce)
    layer.append(Op("residual", 0, 3 * rows * h * s, 1))
    for _ in range(card.norms_per_layer - 1):  # Gemma 2: post-attention, pre- and post-MLP norms
        layer.append(norm("norm", rows))
    return layer + _mlp_ops(card, w, rows, a, s, eff, tp, allreduce)


def _mlp_ops(card: ModelCard, w: Workload, rows: int, a: int, s: int, eff: Efficiency, tp: int,
             allreduce: Op | None) -> list[Op]:
    """A layer's MLP (dense, or routed experts with an optional shared expert), its all-reduce
    and its residual add."""
    h, i = card.hidden_size, card.intermediate_size // tp
    layer: list[Op] = []
    experts_active = 1.0
    if card.is_moe:
        e, k = card.num_experts or 1, card.experts_per_token or 1
        # distinct experts a batch of `rows` tokens routes to, in expectation (uniform router)
        experts_active = e * (1 - (1 - k / e) ** rows)
        layer += _linear_ops("router", rows, e, h, w, a, eff)
    tokens_per_expert = max(ceil(rows * (card.experts_per_token or 1) / experts_active), 1) if card.is_moe else rows
    mlp: list[Op] = []
    if card.mlp == "gated":
        mlp += _linear_ops("gate_proj", tokens_per_expert, i, h, w, a, eff)
        mlp += _linear_ops("up_proj", tokens_per_expert, i, h, w, a, eff)
        mlp.append(Op("act_mul", 0, tokens_per_expert * i * a * 5, ACT_KERNELS[card.activation] + 1))
    else:
        mlp += _linear_ops("fc_in", tokens_per_expert, i, h, w, a, eff)
        mlp.append(Op("act", 0, tokens_per_expert * i * a * 2 * ACT_KERNELS[card.activation],
                      ACT_KERNELS[card.activation]))
    mlp += _linear_ops("down_proj", tokens_per_expert, h, i, w, a, eff)
    if card.is_moe and PRECISIONS[w.dtype].is_float and card.mlp == "gated":
        # transformers 5 runs the experts as two grouped GEMMs over all k routed copies of the
        # tokens (integrations/moe.py): each reads every active expert's weights once; the
        # experts run in the stream's dtype (grouped_mm is not on autocast's list).
        k = card.experts_per_token or 1
        routed = rows * k
        wb = PRECISIONS[w.dtype].bytes_per_element
        rate = w.compute_dtype if s < 4 else "fp32"
        # Around the GEMMs (traced): the routed copies gathered (read rows, write k x rows);
        # masked_fill_ in place on the gathered inputs, the gate_up output and the down output;
        # the routing-weight product; its fp32 copy, the sum over the k copies and the cast back.
        routing = (rows * h * s + routed * h * s + 2 * routed * (2 * h + 2 * i) * s + 2 * routed * h * s
                   + routed * h * (s + 4) + routed * h * 4 + rows * h * (4 + 4 + s))
        layer += [
            Op("moe_routing", 0, routing, MOE_ROUTING_KERNELS),
            Op("experts_gate_up", 2.0 * routed * 2 * i * h, experts_active * 2 * i * h * wb + routed * (h + 2 * i) * s,
               2, rate, True),
            Op("experts_act_mul", 0, routed * i * s * 5, ACT_KERNELS[card.activation] + 1),
            Op("experts_down", 2.0 * routed * i * h, experts_active * i * h * wb + routed * (i + h) * s,
               2, rate, True),
        ]
    else:
        layer += [_scaled(op, experts_active) for op in mlp]
    if allreduce:
        layer.append(allreduce)
    layer.append(Op("residual", 0, 3 * rows * h * s, 1))

    if card.shared_expert_intermediate_size:  # a dense gated MLP beside the experts
        sh = card.shared_expert_intermediate_size // tp
        layer += (_linear_ops("shared_gate_proj", rows, sh, h, w, a, eff)
                  + _linear_ops("shared_up_proj", rows, sh, h, w, a, eff) + [Op("shared_act_mul", 0, rows * sh * a * 5, ACT_KERNELS[card.activation] + 1)]
                  + _linear_ops("shared_down_proj", rows, h, sh, w, a, eff))
    return layer


# Kernels of one Gated DeltaNet layer in transformers' torch path, counted from
# modeling_qwen3_5.py (5.17): the padding mask (2), b, a -> beta and g (8), q and k repeated to the
# value heads (4), five fp32 conversions, two L2 norms (5 each) and the query's scale (16 with the
# zero state), the gated RMSNorm (12) and the cache's copies (2): 42 outside the delta rule proper;
# a decode step's recurrence is 11 more, a prompt's chunked rule 30 more plus 9 a chunk; the causal
# conv 5 in decode (cat, the state's copy, conv1d, SiLU), 3 in a prompt. Measured on the H200
# (validation rows' profiler traces, transformers 5.17): a qwen3.5-0.8b decode step launches
# 2,006 kernels.
GDN_KERNELS_OUTSIDE = 42
GDN_KERNELS_DECODE = 11
GDN_KERNELS_PREFILL = 30
GDN_KERNELS_PER_CHUNK = 9


def _gated_delta_net_ops(card: ModelCard, w: Workload, rows: int, new_tokens: int, a: int, eff: Efficiency | None,
                         tp: int) -> list[Op]:
    """A Gated DeltaNet layer (Qwen3.5/3.6): its projections, the causal conv, the delta rule and
    the gated norm. The delta rule per value head and token: a prompt runs it in chunks of C = 64
    (the k*beta k^T system and q k^T within the chunk, 2 x 2 C d_k; the two triangular solves,
    C (d_k + d_v); reading and updating the d_k x d_v state, 3 x 2 d_k d_v), a decode step
    reads the state, updates it and reads it again (4 x 2 d_k d_v per token) and moves it
    (fp32, read and written). transformers' torch path runs it in fp32 over materialised
    tensors (memory.py's list, each written and read once) with a Python loop over the chunks and
    the state's products as separate passes (14 over the state in decode); an engine (eff None:
    engine_step_time times it) runs merged projections and flash-linear-attention's kernels, which
    move what is listed below at their measured bandwidth."""
    h = card.hidden_size
    conv, vdim = card.linear_conv_dim // tp, card.linear_value_dim // tp
    vh = max(1, (card.linear_value_heads or 0) // tp)
    dk, dv = card.linear_key_head_dim or 0, card.linear_value_head_dim or 0
    seqs = max(rows // max(new_tokens, 1), 1)
    state = seqs * card.linear_state_elements // tp * 4
    prompt, engine = new_tokens > 1, eff is None
    c = GDN_CHUNK
    flops = 2.0 * rows * vh * ((2 * c * dk + c * (dk + dv) / 2 + 3 * dk * dv) if prompt else 4 * dk * dv)
    if eff is None:  # an engine: in_proj_qkvz and in_proj_ba merged
        ops = [_engine_linear("in_proj_qkvz", rows, conv + vdim, h, w), _engine_linear("in_proj_ba", rows, 2 * vh, h, w)]
    elif card.linear_fused_proj:  # Qwen3-Next: two projections, then q, k, v and z copied out of them
        ops = (_linear_ops("in_proj_qkvz", rows, conv + vdim, h, w, a, eff)
               + _linear_ops("in_proj_ba", rows, 2 * vh, h, w, a, eff)
               + [Op("qkvz_copies", 0, 4 * rows * (conv + vdim) * a, 6)])
    else:
        ops = (_linear_ops("in_proj_qkv", rows, conv, h, w, a, eff) + _linear_ops("in_proj_z", rows, vdim, h, w, a, eff)
               + _linear_ops("in_proj_b", rows, vh, h, w, a, eff) + _linear_ops("in_proj_a", rows, vh, h, w, a, eff))
    ops.append(Op("conv", 2.0 * rows * conv * (card.conv_kernel or 0), 3 * rows * conv * a,
                  1 if engine else 3 if prompt else 5))
    kh = max(1, (card.linear_key_heads or 0) // tp)
    if prompt and engine:
        # flash-linear-attention's chunked rule (chunk_gated_delta_rule_fwd), per token: q and k
        # L2-normalised (read, write), the decay's cumulative sum, the intra-chunk matrix A (64
        # fp32 per value head, written and read), the WY factors w and u and the new values (each
        # written and read), the state at every chunk in bf16 (written and read), q read once, k
        # three times, v once, the output written; 7 kernels, at their measured bandwidth
        per_token = (16 * kh * dk + 8 * vh + 2 * 4 * c * vh + 4 * vh * (dk + dv) + 4 * vh * dv
                     + 4 * vh * dk * dv / c + 2 * vh * dv + 2 * vh * dv)
        ops.append(Op("delta_rule", flops, rows * per_token, 7, w.compute_dtype,
                      bandwidth=calibration.ENGINE_GDN_PREFILL_BANDWIDTH))
    elif prompt:
        # the state per chunk: the torch loop reads it in two products, decays it (read, write),
        # writes k^T v_new and adds them (read 2, write 1)
        io = rows * (conv + vdim) * a + 7 * state * ceil(new_tokens / c) + 2 * 4 * rows * vh * (6 * dk + 4 * dv + 3 * c)
        kernels = GDN_KERNELS_OUTSIDE + GDN_KERNELS_PREFILL + GDN_KERNELS_PER_CHUNK * ceil(new_tokens / c)
        ops.append(Op("delta_rule", flops, io, kernels, "fp32"))
    elif engine:
        # the fused recurrence: every fp32 state read and written once, q, k, v read and the output
        # written, at its measured bandwidth beside a measured fixed time
        io = 2 * state + rows * (4 * kh * dk + 4 * vh * dv)
        ops.append(Op("delta_rule", flops, io, 1, fixed_s=calibration.ENGINE_GDN_DECODE_S,
                      bandwidth=calibration.ENGINE_GDN_DECODE_BANDWIDTH))
    else:
        # the torch recurrence passes over state-sized tensors 14 times (decay 2, k-product and its
        # sum 3, the outer product 1, the update 3, the q-product and its sum 3, the cache's copy 2)
        io = 14 * state + rows * (conv + vdim) * a
        ops.append(Op("delta_rule", flops, io, GDN_KERNELS_OUTSIDE + GDN_KERNELS_DECODE))
    ops.append(Op("gated_norm", 0, rows * vdim * (3 * a + (0 if engine else 16)), 1))
    out = [_engine_linear("out_proj", rows, h, vdim, w)] if eff is None else _linear_ops("out_proj", rows, h, vdim, w, a, eff)
    return ops + out


def _norm_op(card: ModelCard, label: str, n: int, w: Workload) -> Op:
    h = card.hidden_size
    a = int(PRECISIONS[w.compute_dtype].bytes_per_element)
    s = 4 if w.autocast else a  # residual stream dtype
    if card.norm == "rmsnorm_fp32":
        # x(s) -> fp32 copy, pow, mean, x * rsqrt, * (1 + w), cast: every pass in fp32
        return Op(label, 0, n * h * (s + 4 + 8 + 4 + 8 + 8 + 4 + a), RMSNORM_FP32_KERNELS)
    if card.norm not in ("layernorm", "layernorm_nobias"):
        # x(s) -> fp32 copy, pow, mean, rsqrt, mul, cast, *weight: ~10 passes over n x h
        return Op(label, 0, n * h * (s + 4 + 8 + 8 + 8 + 4 + a + 2 * a), RMSNORM_KERNELS)
    return Op(label, 0, n * h * (s + a), 1)


def _scaled(op: Op, times: float) -> Op:
    return replace(op, flops=op.flops * times, bytes=op.bytes * times, kernels=ceil(op.kernels * times),
                   count=op.count * times, link_bytes=op.link_bytes * times, fixed_s=op.fixed_s * times)


def _compute_s(op: Op, hw: GpuSpec, eff: Efficiency) -> float:
    """An op's FLOPs at its dtype's matrix rate (0 for elementwise work)."""
    if not (op.flops and op.rate):
        return 0.0
    if op.grouped and eff.engine_moe:
        return op.flops / (_rate(hw, op.rate) * eff.engine_moe)
    return op.flops / (_rate(hw, op.rate) * eff.matmul.get(op.rate, eff.matmul.get("bf16", 0.5)))


def _collective_s(op: Op, hw: GpuSpec, eff: Efficiency) -> float:
    """A tensor-parallel collective: its latency per call plus its bytes over the interconnect."""
    if not hw.link_bytes_per_s:
        raise InputError(f"{hw.id}: no interconnect bandwidth in the catalog, so tensor-parallel time "
                         "cannot be predicted")
    return eff.link_latency_s * op.kernels + op.link_bytes / (hw.link_bytes_per_s * eff.link)


def step_time(ops: list[Op], hw: GpuSpec, eff: Efficiency) -> StepTime:
    compute = memory = floor = flops = moved = comm = 0.0
    kernels = 0
    host_calls = 0.0
    bw = hw.bytes_per_s * eff.bandwidth
    bw_gemv = hw.bytes_per_s * (eff.gemv or eff.bandwidth)
    for op in ops:
        t_compute = _compute_s(op, hw, eff)
        if op.link_bytes:
            comm += _collective_s(op, hw, eff)
            kernels += op.kernels
            continue
        t_memory = op.bytes / (bw_gemv if op.streams_weights else bw)
        if op.quant:
            fixed, rate = eff.quant_linear[op.quant]
            t_memory = op.count * fixed + op.bytes / (rate * hw.bytes_per_s)
        t_floor = op.kernels * eff.kernel_floor_s
        t = max(t_compute, t_memory, t_floor)
        if t == t_compute:
            compute += t
        elif t == t_memory:
            memory += t
        else:
            floor += t
        flops += op.flops
        moved += op.bytes
        kernels += op.kernels
        if op.calls:
            host_calls += op.count * eff.quant_call_s.get(op.calls, 0.0)
    kernel_s = compute + memory + floor + comm
    host_s = eff.forward_s + kernels * eff.launch_s + host_calls
    # A GPU overlaps the host's launches with the kernels of earlier ones; a CPU runs the
    # dispatch and the op on the same cores, one after the other.
    wall_s = kernel_s + host_s if hw.kind == "cpu" else max(kernel_s, host_s)
    return StepTime(kernel_s=kernel_s, host_s=host_s, wall_s=wall_s, flops=flops, bytes=moved,
                    kernels=kernels, compute_s=compute, memory_s=memory, floor_s=floor, comm_s=comm)


# A serving engine's forward (vLLM V1's Llama-style layer, vllm/model_executor/models/llama.py):
#   fused residual add + RMSNorm; one merged qkv GEMM (QKVParallelLinear); rotary on q and k in
#   one kernel; k and v written into the paged cache in one kernel (reshape_and_cache_flash);
#   flash attention reading each grouped KV head once; o GEMM; fused add + RMSNorm; one merged
#   gate_up GEMM (MergedColumnParallelLinear); SiLU-and-mul in one kernel; down GEMM.
# Then the final norm, lm_head over the sampled rows, and the sampler (logits to fp32, argmax).
# Every kernel costs a fixed latency (the small-kernel time) plus its roofline: launches are
# replayed from CUDA graphs, so no host term; engine_step_time sums them.
ENGINE_SAMPLER_KERNELS = 3


def engine_forward_ops(card: ModelCard, w: Workload, rows: int, new_tokens: int, context: int, head_rows: int,
                       tp: int = 1) -> list[Op]:
    """A serving engine's kernels for one forward on one GPU (the arguments as forward_ops)."""
    ops: list[Op] = []
    for n, group in card.layer_groups:
        window = group.sliding_window if group.sliding_layers else None
        keys = min(context, window) if window else context
        ops += [_scaled(op, n) for op in _engine_layer_ops(group, w, rows, new_tokens, keys, tp)]
    a = int(PRECISIONS[w.compute_dtype].bytes_per_element)
    h = card.hidden_size
    head_store = PRECISIONS[w.dtype] if PRECISIONS[w.dtype].is_float else PRECISIONS[w.compute_dtype]
    v = ceil(card.vocab_size / tp)
    ops.append(Op("embedding", 0, rows * h * a * 2, 1))
    if tp > 1:
        ops.append(Op("logits_gather", 0, 0, 1, link_bytes=(tp - 1) * head_rows * v * a))
    ops.append(Op("final_norm", 0, rows * h * 4 * a, 1))  # fused add + norm
    ops.append(Op("lm_head", 2.0 * head_rows * v * h, v * h * head_store.bytes_per_element + head_rows * (h + v) * a,
                  1, w.compute_dtype, True))
    ops.append(Op("sampling", 0, head_rows * v * tp * (a + 4 + 4), ENGINE_SAMPLER_KERNELS))
    return ops


def _engine_linear(name: str, rows: int, out_f: int, in_f: int, w: Workload) -> Op:
    """One weight GEMM as an engine runs it: the stored weight streamed once, its dequantization
    (AWQ/GPTQ Marlin, fp8) inside the kernel."""
    a = int(PRECISIONS[w.compute_dtype].bytes_per_element)
    wbytes = PRECISIONS[w.dtype].matrix_bytes(out_f, in_f)  # a float format's: out x in x its bytes
    rate = "fp8" if w.dtype == "fp8" else w.compute_dtype
    return Op(name, 2.0 * rows * out_f * in_f, wbytes + rows * (in_f + out_f) * a, 1, rate, True)


def _engine_layer_ops(card: ModelCard, w: Workload, rows: int, new_tokens: int, context: int, tp: int) -> list[Op]:
    """One decoder layer under a serving engine (engine_forward_ops), its layers all of one kind."""
    a = int(PRECISIONS[w.compute_dtype].bytes_per_element)
    kvb = PRECISIONS[w.kv_dtype or w.compute_dtype].bytes_per_element
    h, q, kv, heads = card.hidden_size, card.q_dim, card.kv_dim, card.num_heads
    if tp > 1:
        kv = kv * ceil(card.kv_heads / tp) // card.kv_heads
        q, heads = q // tp, heads // tp
    seqs = max(rows // max(new_tokens, 1), 1)
    allreduce = Op("allreduce", 0, 0, 1, link_bytes=2 * (tp - 1) / tp * rows * h * a) if tp > 1 else None
    add_norm = Op("add_norm", 0, rows * h * 4 * a, 1)  # reads x and the residual, writes both
    layer: list[Op] = [add_norm]
    mixer = card.layer_specs[0].mixer
    if mixer == "linear":
        layer += _gated_delta_net_ops(card, w, rows, new_tokens, a, None, tp)
    elif mixer == "conv":  # LFM2's short conv: in_proj, the gated depthwise conv, out_proj
        layer += [_engine_linear("in_proj", rows, 3 * h, h, w), Op("conv", 2.0 * rows * h * (card.conv_kernel or 0),
                                                                      5 * rows * h * a, 1),
                  _engine_linear("out_proj", rows, h, h, w)]
    else:
        if card.is_mla:
            # MLA as engines run it (vllm/attention/backends/mla): the latent (kv_lora_rank + rope
            # dims) is cached; kv_b's key half is absorbed into the query and its value half
            # applied to the output, so kv_b streams once per forward, not over the cache.
            lat, rope, ql = card.kv_lora_rank or 0, card.qk_rope_head_dim or 0, card.q_lora_rank
            nope, vd = card.qk_nope_head_dim or 0, card.v_head_dim or 0
            layer += ([_engine_linear("q_a_proj", rows, ql, h, w), Op("q_a_norm", 0, rows * ql * 2 * a, 1),
                       _engine_linear("q_b_proj", rows, q, ql, w)] if ql else [_engine_linear("q_proj", rows, q, h, w)])
            layer += [_engine_linear("kv_a_proj", rows, lat + rope, h, w), Op("kv_a_norm", 0, rows * lat * 2 * a, 1),
                      _engine_linear("kv_b_proj", rows, heads * (nope + vd), lat, w)]
            cached, width, score_dim = lat + rope, lat, lat + rope
        else:
            layer.append(_engine_linear("qkv_proj", rows, q + 2 * kv, h, w))
            cached, width, score_dim = 2 * kv, card.dim_head, card.dim_head
        if card.qk_norm:
            layer.append(Op("qk_norm", 0, rows * (q + kv) * 2 * a, 1))
        if card.position_embedding == "rope" and mixer != "nope":
            layer.append(Op("rope", 0, rows * (q + kv) * 2 * a, 1))
        layer.append(Op("cache_write", 0, rows * cached * (a + kvb), 1))
        # attention: every cached key and value read once per sequence (grouped heads share
        # them); a prompt attends causally, on average over half its keys
        keys = context / 2 if new_tokens > 1 else context
        flops = 2.0 * rows * keys * heads * (score_dim + width)
        if new_tokens > 1:
            layer.append(Op("attention", flops, seqs * context * cached * kvb + 2 * rows * q * a, 1, w.compute_dtype))
        else:  # decode: the split-KV pass and its combine, at their measured fixed time
            layer.append(Op("attention", flops, seqs * context * cached * kvb + 2 * rows * q * a, 2, w.compute_dtype,
                            fixed_s=ENGINE_DECODE_ATTENTION_S))
        layer.append(_engine_linear("o_proj", rows, h, q, w))
    if allreduce:
        layer.append(allreduce)
    # Gemma 2/3's post-attention and post-MLP norms (vLLM's Gemma layers: plain RMSNorms beside the
    # two fused add+norms): one kernel each. Parallel attention and MLP (one norm: Cohere, Falcon)
    # share the first norm's output: no second add+norm.
    extra = [Op("norm", 0, rows * h * 2 * a, 1)] * max(card.norms_per_layer - 2, 0)
    layer += extra[:1] + ([add_norm] if card.norms_per_layer >= 2 else [])
    return layer + _engine_mlp_ops(card, w, rows, tp, allreduce) + extra[1:]


def _engine_mlp_ops(card: ModelCard, w: Workload, rows: int, tp: int, allreduce: Op | None) -> list[Op]:
    """A layer's MLP under an engine: merged gate_up and one activation kernel; routed experts as
    vLLM's fused_moe (top-k, alignment, two grouped GEMMs over the active experts' weights, the
    weighted sum); a shared expert beside them."""
    a = int(PRECISIONS[w.compute_dtype].bytes_per_element)
    h, i = card.hidden_size, card.intermediate_size // tp
    layer: list[Op] = []

    def dense(prefix: str, rows_: int, width: int) -> list[Op]:
        if card.mlp == "gated":
            return [_engine_linear(f"{prefix}gate_up_proj", rows_, 2 * width, h, w),
                    Op(f"{prefix}act_mul", 0, rows_ * width * 3 * a, 1),
                    _engine_linear(f"{prefix}down_proj", rows_, h, width, w)]
        return [_engine_linear(f"{prefix}fc_in", rows_, width, h, w), Op(f"{prefix}act", 0, rows_ * width * 2 * a, 1),
                _engine_linear(f"{prefix}fc_out", rows_, h, width, w)]

    if card.is_moe:
        e, k = card.num_experts or 1, card.experts_per_token or 1
        active = e * (1 - (1 - k / e) ** rows)  # distinct experts the batch routes to (uniform router)
        routed = rows * k
        wbytes = PRECISIONS[w.dtype].matrix_bytes
        gated = 2 if card.mlp == "gated" else 1
        layer += [_engine_linear("router", rows, e, h, w), Op("moe_align", 0, routed * 16, 3),
                  Op("experts_gate_up", 2.0 * routed * gated * i * h,
                     active * wbytes(gated * i, h) + routed * (h + gated * i) * a, 1, w.compute_dtype, True,
                     grouped=True),
                  Op("experts_act_mul", 0, routed * i * (gated + 1) * a, 1),
                  Op("experts_down", 2.0 * routed * i * h, active * wbytes(h, i) + routed * (i + h) * a, 1,
                     w.compute_dtype, True, grouped=True),
                  Op("moe_sum", 0, routed * h * a + rows * h * a, 1)]
    else:
        layer += dense("", rows, i)
    if card.shared_expert_intermediate_size:
        layer += dense("shared_", rows, card.shared_expert_intermediate_size // tp)
    if allreduce:
        layer.append(allreduce)
    return layer


def engine_step_time(ops: list[Op], hw: GpuSpec, eff: Efficiency) -> StepTime:
    """A forward replayed from CUDA graphs: each kernel costs the small-kernel latency plus its
    roofline (the larger of its compute and its memory time), so t = sum(kernels x floor +
    max(flops / rate, bytes / bandwidth)); weight GEMMs stream at engine_gemv of peak."""
    compute = memory = floor = flops = moved = comm = 0.0
    kernels = 0
    bw = hw.bytes_per_s * eff.bandwidth
    bw_gemm = hw.bytes_per_s * (eff.engine_gemv or eff.gemv or eff.bandwidth)
    for op in ops:
        if op.link_bytes:
            comm += _collective_s(op, hw, eff)
            kernels += op.kernels
            continue
        t_compute = _compute_s(op, hw, eff)
        t_memory = op.bytes / (hw.bytes_per_s * op.bandwidth if op.bandwidth else bw_gemm if op.streams_weights else bw)
        if t_compute > t_memory:
            compute += t_compute
        else:
            memory += t_memory
        floor += op.fixed_s or op.kernels * eff.kernel_floor_s
        flops += op.flops
        moved += op.bytes
        kernels += op.kernels
    kernel_s = compute + memory + floor + comm
    return StepTime(kernel_s=kernel_s, host_s=0.0, wall_s=kernel_s, flops=flops, bytes=moved, kernels=kernels,
                    compute_s=compute, memory_s=memory, floor_s=floor, comm_s=comm)


@dataclass(frozen=True)
class Throughput:
    """Prefill and decode speed of a workload on one device."""

    hardware: str
    prefill: StepTime
    decode: StepTime  # one step for the whole batch, at `decode_context` cached tokens
    decode_context: int
    seqs: int
    peak_bytes_per_s: float
    peak_flops: float  # dense peak of the matmul dtype
    efficiency_source: str
    # the same forwards as a serving engine runs them (engine_forward_ops, engine_step_time)
    engine_prefill: StepTime | None = None
    engine_decode: StepTime | None = None

    @property
    def ttft_s(self) -> float:
        """Time to first token: the prefill forward (its logits give the first token)."""
        return self.prefill.wall_s

    @property
    def decode_tokens_per_s(self) -> float:
        """Aggregate: every sequence gains one token per step."""
        return self.seqs / self.decode.wall_s

    @property
    def per_sequence_tokens_per_s(self) -> float:
        return 1.0 / self.decode.wall_s

    @property
    def engine_ttft_s(self) -> float:
        """Time to first token under a serving engine: its prefill's GPU time."""
        return (self.engine_prefill or self.prefill).kernel_s

    @property
    def engine_decode_step_s(self) -> float:
        """One decode step for the whole batch under a serving engine: its GPU time."""
        return (self.engine_decode or self.decode).kernel_s

    @property
    def engine_decode_tokens_per_s(self) -> float:
        """Aggregate decode rate under a serving engine: the batch over its step time."""
        return self.seqs / self.engine_decode_step_s

    @property
    def mbu(self) -> float:
        """Model bandwidth utilisation of decode: bytes a step must move / wall time / peak."""
        return self.decode.bytes / self.decode.wall_s / self.peak_bytes_per_s

    @property
    def mfu(self) -> float:
        """Model FLOP utilisation of prefill: FLOPs / wall time / dense peak."""
        return self.prefill.flops / self.prefill.wall_s / self.peak_flops

    @property
    def ridge(self) -> float:
        """FLOP per byte where the device turns from bandwidth- to compute-bound."""
        return self.peak_flops / self.peak_bytes_per_s


def throughput(card: ModelCard, w: Workload, hw: GpuSpec, eff: Efficiency, tp: int = 1) -> Throughput:
    """Prefill over the prompt, then one decode step halfway through the generation (each GPU
    of a tensor-parallel group runs its share at once)."""
    seqs = w.batch * w.beams
    prefill = step_time(forward_ops(card, w, seqs * w.seq, w.seq, w.seq, seqs, eff, tp), hw, eff)
    # the middle decode step: its cache holds the prompt and half the generated tokens
    context = w.seq + max(w.gen, 1) // 2
    decode = step_time(forward_ops(card, w, seqs, 1, context, seqs, eff, tp), hw, eff)
    rate = _rate(hw, matmul_rate_dtype(w, hw))
    engine_prefill = engine_decode = None
    if hw.kind == "gpu":
        engine_prefill = engine_step_time(engine_forward_ops(card, w, seqs * w.seq, w.seq, w.seq, seqs, tp), hw, eff)
        engine_decode = engine_step_time(engine_forward_ops(card, w, seqs, 1, context, seqs, tp), hw, eff)
    return Throughput(hardware=hw.id, prefill=prefill, decode=decode, decode_context=context, seqs=seqs,
                      peak_bytes_per_s=hw.bytes_per_s, peak_flops=rate, efficiency_source=eff.source,
                      engine_prefill=engine_prefill, engine_decode=engine_decode)


# CPUs that were never calibrated: no measurement of ours exists, so these are stated
# assumptions, printed as such: a streaming copy reaches ~70% of the DRAM channels' peak (STREAM
# results on DDR5 servers sit at 65-80%), a large GEMM ~50% of the vector/matrix peak, and one
# PyTorch op costs ~10 us of dispatch (measured on this project's CI machine by
# `llmcalc calibrate --device cpu`: 11 us per op of a tiny Llama layer).
CPU_DEFAULT = Efficiency(bandwidth=0.7, matmul={"fp32": 0.5, "bf16": 0.5, "fp16": 0.5, "int8": 0.5},
                         kernel_floor_s=0.0, launch_s=10e-6,
                         source="CPU defaults (assumed, not measured): 70% of DRAM bandwidth, 50% of peak FLOP/s")


def efficiency_for(gpu: GpuSpec) -> Efficiency:
    """The device's own calibration if `llmcalc calibrate` stored one, else the defaults."""
    from llmcalc import calibration as cal

    entry = cal.load_calibrations().get(gpu.id)
    if entry is not None:
        default = CPU_DEFAULT if gpu.kind == "cpu" else default_efficiency()
        matmul = dict(default.matmul)
        rates = dict(entry["matmul_flops"])
        if entry.get("bitsandbytes", {}).get("int8_flops"):  # LLM.int8 runs bitsandbytes' own GEMM
            rates["int8"] = entry["bitsandbytes"]["int8_flops"]
        matmul.update({d: float(r) / gpu.peak_flops[d] for d, r in rates.items() if d in gpu.peak_flops})
        return Efficiency(bandwidth=float(entry["bytes_per_s"]) / gpu.bytes_per_s, matmul=matmul,
                          kernel_floor_s=float(entry.get("small_kernel_mean_s") or entry.get("small_kernel_s")
                                               or entry["kernel_floor_s"]),
                          launch_s=float(entry["launch_s"]),
                          gemv=float(entry.get("gemv_bytes_per_s", entry["bytes_per_s"])) / gpu.bytes_per_s,
                          forward_s=float(entry.get("forward_s", 0.0)), quant_call_s=default.quant_call_s,
                          quant_linear=default.quant_linear, quant_linear_max_rows=default.quant_linear_max_rows,
                          engine_gemv=default.engine_gemv, engine_moe=default.engine_moe,
                          source=f"calibrated on this machine at {entry.get('measured_at', '?')} ({cal.calibration_file()})")
    return CPU_DEFAULT if gpu.kind == "cpu" else default_efficiency()


def default_efficiency() -> Efficiency:
    from llmcalc import calibration as cal

    return Efficiency(bandwidth=cal.BANDWIDTH_EFFICIENCY, matmul=dict(cal.MATMUL_EFFICIENCY),
                      kernel_floor_s=cal.KERNEL_FLOOR_S, launch_s=cal.LAUNCH_S, source=cal.THROUGHPUT_SOURCE,
                      gemv=cal.GEMV_EFFICIENCY, forward_s=cal.FORWARD_S, quant_call_s=dict(cal.QUANT_CALL_S),
                      quant_linear=dict(cal.QUANT_LINEAR), quant_linear_max_rows=cal.QUANT_LINEAR_MAX_ROWS,
                      engine_gemv=cal.ENGINE_GEMV_EFFICIENCY, engine_moe=cal.ENGINE_MOE_EFFICIENCY)


def calibrated_context(gpu: GpuSpec) -> tuple[int, str] | None:
    """The CUDA context `llmcalc calibrate` measured on this GPU, if any; none on a CPU."""
    from llmcalc import calibration as cal

    if gpu.kind == "cpu":
        return 0, "a CPU has no CUDA context"

    entry = cal.load_calibrations().get(gpu.id)
    if entry is None or "cuda_context_bytes" not in entry:
        return None
    return int(entry["cuda_context_bytes"]), f"calibrated on this machine: {int(entry['cuda_context_bytes']) // 2**20} MiB"
