"""Training and serving beyond one GPU and full fine-tuning: LoRA/QLoRA, ZeRO/FSDP sharding,
tensor and pipeline parallelism, gradient accumulation, CPU offload. Per-GPU memory, plus the
CPU memory that offload needs.

The single-GPU estimate (memory.py) gives every phase's components; this module rescales them
per rank. Each rule cites where it comes from:

- ZeRO (Rajbhandari et al. 2020, arXiv 1910.02054, Fig. 1): with 16-bit weights, mixed-precision
  Adam keeps 2 B of weights, 2 B of gradients and K = 12 B of optimizer state (fp32 master copy,
  momentum, variance) per parameter. Stage 1 shards the optimizer state over the N data-parallel
  ranks, stage 2 also the gradients, stage 3 also the weights: (2 + 2 + K) / N B per parameter,
  plus the all-gathered parameters of the layers in flight. FSDP FULL_SHARD = stage 3,
  SHARD_GRAD_OP = stage 2.
- Tensor parallelism (Megatron-LM, Shoeybi et al. 2019): the projections split by columns or rows
  and the embedding and lm_head by vocabulary, so their weights, gradients and optimizer state
  divide by t; norms are replicated; the KV cache divides by t (kv heads, replicated when fewer
  than t). Activations (Korthikanti et al. 2022, arXiv 2205.05198, eq. 2): of the 34 s*b*h bytes
  a layer saves, 24 split over t and 10 (layer norms, dropout masks, residual inputs) do not.
- Pipeline parallelism: a stage holds num_layers / p layers (the first also the embedding, the
  last the lm_head). With the 1F1B schedule the first stage keeps p micro-batches in flight, i.e.
  one micro-batch's activations of all layers (Narayanan et al. 2021, arXiv 2104.04473).
- LoRA (Hu et al. 2021): adapters A (r x in) and B (out x r) per targeted linear, the only
  trainable tensors: gradients and optimizer state for them alone. QLoRA (Dettmers et al. 2023):
  an nf4 base (memory.py's nf4 format), 16-bit adapters, paged 8-bit AdamW.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import ceil

from llmcalc import calibration
from llmcalc.cards import ModelCard
from llmcalc.errors import InputError
from llmcalc.memory import (
    COMPONENTS,
    OPTIMIZERS,
    Phase,
    Workload,
    _dtypes,
    estimate,
    largest_linear_bytes,
    load_phase,
    weight_bytes,
)
from llmcalc.precision import PRECISIONS
from llmcalc.workload import math_sdpa

LORA_TARGETS = {"q": ("q_proj", "qkv_proj"), "k": ("k_proj", "qkv_proj"), "v": ("v_proj", "qkv_proj"),
                "o": ("o_proj",), "gate": ("gate_proj", "fc_in"), "up": ("up_proj", "fc_in"),
                "down": ("down_proj",)}
ZERO_K = {"adamw": 12, "adamw-foreach": 12, "adamw-8bit": 6, "sgd": 8}  # optimizer B/param beside 16-bit weights
TP_REPLICATED = 10 / 34  # Korthikanti et al. 2022: replicated share of a layer's saved bytes
# DeepSpeed 0.19.8's zero_optimization defaults that size memory, in elements
# (deepspeed/runtime/zero/config.py): reduce_bucket_size, stage3 sub_group_size and
# stage3_max_reuse_distance.
DEEPSPEED_BUCKET_ELEMENTS = 500_000_000
DEEPSPEED_SUB_GROUP_ELEMENTS = 1_000_000_000
DEEPSPEED_REUSE_ELEMENTS = 1_000_000_000
DEEPSPEED_NORM_CHUNK_ELEMENTS = 250_000_000  # stage 3 offload: the fp64 gradient norm, in chunks


@dataclass(frozen=True)
class Scale:
    """How the work is split and slimmed."""

    gpus: int = 1
    tp: int = 1
    pp: int = 1
    zero: int = 0  # DeepSpeed ZeRO stage
    fsdp: str | None = None  # "full" (= stage 3) or "grad-op" (= stage 2)
    grad_accum: int = 1
    offload: str | None = None  # "optimizer" or "params"
    cpu_memory_bytes: int | None = None
    lora_rank: int = 0
    lora_targets: tuple[str, ...] = ("q", "v")
    selective: bool = False  # Megatron's selective recomputation of the attention core
    reduce_bucket: int | None = None  # DeepSpeed's reduce_bucket_size (elements); None: its default

    @property
    def dp(self) -> int:
        return self.gpus // (self.tp * self.pp)

    @property
    def stage(self) -> int:
        return {"full": 3, "grad-op": 2}.get(self.fsdp or "", self.zero)



@dataclass(frozen=True)
class ScaledEstimate:
    """Per-GPU memory of the worst rank, and what offload keeps in CPU memory."""

    scale: Scale
    workload: Workload
    components: dict[str, int]  # at the peak phase, per GPU, with context and reserve
    peak_phase: str
    peak_allocated_bytes: int
    device_total_bytes: int
    phases: tuple[Phase, ...]
    cpu_bytes: int
    trainable_params: int
    global_batch: int
    notes: tuple[str, ...]


def parse_lora_targets(text: str) -> tuple[str, ...]:
    """'q,v' -> ('q', 'v'); 'all' (or 'all-linear') -> every projection. validate() names unknowns."""
    if text.strip().lower() in ("all", "all-linear"):
        return tuple(LORA_TARGETS)
    return tuple(t.strip().lower() for t in text.split(",") if t.strip())


def lora_params(card: ModelCard, s: Scale) -> int:
    """Adapter parameters: r x (in + out) per targeted linear, every layer (every expert)."""
    names = {n for t in s.lora_targets for n in LORA_TARGETS[t]}
    total = 0
    for p in card.parameters():
        if p.kind == "linear" and p.name.rsplit(".", 1)[-1] in names:
            total += s.lora_rank * (p.shape[0] + p.shape[1])
    return total


def validate(card: ModelCard, w: Workload, s: Scale) -> None:
    """One clear line for sizes that cannot be split or options that cannot go together."""
    for name, value in (("gpus", s.gpus), ("tp", s.tp), ("pp", s.pp), ("grad-accum", s.grad_accum)):
        if value < 1:
            raise InputError(f"--{name} must be a positive integer, got {value}")
    if s.gpus % (s.tp * s.pp):
        raise InputError(f"--gpus {s.gpus} is not a multiple of --tp {s.tp} x --pp {s.pp}")
    if card.num_heads % s.tp:
        raise InputError(f"--tp {s.tp} does not divide {card.name}'s {card.num_heads} attention heads")
    if card.kv_heads % s.tp and s.tp % card.kv_heads:
        raise InputError(f"--tp {s.tp} and {card.name}'s {card.kv_heads} kv heads: one must divide the other")
    if card.num_layers % s.pp:
        raise InputError(f"--pp {s.pp} does not divide {card.name}'s {card.num_layers} layers")
    if s.zero not in (0, 1, 2, 3):
        raise InputError(f"--zero must be 0, 1, 2 or 3, got {s.zero}")
    if s.fsdp not in (None, "full", "grad-op"):
        raise InputError(f"--fsdp must be full or grad-op, got '{s.fsdp}'")
    if s.fsdp and s.zero:
        raise InputError("--zero and --fsdp are two engines for the same sharding: give one")
    if s.offload not in (None, "optimizer", "params"):
        raise InputError(f"--offload must be optimizer or params, got '{s.offload}'")
    if s.offload and s.cpu_memory_bytes is None:
        raise InputError(f"--offload {s.offload} needs --cpu-memory GiB: the CPU memory it may use")
    if s.reduce_bucket is not None and not s.zero:
        raise InputError("--reduce-bucket-size sizes DeepSpeed's buckets: give it with --zero")
    if s.reduce_bucket is not None and s.reduce_bucket < 1:
        raise InputError(f"--reduce-bucket-size must be a positive number of elements, got {s.reduce_bucket}")
    if s.offload == "params" and s.stage != 3:
        raise InputError("--offload params needs weights sharded: --zero 3 or --fsdp full")
    if (s.stage or s.lora_rank or s.offload) and w.mode != "train":
        raise InputError("--zero, --fsdp, --lora-rank and --offload describe training (--mode train)")
    if s.lora_rank < 0:
        raise InputError(f"--lora-rank must be positive, got {s.lora_rank}")
    unknown = [t for t in s.lora_targets if t not in LORA_TARGETS]
    if unknown:
        raise InputError(f"--lora-targets: unknown {', '.join(unknown)}; choose from {', '.join(LORA_TARGETS)} or all")
    if s.lora_rank:
        names = {n for t in s.lora_targets for n in LORA_TARGETS[t]}
        for p in card.parameters():
            if p.kind == "linear" and p.name.rsplit(".", 1)[-1] in names and s.lora_rank > min(p.shape):
                raise InputError(f"--lora-rank {s.lora_rank} is larger than {p.name.rsplit('.', 1)[-1]} "
                                 f"({p.shape[0]} x {p.shape[1]}) of {card.name}")
    elif not PRECISIONS[w.dtype].is_float and w.mode == "train":
        raise InputError(f"{w.dtype} weights are frozen: train them with --lora-rank (QLoRA)")


def model_state_bytes_per_param(stage: int, n: int, k: int = 12) -> float:
    """ZeRO Fig. 1: bytes per parameter per GPU of 16-bit weights (2), gradients (2) and K bytes
    of optimizer state, at stage 0-3 over n data-parallel GPUs."""
    return {0: 4 + k, 1: 4 + k / n, 2: 2 + (2 + k) / n, 3: (4 + k) / n}[stage]


@dataclass(frozen=True)
class EngineMemory:
    """An engine's own account of one rank: per phase (weights, gradients, optimizer) on the GPU,
    and the CPU memory that offload holds."""

    phases: dict[str, tuple[float, float, float]]
    cpu_bytes: float


def _sub_groups(card: ModelCard, n: int, split: int, size: int) -> list[int]:
    """DeepSpeed stage 3's sub-groups of a rank's partition, in elements: parameters in model order,
    a group closed once it holds `size` or more (stage3.py _create_fp16_sub_groups)."""
    groups, current = [], 0
    for p in card.parameters():
        current += ceil(p.numel / n / split)
        if current >= size:
            groups.append(current)
            current = 0
    return groups + ([current] if current else [])


def deepspeed_memory(card: ModelCard, w: Workload, s: Scale, trainable: int, b: int) -> EngineMemory:
    """DeepSpeed ZeRO with 16-bit (b = 2) training, per rank, read off DeepSpeed 0.19.8's source
    (benchmarks/offload/deepspeed-accounting.md, file:line for each term) and measured on one H200
    (docs/scale-validation.md). P = this rank's slice of the model, Pn = P/n its ZeRO partition over
    n data-parallel ranks, E the largest parameter (the embedding), R = reduce_bucket_size:
    - stages 1/2 flatten the 16-bit weights into one buffer (b*P) and keep an fp32 master and the
      optimizer states of the partition (K*Pn). The reduce bucket (b*R) exists from the first
      gradient hook to the end of backward (not at backward's start, where the loss's logits peak),
      the partition's gradients (b*Pn) from then to the step; stage 1 keeps every gradient whole
      (b*P) until autograd ends. The step makes a flattened 16-bit copy of the gradients and its
      fp32 conversion, (b + 4)*Pn, beside them (or the gradient norm's fp64 copy of the largest
      gradient, 8*E, if larger); the gradients are freed after it.
    - stage 3 keeps the gradient partition (b*Pn) and the bucket (b*R) for good. A parameter stays
      gathered while it is used again within stage3_max_reuse_distance elements of the trace: at
      forward's end (the peak) that is the first 1e9 elements backward needs. At one rank without
      offload the gathered tensor is the partition itself: nothing extra. The step runs one
      sub-group (sub_group_size) at a time, (b + 4) per element of the largest.
    - offload (ZeRO-Offload, ZeRO-3 offload): the master, states and fp32 gradients live on the CPU;
      every pinned buffer is rounded up to a power of two by torch's host allocator
      (calibration.pinned_bytes); the Adam states are plain CPU memory. Stages 1/2 keep a staging
      buffer of the largest gradient on the GPU; stage 3's flush of a gradient to the CPU passes
      through the GPU at (b + 4) bytes per element plus its norm.
    The load phase is the model's build and deepspeed.initialize: stages 1/2 flatten a model built
    whole; stage 3's is built under deepspeed.zero.Init (as transformers builds it), then its fp32
    master and a sub-group's gradient buffer are made."""
    n, split = s.dp, s.tp * s.pp
    P = trainable / split
    Pn = P / n
    E = max(p.numel for p in card.parameters()) / split
    bucket = b * (s.reduce_bucket or DEEPSPEED_BUCKET_ELEMENTS)
    k = ZERO_K[w.optimizer]  # fp32 master (4) + optimizer states, bytes per parameter
    states = (k - 4) * Pn
    offload_optimizer, offload_params = s.offload is not None, s.offload == "params"
    on_gpu = 0.0 if offload_optimizer else 4 * Pn + states
    pinned = calibration.pinned_bytes
    if s.stage < 3:
        weights = b * P
        if offload_optimizer:
            weights += b * E  # temp_grad_buffer_for_gpu_offload
            flushing = bucket + 8 * min(E, Pn)  # the bucket and one gradient's fp64 norm copy
            cpu = pinned(4 * Pn) + pinned(b * Pn) + pinned(4 * Pn) + pinned(b * E) + states
            return EngineMemory({"load": (2 * b * P, 0, 0), "forward": (weights, 0, 0), "backward": (weights, 0, 0),
                                 "backward_layer_0": (weights, flushing, 0), "backward_end": (weights, flushing, 0),
                                 "optimizer_step": (weights, 0, 0)}, cpu)
        partition = b * Pn
        held = (b * P if s.stage == 1 else 0) + partition + bucket
        step = max(8 * min(E, Pn), (b + 4) * Pn)
        load = max(2 * b * P, b * P + 8 * Pn)  # the model and its flat copy; then the master and a 4*Pn zero grad
        return EngineMemory({"load": (load, 0, 0), "forward": (weights, 0, on_gpu), "backward": (weights, 0, on_gpu),
                             "backward_layer_0": (weights, held, on_gpu), "backward_end": (weights, held, on_gpu),
                             "optimizer_step": (weights, partition, on_gpu + step)}, 0.0)
    groups = _sub_groups(card, n, split, DEEPSPEED_SUB_GROUP_ELEMENTS)
    weights = 0.0 if offload_params else b * Pn
    gathered = b * min(DEEPSPEED_REUSE_ELEMENTS, P) if (n > 1 or offload_params) else 0.0
    grads = bucket + (0.0 if offload_optimizer else b * Pn)  # the flat gradient buffer is on the CPU under offload
    # transformers builds a ZeRO-3 model under deepspeed.zero.Init: each module's parameters are
    # partitioned (to the CPU when offloaded) as soon as it is built, so at most the largest
    # parameter is whole on the GPU before deepspeed.initialize adds its buffers
    built = b * E
    # deepspeed.initialize ends holding the 16-bit partition, the fp32 master, the gradient buffer
    # and the bucket, with the largest parameter (the embedding) gathered: on one H200 (memory
    # history of initialize, benchmarks/results/offload/deepspeed-h200-zero3-init-trace.tar.gz)
    # qwen2.5-3b's peak was 5.75 + 11.50 + 5.75 + 0.93 + 0.58 GiB of exactly these (24.50), and
    # with parameters offloaded 0.93 + 2 x 0.49 (the embedding copied from its pinned partition,
    # then gathered: 1.91)
    if offload_optimizer:
        # one gradient's flush: back to the GPU, its fp32 conversion, its norm in fp64 chunks
        flush = (b + 4) * E + 8 * min(E, DEEPSPEED_NORM_CHUNK_ELEMENTS)
        step = 0.0
        load = weights + max(built, bucket + (2 if offload_params else 1) * b * E)
        cpu = pinned(b * Pn) + sum(pinned(4 * g) for g in groups) + 4 * Pn + states
        if offload_params:
            # the 16-bit partition in one pinned flat buffer, and the per-parameter pinned blocks
            # zero.Init made first, freed into torch's host cache and kept there
            cpu += pinned(b * Pn) + sum(pinned(b * ceil(p.numel / n / split)) for p in card.parameters())
    else:
        flush = bucket  # the bucket's concatenation before each reduce-scatter
        step = (b + 4) * max(groups)
        # initialize: each sub-group's master is built as an fp32 copy and its clone (8 per
        # element), an fp32 gradient buffer of the largest sub-group comes and goes, and it ends
        # with the partition, master, gradient buffer, bucket and the gathered embedding
        building = max(4 * sum(groups[:k]) + 8 * g for k, g in enumerate(groups))
        load = b * Pn + max(building, 4 * Pn + 4 * max(groups), 4 * Pn + b * Pn + bucket + b * E)
        load = max(built, load)
        cpu = 0.0
    end_gathered = b * E if gathered else 0.0  # the tied embedding, gathered until its own backward
    return EngineMemory({"load": (load, 0, 0), "forward": (weights + gathered, grads, on_gpu),
                         "backward": (weights + gathered, grads, on_gpu),
                         "backward_layer_0": (weights + gathered, grads + bucket, on_gpu),
                         "backward_end": (weights + end_gathered, grads + flush, on_gpu),
                         "optimizer_step": (weights, grads, on_gpu + step)}, cpu)


