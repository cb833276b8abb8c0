"""Measured constants: CUDA context, cuBLAS workspace, caching-allocator reserve.

Measured on NVIDIA H100 80GB HBM3, driver 580.159.04, CUDA 13.0, torch 2.11.0+cu130,
transformers 5.17.0 (benchmarks/results/h100-80gb-hbm3.jsonl, 26 cases, each in a fresh process,
by `benchmarks/validate.py run`). Other GPUs and drivers differ; calibrate on yours.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llmcalc.errors import InputError

MiB = 2**20
GiB = 2**30

SOURCE = "H100 80GB HBM3, driver 580.159.04, CUDA 13.0, torch 2.11.0 (benchmarks/results/h100-80gb-hbm3.jsonl)"

# NVML process memory minus torch.cuda.memory_reserved() after CUDA initialises and the first
# cuBLAS matmul, before any model memory: 676 MiB in all 26 runs (610 MiB before cuBLAS). The
# seeds' 1.3 GB predates lazy module loading (CUDA >= 12.2).
CUDA_CONTEXT_BYTES = 676 * MiB
CUDA_CONTEXT_SOURCE = "NVML process memory - torch reserved after init + first matmul: 676 MiB (H100, CUDA 13.0)"

# What a process's NCCL communicator adds to its device memory, outside PyTorch's allocator:
# NVML process memory - torch reserved, after init_process_group("nccl", device_id=...) and a
# barrier, less the same before it. Two H200s of one host (NVLink), torch 2.11 (CUDA 13.0),
# world size 2, transformers' tensor-parallel inference: 0.82 and 0.91 GiB on the two ranks
# (both at 1.416 GiB with the context; benchmarks/results/scale/h200-x2-tp.jsonl). Larger worlds
# are not measured yet: the same is assumed.
NCCL_COMMUNICATOR_BYTES = int(0.87 * GiB)

# DeepSpeed on one rank still all-reduces (ZeRO-1/2) or reduce-scatters (ZeRO-3) every gradient
# bucket through NCCL, so its process holds NCCL communicators outside PyTorch's allocator, which
# FSDP2 on one rank does not (0.06 GiB there). benchmarks/tp/nccl_memory.py at world size 1 (one
# H200, driver 580.159.04, torch 2.11, NCCL 2.28.9; benchmarks/results/nccl/h200.jsonl): the first
# communicator adds 0.545 GiB, a second process group's 0.379 GiB more. DeepSpeed 0.19.8 on one
# rank (benchmarks/results/scale/h200-deepspeed.jsonl, NVML - torch peak reserved - the CUDA context
# and kernels): 0.56-0.59 GiB for ZeRO-1/2 (4 runs), one communicator; 0.94-0.96 GiB for ZeRO-3
# (3 runs), two: stage 3 builds a process group of its own beside the world's.
NCCL_FIRST_COMMUNICATOR_ONE_RANK_BYTES = int(0.545 * GiB)
NCCL_NEXT_COMMUNICATOR_ONE_RANK_BYTES = int(0.379 * GiB)
DEEPSPEED_COMMUNICATORS = {1: 1, 2: 1, 3: 2}


def deepspeed_one_rank_nccl_bytes(stage: int) -> int:
    """NCCL's memory in a one-rank DeepSpeed process: one communicator, and a second under ZeRO-3."""
    n = DEEPSPEED_COMMUNICATORS.get(stage, 0)
    return NCCL_FIRST_COMMUNICATOR_ONE_RANK_BYTES + (n - 1) * NCCL_NEXT_COMMUNICATOR_ONE_RANK_BYTES if n else 0

# Pinned (page-locked) host memory: torch's CachingHostAllocator rounds every pin_memory()
# allocation up to a power of two and keeps freed blocks cached (ATen/core/CachingHostAllocator.h,
# pinned_max_round_threshold defaulting to no limit), and the whole block is resident. Measured on
# the H200 machine (torch 2.11): DeepSpeed ZeRO-Offload of llama-3.2-1b pins 4.6 + 2.3 + 4.6 + 0.49
# GiB of buffers and the process's RSS rose 20.9 GiB at initialize, the rounded 8 + 4 + 8 + 0.5.
def pinned_bytes(nbytes: int) -> int:
    return 1 << (int(nbytes) - 1).bit_length() if nbytes > 0 else 0


