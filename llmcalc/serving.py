"""Serving-engine sizing: what vLLM (V1: 0.8-0.19; V0: 0.4.0-0.7.3) and SGLang (0.4-0.5) allocate per GPU rank at
start-up, how many KV-cache tokens that leaves, how many requests of max_model_len run at once,
and whether the engine starts. Pure, no torch.

The accounting follows the engines' source (docs/serve.md cites file and function for each line):
- vLLM V1 (v1/worker/gpu_worker.py determine_available_memory, utils memory_profiling):
  available = total x gpu_memory_utilization - weights - activation peak of the profile run
  - non-torch growth since start-up (NCCL); CUDA graphs are captured after the KV cache is sized
  (gpu_model_runner.py) and are not in the budget (0.19 estimates them and logs the estimate, but
  does not subtract it by default). The KV cache takes whole blocks of 16 tokens
  per layer (kv_cache_utils.py get_kv_cache_config), page = 2 x kv_heads_per_rank x head_size x
  dtype x block (MLA: one latent of kv_lora_rank + rope, not sharded by TP, blocks of 64).
- SGLang (srt/model_executor/model_runner.py profile_max_num_token): tokens =
  (free after weights - free before weights x (1 - mem_fraction_static)) // cell, cell = the
  per-token K and V bytes of every layer; no forward profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from math import ceil, gcd

from llmcalc import calibration
from llmcalc.cards import ModelCard, Param
from llmcalc.errors import InputError
from llmcalc.memory import quantized
from llmcalc.precision import PRECISIONS, Precision

GiB = 2**30
ENGINES = ("vllm", "sglang")
VOCAB_PADDING = 64  # vLLM's DEFAULT_VOCAB_PADDING_SIZE: the global vocabulary is padded, then split by TP
# What --engine-version selects (benchmarks/serve/vllm-v0-accounting.md reads every vLLM release
# from 0.4.0 to 0.8.5). vLLM: "0.4" is 0.4.0-0.5.2 and "0.5" 0.5.3-0.6.3 (V0, the free-memory delta
# since start-up; chunked prefill on by default above 32K tokens from 0.5.3), "0.6.4" (V0, the
# device-wide formula), "0.6" 0.6.5-0.6.6 and "0.7" 0.7.x (V0, memory_profiling), "0.8" (V1's
# default engine in 0.8.x, the device-wide formula), then V1 0.9-0.19.
VERSIONS = {"vllm": ("0.4", "0.5", "0.6.4", "0.6", "0.7", "0.8", "0.9", "0.10", "0.11", "0.12", "0.13", "0.14",
                     "0.15", "0.16", "0.17", "0.18", "0.19", "0.20", "0.21", "0.22", "0.23", "0.24", "0.25", "0.26",
                     "0.27", "0.28", "0.29", "0.30", "0.31", "0.32", "0.33"),
            "sglang": ("0.4", "0.4.6", "0.4.7", "0.4.8", "0.5", "0.5.10", "0.5.20")}
# Where vLLM V1's profile run changed (benchmarks/serve/vllm-0.12-0.18.md, read from every wheel):
# the in-place Triton top-k/top-p sampler from 0.17 (before: a PyTorch sort), the persistent MoE
# workspace from 0.14 (before: fused_moe's caches per call); the budget and defaults are the same.
TRITON_SAMPLER_FROM = (0, 17)
MOE_WORKSPACE_FROM = (0, 14)


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))
V0_VERSIONS = ("0.4", "0.5", "0.6.4", "0.6", "0.7")  # vLLM's V0 engine, 0.4.0-0.7.3 (and 0.8.x with VLLM_USE_V1=0)
DEFAULT_VERSION = {"vllm": "0.33", "sglang": "0.5.20"}
# SGLang's releases after 0.5.2, read from every wheel to 0.5.23 (benchmarks/serve/sglang-latest.md):
# "0.5" is 0.5.3-0.5.9, "0.5.10" 0.5.10-0.5.19 (prefill CUDA graphs on by default: a reserve per
# captured prefill size; GPT-OSS and Llama 4 get the hybrid sliding-window pool), "0.5.20"
# 0.5.20-0.5.23 (24-32 GB cards chunk 4,096 tokens; 100 MiB for a multimodal model's cache).
SGLANG_SWA_FAMILIES = ("gpt_oss", "llama4")  # the hybrid SWA pool by default (0.5.8-0.5.10 on)
SGLANG_SWA_RATIO = 0.8  # --swa-full-tokens-ratio's default
# From 0.20.0 vLLM subtracts its CUDA-graph memory estimate from the KV budget by default
# (envs.py VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS "1"; 0.19 computed and logged it only) and
# raised gpu_memory_utilization's default from 0.9 to 0.92 to keep the cache about the same size
# (config/cache.py; PR #38284). benchmarks/serve/vllm-0.20-latest.md reads every release to 0.33.0.
CUDA_GRAPH_BUDGET_FROM = (0, 20)
# Non-torch memory that vLLM V1's budget subtracts: what grows beside PyTorch's allocator after
# the worker's start-up snapshot (cuBLAS/cuDNN handles and workspaces; with tensor parallelism
# NCCL's communicators, non_torch_bytes below). vLLM 0.19 logs it per rank
# ("non-torch forward increase memory"); in the 45 llm-d-planner runs on H100 80GB
# (benchmarks/serve/logs-more.jsonl) it is 0.24-0.27 GiB at TP 1 (27 runs, median 0.25), 2.06-
# 2.21 GiB at TP 2 and 4 (11 runs, median 2.09, independent of the model), and 0.07 GiB under
# pipeline parallelism alone (2 runs). Older builds logged 0.03-0.35 GiB at TP 1 on other GPUs
# (benchmarks/serve/logs.jsonl), so --explain names the spread.
NON_TORCH_BYTES = int(0.25 * GiB)
NON_TORCH_TP_BYTES = int(2.09 * GiB)
NON_TORCH_PP_BYTES = int(0.07 * GiB)


# NVLink SHARP (NCCL's NVLS algorithms, which allocate their own buffers per communicator) needs an
# NVSwitch of the Hopper generation or later: HGX/DGX H100, H200, H800, H20 and Blackwell boards.
_NVLS_NAMES = ("h100", "h200", "h800", "h20", "gh200", "b200", "b300", "gb200", "gb300")


def nvls(gpu_name: str) -> bool:
    """Whether a TP group of these GPUs sits on an NVSwitch that NCCL's NVLS uses (SXM boards of
    Hopper and later; not the PCIe or NVL cards); an unnamed GPU counts as one."""
    name = gpu_name.lower()
    if not name:
        return True
    return any(n in name for n in _NVLS_NAMES) and "pcie" not in name and " nvl" not in name


def non_torch_bytes(tp: int, pp: int, gpu_name: str = "") -> int:
    """vLLM's non-torch growth per rank by parallel layout (the medians above). Under TP the extra
    ~1.84 GiB is not the custom all-reduce (24 MiB, allocated before the snapshot since 0.11) but
    NCCL's: torch.distributed builds a second communicator lazily for the logits' all-gather inside
    the profiling window (benchmarks/serve/vllm-0.12-0.18.md), and on NVSwitch systems of Hopper and
    later NCCL gives each communicator NVLink SHARP buffers (most likely the bulk: every TP log
    with it is from H100 SXM boards). Without NVLS the TP logs show about the TP 1 figure: GeForce
    cards, where NCCL has no peer-to-peer transport (RTX 4090 at TP 2: 0.25 GiB, RTX 3090s at TP
    16: 0.20), 4 A10s (vLLM 0.8.5, issue #17469: 1.06 GiB for the context, non-torch memory and
    the profile together) and 8 L4s (0.5.x, issue #7593: 22,982 blocks, which 2.09 GiB would cut
    to 21,243)."""
    if tp > 1 and nvls(gpu_name):
        return NON_TORCH_TP_BYTES
    return NON_TORCH_PP_BYTES if pp > 1 and tp == 1 else NON_TORCH_BYTES


def default_utilization(version: str) -> float:
    """vLLM's default gpu_memory_utilization: 0.92 from 0.20.0, 0.9 before (config/cache.py)."""
    return 0.92 if version_tuple(version) >= CUDA_GRAPH_BUDGET_FROM else 0.9


# Which model runner a release picks when VLLM_USE_V2_MODEL_RUNNER is unset (config/vllm.py
# use_v2_model_runner, benchmarks/serve/vllm-0.20-latest.md section 4), by the model's HF
# model_type: V1 up to 0.21; then the V2 runner for a growing list of dense architectures; from
# 0.25 every model that is neither MoE nor hybrid (besides listed MoE types); from 0.29 all.
_V2_DENSE = {(0, 22): {"qwen3"}, (0, 23): {"qwen3", "llama", "mistral"}}
_V2_LISTED = ("qwen3", "deepseek_v2", "qwen2_moe", "granitemoe", "llama", "mistral")  # 0.24
_V2_MOE_FROM_25 = ("deepseek_v2", "qwen2_moe", "granitemoe")