# The tensor a LoRA-targeted module reads: modules in one group read the same tensor.
_INPUT_GROUP = {"q_proj": "attn", "k_proj": "attn", "v_proj": "attn", "qkv_proj": "attn", "o_proj": "o",
                "gate_proj": "mlp", "up_proj": "mlp", "fc_in": "mlp", "down_proj": "down"}


def _lora_targets(card: ModelCard, s: Scale) -> dict[str, float]:
    """Targeted modules of one layer, name -> share of the tokens it sees (MoE experts k/E)."""
    names = {n for t in s.lora_targets for n in LORA_TARGETS[t]}
    moe = (card.experts_per_token or 1) / (card.num_experts or 1) if card.is_moe else 1.0
    out: dict[str, float] = {}
    for p in card.parameters():
        short = p.name.rsplit(".", 1)[-1]
        if p.layer == 0 and p.kind == "linear" and short in names:
            share = moe if card.is_moe and _INPUT_GROUP.get(short) in ("mlp", "down") else 1.0
            out[p.name] = out.get(p.name, 0.0) + share
    return out


def lora_saved_delta(card: ModelCard, w: Workload, s: Scale) -> float:
    """How LoRA changes one layer's saved set against full fine-tuning, bytes per token (no
    checkpointing). A frozen weight needs no gradient, so autograd does not save what only the
    weight's gradient reads: every projection's input and RMSNorm's y.to(dtype) (kept for the norm
    weight's gradient). Each adapter saves what lora_A reads and lora_A's r outputs:
      - peft casts the input to the fp32 adapters' dtype when no autocast runs: a 16-bit model gets a
        new fp32 copy per targeted module (4 B x in_features; measured 5,120 MiB of casts on the H100
        for llama-3.2-1b, 7 targets, 4 x 1024 tokens); an fp32 model's input is already fp32;
      - under autocast (fp32 weights with --autocast, or QLoRA, which trains under autocast) peft
        does not cast and lora_A runs in 16-bit: an fp32 input (a norm's output in an fp32 model)
        is copied to 16 bits per module, a 16-bit one is the tensor itself, shared in its group."""
    b = _dtypes(w)
    h, i, q = card.hidden_size, card.intermediate_size, card.q_dim
    autocast = bool(w.autocast) or not PRECISIONS[w.dtype].is_float
    a = int(PRECISIONS[w.compute_dtype].bytes_per_element)
    stream = b.s if w.autocast else a  # QLoRA's stream is its 16-bit compute dtype
    # Freed: what full fine-tuning saved only for weight gradients (see saved_layer_per_token).
    if w.autocast:
        qkv_in = (1 if card.fused_qkv else 3) * a * h
        mlp_in = (1 if (card.mlp == "plain" or (card.fused_qkv and card.mlp == "gated")) else 2) * a * h
    else:
        qkv_in = stream * h
        mlp_in = 0 if card.norms_per_layer == 1 else stream * h
    # The norm's scaled output is saved only for the weight's gradient: Llama's y.to(dtype), Gemma's
    # fp32 y (which `y * (1 + weight)` saves); a frozen weight needs neither.
    norm_y = card.norms_per_layer * (4 if card.norm == "rmsnorm_fp32" else stream) * h if card.norm != "layernorm" else 0
    # o_proj's input is SDPA's output itself, which SDPA keeps for its own backward; eager and
    # math attention hand o_proj a contiguous copy, kept only for o_proj's weight gradient.
    o_copy = w.attention == "eager" or math_sdpa(card, w)
    # act * up, saved for the down projection's weight gradient; MoE: for all k routed copies
    experts_seen = (card.experts_per_token or 1) if card.is_moe else 1
    freed = qkv_in + mlp_in + (a * q if o_copy else 0) + a * i * experts_seen + norm_y
    # Saved by the adapters.
    in_features = {p.name: p.shape[1] for p in card.parameters() if p.layer == 0 and p.kind == "linear"}
    input_bytes = {"attn": stream, "mlp": stream, "o": a, "down": a}  # dtype of the tensor each group reads
    saved = 0.0
    shared: dict[str, float] = {}
    for name, share in _lora_targets(card, s).items():
        group = _INPUT_GROUP.get(name.rsplit(".", 1)[-1], name)
        dtype_bytes = input_bytes.get(group, a)
        if not autocast and dtype_bytes < 4:
            saved += 4 * in_features[name] * share  # peft's fp32 cast, one per module
        elif autocast and dtype_bytes == 4:
            saved += a * in_features[name] * share  # autocast's 16-bit copy, one per module
        elif group != "o" or o_copy:  # the tensor itself (SDPA's output is saved already)
            shared[group] = max(shared.get(group, 0.0), dtype_bytes * in_features[name] * share)
        saved += s.lora_rank * (a if autocast else 4) * share  # lora_A's output, read by lora_B
    return saved + sum(shared.values()) - freed