# Lazy module loading (CUDA_MODULE_LOADING=LAZY, the default since CUDA 12.2) adds each kernel
# module to the context when one of its kernels first runs. NVML process memory - peak reserved at
# the end of the 32 single-GPU runs (benchmarks/results/h100-80gb-hbm3*.jsonl), identical across
# models and sizes, separates into additive parts over the 676 MiB above:
#   inference, fp32 or eager attention:           678 MiB in all 6 rows   -> +2 (elementwise, norms)
#   inference, 16-bit SDPA (flash kernels):       688-702, median 693     -> +15 for flash
#   + bitsandbytes nf4 / LLM.int8:                700-702 / 764-768       -> +8 / +73 for bnb
#   training fp32 (backward, fused AdamW):        742 in all 3 rows       -> +66 instead of +2
#   training 16-bit or autocast (flash):          758 in all 10 rows      -> +66 +16 (flash again)
KERNEL_MODULES_MIB = {"infer": 2, "train": 66, "flash": 15, "int8": 73, "nf4": 8}


def kernel_modules_bytes(mode: str, flash: bool, quantized: str | None) -> int:
    """Context growth from lazily loaded kernels: the step's kernels (inference or training),
    flash attention when 16-bit SDPA runs, bitsandbytes' kernels for int8/nf4 weights."""
    mib = KERNEL_MODULES_MIB[mode] + (KERNEL_MODULES_MIB["flash"] if flash else 0)
    return (mib + KERNEL_MODULES_MIB.get(quantized or "", 0)) * MiB


# The cuBLAS workspace PyTorch allocates through its caching allocator at the first matmul on
# Hopper: 32 MiB, counted by max_memory_allocated (measured: allocated before/after a matmul).
CUBLAS_WORKSPACE_BYTES = 32 * MiB
# What a captured CUDA graph holds beyond its pool's tensors (serving.cuda_graph_estimate):
# - per graph: 112 KiB, the driver's memory for one instantiated graph, measured on an H200 (driver
#   580.159.04, CUDA 13.0, torch 2.11.0+cu130) by benchmarks/cuda_graph_memory.py: the free-memory
#   drop of graphs of 16-4,096 kernels, captured alone and as 8-81 pieces, fits 112 KiB per graph +
#   2.5 KiB per elementwise kernel node (3.5 KiB a GEMM node) (results/cuda-graph/h200.json);
# - per kernel of llmcalc's engine op list (speed.engine_forward_ops): 11 KiB, the median over the
#   103 per-graph samples that 57 vLLM 0.19 start-up logs print (benchmarks/serve/cudagraph-019.jsonl,
#   H100: (drop - graphs x 112 KiB) / kernels; quartiles 6.8 and 13.6). At the measured 2.5-3.5 KiB
#   a node that is 3-4 driver nodes per kernel of the list: vLLM's compiled graphs hold more, smaller
#   kernels (inductor's) and the custom ops' launches, which the op list does not enumerate.
CUDA_GRAPH_BYTES_PER_GRAPH = 112 * 1024
CUDA_GRAPH_BYTES_PER_KERNEL = 11 * 1024

# Caching allocator: (peak reserved - peak allocated) / peak allocated, the blocks cached but free
# when the peak is reached (fragmentation: it depends on the order of allocations). Its median
# over the single-GPU H100 rows of the default allocator: inference 0.100 (21 rows, 0.003 to 0.22:
# the KV cache grown by torch.cat and large prefill transients fragment most), training 0.076 (13
# rows, 0.005 to 0.19: backward reuses the blocks the forward's transients freed); measured again
# on 8 of them in a later session, peak allocated and reserved byte for byte the same. Expandable segments
# (PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True) were measured on the same workloads, paired:
# 4 inference rows reserved 6.5, 4.1, 3.9, 2.1% where the default allocator had 20.6, 22.0, 20.9,
# 4.3% (in all 24.5% as much), 4 training rows 11.5, 10.0, 10.8, 0.5% against 19.0, 21.9, 13.5,
# 0.5% (60% as much). The rows were chosen for fragmenting most, so their own medians would
# overstate a typical run: the expandable fractions are the default medians times those ratios.
# With the rows held out from these constants (session 4: 78 default-allocator rows in all) the
# medians are inference 7.1% and training 7.9%, single runs 0.3% to 24%; replaying each run's
# allocation trace through llmcalc.allocator reproduces its reserve exactly (docs/allocator.md).
EXPANDABLE_RATIO = {"infer": 16.6 / 67.8, "train": 32.8 / 54.9}
ALLOCATOR_RESERVE_FRACTION = {("default", "infer"): 0.100, ("default", "train"): 0.076}
ALLOCATOR_RESERVE_FRACTION |= {("expandable", mode): ALLOCATOR_RESERVE_FRACTION["default", mode] * ratio
                               for mode, ratio in EXPANDABLE_RATIO.items()}