def model_runner(card: ModelCard, version: str, quantized_weights: bool) -> str:
    """"v1" or "v2": the GPU model runner vLLM `version` picks for this card."""
    v = version_tuple(version)
    if v < (0, 22):
        return "v1"
    if v >= (0, 29):
        return "v2"
    hybrid = len({(g.sliding_window if g.sliding_layers else None, g.layer_specs[0].mixer)
                  for _, g in card.layer_groups}) > 1
    if v in _V2_DENSE:
        return "v2" if card.family in _V2_DENSE[v] and not card.is_moe and not quantized_weights else "v1"
    if v == (0, 24):
        return "v2" if card.family in _V2_LISTED else "v1"
    return "v2" if (not card.is_moe and not hybrid) or card.family in _V2_MOE_FROM_25 else "v1"


_HOPPER = ("h100", "h200", "h800", "h20", "gh200")
_BLACKWELL_DC = ("b200", "b300", "gb200", "gb300")


def capture_sizes(card: ModelCard, version: str, seqs: int, batched: int, gpu_name: str = "") -> list[int]:
    """The batch sizes vLLM captures as CUDA graphs (VllmConfig._set_cudagraph_sizes): [1, 2, 4],
    every 8 to 248, every 16 from 256, up to min(2 max_num_seqs, cap, max_num_batched_tokens); cap
    512, 1024 for gpt-oss (GptOssForCausalLMConfig, 0.19 on) and on data-center Blackwell from
    0.28; max_num_batched_tokens joins the list from 0.20.1, max_num_seqs from 0.31 (when <= top)."""
    name = gpu_name.lower()
    cap = 1024 if card.family == "gpt_oss" or (
        version_tuple(version) >= (0, 28) and any(n in name for n in _BLACKWELL_DC)) else 512
    top = min(2 * seqs, cap, batched)
    sizes = {s for s in [1, 2, 4, *range(8, 256, 8), *range(256, top + 1, 16)] if s <= top}
    if version_tuple(version) >= CUDA_GRAPH_BUDGET_FROM and batched <= top:
        sizes.add(batched)
    if version_tuple(version) >= (0, 31) and seqs <= top:
        sizes.add(seqs)
    return sorted(sizes)


def _graph_nodes(card: ModelCard, dtype: str, compute_dtype: str, rows: int, tp: int, pp: int) -> tuple[int, int]:
    """(kernels in one forward of this rank, of them attention's): the engine's kernel list
    (speed.engine_forward_ops) at `rows` decode tokens, a pipeline stage's share of the layers."""
    from llmcalc.speed import engine_forward_ops  # the op list; speed does not import serving
    from llmcalc.workload import Workload

    w = Workload(dtype=dtype, autocast=compute_dtype if compute_dtype != dtype else None, batch=rows, seq=1)
    ops = engine_forward_ops(card, w, rows, 1, 1, rows, tp)
    kernels = sum(op.kernels for op in ops)
    attention = sum(op.kernels for op in ops if op.name == "attention")
    return ceil(kernels / pp), ceil(attention / pp)