def scaled_estimate(card: ModelCard, w: Workload, s: Scale, cuda_context: tuple[int, str] | None = None) -> ScaledEstimate:
    validate(card, w, s)
    notes: list[str] = []
    base_w = w
    if s.lora_rank and not PRECISIONS[w.dtype].is_float:
        # QLoRA: activations flow as in a 16-bit model of the compute dtype; the base is nf4/int8
        base_w = replace(w, dtype=w.compute_dtype, autocast=None)
    elif s.stage and w.autocast:
        # ZeRO/FSDP mixed precision casts the (gathered) parameters to the 16-bit dtype and runs
        # the model in it: activations are the 16-bit model's, with no autocast weight cache.
        base_w = replace(w, dtype=w.autocast, autocast=None)
    if s.selective:
        # Selective recomputation (Korthikanti et al. 2022): the attention core (scores, softmax,
        # their products with V) is recomputed in backward, so no seq x seq tensor is saved; what
        # remains saved is what the fused (SDPA) path saves. One layer's scores come back during
        # its backward: the eager forward transient covers them.
        if w.mode != "train":
            raise InputError("--selective-recompute describes training (--mode train)")
        if w.attention == "eager":
            base_w = replace(base_w, attention="sdpa")
            notes.append("selective recomputation: attention scores recomputed, saved as SDPA saves")
        else:
            notes.append("selective recomputation changes nothing here: SDPA's kernels save no scores")
    base = estimate(card, base_w, cuda_context, simulate_allocator=False)  # its own reserve below
    params = card.num_params
    p_bytes = PRECISIONS[w.dtype].bytes_per_element if PRECISIONS[w.dtype].is_float else 2
    weights = weight_bytes(card, w)
    # Trainable set: the adapters (LoRA) or every parameter.
    if s.lora_rank:
        trainable = lora_params(card, s)
        # peft keeps adapters in fp32 even on a 16-bit base (LoraConfig autocast_adapter_dtype=True,
        # its default): fp32 adapter weights, gradients and optimizer state (measured: fp32 on H200).
        adapter_bytes = 4
        weights += trainable * adapter_bytes
        grads = trainable * adapter_bytes
        optimizer = OPTIMIZERS[w.optimizer].state_bytes(trainable, adapter_bytes)
        step_transient = OPTIMIZERS[w.optimizer].step_transient_bytes(trainable, adapter_bytes)
        notes.append(f"LoRA r={s.lora_rank} on {','.join(s.lora_targets)}: {trainable:,} trainable parameters "
                     "(fp32, peft's default); activations of full fine-tuning less what only frozen weights' "
                     "gradients need, plus what the adapters save")
    else:
        trainable = params
        grads = int(params * p_bytes)
        optimizer = OPTIMIZERS[w.optimizer].state_bytes(params, int(p_bytes))
        step_transient = OPTIMIZERS[w.optimizer].step_transient_bytes(params, int(p_bytes))
        if s.zero and p_bytes == 2:
            # DeepSpeed's 16-bit training keeps an fp32 master copy with the optimizer state (the
            # ZeRO paper's K). FSDP trains the parameters in the dtype it shards them in: its mixed
            # precision is --dtype fp32 --autocast bf16 (fp32 sharded, bf16 compute).
            optimizer = ZERO_K[w.optimizer] * params
            step_transient = 0  # DeepSpeed steps with its own (fused) optimizer
    # Tensor and pipeline parallel: every rank holds 1/(t*p) of weights, gradients and states
    # (embeddings and lm_head are on the first/last stage and split by vocabulary; the worst
    # stage is taken as an even share, plus the larger of the two end pieces under pp > 1).
    split = s.tp * s.pp
    end_piece = card.vocab_size * card.hidden_size * p_bytes / s.tp if s.pp > 1 else 0
    w_rank, g_rank, o_rank = weights / split + end_piece, grads / split, optimizer / split
    t_rank = step_transient / split
    dp = s.dp
    stage = s.stage
    gathered = 0.0
    if stage >= 1:
        o_rank /= dp
        t_rank /= dp
    if stage >= 2:
        g_rank /= dp
    if stage == 3:
        w_rank /= dp
        # The layers in flight are all-gathered: the current and the prefetched next layer.
        compute_bytes = PRECISIONS[w.compute_dtype].bytes_per_element  # gathered in the compute dtype
        layer_bytes = (params - card.vocab_size * card.hidden_size) * compute_bytes / card.num_layers / s.tp
        gathered = 2 * layer_bytes
    bucket = 0.0
    engine = None
    if s.zero and not s.lora_rank and p_bytes == 2:
        engine = deepspeed_memory(card, w, s, trainable, int(p_bytes))
        r = s.reduce_bucket or DEEPSPEED_BUCKET_ELEMENTS
        notes.append(f"DeepSpeed ZeRO-{s.zero} buffers as DeepSpeed 0.19.8 allocates them: reduce bucket "
                     f"{r * p_bytes / 2**30:.2f} GiB (reduce_bucket_size {r:.3g} elements)"
                     + (", sub_group_size 1e9, stage3_max_reuse_distance 1e9" if s.zero == 3 else ""))
    elif s.zero in (1, 2, 3) and not s.lora_rank:
        bucket = min(s.reduce_bucket or DEEPSPEED_BUCKET_ELEMENTS, trainable / split) * p_bytes
        notes.append(f"DeepSpeed reduce bucket: {bucket / 2**30:.2f} GiB")
    elif s.fsdp:
        bucket = (trainable / split / card.num_layers) * p_bytes  # one unit's unsharded gradients
    cpu = 0.0
    grads_on_gpu = g_rank
    if s.offload:
        # The optimizer steps on the CPU, so each gradient shard goes there once reduced: only the
        # bucket in flight stays on the GPU (ZeRO-Offload, arXiv 2101.06840 sec. 4; FSDP2's
        # CPUOffloadPolicy offloads parameters, gradients and the step). Measured with FSDP2 on one
        # H200: the optimizer step of llama-3.2-1b held 0.06 GiB on the GPU (docs/scale-validation.md).
        cpu += g_rank
        grads_on_gpu = 0.0
    if s.offload:
        # the step runs where the states are: its transient (foreach AdamW's sqrt copy) is CPU
        # memory at the step (FSDP2 CPU offload of llama-3.2-1b on one H200: the process's peak RSS
        # 11.03 GiB above its start, 9.21 GiB of parameters, gradients and states beside it)
        cpu += t_rank
    if s.offload == "optimizer":
        cpu += o_rank
        o_rank = t_rank = 0.0
    if s.offload == "params":
        cpu += o_rank + w_rank
        o_rank, w_rank, t_rank = 0.0, 0.0, 0.0
    # Activations per rank: the split share divides by tp; pipeline stages hold as much as one
    # micro-batch through all layers (1F1B); KV cache (inference) divides by tp.
    kv_share = ceil(card.kv_heads / s.tp) / card.kv_heads
    act_factor = TP_REPLICATED + (1 - TP_REPLICATED) / s.tp
    extra_act = 0
    if s.lora_rank:
        tokens = w.batch * w.seq
        if w.grad_checkpointing:
            # only layer inputs are saved; each adapter's A output (r values) in the recomputed layer
            extra_act = int(tokens * sum(_lora_targets(card, s).values()) * s.lora_rank * 4)
        else:
            extra_act = int(tokens * card.num_layers * lora_saved_delta(card, w, s))
        if w.dtype == "nf4":
            extra_act += largest_linear_bytes(card, w.compute_dtype)  # the dequantized weight of a matmul
    # Gradients: backward peaks at its start (the loss's logits), before any layer's gradient
    # exists, with only the engine's bucket in flight; the shards fill as activations drain, all
    # there at the end of backward and through the optimizer step (measured: FSDP on 2 H200s).
    grads_in = {"backward": bucket, "backward_layer_0": grads_on_gpu + bucket, "backward_end": grads_on_gpu + bucket,
                "optimizer_step": grads_on_gpu}
    # The all-gathered layers exist while layers run, not at the load or the optimizer step (FSDP
    # reshards after each layer's backward; measured on one H200: the fused estimate's step was
    # +1.7% with them, exactly their 0.23 GiB).
    in_flight = ("forward", "backward", "backward_layer_0", "backward_end", "prefill", "decode")
    phases = []
    if engine is not None:
        cpu = engine.cpu_bytes
    for ph in base.phases:
        c = ph.components
        if engine is not None:
            weights_b, grads_b, optimizer_b = engine.phases[ph.name]
            activations = int(c.get("activations", 0) * act_factor)
            if ph.name == "load":
                # stages 1/2: building the whole model on the GPU, then deepspeed.initialize, the
                # larger of the two moments; stage 3 builds under zero.Init (deepspeed_memory)
                weights_b = max(weights_b, ph.total) if s.stage < 3 else weights_b
                activations = 0
            phases.append(Phase(ph.name, {"weights": int(weights_b), "gradients": int(grads_b),
                                          "optimizer": int(optimizer_b), "activations": activations, "kv_cache": 0}))
            continue
        if ph.name == "load" and s.lora_rank and not s.stage:
            # building the model, before peft adds the adapters and their optimizer: the base in its
            # stored format (QLoRA's nf4 loads tensor by tensor, without a tied-head transient)
            phases.append(load_phase(card, w, weights))
            continue
        phases.append(Phase(ph.name, {
            "weights": int(w_rank + (gathered if ph.name in in_flight else 0)),
            "gradients": int(grads_in.get(ph.name, 0)) if w.mode == "train" else 0,
            "optimizer": int(o_rank + (t_rank if ph.name == "optimizer_step" else 0)) if w.mode == "train" else 0,
            "activations": int(c.get("activations", 0) * act_factor) + (extra_act if ph.name in ("forward", "backward") else 0),
            "kv_cache": int(c.get("kv_cache", 0) * kv_share),
        }))
    peak = max(phases, key=lambda p: p.total)
    allocated = peak.total + calibration.CUBLAS_WORKSPACE_BYTES
    reserve = calibration.allocator_reserve_bytes(allocated, w.mode, w.allocator)
    # every rank of a multi-GPU job holds an NCCL communicator beside PyTorch's allocator, and
    # DeepSpeed runs its collectives through NCCL on one rank too
    if s.gpus > 1:
        nccl = calibration.NCCL_COMMUNICATOR_BYTES
    else:
        nccl = calibration.deepspeed_one_rank_nccl_bytes(s.zero)
    context = base.components["cuda_context"] + nccl
    components = {c: peak.components.get(c, 0) for c in COMPONENTS[:5]}
    components["activations"] += calibration.CUBLAS_WORKSPACE_BYTES
    components["cuda_context"], components["allocator_reserve"] = context, reserve
    if s.offload and s.cpu_memory_bytes is not None and cpu > s.cpu_memory_bytes:
        notes.append(f"offload needs {cpu / 2**30:.1f} GiB of CPU memory per rank, more than --cpu-memory "
                     f"{s.cpu_memory_bytes / 2**30:.1f} GiB")
    if s.gpus > 1:
        notes.append(f"{s.gpus} GPUs = data parallel {dp} x tensor parallel {s.tp} x pipeline parallel {s.pp}; "
                     f"NCCL's communicator ({calibration.NCCL_COMMUNICATOR_BYTES / 2**30:.2f} GiB per rank, measured at "
                     "world size 2 on H200s) is in the CUDA context row")
    return ScaledEstimate(scale=s, workload=w, components=components, peak_phase=peak.name, peak_allocated_bytes=allocated,
                          device_total_bytes=allocated + reserve + context, phases=tuple(phases), cpu_bytes=int(cpu),
                          trainable_params=trainable, global_batch=w.batch * s.grad_accum * dp, notes=tuple(notes))