ALLOCATOR_SOURCE = ("median (reserved - allocated) / allocated over the H100 rows: default allocator "
                    "inference 10.0%, training 7.6%; expandable segments 2.4%, 4.5% (paired rows); single "
                    "runs ranged 0.3-24% with the default allocator")


def allocator_reserve_bytes(peak_allocated: int, mode: str = "infer", allocator: str = "default") -> int:
    return int(peak_allocated * ALLOCATOR_RESERVE_FRACTION[allocator, mode])


# --- throughput efficiencies ----------------------------------------------------------------
# Achieved fractions of the datasheet peaks and per-kernel costs, measured on the H100 with
# `llmcalc calibrate` (benchmarks/results/h100-calibration.json). GPUs that have not been
# calibrated use these fractions; CPUs use CPU_* below.
# benchmarks/results/h100-calibration.json (`llmcalc calibrate`): a 1 GiB device-to-device copy
# moved 2.919 TB/s (reads + writes) of the datasheet's 3.35. 8192^3 products ran at fp32 51.3,
# tf32 404.7, fp16 752.3, bf16 754.8, fp8 1299.6 TFLOP/s (of 67, 494.5, 989.5, 989.5, 1979) and
# bitsandbytes' int8 GEMM (cuBLASLt, the kernel LLM.int8 runs; torch._int_mm reached only 127
# TOPS) at 944.8 TOPS of 1979. At a prefill's shapes (4096 tokens x 4096 -> 4096, 4096 -> 11008,
# 11008 -> 4096) bf16 reached 567.7, 625.9 and 668.7: mean 620.8, 0.822 of the cube's rate. The
# efficiencies below are the cube's times that factor, for every dtype (only bf16 was measured at
# those shapes).
SHAPE_FACTOR = 620.8 / 754.8
BANDWIDTH_EFFICIENCY = 2.919 / 3.35
MATMUL_EFFICIENCY: dict[str, float] = {
    dtype: rate * SHAPE_FACTOR
    for dtype, rate in {"fp32": 51.3 / 67, "tf32": 404.7 / 494.5, "fp16": 752.3 / 989.5, "bf16": 754.8 / 989.5,
                        "fp8": 1299.6 / 1979, "int8": 944.8 / 1979}.items()
}
# A projection in a small-batch decode streams its weight once, larger than the 50 MB L2: three
# such measurements, 1.571 and 1.978 TB/s (bf16 8192 x 8192 weight times one vector, two runs) and
# 2.644 TB/s (nn.Linear 4096 -> 11008, one row); their median is 1.978 TB/s. (Smaller layers
# measured alone stay in L2 and read faster than a model ever does.)
GEMV_EFFICIENCY = 1.978 / 3.35
# A serving engine's projections (CUDA graphs, merged qkv and gate_up): GPU time per weight GEMM =
# KERNEL_FLOOR_S + bytes / (ENGINE_GEMV_EFFICIENCY x peak). The slope is the least-squares fit,
# with the latency fixed at KERNEL_FLOOR_S, over 21 cuBLAS timings of Llama-3-8B's projection
# shapes (q, o, gate, up, down, merged qkv and gate_up at 1, 8 and 32 rows; replayed from a CUDA
# graph: benchmarks/engine_gemv.py, benchmarks/results/engine-gemv/h200.json; NVIDIA H200, driver
# 580.159.04, CUDA 13.0, torch 2.11.0): 0.846 of peak, every shape within -6.5% to +5.4% except q
# and o at 8 rows (+18%). A whole decode step built from these kernels (benchmarks/engine_step.py)
# checks it (docs/engine-speed.md).
ENGINE_GEMV_EFFICIENCY = 0.846
# vLLM's grouped expert GEMMs (the Triton fused_moe kernel, transcribed from vLLM 0.19.0 and timed on
# an H200 with its tuned or default block configs: benchmarks/engine_fused_moe.py,
# benchmarks/results/engine-moe/h200-prefill.json; driver 580.159.04, CUDA 13.0, torch 2.11.0,
# triton 3.6.0): where compute-bound (4,096 and 8,192 tokens, six expert shapes, both GEMMs) they
# ran at 0.35-0.58 of the bf16 peak, median 0.438, against 0.627 for cuBLAS at a dense prefill's
# shapes (MATMUL_EFFICIENCY): the median, for every dtype.
ENGINE_MOE_EFFICIENCY = 0.438
# Gated DeltaNet's delta rule as engines run it: flash-linear-attention's Triton kernels (vLLM
# vendors them), fla-core 0.6.0 timed on an H200 from CUDA graphs at Qwen3.6-27B's, Qwen3.6-35B-A3B's
# and Qwen3.5-0.8B's shapes (benchmarks/gdn_kernels.py, benchmarks/results/gdn-kernels/h200.json;
# driver 580.159.04, CUDA 13.0, torch 2.11.0, triton 3.6.0). A prompt's chunked rule moves what
# speed._gated_delta_net_ops lists (the L2-normalised q and k, the WY factors, the per-chunk states,
# v_new, the output) at 0.31-0.43 of peak bandwidth from 2,048 tokens on: the median of those six
# rows, 0.394. A decode step's fused recurrence reads and writes every fp32 state at 0.50-0.61 of
# peak from 64 sequences on (median of six rows 0.583), beside a fixed 13.35 us (one sequence: the
# median of the three models' time beyond their bytes; 4.9-21.7 us over the 1-8 sequence rows).
ENGINE_GDN_PREFILL_BANDWIDTH = 0.394
ENGINE_GDN_DECODE_BANDWIDTH = 0.583
ENGINE_GDN_DECODE_S = 13.35e-6
# A serving engine's decode attention is two kernels, FlashAttention's split-KV pass and the
# combine of the splits, and at a short context they cost far more than two small kernels:
# 5.79 + 3.43 = 9.22 us per layer for llama-3.1-8b at batch 1 and 512 cached tokens, of which
# the cache's 2.1 MB take 0.5 us at the copy bandwidth (torch.profiler over a decode step,
# benchmarks/engine_step.py, results/engine-step/engine-step-llama-3.1-8b.json; NVIDIA H200,
# driver 580.159.04, torch 2.11.0's FlashAttention 2). At 8 x 4,096 tokens the same pair took
# 39.1 us for 134 MB (32 us of bandwidth): the same ~7-9 us beside the bytes.
ENGINE_DECODE_ATTENTION_S = 9.22e-6 - 2.1e6 / (4.8e12 * 2.919 / 3.35)
# GPU time charged per small kernel: the mean of the non-GEMM kernels of a batch-1 decode step of
# a two-layer, 4096-wide Llama (llmcalc.profile.calibrate.small_kernel_mean; three runs on the H100,
# 1.903, 1.878, 1.891 us). A step's small kernels add up, so their mean counts: the median of a
# tiny Llama's (hidden 64) was 1.248 us and under-charged every real model, whose norm reductions,
# casts and cache copies over 4096-wide rows take longer (real decode steps traced with
# benchmarks/kernel_breakdown.py at batch 1-2: 1.7 to 2.15 us mean, five models).
KERNEL_FLOOR_S = 1.891e-6
# Host time: prefill of tiny Llamas (hidden 64) with 2 and 8 layers took 2.717 and 6.085 ms for
# 106 and 352 kernels: 13.7 us per kernel launched from transformers' modules, 1.27 ms per forward.
LAUNCH_S = (6.085e-3 - 2.717e-3) / (352 - 106)
FORWARD_S = 2.717e-3 - 106 * LAUNCH_S
# bitsandbytes' Python path per linear call beyond its launches (wall per call, back to back, of
# a 4096 -> 4096 layer, minus kernels x LAUNCH_S): Linear8bitLt 389 us (1 row) and 345 us (16
# rows); Linear4bit 58 us (one row: gemv_4bit) and 116 us (16 rows: dequantize + matmul).
QUANT_CALL_S: dict[tuple[str, bool], float] = {
    ("int8", False): 389e-6, ("int8", True): 345e-6, ("nf4", False): 58e-6, ("nf4", True): 116e-6,
}
# bitsandbytes linear layers at small batch: GPU seconds per call = fixed + stored weight bytes /
# rate. Linear4bit was timed alone (kernel time from a trace) at two weight sizes, 4096 x 4096 and
# 11008 x 4096: 1 row (gemv_4bit) 2.4 us + bytes / 1.176 TB/s, 16 rows (dequantize, then a 16-bit
# matmul) 10.5 us + bytes / 0.434 TB/s; both sizes fit in the 50 MB L2, so these rates are upper
# bounds of what a whole model streams. Linear8bitLt is taken inside a whole model
# (benchmarks/kernel_breakdown.py, llama-2-7b decode at batch 2, 8 and 32, a 260-token cache:
# benchmarks/results/kernels/h100-80gb-hbm3.jsonl): its int8 GEMM streamed the 6.48 GB of int8
# weights at 1.59, 1.53 and 1.67 TB/s (mean 1.60: a 64x64-tile CUTLASS kernel, half the copy
# rate), and its other kernels per call (input quantization, |x|, >= threshold, any() over rows,
# dequantization, two small copies to and from the host) took 12.8, 16.2 and 15.7 us (mean 14.9).
# Alone in L2 the same layer had looked twice as fast (2.97 TB/s), which is why int8 decode was
# predicted 28% too fast before. Stored as (fixed seconds, rate / the H100's 3.35 TB/s peak), so
# other GPUs scale the rate.
_INT8_IN_MODEL = (14.9e-6, 1.60 / 3.35)
QUANT_LINEAR: dict[tuple[str, bool], tuple[float, float]] = {
    ("int8", False): _INT8_IN_MODEL, ("int8", True): _INT8_IN_MODEL,
    ("nf4", False): (2.4e-6, 1.176 / 3.35), ("nf4", True): (10.5e-6, 0.434 / 3.35),
}
# LLM.int8 beyond QUANT_LINEAR_MAX_ROWS rows (prefill), per input element of each call: the
# quantization kernel (reads 2 B, writes 1 B) ran at 1.12 TB/s, |x| (4 B) and >= threshold (3 B)
# at the copy rate, any() over rows (1 B) at 1.2 TB/s: 54.6 ms for 9.3 G input elements at batch
# 8 x 1024 tokens (kernel_breakdown.py), 5.9 ps per element, i.e. 17 B moved at the 2.919 TB/s
# copy rate. Dequantization (reads the int32 accumulator, writes 16 bits) ran at the copy rate.
INT8_QUANT_BYTES_PER_INPUT = 17
QUANT_LINEAR_MAX_ROWS = 256  # beyond this the matmul is compute-bound: modelled by its FLOPs
THROUGHPUT_SOURCE = "measured on H100 80GB HBM3, driver 580.159.04, CUDA 13.0, torch 2.11.0 (llmcalc calibrate)"