def cuda_graph_estimate(card: ModelCard, c: ServeConfig, version: str, runner: str, seqs: int, batched: int,
                        dtype: str, compute_dtype: str, per_kernel: int | None = None) -> tuple[int, str]:
    """vLLM's CUDA-graph memory estimate, per rank, and how it was reached.

    V1 runner (gpu_model_runner.py profile_cudagraph_memory, the same formula 0.19-0.33): with
    FULL_AND_PIECEWISE, for each mode it captures the two largest sizes and takes the free-memory
    drop of each: estimate = max over modes of the first + sum over modes of the second x (graphs
    of the mode - 1). PIECEWISE captures every size (one graph per compiled piece: layers + 1),
    FULL the sizes up to max_num_seqs (one graph each). V2 runner from 0.29 (gpu/cudagraph_utils.py):
    every PIECEWISE graph captured for real, FULL extrapolated as above, so the two firsts add.
    V2 in 0.22-0.28 returns 0.

    A graph's drop, modelled: the driver's memory for the instantiated graph, G per graph (measured)
    plus N per kernel of the engine op list (from the 0.19 logs; calibration.CUDA_GRAPH_*). The
    first capture of a mode adds its pool's tensors:
      FULL       FlashAttention 3's split-KV buffers on Hopper (vLLM fixes 32 splits under CUDA
                 graphs: [32, tokens, heads, head_dim + 1] fp32, the partial outputs and their
                 log-sum-exp; MLA: the latent's width); none in fp32 or with attention sinks,
                 which FlashAttention 3 does not run; an unnamed GPU counts as Hopper
      PIECEWISE  the forward's widest activations at the largest size: tokens x a x (q/tp + 2H +
                 3 x the widest MLP/tp, the routed experts' k x I_e for MoE)
    `per_kernel` replaces the per-kernel constant (benchmarks/serve_validate.py holds it out)."""
    v = version_tuple(version)
    if c.enforce_eager or (runner == "v2" and v < (0, 29)):
        return 0, "no CUDA graphs to estimate" if c.enforce_eager else f"{version}'s V2 model runner estimates 0"
    sizes = capture_sizes(card, version, seqs, batched, c.gpu_name)
    full_sizes = [s for s in sizes if s <= seqs]
    top = sizes[-1]
    nodes, attention = _graph_nodes(card, dtype, compute_dtype, top, c.tp, c.pp)
    layers = ceil(card.num_layers / c.pp)
    per_node, per_graph = per_kernel or calibration.CUDA_GRAPH_BYTES_PER_KERNEL, calibration.CUDA_GRAPH_BYTES_PER_GRAPH
    piecewise = (layers + 1) * per_graph + (nodes - attention) * per_node
    full = per_graph + nodes * per_node
    a = int(PRECISIONS[compute_dtype].bytes_per_element)
    h = card.hidden_size
    heads = card.num_heads // c.tp
    width = (card.kv_lora_rank or card.dim_head) if card.is_mla else card.dim_head
    hopper = any(n in c.gpu_name.lower() for n in _HOPPER) or not c.gpu_name
    flash = hopper and a < 4 and not card.attention_sinks
    splits = 32 * max(full_sizes) * heads * (width + 1) * 4 if flash and full_sizes else 0
    widest = max(g.intermediate_size if not g.is_moe else (g.moe_intermediate_size or g.intermediate_size)
                 * (g.experts_per_token or 1) for _, g in card.layer_groups)
    pool = top * a * (card.q_dim // c.tp + 2 * h + 3 * widest // c.tp)
    first_pw, first_full = pool + piecewise, splits + full
    tail = (len(sizes) - 1) * piecewise + (len(full_sizes) - 1) * full
    est = (first_pw + first_full if runner == "v2" else max(first_pw, first_full)) + tail
    return int(est), (f"{runner.upper()} runner: {len(sizes)} PIECEWISE sizes (largest {top}) and {len(full_sizes)} "
                      f"FULL; {nodes} kernels a forward, {per_node / 2**10:.0f} KiB each and "
                      f"{per_graph / 2**10:.0f} KiB a graph" + (f"; FlashAttention 3's 32 splits "
                                                                f"{splits / GiB:.2f} GiB" if splits else ""))


@dataclass(frozen=True)
class ServeConfig:
    """The engine, its version and its options, with the engine's own meanings."""

    engine: str = "vllm"
    version: str | None = None
    gpu_total_bytes: int = 0  # what torch.cuda.mem_get_info reports as total
    gpu_smi_bytes: int = 0  # nvidia-smi's total, which SGLang sizes its defaults from (0: gpu_total_bytes)
    gpu_name: str = ""
    tp: int = 1
    pp: int = 1
    memory_fraction: float | None = None  # vLLM gpu_memory_utilization (0.9), SGLang mem_fraction_static
    max_model_len: int | None = None  # SGLang --context-length
    max_num_seqs: int | None = None  # SGLang --max-running-requests
    max_num_batched_tokens: int | None = None  # SGLang --chunked-prefill-size
    kv_cache_dtype: str = "auto"  # auto (the model's dtype) or fp8
    block_size: int | None = None  # vLLM: 16, MLA 64; SGLang page_size 1
    dp: int = 1  # data-parallel replicas, each an engine of its own (the accounting is per replica)
    enforce_eager: bool = False  # no CUDA graphs: captured after the cache is sized, outside the budget
    # None: the engine's default. Nothing at start-up for attention-only models; a Gated DeltaNet
    # hybrid keeps one more state block per request (vLLM's "align" mode; its default from 0.28)
    prefix_caching: bool | None = None
    num_speculative_tokens: int = 0  # MTP drafting with the checkpoint's own MTP layers (card.mtp_layers)


@dataclass(frozen=True)
class ServeEstimate:
    """Per rank, as the engine logs it at start-up (docs/json.md: serve.*)."""

    engine: str
    version: str
    budget_bytes: int
    weights_bytes: int
    non_torch_bytes: int
    activation_peak_bytes: int
    cuda_graph_bytes: int  # in the budget before the KV cache is sized (0 where captured after)
    kv_available_bytes: int  # what the budget leaves for the cache (negative: the engine stops)
    kv_cache_bytes: int
    kv_cache_tokens: int
    kv_block_size: int
    kv_block_bytes: int  # one block of every layer on this rank
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    max_concurrency: float
    starts: bool
    error: str | None
    explain: dict[str, str] = field(default_factory=dict)
    data_parallel: int = 1  # replicas, each with these figures


def validate(card: ModelCard, c: ServeConfig) -> str:
    """Check the options; return the version the accounting follows."""
    if c.engine not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, got '{c.engine}'")
    version = c.version or DEFAULT_VERSION[c.engine]
    if version not in VERSIONS[c.engine]:
        hint = ""
        raise InputError(f"--engine-version {version}: llmcalc models {c.engine} "
                         f"{', '.join(VERSIONS[c.engine])} (docs/serve.md says how the others differ){hint}")
    for name, value in (("--tp", c.tp), ("--pp", c.pp), ("--dp", c.dp)):
        if value < 1:
            raise InputError(f"{name} must be a positive integer, got {value}")
    if card.num_heads % c.tp:
        raise InputError(f"--tp {c.tp} does not divide {card.name}'s {card.num_heads} attention heads")
    if card.num_layers < c.pp:
        raise InputError(f"--pp {c.pp} exceeds {card.name}'s {card.num_layers} layers")
    if c.memory_fraction is not None and not 0 < c.memory_fraction <= 1:
        raise InputError(f"the memory fraction must be in (0, 1], got {c.memory_fraction}")
    if c.kv_cache_dtype not in ("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bf16", "fp16"):
        raise InputError(f"--kv-cache-dtype must be auto or fp8, got '{c.kv_cache_dtype}'")
    if c.gpu_total_bytes <= 0:
        raise InputError("the GPU's memory is unknown: give --gpu-memory GiB")
    if c.num_speculative_tokens < 0:
        raise InputError(f"--num-speculative-tokens must be zero or positive, got {c.num_speculative_tokens}")
    if c.num_speculative_tokens and not card.mtp_layers:
        raise InputError(f"--num-speculative-tokens: {card.name} has no MTP layers to draft with (card key mtp_layers)")
    if _linear_layers(card):
        if (c.engine == "vllm" and version_tuple(version) < GDN_FROM) or (c.engine == "sglang"
                                                                          and version not in SGLANG_GDN_VERSIONS):
            raise InputError(f"{card.name}: Gated DeltaNet layers are modelled for vLLM from "
                             f"{'.'.join(map(str, GDN_FROM))} and SGLang from 0.5 (--engine-version)")
        if c.pp > 1:
            raise InputError(f"{card.name}: pipeline stages of a Gated DeltaNet hybrid are not modelled (--pp 1)")
        heads = (card.linear_key_heads or 0, card.linear_value_heads or 0)
        if any(h % c.tp for h in heads):
            raise InputError(f"--tp {c.tp} does not divide {card.name}'s {heads[0]} key and {heads[1]} value "
                             "heads of its Gated DeltaNet layers")
    return version


# --- weights ------------------------------------------------------------------------------

def _rank_share(card: ModelCard, p: Param, tp: int) -> float:
    """The fraction of parameter p one TP rank holds (vLLM's parallel linear layers): column- and
    row-parallel linears split by TP (a column-parallel layer's bias with it), k/v projections by
    kv heads (replicated below one head per rank), MLA's down-projections, the router, norms and
    row-parallel biases replicated."""
    if tp == 1 or p.kind not in ("linear", "bias"):
        return 1.0
    short = p.name.removesuffix(".bias").rsplit(".", 1)[-1]
    if p.kind == "bias" and short in ("o_proj", "down_proj", "out_proj"):
        return 1.0  # a row-parallel layer's bias is added once, after the all-reduce: every rank has it
    if short in ("k_proj", "v_proj"):
        return max(1, card.kv_heads // tp) / card.kv_heads
    if short in ("q_a_proj", "kv_a_proj"):
        return 1.0
    return 1 / tp


@lru_cache(maxsize=256)  # pure; `plan` asks it for every GPU, `serve --concurrency` for every TP size
def weights_per_rank(card: ModelCard, dtype: str, compute_dtype: str, tp: int, pp: int) -> tuple[int, str]:
    """Bytes of weights on the fullest rank, as vLLM's "Model loading took" counts them: every
    tensor alive after the load (torch's allocated bytes), with the vocabulary padded to a multiple
    of 64 and split by TP, and one rotary cos/sin cache (max_position x rotary dim in the model
    dtype, shared by every layer: rotary_embedding/base.py)."""
    store = PRECISIONS[dtype]
    other = store if store.is_float else PRECISIONS[compute_dtype]
    vocab_rows = ceil(card.vocab_size / VOCAB_PADDING) * VOCAB_PADDING // tp
    per_stage = ceil(card.num_layers / pp)
    stage_bytes: dict[int, float] = {}
    head = embed = 0.0
    for p in card.parameters():
        if p.kind in ("embedding", "lm_head"):
            size = other.tensor_bytes(vocab_rows * card.hidden_size)
            if p.kind == "embedding":
                embed += size
            else:
                head += size
            continue
        share = _rank_share(card, p, tp)
        whole = store.matrix_bytes(*p.shape) if quantized(card, p, store) else other.tensor_bytes(p.numel)
        part = whole * share
        if store.experts_only and ".experts." in p.name:
            part = _marlin_mxfp4_bytes(card, p, tp, store, other)
        stage = (p.layer // per_stage) if p.layer is not None else pp - 1  # final norm, lm_head bias: last stage
        stage_bytes[stage] = stage_bytes.get(stage, 0.0) + part
    rotary = card.qk_rope_head_dim if card.is_mla else (card.rotary_dim or card.dim_head)
    rows = card.rope_cache_rows or (card.max_position_embeddings,)
    rope = sum(other.tensor_bytes(r * (rotary or 0)) for r in rows) if card.position_embedding == "rope" else 0
    # a multimodal checkpoint's vision encoder and projector, in the compute dtype, on the first
    # stage: split by TP but for the part every rank holds whole
    compute = PRECISIONS[compute_dtype]
    vision = compute.tensor_bytes(card.vision_replicated_params
                                  + (card.vision_params - card.vision_replicated_params) / tp)
    first = stage_bytes.get(0, 0.0) + embed + (head if pp == 1 or card.tie_word_embeddings else 0) + vision
    last = stage_bytes.get(pp - 1, 0.0) + (head if pp > 1 and not card.tie_word_embeddings else 0)
    total = int(max(first, last)) + rope
    return total, (f"{card.num_params:,} params over TP {tp} x PP {pp}"
                   + (f" and a vision encoder of {card.vision_params:,}" if card.vision_params else "")
                   + f"; vocabulary padded to {vocab_rows * tp:,} rows; rotary caches {rope:,} B")


def _marlin_mxfp4_bytes(card: ModelCard, p: Param, tp: int, store: Precision, other: Precision) -> float:
    """vLLM's MXFP4 experts (gpt-oss) on its Marlin backend, which 0.10-0.11 pick on A100 and H100
    (quantization/mxfp4.py: torch below 2.8, or no triton_kernels): create_weights zero-pads the
    hidden size to a multiple of 256 and this rank's intermediate size (cdiv(I / 32, tp) x 32) to
    a multiple of 128, and the padding is allocated; weights stay 17/32 B per element, biases
    bf16 (gpt-oss-120b: 65.93 GiB against the log's 65.97)."""
    def up(x: int, m: int) -> int:
        return -(-x // m) * m

    hp = up(card.hidden_size, 256)
    ip = up(-(-(card.moe_intermediate_size or card.intermediate_size) // 32 // tp) * 32, 128)
    short = p.name.removesuffix(".bias").rsplit(".", 1)[-1]
    rows = hp if short == "down_proj" else ip  # gate and up give the intermediate, down the hidden
    if p.kind == "bias":
        return other.tensor_bytes(rows)
    return store.matrix_bytes(rows, ip if short == "down_proj" else hp)


# --- the KV cache ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _KvGroup:
    layers: int
    bytes_per_token: float  # one layer, this rank
    window: int | None  # sliding or chunked window; None: every position


def _kv_groups(card: ModelCard, c: ServeConfig, dtype_bytes: float, pp: int) -> list[_KvGroup]:
    """Per-layer KV bytes per token on one rank (this PP stage's share of layers)."""
    groups = []
    for n, g in card.layer_groups:
        spec = g.layer_specs[0]
        if spec.mixer in ("conv", "linear"):
            continue  # a fixed state per request, not a per-token cell (Gated DeltaNet: gdn_layout, _sglang_mamba)
        if card.is_mla:  # one latent per token, the same on every TP rank
            per_token = ((card.kv_lora_rank or 0) + (card.qk_rope_head_dim or 0)) * dtype_bytes
        else:
            heads = max(1, card.kv_heads // c.tp)
            per_token = 2 * heads * card.dim_head * dtype_bytes
        window = g.sliding_window if spec.mixer in ("sliding", "chunked") else None
        groups.append(_KvGroup(ceil(n / pp), per_token, window))
    return groups


def _block_bytes(groups: list[_KvGroup], block: int) -> int:
    return int(sum(g.layers * g.bytes_per_token for g in groups) * block)


def _request_bytes(groups: list[_KvGroup], length: int, block: int, batched: int) -> int:
    """vLLM's max_memory_usage_bytes summed over the layers (kv_cache_interface.py): a full layer
    cdiv(length, block) blocks; a sliding one cdiv(min(window - 1 + max_num_batched_tokens,
    length), block) + 1."""
    total = 0.0
    for g in groups:
        page = g.bytes_per_token * block
        blocks = ceil(length / block) if g.window is None else ceil(min(g.window - 1 + batched, length) / block) + 1
        total += g.layers * blocks * page
    return int(total)


NO_CACHE_MEMORY = ("No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
                   "initializing the engine.")


def _too_long(max_len: int, needed: float, available: float, longest: int) -> str:
    """vLLM's error when one request of max_model_len does not fit the cache (kv_cache_utils.py
    _check_enough_kv_cache_memory), with its estimated maximum length."""
    hint = f"Based on the available memory, the estimated maximum model length is {longest}." if longest > 0 else ""
    return (f"To serve at least one request with the models's max seq len ({max_len}), "
            f"({needed / GiB:.2f} GiB KV cache is needed, which is larger than the available KV "
            f"cache memory ({available / GiB:.2f} GiB). {hint} Try increasing "
            f"`gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.")


def _vllm_kv(card: ModelCard, c: ServeConfig, groups: list[_KvGroup], available: int, block: int, max_len: int,
             batched: int) -> tuple[int, int, float, str | None]:
    """(KV bytes, tokens, concurrency, error) as vLLM V1 (0.9-0.11, 0.19) sizes the cache."""
    if available <= 0:
        return 0, 0, 0.0, NO_CACHE_MEMORY
    needed = _request_bytes(groups, max_len, block, batched)
    if needed > available:
        lo, hi = 0, max_len  # estimate_max_model_len: the longest length whose request fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if _request_bytes(groups, mid, block, batched) <= available else (lo, mid - 1)
        return 0, 0, 0.0, _too_long(max_len, needed, available, lo)
    pages = {g.bytes_per_token for g in groups}
    kinds = {(g.bytes_per_token, g.window) for g in groups}
    if len(kinds) == 1:  # one kind of layer: _get_kv_cache_config_uniform_type
        layers = sum(g.layers for g in groups)
        page = groups[0].bytes_per_token * block
        blocks = int(available // page // layers)
        tokens = blocks * block
        concurrency = blocks / ceil(max_len / block)
        return int(blocks * page * layers), tokens, concurrency, None
    if len(pages) > 1:
        raise InputError(f"{card.name}: layers with different KV page sizes are not modelled for vLLM")
    # the hybrid allocator (_get_kv_cache_config_uniform_page_size): layers of each kind in chunks of
    # the smallest kind's count; every chunk shares one block pool
    # (padded to whole chunks); a request needs, per chunk, what one layer of its kind needs
    # (get_max_concurrency_for_kv_cache_config: cdiv(group_size x sum of the chunks' per-layer
    # bytes, page x group_size))
    group_size = min(g.layers for g in groups)
    chunks = sum(ceil(g.layers / group_size) for g in groups)
    page = groups[0].bytes_per_token * block
    blocks = int(available // page // group_size)
    tokens = blocks // chunks * block
    per_request = sum(ceil(g.layers / group_size) * _request_bytes([_KvGroup(1, g.bytes_per_token, g.window)],
                                                                    max_len, block, batched) for g in groups)
    concurrency = blocks / max(ceil(per_request / page), 1)
    return int(blocks * page * group_size), tokens, concurrency, None


# --- Gated DeltaNet hybrids (vLLM 0.20-0.33) ---------------------------------------------------
# benchmarks/serve/vllm-hybrid-gdn.md reads every wheel from 0.20.0 to 0.33.0 (file:line there);
# its formulas reproduce the four public 0.20-0.28 logs that print both the available memory and
# the token count (benchmarks/serve/gdn-check.json).

GDN_FROM = (0, 20)
GDN_PREFIX_CACHING_FROM = (0, 28)  # arg_utils.py: prefix caching on by default for hybrids ("align")
GDN_CHECKPOINT_FROM = (0, 33)  # FlashInfer GDN prefill checkpoints in "align" mode (Hopper)
GDN_CHECKPOINT_ALIGNMENT = 64  # v1/attention/backends/gdn_attn.py FLASHINFER_GDN_CHECKPOINT_ALIGNMENT
_HOPPER_NAMES = ("h100", "h200", "h800", "h20", "gh200")
# the architectures whose config hook copies mamba_ssm_dtype ("float32") into the cache config
# (model_executor/models/config.py MODELS_CONFIG_MAP); Qwen3-Next has none: its recurrent state
# takes the model's dtype unless --mamba-ssm-cache-dtype says otherwise
GDN_FP32_STATE = ("qwen3_5", "qwen3_5_moe")


def _linear_layers(card: ModelCard) -> int:
    return sum(1 for spec in card.layer_specs if spec.mixer == "linear")


@dataclass(frozen=True)
class GdnLayout:
    """How vLLM lays out a Gated DeltaNet hybrid's cache on one rank (_vllm_gdn_kv)."""

    state: int  # one GDN layer's state per request: conv + recurrent bytes
    conv: int
    recurrent: int
    block: int  # tokens per attention block
    page: int  # bytes per block per layer (the GDN state padded to it)
    group: int  # layers per KV-cache group; the pool has available // (group x page) blocks
    attn_groups: int
    gdn_groups: int
    gdn_blocks: int  # blocks per request in each GDN group
    per_request: int  # blocks per request of max_model_len
    prefix: bool
    checkpoint: bool


def gdn_layout(card: ModelCard, c: ServeConfig, version: str, max_len: int, kv_bytes: float, a: int) -> GdnLayout:
    """Each GDN layer keeps, per request, a conv state of conv dim / TP x (kernel - 1 +
    speculative tokens) in the model dtype and a recurrent state of value heads / TP x key dim x
    value dim, in fp32 for Qwen3.5/3.6 (their mamba_ssm_dtype), in the model's dtype for Qwen3-Next
    (mamba_utils.py gated_delta_net_state_shape).
    _align_hybrid_block_size raises the attention block to the smallest multiple of 16 (64 with
    0.33's FlashInfer checkpoints) whose page holds one state, and pads the state to that page.
    Layers are grouped by kind into groups of G layers (the smaller kind's count, or the larger's
    when within 1.5x; an MTP drafter's attention layers join the attention kind). A request needs
    cdiv(length, block) blocks per attention group and 1 (+1 with prefix caching's "align" mode,
    +1 for 0.33's checkpoint, + the speculative tokens) per GDN group."""
    v = version_tuple(version)
    tp, ns = c.tp, c.num_speculative_tokens
    conv = card.linear_conv_dim // tp * ((card.conv_kernel or 1) - 1 + ns) * a
    recurrent = card.linear_state_elements // tp * (4 if card.family in GDN_FP32_STATE else a)
    state = conv + recurrent
    per_token = 2 * max(1, card.kv_heads // tp) * card.dim_head * kv_bytes
    prefix = c.prefix_caching if c.prefix_caching is not None else v >= GDN_PREFIX_CACHING_FROM
    checkpoint = prefix and v >= GDN_CHECKPOINT_FROM and any(n in c.gpu_name.lower() for n in _HOPPER_NAMES)
    align = max(16, c.block_size or 16)
    if checkpoint:
        align = align * GDN_CHECKPOINT_ALIGNMENT // gcd(align, GDN_CHECKPOINT_ALIGNMENT)
    block = align * ceil(state / (align * per_token))
    n_gdn = _linear_layers(card)
    n_attn = card.num_layers - n_gdn + (card.mtp_layers if ns else 0)
    small, large = sorted((n_attn, n_gdn))
    group = large if large < 1.5 * small else small
    attn_groups, gdn_groups = ceil(n_attn / group), ceil(n_gdn / group)
    gdn_blocks = (2 if prefix else 1) + ns + (1 if checkpoint else 0)
    return GdnLayout(state, conv, recurrent, block, int(block * per_token), group, attn_groups, gdn_groups, gdn_blocks,
                     attn_groups * ceil(max_len / block) + gdn_groups * gdn_blocks, prefix, checkpoint)


def _vllm_gdn_kv(card: ModelCard, c: ServeConfig, version: str, available: int, max_len: int, kv_bytes: float,
                 a: int) -> tuple[int, int, float, str | None, int, int, str]:
    """(KV bytes, tokens, concurrency, error, block, one block's bytes on this rank, explanation) as
    vLLM sizes a Gated DeltaNet hybrid's cache (gdn_layout): every group shares one pool of
    available // (G x page) blocks; the logged tokens are concurrency x max_model_len (0.20.1 on),
    not blocks x block; the engine refuses to start with fewer blocks than one request needs."""
    g = gdn_layout(card, c, version, max_len, kv_bytes, a)
    n_gdn = _linear_layers(card)
    note = (f"Gated DeltaNet state {g.state:,} B (conv {g.conv:,} + recurrent {g.recurrent:,}) per layer and "
            f"request: attention blocks of {g.block} tokens, pages of {g.page:,} B; "
            f"{card.num_layers - n_gdn}{' + MTP' if c.num_speculative_tokens else ''} attention and "
            f"{n_gdn} GDN layers in groups of {g.group}; {g.per_request} blocks per request ({g.gdn_blocks} per GDN "
            f"group{', prefix caching' if g.prefix else ''}{', FlashInfer prefill checkpoints' if g.checkpoint else ''})")
    if available <= 0:
        return 0, 0, 0.0, NO_CACHE_MEMORY, g.block, g.page * g.group, note
    blocks = int(available // (g.group * g.page))
    if blocks < g.per_request:
        longest = (blocks - g.gdn_groups * g.gdn_blocks) // g.attn_groups * g.block
        return (0, 0, 0.0, _too_long(max_len, g.group * g.page * g.per_request, available, longest), g.block,
                g.page * g.group, note)
    concurrency = blocks / g.per_request
    return blocks * g.group * g.page, int(concurrency * max_len), concurrency, None, g.block, g.page * g.group, note


# --- activations of the profile run ---------------------------------------------------------

TRITON_SAMPLER_SMS = 132  # vLLM 0.19's top-k/top-p kernel keeps one fp32 row per SM (H100 SXM: 132 SMs)


def profile_peak(card: ModelCard, tokens: int, requests: int, a: int, tp: int, version: str,
                 first_stage: bool = True, last_stage: bool = True, mxfp4_experts: bool = False) -> int:
    """vLLM V1's profile run, the "torch peak memory increase" of its log (benchmarks/serve/
    vllm-profile-run.md reads it from the 0.9.2, 0.10.1, 0.11.0 and 0.19.0 sources; the 0.19 logs
    of logs-more.jsonl agree within 0.01 GiB on 19 sampler-bound runs). GPUModelRunner.profile_run
    runs the forward (`_dummy_run`, attention skipped) and frees its temporaries before
    `_dummy_sampler_run`, so the peak is the larger of the two phases, not their sum:

      forward F = T a (q/tp + 2H + 3 I/tp)  at the widest MLP (fused add-norm in place, the merged
                  gate_up and SiluAndMul outputs; T = max_num_batched_tokens); a routed MoE layer in
                  0.9-0.11 holds fused_moe's caches for the call, T k (max(2 I_e/tp, H) + I_e/tp) a
      sampler S = R V (a_l + 12) + (T + 2R) H a   (last pipeline stage only; R = min(max_num_seqs, T),
                  V the whole vocabulary, gathered on every TP rank): the logits (a_l = a below fp32),
                  their fp32 copy, the softmax probabilities and the sampling noise, in-place top-k/
                  top-p by vLLM's Triton kernel in 0.19 (which keeps a [132, V] fp32 row per SM);
                  0.9-0.11 sort in PyTorch instead, ~40 B per entry beside the logits
      held      = the cuBLAS workspace (32 MiB on Hopper); a later pipeline stage's 2 T H a buffer for
                  the tensors it receives; a multimodal model's dummy images and their embeddings
                  (multimodal_profile_bytes); in 0.19 the persistent MoE workspace
                  T k (max(I_e/tp, H) + max(2 I_e/tp, H)) a (none for gpt-oss's monolithic MXFP4 kernel)
      peak = held + max(F, S)

    Not explained by the source: on a first or only rank the 0.19 logs show ~one more [T, I/tp]
    tensor in the forward (PP rank 0: 0.88 GiB computed, 1.10 logged); it matters only where the
    forward is the peak (pipeline ranks without the sampler, fp32 models)."""
    h = card.hidden_size
    forward = 0
    moe_workspace = 0
    for _, g in card.layer_groups:
        dense = tokens * a * (card.q_dim // tp + 2 * h + 3 * g.intermediate_size // tp)
        if g.is_moe:
            k, ie = g.experts_per_token or 1, (g.moe_intermediate_size or g.intermediate_size) // tp
            if version_tuple(version) >= MOE_WORKSPACE_FROM:
                if not mxfp4_experts:
                    moe_workspace = max(moe_workspace, tokens * k * (max(ie, h) + max(2 * ie, h)) * a)
                dense = tokens * a * (card.q_dim // tp + 2 * h)
            else:
                dense = tokens * a * (card.q_dim // tp + 2 * h) + tokens * k * (max(2 * ie, h) + ie) * a
            if g.shared_expert_intermediate_size:
                dense += tokens * a * 3 * g.shared_expert_intermediate_size // tp
        forward = max(forward, dense)
    sampler = 0
    if last_stage:
        logits = a if a < 4 else 0
        if version_tuple(version) >= TRITON_SAMPLER_FROM:
            per_entry = logits + 12
            # the kernel's fp32 rows: min(next power of two of min(SMs, R), SMs)
            rows = min(1 << (min(TRITON_SAMPLER_SMS, requests) - 1).bit_length(), TRITON_SAMPLER_SMS)
            sampler = rows * card.vocab_size * 4
        else:
            # 0.9-0.16 sort the logits for top-k/top-p in PyTorch (0.9-0.11.0 use FlashInfer's
            # sampler where it is installed and enabled; from 0.11.1 it is opt-in): ~40 B per entry
            # beside the logits (vLLM's own measurement in PR #33538: 5.00 GiB for 1,024 x 131,072).
            # Three public logs of 0.10-0.11 (gpt-oss-120b on H100, Qwen3-235B-FP8 at TP 4) leave
            # 4.4, 4.5 and 2.7 GiB less for the cache than FlashInfer's 12 B would: the sort path.
            per_entry = logits + 40
        sampler += requests * card.vocab_size * per_entry + (tokens + 2 * requests) * h * a
    held = (calibration.CUBLAS_WORKSPACE_BYTES + moe_workspace + (0 if first_stage else 2 * tokens * h * a)
            + multimodal_profile_bytes(card, tokens, a))
    return held + max(forward, sampler)


def multimodal_profile_bytes(card: ModelCard, tokens: int, a: int) -> int:
    """What vLLM V1's profile run keeps of its multimodal inputs until it ends (gpu_model_runner.py
    profile_run, 0.19.0; benchmarks/serve/vllm-multimodal-profile.md): n = max(T, E) // E dummy
    images (the encoder budget over E embeddings per image), their pixel values in the model dtype
    (held by profile_run) and their projected embeddings in the encoder cache, n x E x H (on every
    TP rank: the projector gathers them whole). Gemma 3 at 8,192 tokens: 32 images, 0.18-0.23 GiB."""
    e, pixels = card.mm_tokens_per_image, card.mm_image_pixels
    if not (e and pixels):
        return 0
    n = max(tokens, e) // e
    return n * pixels * a + n * e * card.hidden_size * a


def profile_peak_v0(card: ModelCard, tokens: int, seqs: int, a: int, tp: int, gpu_name: str = "",
                    first_stage: bool = True) -> int:
    """vLLM V0's profile run (0.6.5-0.8.5 V0; benchmarks/serve/vllm-v0-profile-run.md reads it from
    the source and matches every log whose options are known within 0.01 GiB): one prefill of
    `seqs` sequences sharing `tokens` tokens through the real model (FlashAttention, nothing per
    token pair), the forward's temporaries freed before the sampler, so the larger of
      forward F = T a max(3H + 3I/tp, (5H + I/tp) under TP)   (dense; the peak inside SiluAndMul)
                  T a (3H + E + k (3 I_e/tp + H) + H)          (routed MoE, E experts, top-k)
      sampler P = S V c + (T + S) H a   on TP rank 0 of the last stage: one row of logits per
                  sequence, sorted for top-p/top-k: bf16 logits, an fp32 copy, the sort's values
                  and int64 indices, the reverse indices and CUB's scratch, c = 38 B (S >= 128),
                  50 B (2 <= S < 128), 30 B (S = 1)
    plus the cuBLAS workspace (32 MiB on Hopper, 8.125 MiB before) and a later stage's 2 T H a."""
    h = card.hidden_size
    forward = 0
    for _, g in card.layer_groups:
        if g.is_moe:
            k, ie = g.experts_per_token or 1, (g.moe_intermediate_size or g.intermediate_size) // tp
            f = tokens * a * (3 * h + (g.num_experts or 0) + k * (3 * ie + h) + h)
        else:
            f = tokens * a * max(3 * h + 3 * g.intermediate_size // tp, (5 * h + g.intermediate_size // tp) if tp > 1 else 0)
        forward = max(forward, f)
    c = 38 if seqs >= 128 else 50 if seqs >= 2 else 30
    sampler = seqs * card.vocab_size * c + (tokens + seqs) * h * a
    hopper = any(x in gpu_name.lower() for x in ("h100", "h200", "h800", "h20", "gh200"))
    workspace = calibration.CUBLAS_WORKSPACE_BYTES if hopper else int(8.125 * 2**20)
    return workspace + (0 if first_stage else 2 * tokens * h * a) + max(forward, sampler)


def _vllm_v0(card: ModelCard, c: ServeConfig, dtype: str, compute_dtype: str, version: str) -> ServeEstimate:
    """vLLM V0, 0.4.0-0.8.x (benchmarks/serve/vllm-v0-accounting.md): Worker.determine_num_available_blocks,
    available = total x utilization - (weights + the profile run's activation peak + non-torch
    memory), one pool of 16-token blocks over every layer, 4 GiB of CPU swap blocks beside it.
    The profile (profile_peak_v0) prefills max(max_model_len, 2048) tokens over 256 sequences,
    unless chunked prefill is on: by default from 0.5.3 above 32,768 tokens of context (not with
    sliding windows, multimodal models from 0.6.2, MLA in 0.8), with 512 tokens up to 0.6.4 and
    2,048 from 0.6.5. How the budget is read differs by release (section 1):
    - 0.4.0-0.6.3 ("0.4", "0.5"): the drop in free memory since start-up, PyTorch's cache not
      emptied first: the activations as PyTorch still holds them (llmcalc: the allocated peak);
      the CUDA context is outside;
    - 0.6.4: PyTorch's allocated peak plus the device's whole use beyond PyTorch's allocation:
      the CUDA context is inside;
    - 0.6.5-0.8.x ("0.6", "0.7"): memory_profiling, weights + peak increase + non-torch growth."""
    a = int(PRECISIONS[compute_dtype].bytes_per_element)
    kv_bytes = 1 if c.kv_cache_dtype.startswith("fp8") else a
    max_len = c.max_model_len or card.max_position_embeddings
    chunked = (version != "0.4" and max_len > 32768 and not card.sliding_layers
               and not (card.vision_params and version != "0.5") and not (card.is_mla and version == "0.7"))
    batched = c.max_num_batched_tokens or ((512 if version in ("0.5", "0.6.4") else 2048) if chunked
                                           else max(max_len, 2048))
    seqs = c.max_num_seqs or 256
    weights, weights_note = weights_per_rank(card, dtype, compute_dtype, c.tp, c.pp)
    budget = int(c.gpu_total_bytes * (c.memory_fraction or 0.9))
    non_torch = non_torch_bytes(c.tp, c.pp, c.gpu_name) + (calibration.CUDA_CONTEXT_BYTES if version == "0.6.4" else 0)
    activation = profile_peak_v0(card, batched, min(seqs, batched), a, c.tp, c.gpu_name)
    available = budget - weights - non_torch - activation
    block = c.block_size or 16
    groups = _kv_groups(card, c, kv_bytes, c.pp)
    block_bytes = _block_bytes(groups, block)  # V0: one block table over every layer (no sliding pools)
    blocks = max(available // block_bytes, 0) if block_bytes else 0
    tokens = blocks * block
    error = None
    if blocks <= 0:
        error = NO_CACHE_MEMORY
    elif max_len > tokens:
        error = (f"The model's max seq len ({max_len}) is larger than the maximum number of tokens that can be "
                 f"stored in KV cache ({tokens}). Try increasing `gpu_memory_utilization` or decreasing "
                 "`max_model_len` when initializing the engine.")
    span = {"0.4": "0.4.0-0.5.2", "0.5": "0.5.3-0.6.3", "0.6.4": "0.6.4", "0.6": "0.6.5-0.6.6", "0.7": "0.7-0.8"}[version]
    read = {"0.4": "; read as the drop in free memory: what PyTorch still holds of it, the allocated peak here, "
                   "a little more in practice", "0.6.4": "; PyTorch's allocated peak"}
    context = (f"the CUDA context (0.6.4 counts the device's whole use beyond PyTorch's allocation; "
               f"{calibration.CUDA_CONTEXT_BYTES / GiB:.2f} GiB measured with CUDA 13) plus ") if version == "0.6.4" else ""
    explain = {"weights": weights_note,
               "budget": f"total {c.gpu_total_bytes / GiB:.2f} GiB x gpu_memory_utilization {c.memory_fraction or 0.9}",
               "activation_peak": f"V0's profile ({span}): {batched} tokens over {min(seqs, batched)} sequences"
                                  + (" (chunked prefill, on above 32,768 tokens)" if chunked else "")
                                  + read.get("0.4" if version == "0.5" else version, ""),
               "non_torch": context + "the growth beside PyTorch after start-up, as for V1 (the medians of vLLM "
                                      "0.19's logs by layout); V0 builds logged 0.03-0.35 GiB at TP 1",
               "cuda_graph": "captured after the KV cache is sized: not in the budget",
               "kv_cache": f"{blocks:,} blocks of {block} tokens over every layer on this rank"}
    kv = int(blocks * block_bytes) if blocks > 0 else 0
    return ServeEstimate("vllm", version, budget, weights, non_torch, activation, 0, available, kv,
                         tokens if blocks > 0 else 0, block, block_bytes, max_len, seqs, batched,
                         tokens / max_len if max_len and blocks > 0 else 0.0, error is None, error, explain)


# --- the estimate ---------------------------------------------------------------------------

def _defaults(c: ServeConfig, version: str = "") -> tuple[int, int]:
    """vLLM serve's max_num_batched_tokens / max_num_seqs (engine/arg_utils.py
    _set_default_args_v1, 0.9-0.11 and 0.19): 8192 / 1024 on GPUs of 70 GiB and more but A100s, else
    2048 / 256; 0.8.x (0.8.5's rule, by memory; 0.8.0-0.8.4 chose by the name H100/H200 and gave
    1,024 sequences on every GPU up to 0.8.3); SGLang's chunked_prefill_size and a running-request
    cap by memory tier."""
    big = c.gpu_total_bytes >= 70 * GiB and "a100" not in c.gpu_name.lower()
    if c.engine == "sglang":
        if version in ("0.5", "0.5.10", "0.5.20"):
            return _sglang_tier(c, version)[0], 0
        return (8192 if big else 2048 if c.gpu_total_bytes < 35 * GiB else 4096), 0
    if version == "0.8":
        big = c.gpu_total_bytes >= 70 * GiB
    return (8192, 1024) if big else (2048, 256)


def serve(card: ModelCard, c: ServeConfig, dtype: str, compute_dtype: str) -> ServeEstimate:
    """Per-rank start-up accounting of engine `c.engine` serving `card` with weights in `dtype`;
    with data parallelism, per replica (each replica is an engine of its own)."""
    est = _serve_rank(card, c, dtype, compute_dtype)
    notes = {}
    if c.dp > 1:
        notes["data_parallel"] = f"{c.dp} replicas, each with this budget and cache: {c.dp} x the concurrency"
    if c.enforce_eager:
        notes["cuda_graph"] = "--enforce-eager: no CUDA graphs (outside the budget here either way)"
    if c.prefix_caching and not _linear_layers(card):
        notes["prefix_caching"] = "reuses cached blocks at run time: nothing changes at start-up"
    return replace(est, data_parallel=c.dp, explain=est.explain | notes)


def _serve_rank(card: ModelCard, c: ServeConfig, dtype: str, compute_dtype: str) -> ServeEstimate:
    version = validate(card, c)
    if c.engine == "vllm" and version in V0_VERSIONS:
        return _vllm_v0(card, c, dtype, compute_dtype, version)
    a = int(PRECISIONS[compute_dtype].bytes_per_element)
    kv_bytes = 1 if c.kv_cache_dtype.startswith("fp8") else a
    max_len = c.max_model_len or card.max_position_embeddings
    batched_default, seqs_default = _defaults(c, version)
    batched = c.max_num_batched_tokens or batched_default
    weights, weights_note = weights_per_rank(card, dtype, compute_dtype, c.tp, c.pp)
    groups = _kv_groups(card, c, kv_bytes, c.pp)
    explain = {"weights": weights_note}
    if c.engine == "vllm":
        seqs = min(c.max_num_seqs or seqs_default, batched)
        block = c.block_size or (64 if card.is_mla else 16)
        utilization = c.memory_fraction or default_utilization(version)
        budget = int(c.gpu_total_bytes * utilization)
        non_torch = non_torch_bytes(c.tp, c.pp, c.gpu_name)
        if version == "0.8":
            # 0.8.x (gpu_worker.py determine_available_memory, the 0.6.4 formula): non-torch is
            # the device's used memory less torch's allocation, so the CUDA context is inside
            non_torch += calibration.CUDA_CONTEXT_BYTES
        # with pipeline stages, the last one (the sampler) has the least left for its cache, and
        # the engine takes the smallest cache of all stages
        activation = profile_peak(card, batched, min(batched, seqs), a, c.tp, version, first_stage=c.pp == 1,
                                  mxfp4_experts=dtype == "mxfp4")
        runner = model_runner(card, version, not PRECISIONS[dtype].is_float)
        cuda_graph, graph_note = 0, "captured after the KV cache is sized: not in the budget (0.8-0.19)"
        if version_tuple(version) >= CUDA_GRAPH_BUDGET_FROM:
            cuda_graph, graph_note = cuda_graph_estimate(card, c, version, runner, seqs, batched, dtype, compute_dtype)
        available = budget - weights - non_torch - activation - cuda_graph
        if _linear_layers(card):
            kv, tokens, concurrency, error, block, block_bytes, gdn_note = _vllm_gdn_kv(
                card, c, version, available, max_len, kv_bytes, a)
            explain["gdn"] = gdn_note
        else:
            kv, tokens, concurrency, error = _vllm_kv(card, c, groups, available, block, max_len, batched)
            block_bytes = _block_bytes(groups, block)
        free = c.gpu_total_bytes - calibration.CUDA_CONTEXT_BYTES  # the context exists before the check
        if free < budget and version != "0.8":  # Worker.init_device (0.9 and later)
            error = (f"Free memory on device ({free / GiB:.2f}/{c.gpu_total_bytes / GiB:.2f} GiB) on startup is less "
                     f"than desired GPU memory utilization ({utilization}, {budget / GiB:.2f} GiB). "
                     "Decrease GPU memory utilization or reduce GPU memory used by other processes.")
            kv, tokens, concurrency = 0, 0, 0.0
        explain |= {
            "budget": f"total {c.gpu_total_bytes / GiB:.2f} GiB x gpu_memory_utilization {utilization}",
            "non_torch": ("the CUDA context (0.8.x counts the device's whole use beyond PyTorch's allocation; "
                          f"{calibration.CUDA_CONTEXT_BYTES / GiB:.2f} GiB measured with CUDA 13) plus " if version == "0.8" else "")
                         + "growth beside PyTorch after start-up (cuBLAS handles; NCCL under TP): the median of vLLM 0.19's logs on H100 for this layout (0.25 GiB at TP 1, 2.09 "
                         "at TP > 1, 0.07 under PP alone); other builds and GPUs logged 0.03-0.35 GiB at TP 1",
            "activation_peak": f"the profile run: {batched} tokens, then the sampler over {min(batched, seqs)} rows",
            "cuda_graph": graph_note,
            "kv_cache": f"blocks of {block} tokens; {sum(g.layers for g in groups)} layers on this rank",
        }
        return ServeEstimate("vllm", version, budget, weights, non_torch, activation, cuda_graph, available, kv, tokens,
                             block, block_bytes, max_len, seqs, batched, concurrency, error is None, error,
                             explain)
    # SGLang: mem_fraction_static of the memory free before the weights (after the CUDA context and
    # NCCL) holds the weights and the pool
    # 0.5.16 on captures prefill graphs for Qwen3.5/3.6 too (multimodal_breakable_cuda_graph_supported_model_archs)
    graphs_blocked = bool(card.vision_params) and not (version == "0.5.20" and card.family in GDN_FP32_STATE)
    fraction = c.memory_fraction or _sglang_fraction(c, batched, version, graphs_blocked, card.is_mla)
    if version == "0.4" and card.vision_params:
        # 0.4.1-0.4.5's ModelRunner cuts the fraction of a multimodal model by 5%, a value the user
        # set included (model_runner.py:130 in 0.4.1.post7; benchmarks/serve/sglang-logs.md)
        fraction *= 0.95
    elif version in ("0.4.6", "0.4.7") and card.vision_params:
        fraction *= 0.90  # ModelRunner.__init__ (model_runner.py:394 in 0.4.6.post5): a set fraction too
    elif version == "0.4.8" and card.vision_params and not c.memory_fraction:
        fraction *= 0.90  # 0.4.9-0.4.9.post2's server_args: the default only
    elif version in ("0.5", "0.5.10", "0.5.20") and card.vision_params and not c.memory_fraction:
        fraction *= _sglang_vlm_factor(card)
    non_torch = calibration.CUDA_CONTEXT_BYTES + (NON_TORCH_BYTES if c.tp * c.pp > 1 else 0)
    free_before = c.gpu_total_bytes - non_torch
    rest = free_before - weights - free_before * (1 - fraction)
    if version == "0.5.20" and card.vision_params:
        rest -= 100 * 2**20  # SGLANG_VLM_CACHE_SIZE_MB (kv_cache_configurator.py, 0.5.18 on)
    mamba_note = ""
    requests = 0
    if _linear_layers(card):
        # the Mamba pool of a Gated DeltaNet hybrid takes its share of `rest` first
        mamba, _, requests, mamba_note, mamba_error = _sglang_mamba(card, c, version, rest, a)
        rest -= mamba
    cell = sum(g.layers * g.bytes_per_token for g in groups)
    if version in ("0.5.10", "0.5.20") and card.family in SGLANG_SWA_FAMILIES and any(g.window for g in groups):
        # HybridSWAPoolConfigurator: full-attention layers a token each, sliding ones 0.8 of one;
        # the pool's size is the full layers' token count
        cell = sum(g.layers * g.bytes_per_token * (SGLANG_SWA_RATIO if g.window else 1) for g in groups)
    page = c.block_size or (64 if card.is_mla else 1)
    tokens = max(int(rest // cell) // page * page, 0) if cell else 0
    prefix = "self.server_args." if version in ("0.4", "0.4.6", "0.4.7", "0.4.8", "0.5") else ""
    error = None if tokens > 0 else ("Not enough memory. Please try to increase --mem-fraction-static. "
                                     f"Current value: {prefix}mem_fraction_static={fraction}")
    if version == "0.5.20" and rest <= 0:
        floor = 1 - (free_before - weights) / free_before
        error = (f"Loaded weights leave no GPU memory for the KV cache under --mem-fraction-static={fraction}. "
                 f"Raise --mem-fraction-static above {ceil(1000 * floor) / 1000:.3f} (minimum viable = 1 - "
                 f"available/pre = {floor:.4f}). If using speculative decoding, draft weights are now counted.")
    running = c.max_num_seqs or min(tokens // 2, max(min(int(tokens / max_len * 512), 4096), 2048))
    if mamba_note:
        error = mamba_error or error
        running = min(running, requests)
    explain |= {"budget": f"mem_fraction_static {fraction:.3f} of the memory free before the weights",
                "kv_cache": f"cell {cell:,.0f} B per token over {sum(g.layers for g in groups)} layers"}
    if mamba_note:
        explain["gdn"] = mamba_note
    return ServeEstimate("sglang", version, int(free_before * fraction), weights, non_torch, 0, 0, int(rest),
                         int(tokens * cell), tokens, page, _block_bytes(groups, page), max_len, running, batched,
                         tokens / max_len if max_len else 0.0, error is None, error, explain)


SGLANG_GDN_VERSIONS = ("0.5", "0.5.10", "0.5.20")
SGLANG_MAMBA_FULL_RATIO = 0.9  # --mamba-full-memory-ratio's default from 0.5.4


def _sglang_mamba(card: ModelCard, c: ServeConfig, version: str, rest: float,
                  a: int) -> tuple[float, int, int, str, str | None]:
    """(bytes, the slots SGLang logs as max_mamba_cache_size, the running requests they allow,
    explanation, error) of a Gated
    DeltaNet hybrid's Mamba pool (benchmarks/serve/sglang-hybrid-gdn.md reads every wheel 0.5.3-0.5.23):
    per request, every GDN layer's conv state (conv dim / TP x (kernel - 1), 16-bit) and recurrent
    state (value heads / TP x key dim x value dim, fp32: --mamba-ssm-dtype's default, or the
    checkpoint's mamba_ssm_dtype); the pool takes rest x 0.9 / 1.9 in whole slots (radix cache on),
    the full-attention layers' KV the remainder. From 0.5.17 one slot fewer is logged (the same
    bytes); a request holds 3 slots (5 from 0.5.14's extra_buffer strategy) and the running
    requests are capped at slots / that."""
    tp = c.tp
    per = _linear_layers(card) * (card.linear_conv_dim // tp * ((card.conv_kernel or 1) - 1) * a
                                  + card.linear_state_elements // tp * 4)
    count = int(rest * SGLANG_MAMBA_FULL_RATIO / (1 + SGLANG_MAMBA_FULL_RATIO) // per) if rest > 0 else 0
    # 0.5.17 on logs one slot fewer and 0.5.14 on holds 5 a request (extra_buffer): "0.5.10" follows its
    # later releases (0.5.10-0.5.13 log one more slot and hold 3), "0.5" (0.5.4-0.5.9) the earlier
    slots = count if version == "0.5" else count - 1
    ratio = 3 if version == "0.5" else 5
    note = (f"Mamba pool: {count} slots of {per / 2**20:.2f} MiB ({_linear_layers(card)} GDN layers' conv and fp32 "
            f"states), {count * per / GiB:.2f} GiB of the {rest / GiB:.2f} GiB after the weights; "
            f"{slots} logged as max_mamba_cache_size, {ratio} a request")
    error = None
    if version in ("0.5.10", "0.5.20") and slots <= 0:  # 0.5.13 on
        error = (f"Not enough GPU memory for hybrid (mamba/linear-attention) state cache. Computed "
                 f"max_mamba_cache_size={slots} (total_rest_memory={rest / GiB:.2f} GB, mamba_cache_per_req="
                 f"{per / 2**20:.2f} MB). Try: (1) reduce --max-running-requests, (2) increase --mem-fraction-static, "
                 "(3) reduce --speculative-num-draft-tokens, or (4) use GPUs with more memory.")
    elif version in ("0.5.10", "0.5.20") and slots // ratio == 0:
        error = (f"Hybrid (mamba/linear-attention) state cache is too small to serve any requests. "
                 f"max_mamba_cache_size={slots}, mamba_ratio={ratio}, resulting max_num_reqs=0. Try: (1) reduce "
                 "--max-running-requests, (2) increase --mem-fraction-static, or (3) use GPUs with more memory.")
    return count * per, slots, slots // ratio, note, error


def _sglang_tier(c: ServeConfig, version: str) -> tuple[int, int]:
    """SGLang 0.5.3 on: (chunked_prefill_size, the decode CUDA graphs' max batch) by the GPU's
    memory and TP (server_args.py in 0.5.3; arg_groups/memory_hook.py:89-180 in 0.5.23)."""
    gib = (c.gpu_smi_bytes or c.gpu_total_bytes) / GiB
    wide = c.tp >= 4
    if gib < 20:
        return 2048, 8
    if gib < 35:
        return (4096, 160 if wide else 48) if version == "0.5.20" else (2048, 80 if wide else 24)
    if gib < 60:
        return 4096, 160 if wide else 32
    if gib < 160:
        return 8192, 512 if wide else 256
    return 16384, 512


def _prefill_buckets(top: int) -> int:
    """How many prefill sizes SGLang captures as CUDA graphs up to `top` tokens
    (cuda_graph_hook.py:480-497 in 0.5.23): 4-32 by 4, 48-256 by 16, 288-512 by 32, 576-1,024 by
    64, 1,280-4,096 by 256, then by 512."""
    sizes = [*range(4, 33, 4), *range(48, 257, 16), *range(288, 513, 32), *range(576, 1025, 64),
             *range(1280, 4097, 256), *range(4608, max(top, 4608) + 1, 512)]
    return sum(1 for x in sizes if x <= top)


def _sglang_vlm_factor(card: ModelCard) -> float:
    """adjust_mem_fraction_for_vlm (memory_hook.py:417-462 in 0.5.23, unchanged since 0.5.3):
    0.95 x clamp(1 - 0.1 (L H^2 / (24 x 1,024^2) - 1), 0.8, 1.05) of the vision config's
    num_hidden_layers L (24 where the config has none: Qwen3.5's names its layers depth) and
    hidden_size H; where the card does not give H, llmcalc takes L H^2 as the tower's parameters
    / 12 (a transformer layer holds ~12 H^2 weights)."""
    if card.vision_hidden_size:
        ratio = (card.vision_layers or 24) * card.vision_hidden_size ** 2 / (24 * 1024**2)
    else:
        ratio = card.vision_params / 12 / (24 * 1024**2)
    return 0.95 * max(0.8, min(1.05, 1 - 0.1 * (ratio - 1)))


def _sglang_fraction(c: ServeConfig, chunked: int, version: str = "0.5", multimodal: bool = False,
                     mla: bool = False) -> float:
    """SGLang's default mem_fraction_static (server_args.py; arg_groups/memory_hook.py from 0.5.21).
    0.5 (0.5.3-0.5.9), 0.5.10 (0.5.10-0.5.19) and 0.5.20 (0.5.20-0.5.23): round((gpu_mem -
    reserved) / gpu_mem, 3), reserved = 512 MiB + 1.5 x max(chunked_prefill_size, 2,048) + 2 x the
    decode graphs' max batch (_sglang_tier) + TP x PP / 8 GiB, from 0.5.10 + 8 MiB per captured
    prefill size (1,536 for MLA), at least 10 GiB on GPUs of more than 60 GiB.
    0.4 (0.4.1-0.4.5): by TP alone, 0.79 from TP 16, 0.81 from 8, 0.85 from 4, 0.87 from 2, else
    0.88 (server_args.py:187-197 in 0.4.1.post7). 0.4.8 (0.4.8-0.5.2): (gpu_mem - reserved) /
    gpu_mem to three places, reserved = 2.8 + 0.1 TP x PP GiB below 35 GiB, 9.5 + 0.5 TP x PP below
    90, 12 + 0.5 TP x PP below 160, else 32. 0.4.6 and 0.4.7 (server_args.py:247-268 in
    0.4.6.post5, :253-280 in 0.4.7, read from the wheels): the TP tiers up to 81,920 MiB, else 0.88;
    above 96 GiB min(m + 48 GiB (1 - m) / gpu_mem, (gpu_mem - 18 GiB) / gpu_mem); 0.4.7 gives 0.79
    above 180,000 MiB. SGLang reads gpu_mem from nvidia-smi: `gpu_smi_bytes` where known, else CUDA's total."""
    n = c.tp * c.pp
    mib = (c.gpu_smi_bytes or c.gpu_total_bytes) / 2**20
    tiers = 0.79 if n >= 16 else 0.81 if n >= 8 else 0.85 if n >= 4 else 0.87 if n >= 2 else 0.88
    if version == "0.4":
        return tiers
    if version in ("0.4.6", "0.4.7"):
        m = tiers if mib <= 81920 else 0.88
        if version == "0.4.7" and mib > 180_000:
            return 0.79
        if mib > 96 * 1024:
            m = min(m + 48 * 1024 * (1 - m) / mib, (mib - 18 * 1024) / mib)
        return m
    if version == "0.4.8":
        # 0.4.8-0.5.2 (PR #7054, server_args.py:274-315 in 0.4.8): a reserve in GiB by memory tier
        gib = mib / 1024
        reserved = (2.8 + 0.1 * n if gib < 35 else 9.5 + 0.5 * n if gib < 90 else 12 + 0.5 * n if gib < 160 else 32)
        return round((mib - reserved * 1024) / mib, 3)
    # 0.5.3 on: 512 MiB + 1.5 x max(chunk, 2,048) + TP x PP / 8 GiB + 2 x the decode graphs' max
    # batch, from 0.5.10 + 8 MiB per captured prefill size (1,536 for MLA; no prefill graphs for
    # multimodal models or under PP), at least 10 GiB above 60 GiB; to three places
    _, max_bs = _sglang_tier(c, version)
    reserved = 512 + 1.5 * max(chunked, 2048) + 2 * max_bs + c.tp * c.pp / 8 * 1024
    if version in ("0.5.10", "0.5.20") and c.pp == 1 and not multimodal:
        reserved += 1536 if mla else 8 * _prefill_buckets(chunked)
    if mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return round((mib - reserved) / mib, 3)


@dataclass(frozen=True)
class Sizing:
    """The inverse question: the least memory fraction, then the fewest GPUs (TP), that hold
    `concurrency` requests of max_model_len at once."""

    concurrency: int
    tp: int | None  # None: no TP up to max_tp holds them
    memory_fraction: float | None
    estimate: ServeEstimate | None


def size_for(card: ModelCard, c: ServeConfig, dtype: str, compute_dtype: str, concurrency: int,
             max_tp: int = 8) -> Sizing:
    """Smallest TP (dividing the heads, up to max_tp) at which the engine starts and holds
    `concurrency` requests, and at it the smallest memory fraction (to 0.01) that does: the
    engine's own accounting searched, since blocks come in whole pages."""
    if concurrency < 1:
        raise InputError(f"--concurrency must be a positive integer, got {concurrency}")

    def holds(tp: int, fraction: float) -> ServeEstimate | None:
        est = serve(card, replace(c, tp=tp, memory_fraction=fraction), dtype, compute_dtype)
        return est if est.starts and est.max_concurrency >= concurrency else None

    top = 0.99  # the engines accept up to 1; vLLM refuses more than the free memory (the context's share)
    for tp in [t for t in (1, 2, 4, 8, 16) if t <= max_tp and card.num_heads % t == 0 and t >= c.tp]:
        if holds(tp, top) is None:
            continue
        lo, hi = 1, round(top * 100)  # fractions in hundredths: the largest that fails, the smallest that holds
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if holds(tp, mid / 100) else (mid + 1, hi)
        return Sizing(concurrency, tp, hi / 100, holds(tp, hi / 100))
    return Sizing(concurrency, None, None, None)
