"""Measured constants: CUDA context, cuBLAS workspace, caching-allocator reserve.

Each figure names the measurement it came from. Regenerate with benchmarks/validate.py.
"""

from __future__ import annotations

MiB = 2**20

SOURCE = "provisional: not yet measured"

# Process memory NVML reports after CUDA initialises and the first cuBLAS call, before any
# model memory.
CUDA_CONTEXT_BYTES = 500 * MiB
CUDA_CONTEXT_SOURCE = "provisional"

# cuBLAS workspace that PyTorch allocates through its caching allocator at the first matmul
# (counted by max_memory_allocated).
CUBLAS_WORKSPACE_BYTES = 0

# Caching allocator: reserved minus allocated at the peak.
ALLOCATOR_SOURCE = "provisional"


def allocator_reserve_bytes(peak_allocated: int) -> int:
    return 0