# --- the user's calibration file ------------------------------------------------------------

def config_dir() -> Path:
    """$LLMCALC_CONFIG_DIR, else $XDG_CONFIG_HOME/llmcalc, else ~/.config/llmcalc."""
    if os.environ.get("LLMCALC_CONFIG_DIR"):
        return Path(os.environ["LLMCALC_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "llmcalc"


def calibration_file() -> Path:
    return config_dir() / "calibration.json"


def load_calibrations() -> dict[str, dict[str, Any]]:
    """Calibrated devices by catalog id; {} when the file is absent. A damaged file is an
    InputError naming it (estimates never silently ignore a calibration the user made)."""
    path = calibration_file()
    if not path.exists():
        return {}
    import json

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        devices = doc["devices"]
        for entry in devices.values():
            float(entry["bytes_per_s"]), float(entry["kernel_floor_s"]), float(entry["launch_s"])
            {k: float(v) for k, v in entry["matmul_flops"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: not a calibration file llmcalc wrote ({exc!r}); delete it or run "
                         "`llmcalc calibrate` again") from None
    return dict(devices)


def save_calibration(gpu_id: str, entry: dict[str, Any]) -> Path:
    import json

    path = calibration_file()
    devices = load_calibrations()
    devices[gpu_id] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"schema_version": 1, "devices": devices}, indent=2), encoding="utf-8")
    tmp.replace(path)
    return path
