"""Measured constants: CUDA context, cuBLAS workspace, caching-allocator reserve.

Measured on NVIDIA H100 80GB HBM3, driver 580.159.04, CUDA 13.0, torch 2.11.0+cu130,
transformers 5.17.0 (benchmarks/results/h100-80gb-hbm3.jsonl, 26 cases, each in a fresh process,
by `benchmarks/validate.py run`). Other GPUs and drivers differ; calibrate on yours.
"""

from __future__ import annotations

MiB = 2**20

SOURCE = "H100 80GB HBM3, driver 580.159.04, CUDA 13.0, torch 2.11.0 (benchmarks/results/h100-80gb-hbm3.jsonl)"

# NVML process memory minus torch.cuda.memory_reserved() after CUDA initialises and the first
# cuBLAS matmul, before any model memory: 676 MiB in all 26 runs (610 MiB before cuBLAS). The
# seeds' 1.3 GB predates lazy module loading (CUDA >= 12.2).
CUDA_CONTEXT_BYTES = 676 * MiB
CUDA_CONTEXT_SOURCE = "NVML process memory - torch reserved after init + first matmul: 676 MiB (H100, CUDA 13.0)"

# The cuBLAS workspace PyTorch allocates through its caching allocator at the first matmul on
# Hopper: 32 MiB, counted by max_memory_allocated (measured: allocated before/after a matmul).
CUBLAS_WORKSPACE_BYTES = 32 * MiB

# Caching allocator: (peak reserved - peak allocated) / peak allocated. Its median over the 26
# H100 cases is 0.103 (range 0.003 to 0.22: fragmentation depends on the order of allocations; the
# KV cache grown by torch.cat and checkpointed training fragment most).
ALLOCATOR_RESERVE_FRACTION = 0.103
ALLOCATOR_SOURCE = "median (reserved - allocated) / allocated over 26 H100 cases: 10.3%"


def allocator_reserve_bytes(peak_allocated: int) -> int:
    return int(peak_allocated * ALLOCATOR_RESERVE_FRACTION)
