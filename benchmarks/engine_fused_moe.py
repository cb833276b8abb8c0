"""Time vLLM 0.19's Triton fused_moe kernels for decode-sized batches of real MoE shapes, so the
speed model of vLLM's MoE layers (bf16, unquantized, one GPU's share of the experts) can be
checked kernel by kernel. vLLM cannot be installed on the device machine; its GEMM kernel is pure
Triton, so it is transcribed here (below) and launched exactly as vLLM 0.19 launches it.

What vLLM 0.19 runs for a bf16 unquantized FusedMoE layer on CUDA (UnquantizedFusedMoEMethod ->
oracle/unquantized.py: backend TRITON unless VLLM_USE_FLASHINFER_MOE_FP16 is set ->
FusedMoEKernel(MoEPrepareAndFinalizeNoDPEPModular, TritonExperts); TritonExperts.apply,
fused_moe.py L1993-2137), after the router and top-k:

  0. moe_align_block_size (a CUDA kernel; here a PyTorch stand-in, precomputed outside the graphs
     and timed on its own, labelled "torch stand-in": its time is NOT vLLM's)
  1. w13 GEMM   fused_moe_kernel, A = hidden (M, H), B = w13 (E, 2N, H), C = cache1 (M, k, 2N),
                topk_weights=None, MUL_ROUTED_WEIGHT=False, top_k=k
  2. act        silu_and_mul(cache2 (M*k, N), cache1.view(M*k, 2N)) - vLLM's CUDA kernel; here a
                tiny Triton kernel with the same rounding (silu in fp32 -> bf16, times up -> bf16)
  3. w2 GEMM    fused_moe_kernel, A = cache2, B = w2 (E, H, N), C = cache3 (M, k, H),
                topk_weights, MUL_ROUTED_WEIGHT=True, top_k=1
  4. sum        ops.moe_sum(cache3, fused_out): vLLM's moe_sum_kernel<TOPK> for k in {2,3,4},
                at::sum_out(out, in, 1) otherwise; here torch.sum(cache3, dim=1, out=fused_out)
                (exactly vLLM's call for k = 6, 8; a stand-in for k = 2, 4)
  5. finalize   output.copy_(fused_out) (TopKWeightAndReduceNoOP in the NoDPEP finalize; vLLM's
                FusedMoEKernel is out of place because disable_inplace() is true for torch >= 2.9)

No chunking: 0.19 has no CHUNK_SIZE loop (FusedMoEKernelModularImpl._fused_experts allocates for
M_chunk = M_full). Buffers (modular_kernel.py _allocate_buffers, TritonExperts.workspace_shapes):
workspace13 (M, k, max(N, H)), workspace2 (M, k, max(2N, H)); common = max(|workspace13|, M*H)
elements; cache1 = workspace2[: M*k*2N] viewed (M, k, 2N); cache2 = workspace13[: M*k*N] viewed
(M*k, N); cache3 = workspace2[: M*k*H] viewed (M, k, H); fused_out = common[: M*H] viewed (M, H).

The legacy entry point fused_experts() -> fused_experts_impl (fused_moe.py L1633-1894) is NOT what
a bf16 unquantized layer runs in 0.19 (its callers are quantized methods - int8 experts, bnb, wna16,
compressed-tensors, quark - and arctic / minicpm / bert_with_rope). It alone has the
naive_block_assignment shortcut (no align; one token per M-block) when
expert_map is None and M * k * 4 <= global_num_experts. Where that rule fires for a timed M, the
naive variant is timed too, as a separate "legacy_naive" row (w13 gets topk_weights as in that
path, the sum writes the output directly: no finalize copy).

Config choice (try_get_optimal_moe_config, L1323-1352, dtype None for bf16): file
"E={E},N={N},device_name={dev}.json" with N = w2.shape[2] (the per-rank intermediate size; w13 is
(E, 2N, H)) and dev = the device name with spaces -> "_", any "H200"-family name -> NVIDIA_H200;
entry = configs[min(keys, key=lambda x: abs(x - M))] (ties go to the first key in file order);
without a file, get_default_config(M, E, N, H, k, None). The H200 files for the shapes below are
copied unchanged from the vLLM 0.19.0 wheel into engine_fused_moe_configs/.

Timing: each unit (whole layer = steps 1-5; each step alone) is captured in its own CUDA graph and
replayed; CUDA events; per unit `--iters` instances per repetition, `--reps` repetitions, median.
L2: a replayed GEMM would find its experts' weights in L2 (50 MB on H200) when the bytes it reads
are small (e.g. w2 of qwen3-30b-a3b at M=1 reads 8 x 3.1 MB). So R full copies of the layer's
weights are allocated and a graph cycles through them (instance i uses copy i % R), R chosen so
that the weights streamed between two uses of the same copy are >= `--l2-factor` x L2 (R = 1 when
one instance alone reads that much, e.g. Mixtral). Activations stay hot in L2, as in vLLM.
Compilation: --compile-workers processes first run every launch once so Triton's disk cache holds
the ~110 kernel variants (1.5-4 s each to compile) before the timed process needs them.

--cpu-interpret-check (no GPU): the Triton interpreter cannot tl.dot bfloat16 (triton-lang/triton
#11584), so there the same kernels run in float16 and float32; bf16 itself is checked on the GPU
(startup check per shape at --check-tokens, and the graph output of every timed layer).

    PYTHONPATH=. python3 benchmarks/engine_fused_moe.py --out $OUT/fused-moe-h200.json
    TRITON_INTERPRET=1 python3 benchmarks/engine_fused_moe.py --cpu-interpret-check   # no GPU

--- Attribution -----------------------------------------------------------------------------------
Transcribed from vLLM 0.19.0 (https://github.com/vllm-project/vllm, wheel
vllm-0.19.0-cp38-abi3-manylinux_2_31_x86_64.whl), Apache License 2.0
(https://www.apache.org/licenses/LICENSE-2.0), "Copyright contributors to the vLLM project":
  vllm/model_executor/layers/fused_moe/fused_moe.py
    L57-74     write_zeros_to_output          verbatim
    L311-572   fused_moe_kernel               verbatim (all branches; bf16 uses the constexpr flags)
    L725-833   invoke_fused_moe_triton_kernel verbatim
    L1017-1029 get_config_file_name           verbatim (current_platform is a shim)
    L1032-1096 get_moe_configs                config folder = engine_fused_moe_configs/ (one line)
    L1212-1220 should_moe_wna16_use_cuda      verbatim (only get_default_config's int4 branch uses it)
    L1223-1320 get_default_config             verbatim (envs/current_platform shims: not batch
                                              invariant, not ROCm)
    L1323-1352 try_get_optimal_moe_config     verbatim but for the override-config lookup (None)
    L1794-1806 naive_block_assignment rule    (fused_experts_impl) as a function
    L1976-2137 TritonExperts.workspace_shapes/apply - the launch sequence, re-expressed
  vllm/model_executor/layers/fused_moe/moe_align_block_size.py L74-89 - the buffer sizing
    (pad_sorted_ids=False, as both callers use it); the CUDA op's output semantics
    (csrc/moe/moe_align_sum_kernels.cu: sentinel numel, per-expert padding, trailing blocks -> 0)
    re-implemented in PyTorch
  vllm/model_executor/layers/fused_moe/configs/E=*,N=*,device_name=NVIDIA_H200.json - copied
The transcribed parts are licensed under Apache-2.0; changes: the shims and edits listed above.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

if "--cpu-interpret-check" in sys.argv:
    # must be set before the @triton.jit decorators below run
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

# ---- the shapes --------------------------------------------------------------------------------
# name: (hidden H, experts E on this rank, per-rank intermediate N = w2.shape[2], top-k k)
SHAPES: dict[str, tuple[int, int, int, int]] = {
    "qwen3-30b-a3b": (2048, 128, 768, 8),
    "mixtral-8x7b-tp1": (4096, 8, 14336, 2),
    "mixtral-8x7b-tp2": (4096, 8, 7168, 2),
    "deepseek-v2-lite": (2048, 64, 1408, 6),  # no H200 file in 0.19: get_default_config
    "qwen1.5-moe-a2.7b": (2048, 60, 1408, 4),  # no H200 file in 0.19: get_default_config
    "olmoe-1b-7b": (2048, 64, 1024, 8),  # no H200 file in 0.19: get_default_config
}
DEFAULT_TOKENS = "1,2,4,8,16,32,64,128,256"
CONFIG_DIR = Path(__file__).resolve().parent / "engine_fused_moe_configs"

# ---- shims for the vLLM names the transcribed code uses ------------------------------------------
envs = SimpleNamespace(VLLM_BATCH_INVARIANT=False, VLLM_TUNED_CONFIG_FOLDER=None)
_DEVICE_NAME_OVERRIDE: list[str] = []


def _device_name() -> str:
    if _DEVICE_NAME_OVERRIDE:
        return _DEVICE_NAME_OVERRIDE[0]
    return torch.cuda.get_device_name()


current_platform = SimpleNamespace(get_device_name=_device_name, is_rocm=lambda: False, is_cuda=lambda: True)


# ==== vLLM 0.19.0 fused_moe.py L57-74 (verbatim) ==================================================
@triton.jit
def write_zeros_to_output(
    c_ptr,
    stride_cm,
    stride_cn,
    pid_n,
    N,
    offs_token,
    token_mask,
    BLOCK_SIZE_M,
    BLOCK_SIZE_N,
    compute_type,
):
    accumulator = tl.zeros((BLOCK_SIZE_M, BLOCK_SIZE_N), dtype=compute_type)
    offs_cn = pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)
    c_ptrs = c_ptr + stride_cm * offs_token[:, None] + stride_cn * offs_cn[None, :]
    c_mask = token_mask[:, None] & (offs_cn[None, :] < N)
    tl.store(c_ptrs, accumulator, mask=c_mask)


# ==== vLLM 0.19.0 fused_moe.py L311-572 (verbatim) ================================================
@triton.jit
def fused_moe_kernel(
    # Pointers to matrices
    a_ptr,
    b_ptr,
    c_ptr,
    b_bias_ptr,
    a_scale_ptr,
    b_scale_ptr,
    topk_weights_ptr,
    sorted_token_ids_ptr,
    expert_ids_ptr,
    num_tokens_post_padded_ptr,
    # Matrix dimensions
    N,
    K,
    EM,
    num_valid_tokens,
    # The stride variables represent how much to increase the ptr by when
    # moving by 1 element in a particular dimension. E.g. `stride_am` is
    # how much to increase `a_ptr` by to get the element one row down
    # (A has M rows).
    stride_am,
    stride_ak,
    stride_be,
    stride_bk,
    stride_bn,
    stride_cm,
    stride_cn,
    stride_asm,
    stride_ask,
    stride_bse,
    stride_bsk,
    stride_bsn,
    stride_bbe,  # bias expert stride
    stride_bbn,  # bias N stride
    # Block size for block-wise quantization
    group_n: tl.constexpr,
    group_k: tl.constexpr,
    naive_block_assignment: tl.constexpr,
    # Meta-parameters
    BLOCK_SIZE_M: tl.constexpr,
    BLOCK_SIZE_N: tl.constexpr,
    BLOCK_SIZE_K: tl.constexpr,
    GROUP_SIZE_M: tl.constexpr,
    SPLIT_K: tl.constexpr,
    MUL_ROUTED_WEIGHT: tl.constexpr,
    top_k: tl.constexpr,
    compute_type: tl.constexpr,
    use_fp8_w8a8: tl.constexpr,
    use_int8_w8a8: tl.constexpr,
    use_int8_w8a16: tl.constexpr,
    per_channel_quant: tl.constexpr,
    HAS_BIAS: tl.constexpr,
):
    """
    Implements the fused computation for a Mixture of Experts (MOE) using
    token and expert matrices.

    Key Parameters:
    - A: The input tensor representing tokens with shape (*, K), where '*' can
        be any shape representing batches and K is the feature dimension of
        each token.
    - B: The stacked MOE weight tensor with shape (E, N, K), where E is
        the number of experts, K is the input feature dimension, and N is
        the output feature dimension.
    - C: The output cache tensor with shape (M, topk, N), where M is the
        total number of tokens post padding, topk is the number of times
        each token is repeated, and N is the output feature dimension.
    - sorted_token_ids: A tensor containing the sorted indices of tokens,
        repeated topk times and arranged by the expert index they are
        assigned to.
    - expert_ids: A tensor containing the indices of the expert for each
        block. It determines which expert matrix from B should be used for
        each block in A.
    - naive_block_assignment: A boolean flag indicating whether to use naive
        token wise block assignment. If True, each block corresponds to a
        single token.
    This kernel performs the multiplication of a token by its corresponding
    expert matrix as determined by `expert_ids`. The sorting of
    `sorted_token_ids` by expert index and padding ensures divisibility by
    BLOCK_SIZE_M, which is necessary to maintain consistency in block matrix
    multiplication across different blocks processed by the same expert.
    """
    # -----------------------------------------------------------
    # Map program ids `pid` to the block of C it should compute.
    # This is done in a grouped ordering to promote L2 data reuse.
    pid = tl.program_id(axis=0)
    num_pid_m = tl.cdiv(EM, BLOCK_SIZE_M)
    num_pid_n = tl.cdiv(N, BLOCK_SIZE_N)
    num_pid_in_group = GROUP_SIZE_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_SIZE_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_SIZE_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    # ----------------------------------------------------------
    # Create pointers for the first blocks of A and B.
    # We will advance this pointer as we move in the K direction
    # and accumulate
    # `a_ptrs` is a block of [BLOCK_SIZE_M, BLOCK_SIZE_K] pointers
    # `b_ptrs` is a block of [BLOCK_SIZE_K, BLOCK_SIZE_N] pointers
    offs = tl.arange(0, BLOCK_SIZE_M).to(tl.int64)
    num_tokens_post_padded = tl.load(num_tokens_post_padded_ptr)
    if pid_m * BLOCK_SIZE_M >= num_tokens_post_padded:
        return
    if not naive_block_assignment:
        offs_token_id = pid_m * BLOCK_SIZE_M + offs
        offs_token = tl.load(sorted_token_ids_ptr + offs_token_id)
    else:
        offs_token = tl.where(
            offs == 0,
            pid_m,  # first element = pid_m
            num_valid_tokens,  # remaining elements = constant
        )
    # Cast to int64 to prevent overflow in stride*offset products
    # (e.g. stride_cm * offs_token can exceed int32 for large token counts)
    offs_token = offs_token.to(tl.int64)

    token_mask = offs_token < num_valid_tokens

    off_experts = tl.load(expert_ids_ptr + pid_m).to(tl.int64)
    if off_experts == -1:
        # -----------------------------------------------------------
        # Write back zeros to the output when the expert is not
        # in the current expert parallel rank.
        write_zeros_to_output(
            c_ptr,
            stride_cm,
            stride_cn,
            pid_n,
            N,
            offs_token,
            token_mask,
            BLOCK_SIZE_M,
            BLOCK_SIZE_N,
            compute_type,
        )
        return

    offs_bn = (pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N).to(tl.int64)) % N
    offs_k = tl.arange(0, BLOCK_SIZE_K)
    a_ptrs = a_ptr + (
        offs_token[:, None] // top_k * stride_am + offs_k[None, :] * stride_ak
    )

    b_ptrs = (
        b_ptr
        + off_experts * stride_be
        + (offs_k[:, None] * stride_bk + offs_bn[None, :] * stride_bn)
    )
    if use_int8_w8a16:
        b_scale_ptrs = (
            b_scale_ptr + off_experts * stride_bse + offs_bn[None, :] * stride_bsn
        )
        b_scale = tl.load(b_scale_ptrs)

    if use_fp8_w8a8 or use_int8_w8a8:
        # block-wise
        if group_k > 0 and group_n > 0:
            a_scale_ptrs = a_scale_ptr + (offs_token // top_k) * stride_asm
            offs_bsn = offs_bn // group_n
            b_scale_ptrs = (
                b_scale_ptr + off_experts * stride_bse + offs_bsn * stride_bsn
            )
        # channel-wise
        elif per_channel_quant:
            b_scale_ptrs = (
                b_scale_ptr + off_experts * stride_bse + offs_bn[None, :] * stride_bsn
            )
            b_scale = tl.load(b_scale_ptrs)
            # Load per-token scale for activations
            a_scale_ptrs = a_scale_ptr + (offs_token // top_k) * stride_asm
            a_scale = tl.load(a_scale_ptrs, mask=token_mask, other=0.0)[:, None]
        # tensor-wise
        else:
            a_scale = tl.load(a_scale_ptr)
            b_scale = tl.load(b_scale_ptr + off_experts)
    if HAS_BIAS:
        # bias shape: [num_experts, N]
        bias_ptrs = b_bias_ptr + off_experts * stride_bbe + offs_bn * stride_bbn
        bias = tl.load(bias_ptrs, mask=(offs_bn < N), other=0.0)
    # -----------------------------------------------------------
    # Iterate to compute a block of the C matrix.
    # We accumulate into a `[BLOCK_SIZE_M, BLOCK_SIZE_N]` block
    # of fp32 values for higher accuracy.
    # `accumulator` will be converted back to fp16 after the loop.
    accumulator = tl.zeros((BLOCK_SIZE_M, BLOCK_SIZE_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_SIZE_K)):
        # Load the next block of A and B, generate a mask by checking the
        # K dimension.
        a = tl.load(
            a_ptrs,
            mask=token_mask[:, None] & (offs_k[None, :] < K - k * BLOCK_SIZE_K),
            other=0.0,
        )
        b = tl.load(b_ptrs, mask=offs_k[:, None] < K - k * BLOCK_SIZE_K, other=0.0)
        # We accumulate along the K dimension.
        if use_int8_w8a16:
            accumulator = tl.dot(a, b.to(compute_type), acc=accumulator)
        elif use_fp8_w8a8 or use_int8_w8a8:
            if group_k > 0 and group_n > 0:
                k_start = k * BLOCK_SIZE_K
                offs_ks = k_start // group_k
                a_scale = tl.load(
                    a_scale_ptrs + offs_ks * stride_ask, mask=token_mask, other=0.0
                )
                b_scale = tl.load(b_scale_ptrs + offs_ks * stride_bsk)

                accumulator += tl.dot(a, b) * a_scale[:, None] * b_scale[None, :]
            else:
                if use_fp8_w8a8:
                    # acc used to enable fp8_fast_accum
                    accumulator = tl.dot(a, b, acc=accumulator)
                else:
                    accumulator += tl.dot(a, b)
        else:
            accumulator += tl.dot(a, b)
        # Advance the ptrs to the next K block.
        a_ptrs += BLOCK_SIZE_K * stride_ak
        b_ptrs += BLOCK_SIZE_K * stride_bk

    # Dequantization for supported quantization schemes:
    #   - int8_w8a16
    #   - fp8_w8a8
    #   - int8_w8a8
    # Accumulator and scalings are in float32 to preserve numerical accuracy.
    if use_int8_w8a16:
        accumulator = accumulator * b_scale
    elif (use_fp8_w8a8 or use_int8_w8a8) and not (group_k > 0 and group_n > 0):
        accumulator = accumulator * a_scale * b_scale

    # Bias addition:
    # Bias must be applied after dequantization:
    #   - Since bias is typically not quantized
    #   - Bias should not be scaled by quantization factors
    if HAS_BIAS:
        accumulator += bias[None, :]

    # Router (MoE) weight multiplication:
    # This multiplication MUST be performed in float32 before any precision
    # conversion to ensure numerical stability, which is especially critical
    # on ROCm platforms.
    if MUL_ROUTED_WEIGHT:
        moe_weight = tl.load(
            topk_weights_ptr + offs_token,
            mask=token_mask,
            other=0,
        )
        accumulator *= moe_weight[:, None]

    # Final precision conversion:
    # Cast once at the end to the desired compute/output dtype.
    accumulator = accumulator.to(compute_type)

    # -----------------------------------------------------------
    # Write back the block of the output
    offs_cn = pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)
    c_ptrs = c_ptr + stride_cm * offs_token[:, None] + stride_cn * offs_cn[None, :]
    c_mask = token_mask[:, None] & (offs_cn[None, :] < N)
    tl.store(c_ptrs, accumulator, mask=c_mask)


# ==== vLLM 0.19.0 fused_moe.py L725-833 (verbatim) ================================================
def invoke_fused_moe_triton_kernel(
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    A_scale: torch.Tensor | None,
    B_scale: torch.Tensor | None,
    topk_weights: torch.Tensor | None,
    sorted_token_ids: torch.Tensor | None,
    expert_ids: torch.Tensor,
    num_tokens_post_padded: torch.Tensor,
    mul_routed_weight: bool,
    top_k: int,
    config: dict[str, Any],
    compute_type: tl.dtype,
    use_fp8_w8a8: bool,
    use_int8_w8a8: bool,
    use_int8_w8a16: bool,
    use_int4_w4a16: bool,
    per_channel_quant: bool,
    block_shape: list[int] | None = None,
    B_bias: torch.Tensor | None = None,
):
    assert topk_weights is not None or not mul_routed_weight
    assert topk_weights is None or topk_weights.stride(1) == 1
    assert sorted_token_ids is None or sorted_token_ids.stride(0) == 1

    if use_fp8_w8a8 or use_int8_w8a8:
        assert B_scale is not None
        assert block_shape is None or triton.cdiv(
            B.size(-2), block_shape[0]
        ) == B_scale.size(-2)
        assert block_shape is None or triton.cdiv(
            B.size(-1), block_shape[1]
        ) == B_scale.size(-1)
    elif use_int8_w8a16 or use_int4_w4a16:
        assert B_scale is not None
        assert block_shape is None or block_shape[0] == 0
    else:
        assert A_scale is None
        assert B_scale is None

    M = A.size(0)
    num_tokens = M * top_k
    if sorted_token_ids is not None:
        EM = sorted_token_ids.size(0)
        if A.size(0) < config["BLOCK_SIZE_M"]:
            # optimize for small batch_size.
            # We assume that top_ids of each token is unique,
            # so num_valid_experts <= batch_size <= BLOCK_SIZE_M,
            # and we can skip some invalid blocks.
            EM = min(
                sorted_token_ids.size(0), A.size(0) * top_k * config["BLOCK_SIZE_M"]
            )
    else:
        EM = num_tokens * config["BLOCK_SIZE_M"]
    grid = lambda META: (
        triton.cdiv(EM, META["BLOCK_SIZE_M"])
        * triton.cdiv(B.size(1), META["BLOCK_SIZE_N"]),
    )
    HAS_BIAS = B_bias is not None

    config = config.copy()
    config["SPLIT_K"] = 1
    BLOCK_SIZE_K = config.pop("BLOCK_SIZE_K")
    if block_shape is not None:
        BLOCK_SIZE_K = min(BLOCK_SIZE_K, min(block_shape[0], block_shape[1]))
    fused_moe_kernel[grid](
        A,
        B,
        C,
        B_bias,
        A_scale,
        B_scale,
        topk_weights,
        sorted_token_ids,
        expert_ids,
        num_tokens_post_padded,
        B.size(1),
        B.size(2),
        EM,
        num_tokens,
        A.stride(0),
        A.stride(1),
        B.stride(0),
        B.stride(2),
        B.stride(1),
        C.stride(1),
        C.stride(2),
        A_scale.stride(0) if A_scale is not None and A_scale.ndim == 2 else 0,
        A_scale.stride(1) if A_scale is not None and A_scale.ndim == 2 else 0,
        B_scale.stride(0) if B_scale is not None and B_scale.ndim >= 2 else 0,
        B_scale.stride(2) if B_scale is not None and B_scale.ndim == 3 else 0,
        B_scale.stride(1) if B_scale is not None and B_scale.ndim >= 2 else 0,
        B_bias.stride(0) if B_bias is not None else 0,
        B_bias.stride(1) if B_bias is not None else 0,
        0 if block_shape is None else block_shape[0],
        0 if block_shape is None else block_shape[1],
        MUL_ROUTED_WEIGHT=mul_routed_weight,
        top_k=top_k,
        compute_type=compute_type,
        use_fp8_w8a8=use_fp8_w8a8,
        use_int8_w8a8=use_int8_w8a8,
        use_int8_w8a16=use_int8_w8a16,
        per_channel_quant=per_channel_quant,
        naive_block_assignment=(sorted_token_ids is None),
        HAS_BIAS=HAS_BIAS,
        BLOCK_SIZE_K=BLOCK_SIZE_K,
        **config,
    )


# ==== config choice: vLLM 0.19.0 fused_moe.py L1017-1029, L1032-1096, L1212-1352 (see header) ======
class _OnceLogger:  # stands in for vLLM's logger.info_once / warning_once
    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.quiet = False

    def _once(self, msg: str, *args: Any, scope: str = "local") -> None:
        text = msg % args
        if text not in self.seen and not self.quiet:
            self.seen.add(text)
            print(f"[vllm 0.19 config] {text}", file=sys.stderr)

    info_once = warning_once = _once


logger = _OnceLogger()


# Adapted from: https://github.com/sgl-project/sglang/pull/2628
def get_config_file_name(
    E: int, N: int, dtype: str | None, block_shape: list[int] | None = None
) -> str:
    device_name = current_platform.get_device_name().replace(" ", "_")
    # Set device_name to H200 if a device from the H200 family is detected
    if "H200" in device_name.split("_"):
        device_name = "NVIDIA_H200"
    dtype_selector = "" if not dtype else f",dtype={dtype}"
    block_shape_selector = (
        "" if not block_shape or not all(block_shape) else f",block_shape={block_shape}"
    ).replace(" ", "")
    return f"E={E},N={N},device_name={device_name}{dtype_selector}{block_shape_selector}.json"  # noqa: E501


# Adapted from: https://github.com/sgl-project/sglang/pull/2628
@functools.lru_cache
def get_moe_configs(
    E: int,
    N: int,
    dtype: str | None,
    block_n: int | None = None,
    block_k: int | None = None,
) -> dict[int, Any] | None:
    """
    Return optimized configurations for the fused MoE kernel.

    The return value will be a dictionary that maps an irregular grid of
    batch sizes to configurations of the fused_moe kernel. To evaluate the
    kernel on a given batch size bs, the closest batch size in the grid should
    be picked and the associated configuration chosen to invoke the kernel.
    """

    # Avoid optimizing for the batch invariant case. Use default config
    if envs.VLLM_BATCH_INVARIANT:
        return None

    # First look up if an optimized configuration is available in the configs
    # directory
    block_shape = [block_n, block_k] if block_n and block_k else None
    json_file_name = get_config_file_name(E, N, dtype, block_shape)

    config_file_paths = []

    # note that we prioritize user defined config
    user_defined_config_folder = envs.VLLM_TUNED_CONFIG_FOLDER
    if user_defined_config_folder is not None:
        user_defined_config_file_path = os.path.join(
            user_defined_config_folder, json_file_name
        )
        config_file_paths.append(user_defined_config_file_path)

    default_config_file_path = os.path.join(
        str(CONFIG_DIR), json_file_name  # vLLM: <fused_moe dir>/configs
    )
    config_file_paths.append(default_config_file_path)

    for config_file_path in config_file_paths:
        if os.path.exists(config_file_path):
            with open(config_file_path) as f:
                logger.info_once(
                    "Using configuration from %s for MoE layer.",
                    config_file_path,
                    scope="global",
                )
                # If a configuration has been found, return it
                tuned_config = json.load(f)
                # Delete triton_version from tuned_config
                tuned_config.pop("triton_version", None)
                return {int(key): val for key, val in tuned_config.items()}

    # If no optimized configuration is available, we will use the default
    # configuration
    logger.warning_once(
        "Using default MoE config. Performance might be sub-optimal! "
        "Config file not found at %s",
        ", ".join(config_file_paths),
        scope="local",
    )
    return None


def should_moe_wna16_use_cuda(
    num_valid_tokens: int, group_size: int, num_experts: int, bit: int
):
    return (
        current_platform.is_cuda()
        and bit == 4
        and group_size in [32, 64, 128]
        and num_valid_tokens / num_experts <= 6
    )


def get_default_config(
    M: int,
    E: int,
    N: int,
    K: int,
    topk: int,
    dtype: str | None,
    block_shape: list[int] | None = None,
) -> dict[str, int]:
    if envs.VLLM_BATCH_INVARIANT:
        return {
            "BLOCK_SIZE_M": 64,
            "BLOCK_SIZE_N": 64,
            "BLOCK_SIZE_K": 32,
            "GROUP_SIZE_M": 8,
            "SPLIT_K": 1,
        }

    # num_stages can cause triton.runtime.errors.OutOfResources on ROCm.
    num_stages_rocm = 2

    if dtype == "fp8_w8a8" and block_shape is not None:
        # Block-wise quant: tile sizes are constrained by block_shape.
        # Use a small M tile for decode-like batches where tokens are
        # spread thin across experts. Larger batches benefit from
        # GROUP_SIZE_M > 1 because the per-block scales add memory
        # traffic that benefits from L2 tile reuse.
        config = {
            "BLOCK_SIZE_M": 16 if M <= 64 else 64,
            "BLOCK_SIZE_N": block_shape[0],
            "BLOCK_SIZE_K": block_shape[1],
            "GROUP_SIZE_M": 1 if M <= 16 else 32,
            "SPLIT_K": 1,
            "num_warps": 4,
            "num_stages": 3 if not current_platform.is_rocm() else num_stages_rocm,
        }
    elif dtype in ["int4_w4a16", "int8_w8a16"] and block_shape is not None:
        # moe wna16 kernels
        # only set BLOCK_SIZE_M
        # BLOCK_SIZE_N and BLOCK_SIZE_K would be set later
        bit = 4 if dtype == "int4_w4a16" else 8
        use_moe_wna16_cuda = should_moe_wna16_use_cuda(M * topk, block_shape[1], E, bit)
        if use_moe_wna16_cuda:
            config = {"BLOCK_SIZE_M": min(16, M), "SPLIT_K": 1}
        elif M <= 20:
            config = {"BLOCK_SIZE_M": 16, "GROUP_SIZE_M": 1, "SPLIT_K": 1}
        elif M <= 40:
            config = {"BLOCK_SIZE_M": 32, "GROUP_SIZE_M": 1, "SPLIT_K": 1}
        else:
            config = {"BLOCK_SIZE_M": 64, "GROUP_SIZE_M": 1, "SPLIT_K": 1}
    else:
        # General defaults for bf16/fp16 and fp8 per-tensor.
        # Tile sizes scale with batch: small batches are memory-bound
        # (favor tall-K tiles), large batches are compute-bound (favor
        # large M/N tiles with more warps).
        if M <= 32:
            block_m = 16
        elif M <= 96:
            block_m = 32
        elif M <= 512:
            block_m = 64
        else:
            block_m = 128

        block_n = 64 if M <= 64 else 128

        # Small batches benefit from longer reduction (larger K tile),
        # while large batches prefer more output parallelism.
        # FP8 elements are half-width so larger K tiles are always cheap.
        block_k = 128 if dtype == "fp8_w8a8" or M <= 64 else 64

        # Grouping adjacent M-blocks lets them share weight tiles in L2.
        # Only helps when there are enough M-blocks per expert to group;
        # with many experts each one sees few tokens so grouping is useless.
        tokens_per_expert = M // max(E, 1)
        group_m = 16 if tokens_per_expert > 128 else 1

        # Large batches have enough blocks to saturate the GPU, so we
        # use more warps per block to increase arithmetic intensity.
        num_warps = 4 if M <= 128 else 8

        if current_platform.is_rocm():
            num_stages = num_stages_rocm
        elif M <= 32:
            num_stages = 4
        else:
            num_stages = 3

        config = {
            "BLOCK_SIZE_M": block_m,
            "BLOCK_SIZE_N": block_n,
            "BLOCK_SIZE_K": block_k,
            "GROUP_SIZE_M": group_m,
            "SPLIT_K": 1,
            "num_warps": num_warps,
            "num_stages": num_stages,
        }
    return config


def try_get_optimal_moe_config(
    w1_shape: tuple[int, ...],
    w2_shape: tuple[int, ...],
    top_k: int,
    dtype: str | None,
    M: int,
    block_shape: list[int] | None = None,
) -> dict[str, int]:
    override_config = None  # vLLM: fused_moe.get_config(), None unless a caller overrides it
    if override_config:
        config = override_config
    else:
        # First try to load optimal config from the file
        E, _, N = w2_shape
        if dtype == "int4_w4a16":
            N = N * 2
        block_n = block_shape[0] if block_shape else 0
        block_k = block_shape[1] if block_shape else 0
        configs = get_moe_configs(E, N, dtype, block_n, block_k)

        if configs:
            # If an optimal configuration map has been found, look up the
            # optimal config
            config = configs[min(configs.keys(), key=lambda x: abs(x - M))]
        else:
            # Else use the default config
            config = get_default_config(M, E, N, w1_shape[2], top_k, dtype, block_shape)
    return config


# ==== vLLM 0.19.0 fused_experts_impl L1794-1806: when the legacy path skips moe_align_block_size ===
def legacy_naive_block_assignment(num_tokens: int, top_k_num: int, global_num_experts: int) -> bool:
    """fused_experts_impl's rule for bf16 (expert_map None, not int8/int4 w/ block_shape). The live
    bf16 path (TritonExperts.apply) never uses it: it always calls moe_align_block_size."""
    expert_map = None
    SPARSITY_FACTOR = 4
    return expert_map is None and num_tokens * top_k_num * SPARSITY_FACTOR <= global_num_experts


# ==== moe_align_block_size: vLLM's sizing (moe_align_block_size.py L74-89, verbatim in effect) and
# the CUDA op's output semantics, in plain PyTorch (a stand-in: vLLM runs a CUDA kernel) ==========
def moe_align_block_size_torch(
    topk_ids: torch.Tensor, block_size: int, num_experts: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """sorted_token_ids: the flat indices (token * top_k + slot) grouped by expert, each expert's
    group padded to a multiple of block_size with the sentinel numel (every unused slot = numel);
    expert_ids: the expert of each block of block_size rows (blocks past the last used one: 0, as
    the CUDA kernel fills them); num_tokens_post_padded: the padded total (1-element int32).
    Ids >= num_experts are skipped, as the CUDA kernel does. Within an expert the tokens are in
    ascending flat order (the small-batch CUDA kernel's order; the large one's is atomic-order)."""
    numel = topk_ids.numel()
    device = topk_ids.device
    # -- vLLM moe_align_block_size.py L74-89 (pad_sorted_ids=False) --
    max_num_tokens_padded = topk_ids.numel() + num_experts * (block_size - 1)
    if topk_ids.numel() < num_experts:
        max_num_tokens_padded = min(topk_ids.numel() * block_size, max_num_tokens_padded)
    max_num_m_blocks = triton.cdiv(max_num_tokens_padded, block_size)
    # -- the CUDA op, without host syncs --
    flat = topk_ids.reshape(-1).to(torch.int64)
    flat = torch.where(flat < num_experts, flat, torch.full_like(flat, num_experts))
    counts = torch.zeros(num_experts + 1, dtype=torch.int64, device=device)
    counts.scatter_add_(0, flat, torch.ones_like(flat))
    padded = (counts[:num_experts] + block_size - 1) // block_size * block_size
    cumsum = torch.zeros(num_experts + 1, dtype=torch.int64, device=device)
    cumsum[1:] = torch.cumsum(padded, 0)
    starts = torch.cumsum(counts, 0) - counts  # first position of each expert in the sorted order
    order = torch.argsort(flat, stable=True)
    sorted_e = flat[order]
    rank = torch.arange(numel, device=device) - starts[sorted_e]
    cumsum_ext = torch.cat([cumsum[:num_experts], cumsum.new_full((1,), max_num_tokens_padded)])
    dest = torch.where(sorted_e < num_experts, cumsum_ext[sorted_e] + rank, max_num_tokens_padded)
    sorted_ids = torch.full((max_num_tokens_padded + 1,), numel, dtype=torch.int32, device=device)
    sorted_ids.scatter_(0, dest, order.to(torch.int32))
    sorted_ids = sorted_ids[:max_num_tokens_padded]
    block_start = torch.arange(max_num_m_blocks, device=device, dtype=torch.int64) * block_size
    expert_ids = torch.searchsorted(cumsum[1:].contiguous(), block_start, right=True)
    expert_ids = torch.where(block_start < cumsum[num_experts], expert_ids, torch.zeros_like(expert_ids))
    num_tokens_post_pad = cumsum[num_experts:].to(torch.int32)
    return sorted_ids, expert_ids.to(torch.int32), num_tokens_post_pad


def moe_align_block_size_python(topk_ids: list[list[int]], block_size: int, num_experts: int):
    """Brute force, for the --cpu-interpret-check: (per-expert padded groups, num_post_pad)."""
    flat = [e for row in topk_ids for e in row]
    groups = []
    for e in range(num_experts):
        idx = [i for i, x in enumerate(flat) if x == e]
        pad = -len(idx) % block_size
        groups.append((e, idx + [len(flat)] * pad))
    return groups, sum(len(g) for _, g in groups)


# ==== stand-in for vLLM's CUDA silu_and_mul (csrc/activation_kernels.cu: silu(x) rounded to the
# dtype, times up, rounded) ==========================================================================
@triton.jit
def _silu_and_mul_kernel(out_ptr, in_ptr, d, stride_in, stride_out, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    col = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = col < d
    x = tl.load(in_ptr + row * stride_in + col, mask=mask, other=0.0)
    y = tl.load(in_ptr + row * stride_in + d + col, mask=mask, other=0.0)
    xf = x.to(tl.float32)
    s = (xf / (1.0 + tl.exp(-xf))).to(x.dtype)
    tl.store(out_ptr + row * stride_out + col, (s.to(tl.float32) * y.to(tl.float32)).to(x.dtype), mask=mask)


def silu_and_mul(out: torch.Tensor, x: torch.Tensor) -> None:
    d = x.shape[-1] // 2
    block = 1024
    _silu_and_mul_kernel[(x.shape[0], triton.cdiv(d, block))](out, x, d, x.stride(0), out.stride(0), BLOCK=block,
                                                               num_warps=4)


# ==== one MoE layer as vLLM 0.19 runs it ===========================================================
def gemm_grid(A_rows: int, top_k: int, n_out: int, config: dict, sorted_len: int | None) -> tuple[int, int]:
    """(EM, programs) exactly as invoke_fused_moe_triton_kernel computes them (L760-777)."""
    if sorted_len is not None:
        EM = sorted_len
        if A_rows < config["BLOCK_SIZE_M"]:
            EM = min(sorted_len, A_rows * top_k * config["BLOCK_SIZE_M"])
    else:
        EM = A_rows * top_k * config["BLOCK_SIZE_M"]
    return EM, triton.cdiv(EM, config["BLOCK_SIZE_M"]) * triton.cdiv(n_out, config["BLOCK_SIZE_N"])


class MoELayer:
    """Buffers and launches of one layer for one token count. path "triton_experts": TritonExperts
    .apply inside FusedMoEKernel (what vLLM 0.19 runs for bf16); "legacy_naive": fused_experts_impl
    with naive_block_assignment (no align, w13 gets topk_weights, the sum writes the output)."""

    def __init__(self, path: str, hidden: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor,
                 E: int, N: int, config: dict):
        M, H = hidden.shape
        k = topk_ids.shape[1]
        dt, dev = hidden.dtype, hidden.device
        self.path, self.hidden, self.topk_ids, self.topk_weights = path, hidden, topk_ids, topk_weights
        self.M, self.H, self.E, self.N, self.k, self.config = M, H, E, N, k, config
        self.compute_type = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16, torch.float32: tl.float32}[dt]
        if path == "triton_experts":
            ws13 = M * k * max(N, H)  # workspace13 (M, k, max(N, H))
            ws2 = M * k * max(2 * N, H)  # workspace2 (M, k, max(2N, H))
            common = torch.empty(max(ws13, M * H), dtype=dt, device=dev)
            workspace2 = torch.empty(ws2, dtype=dt, device=dev)
            self.cache1 = workspace2[: M * k * 2 * N].view(M, k, 2 * N)
            self.cache2 = common[: M * k * N].view(M * k, N)
            self.cache3 = workspace2[: M * k * H].view(M, k, H)
            self.fused_out = common[: M * H].view(M, H)
            self.output = torch.empty_like(hidden)
            self.sorted_ids, self.expert_ids, self.ntpp = moe_align_block_size_torch(
                topk_ids, config["BLOCK_SIZE_M"], E)
            self.w13_topk_weights = None
        elif path == "legacy_naive":
            cache13 = torch.empty(M * k * max(2 * N, H), dtype=dt, device=dev)
            self.cache1 = cache13[: M * k * 2 * N].view(M, k, 2 * N)
            self.cache3 = cache13[: M * k * H].view(M, k, H)
            self.cache2 = torch.empty((M * k, N), dtype=dt, device=dev)
            self.output = torch.empty_like(hidden)
            self.fused_out = self.output
            self.sorted_ids = None
            self.expert_ids = topk_ids.view(-1)
            self.ntpp = torch.full((1,), topk_ids.numel() * config["BLOCK_SIZE_M"], dtype=torch.int32, device=dev)
            self.w13_topk_weights = topk_weights
        else:
            raise ValueError(path)

    def _gemm(self, A, B, C, topk_weights, mul_routed_weight, top_k):
        invoke_fused_moe_triton_kernel(
            A, B, C, None, None, topk_weights, self.sorted_ids, self.expert_ids, self.ntpp,
            mul_routed_weight, top_k, self.config, compute_type=self.compute_type,
            use_fp8_w8a8=False, use_int8_w8a8=False, use_int8_w8a16=False, use_int4_w4a16=False,
            per_channel_quant=False, block_shape=None, B_bias=None)

    def w13_gemm(self, w13: torch.Tensor) -> None:
        self._gemm(self.hidden, w13, self.cache1, self.w13_topk_weights, False, self.k)

    def act(self) -> None:
        silu_and_mul(self.cache2, self.cache1.view(-1, 2 * self.N))

    def w2_gemm(self, w2: torch.Tensor) -> None:
        self._gemm(self.cache2, w2, self.cache3, self.topk_weights, True, 1)

    def moe_sum(self) -> None:
        torch.sum(self.cache3, dim=1, out=self.fused_out)

    def finalize_copy(self) -> None:
        self.output.copy_(self.fused_out)

    def kernels(self) -> list[str]:
        return ["w13_gemm", "act", "w2_gemm", "sum"] + (["finalize_copy"] if self.path == "triton_experts" else [])

    def run(self, w13: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        self.w13_gemm(w13)
        self.act()
        self.w2_gemm(w2)
        self.moe_sum()
        if self.path == "triton_experts":
            self.finalize_copy()
        return self.output

    def grids(self) -> dict:
        sl = None if self.sorted_ids is None else self.sorted_ids.numel()
        em13, g13 = gemm_grid(self.M, self.k, 2 * self.N, self.config, sl)
        em2, g2 = gemm_grid(self.M * self.k, 1, self.H, self.config, sl)
        return {"EM_w13": em13, "programs_w13": g13, "EM_w2": em2, "programs_w2": g2}


def reference_moe(hidden, w13, w2, topk_ids, topk_weights, N) -> torch.Tensor:
    """Plain PyTorch, fp32, one expert at a time."""
    M, H = hidden.shape
    out = torch.zeros(M, H, dtype=torch.float32, device=hidden.device)
    x = hidden.float()
    ids = topk_ids.long()
    for e in torch.unique(ids).tolist():
        tok, slot = (ids == e).nonzero(as_tuple=True)
        h = x[tok] @ w13[e].float().t()
        a = F.silu(h[:, :N]) * h[:, N:]
        y = a @ w2[e].float().t()
        out.index_add_(0, tok, y * topk_weights[tok, slot].float()[:, None])
    return out


def compare(got: torch.Tensor, ref: torch.Tensor) -> dict:
    diff = (got.float() - ref).abs()
    scale = ref.abs().max().item()
    rel_fro = (torch.linalg.vector_norm(got.float() - ref) / torch.linalg.vector_norm(ref).clamp_min(1e-30)).item()
    max_abs = diff.max().item()
    ok = bool(rel_fro <= 2e-2 and max_abs <= 5e-2 * scale + 1e-3 and torch.isfinite(got).all().item())
    return {"ok": ok, "max_abs_err": max_abs, "ref_max_abs": scale, "rel_fro_err": rel_fro}


# ==== inputs =======================================================================================
def make_routing(name: str, M: int, E: int, k: int, H: int, seed: int, device, dtype=torch.bfloat16):
    """Uniform router: per token, k distinct experts drawn uniformly; softmax weights (fp32, as
    vLLM's fused_topk gives); int32 ids. Fixed seed per (shape, M)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()) + M)
    topk_ids = torch.rand(M, E, generator=g).argsort(dim=1)[:, :k].to(torch.int32)
    topk_weights = torch.softmax(torch.randn(M, k, generator=g), dim=-1)
    hidden = torch.randn(M, H, generator=g).to(dtype)
    return hidden.to(device), topk_ids.to(device), topk_weights.to(device)


def make_weights(E: int, H: int, N: int, copy: int, seed: int, device, dtype=torch.bfloat16):
    """w13 (E, 2N, H) and w2 (E, H, N), as vLLM's FusedMoE holds them, scaled to keep O(1) values."""
    g = torch.Generator(device=device).manual_seed(seed * 7919 + copy)
    w13 = torch.randn(E, 2 * N, H, generator=g, device=device, dtype=dtype).mul_(H ** -0.5)
    w2 = torch.randn(E, H, N, generator=g, device=device, dtype=dtype).mul_(N ** -0.5)
    return w13, w2


def choose_config(E: int, H: int, N: int, k: int, M: int) -> tuple[dict, str]:
    """try_get_optimal_moe_config as TritonExperts.apply calls it for bf16 (dtype None)."""
    config = try_get_optimal_moe_config((E, 2 * N, H), (E, H, N), k, None, M)
    configs = get_moe_configs(E, N, None, 0, 0)
    if configs:
        key = min(configs.keys(), key=lambda x: abs(x - M))
        source = f"file {get_config_file_name(E, N, None)} key {key}"
    else:
        source = f"get_default_config (no {get_config_file_name(E, N, None)})"
    return dict(config), source


# ==== timing =======================================================================================
def capture_graph(instances: list) -> torch.cuda.CUDAGraph:
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        instances[0]()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for fn in instances:
            fn()
    return graph


def time_graph(graph: torch.cuda.CUDAGraph, n_inst: int, args) -> tuple[float, list[float]]:
    replays = max(1, math.ceil(args.iters / n_inst))
    for _ in range(args.warmup):
        graph.replay()
    torch.cuda.synchronize()
    per = []
    for _ in range(args.reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(replays):
            graph.replay()
        end.record()
        end.synchronize()
        per.append(start.elapsed_time(end) * 1e3 / (replays * n_inst))
    return statistics.median(per), per


def time_eager(fn, args, calls: int = 20) -> float:
    fn()
    torch.cuda.synchronize()
    per = []
    for _ in range(args.reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        per.append(start.elapsed_time(end) * 1e3 / calls)
    return statistics.median(per)


def copies_for(nbytes: int, l2: int, factor: float) -> int:
    """Weight copies to cycle so that >= factor x L2 of other weights stream between two uses."""
    if nbytes <= 0 or nbytes >= factor * l2:
        return 1
    return 1 + math.ceil(factor * l2 / nbytes)


def bench_row(layer: MoELayer, pool: list, l2: int, args, name: str) -> dict:
    H, N, E, M = layer.H, layer.N, layer.E, layer.M
    d = int(torch.unique(layer.topk_ids).numel())
    per_expert = {"w13_gemm": 2 * N * H * 2, "w2_gemm": H * N * 2}
    wbytes = {"w13_gemm": d * per_expert["w13_gemm"], "w2_gemm": d * per_expert["w2_gemm"]}
    wbytes["layer"] = wbytes["w13_gemm"] + wbytes["w2_gemm"]
    # compile + warm every launch eagerly before any capture
    layer.run(*pool[0])
    torch.cuda.synchronize()

    def plan(unit: str) -> tuple[int, int]:
        r = min(copies_for(wbytes[unit], l2, args.l2_factor), len(pool)) if unit in wbytes else 1
        return r, r * math.ceil(args.min_graph_instances / r)

    us, reps, copies, inst = {}, {}, {}, {}
    # whole layer
    r, g = plan("layer")
    graph = capture_graph([functools.partial(layer.run, *pool[i % r]) for i in range(g)])
    us["layer"], reps["layer"] = time_graph(graph, g, args)
    copies["layer"], inst["layer"] = r, g
    check = None
    if not args.no_post_check:
        w13, w2 = pool[(g - 1) % r]
        check = compare(layer.output, reference_moe(layer.hidden, w13, w2, layer.topk_ids, layer.topk_weights, N))
    del graph
    for kern in layer.kernels():
        r, g = plan(kern)
        if kern == "w13_gemm":
            fns = [functools.partial(layer.w13_gemm, pool[i % r][0]) for i in range(g)]
        elif kern == "w2_gemm":
            fns = [functools.partial(layer.w2_gemm, pool[i % r][1]) for i in range(g)]
        else:
            fns = [getattr(layer, "moe_sum" if kern == "sum" else kern)] * g
        graph = capture_graph(fns)
        us[kern], reps[kern] = time_graph(graph, g, args)
        copies[kern], inst[kern] = r, g
        del graph
    row = {
        "M": M, "path": layer.path, "config": layer.config,
        "naive_block_assignment": layer.path == "legacy_naive",
        "num_tokens_post_padded": int(layer.ntpp.item()),
        **layer.grids(),
        "distinct_experts": d,
        "expert_bytes_read": wbytes["layer"], "w13_bytes": wbytes["w13_gemm"], "w2_bytes": wbytes["w2_gemm"],
        "us": {kn: us[kn] for kn in layer.kernels()},
        "layer_graph_us": us["layer"],
        "sum_of_kernels_us": sum(us[kn] for kn in layer.kernels()),
        "GBps": {"w13_gemm": wbytes["w13_gemm"] / us["w13_gemm"] / 1e3,
                 "w2_gemm": wbytes["w2_gemm"] / us["w2_gemm"] / 1e3,
                 "layer": wbytes["layer"] / us["layer"] / 1e3},
        "us_per_repetition": reps, "l2_rotation_copies": copies, "graph_instances": inst,
        "post_check": check,
    }
    if layer.path == "triton_experts":
        row["align_torch_standin_us"] = time_eager(
            lambda: moe_align_block_size_torch(layer.topk_ids, layer.config["BLOCK_SIZE_M"], E), args)
    return row


# ==== parallel precompilation ======================================================================
# A Triton compile of fused_moe_kernel takes 1.5-4 s (sm_90, ptxas included) and a run needs ~110
# distinct specializations (config x w13/w2 x integer-divisibility x naive). Worker processes run the
# exact launches the benchmark will make (same shapes, dtypes, configs; weights torch.empty: content
# is irrelevant) so the compiled kernels land in Triton's on-disk cache; the main process then loads
# them instead of compiling. It only uses the ordinary disk cache: if anything differs, the main
# process compiles as it would have anyway.
_WORKER_WEIGHTS: dict = {}
_BENCH_DEVICE = "cuda"  # a test harness may point the GPU path at the CPU interpreter


def _precompile_task(task: tuple) -> tuple:
    name, H, E, N, k, M, path, seed, dev_override = task
    t0 = time.time()
    try:
        logger.quiet = True
        if dev_override and not _DEVICE_NAME_OVERRIDE:
            _DEVICE_NAME_OVERRIDE.append(dev_override)
        device = torch.device(_BENCH_DEVICE)
        if name not in _WORKER_WEIGHTS:
            _WORKER_WEIGHTS.clear()
            torch.cuda.empty_cache()
            _WORKER_WEIGHTS[name] = (torch.empty(E, 2 * N, H, dtype=torch.bfloat16, device=device),
                                     torch.empty(E, H, N, dtype=torch.bfloat16, device=device))
        hidden, ids, wts = make_routing(name, M, E, k, H, seed, device)
        config, _ = choose_config(E, H, N, k, M)
        MoELayer(path, hidden, ids, wts, E, N, config).run(*_WORKER_WEIGHTS[name])
        torch.cuda.synchronize()
        return name, M, path, time.time() - t0, None
    except Exception as e:  # noqa: BLE001
        return name, M, path, time.time() - t0, f"{type(e).__name__}: {e}"


def precompile(tasks: list[tuple], workers: int) -> dict:
    import multiprocessing as mp

    t0 = time.time()
    errors = []
    # the largest weights first, so the slow allocations overlap the compiles
    tasks = sorted(tasks, key=lambda t: (-t[2] * t[3] * t[1], t[0], t[5]))
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        for name, M, path, secs, err in pool.imap(_precompile_task, tasks):
            if err:
                errors.append(f"{name} M={M} {path}: {err}")
    info = {"workers": workers, "tasks": len(tasks), "seconds": time.time() - t0, "errors": errors}
    print(f"precompiled {len(tasks)} launch sets in {info['seconds']:.0f} s with {workers} processes"
          + (f"; {len(errors)} errors (the main process compiles those itself): {errors[:3]}" if errors else ""),
          flush=True)
    return info


# ==== environment ==================================================================================
def env_info() -> dict:
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "triton": triton.__version__, "cuda_runtime": torch.version.cuda}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=torch.cuda.get_device_name(), capability=f"{p.major}.{p.minor}",
                    sms=p.multi_processor_count, memory_bytes=p.total_memory,
                    l2_bytes=getattr(p, "L2_cache_size", None))
        try:
            info["cuda_driver_api_version"] = torch._C._cuda_getDriverVersion()
        except Exception as e:  # noqa: BLE001
            info["cuda_driver_api_version"] = f"unavailable: {e}"
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            info["nvidia_smi"] = smi.stdout.strip()
            info["driver"] = smi.stdout.strip().splitlines()[0].split(",")[0].strip()
        except Exception as e:  # noqa: BLE001
            info["driver"] = f"unavailable: {e}"
    return info


# ==== main =========================================================================================
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    out_default = os.path.join(os.environ["OUT"], "fused-moe-h200.json") if os.environ.get("OUT") else None
    p.add_argument("--out", default=out_default, help="JSON output (default $OUT/fused-moe-h200.json)")
    p.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated names from SHAPES")
    p.add_argument("--tokens", default=DEFAULT_TOKENS, help="token counts M (decode: one per sequence)")
    p.add_argument("--iters", type=int, default=200, help="instances timed per repetition")
    p.add_argument("--reps", type=int, default=5, help="repetitions (the median is reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed graph replays before timing")
    p.add_argument("--min-graph-instances", type=int, default=16,
                   help="instances captured per graph (>= this, a multiple of the copies cycled)")
    p.add_argument("--l2-factor", type=float, default=3.0,
                   help="other weights streamed between two uses of one copy, in L2 sizes")
    p.add_argument("--weight-budget-gb", type=float, default=40.0, help="memory for the weight copies")
    p.add_argument("--check-tokens", type=int, default=4, help="M of the startup correctness check")
    p.add_argument("--no-post-check", action="store_true", help="skip checking each timed layer's output")
    p.add_argument("--legacy-naive", choices=["auto", "off"], default="auto",
                   help="auto: also time fused_experts_impl's naive_block_assignment where it fires")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile-workers", type=int, default=min(12, max(1, (os.cpu_count() or 2) - 2)),
                   help="processes that precompile the kernels into Triton's disk cache (0: off)")
    p.add_argument("--device-name", default=None, help="override the device name used for the config file")
    p.add_argument("--cpu-interpret-check", action="store_true",
                   help="no GPU: correctness only, tiny shapes, CPU tensors, TRITON_INTERPRET=1")
    return p.parse_args(argv)


def startup_check(name, H, E, N, k, pool, args, device, naive_needed: bool) -> dict:
    res = {}
    cases = [("triton_experts", args.check_tokens)] + ([("legacy_naive", 1)] if naive_needed else [])
    for path, M in cases:
        hidden, ids, wts = make_routing(name + "/check", M, E, k, H, args.seed, device)
        config, _ = choose_config(E, H, N, k, M)
        layer = MoELayer(path, hidden, ids, wts, E, N, config)
        got = layer.run(*pool[0])
        res[f"{path}@M={M}"] = {"config": config, **compare(got, reference_moe(hidden, *pool[0], ids, wts, N))}
    return res


def print_row(name: str, r: dict) -> None:
    c, u = r["config"], r["us"]
    tag = "vllm" if r["path"] == "triton_experts" else "naive"
    align = r.get("align_torch_standin_us")
    ok = "" if r["post_check"] is None else ("ok" if r["post_check"]["ok"] else "FAIL")
    print(f"{name:18s} {r['M']:4d} {tag:5s} {c['BLOCK_SIZE_M']:3d}/{c['BLOCK_SIZE_N']:3d}/{c['BLOCK_SIZE_K']:3d}"
          f"/{c['GROUP_SIZE_M']:2d} w{c['num_warps']} s{c['num_stages']} {r['num_tokens_post_padded']:5d}"
          f" {r['distinct_experts']:4d} {u['w13_gemm']:8.1f} {u['act']:6.1f} {u['w2_gemm']:8.1f} {u['sum']:6.1f}"
          f" {u.get('finalize_copy', float('nan')):6.1f} {r['layer_graph_us']:8.1f} {r['GBps']['w13_gemm']:7.0f}"
          f" {r['GBps']['w2_gemm']:7.0f} {r['GBps']['layer']:7.0f} {align if align is not None else float('nan'):7.1f}"
          f" {ok}", flush=True)


TABLE_HEAD = (f"{'shape':18s} {'M':>4s} {'path':5s} {'BM/BN/BK/GM w s':21s} {'ntpp':>5s} {'hit':>4s}"
              f" {'w13 us':>8s} {'act':>6s} {'w2 us':>8s} {'sum':>6s} {'copy':>6s} {'layer':>8s}"
              f" {'w13GB/s':>7s} {'w2GB/s':>7s} {'lyrGB/s':>7s} {'align*':>7s}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device_name:
        _DEVICE_NAME_OVERRIDE.append(args.device_name)
    if args.cpu_interpret_check:
        return cpu_interpret_check(args)
    if not args.out:
        sys.exit("--out is required when $OUT is not set")
    if not torch.cuda.is_available():
        sys.exit("no CUDA device (use --cpu-interpret-check for the CPU correctness path)")
    names = [s for s in args.shapes.split(",") if s]
    unknown = [s for s in names if s not in SHAPES]
    if unknown:
        sys.exit(f"unknown shapes {unknown}; known: {list(SHAPES)}")
    tokens = [int(t) for t in args.tokens.split(",") if t]
    device = torch.device(_BENCH_DEVICE)
    env = env_info()
    l2 = env.get("l2_bytes") or 50 * 2**20
    dev_name = current_platform.get_device_name()
    file_dev = dev_name.replace(" ", "_")
    if "H200" in file_dev.split("_"):
        file_dev = "NVIDIA_H200"
    if file_dev != "NVIDIA_H200":
        print(f"WARNING: device {dev_name!r} is not an H200; engine_fused_moe_configs/ only holds the H200 files, "
              "so every shape falls back to get_default_config (vLLM would use this device's own files)",
              file=sys.stderr)
    t_start = time.time()
    doc = {
        "benchmark": "benchmarks/engine_fused_moe.py",
        "what": "vLLM 0.19.0 Triton fused_moe (TritonExperts) decode MoE layer, bf16, kernel by kernel",
        "env": env, "config_device_name": file_dev,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "notes": {
            "w13_gemm/w2_gemm": "vLLM 0.19.0 fused_moe_kernel, transcribed verbatim, launched as vLLM does",
            "act": "Triton stand-in for vLLM's CUDA silu_and_mul",
            "sum": "torch.sum(cache3, dim=1, out=...): vLLM's own call (at::sum_out) for top_k not in {2,3,4}; "
                   "a stand-in for vLLM's moe_sum_kernel<TOPK> for top_k in {2,3,4}",
            "finalize_copy": "output.copy_(fused_out), as vLLM 0.19's NoDPEP finalize does (triton_experts only)",
            "layer_graph_us": "w13, act, w2, sum (+ finalize copy) in one CUDA graph; align precomputed",
            "align_torch_standin_us": "PyTorch stand-in for vLLM's moe_align_block_size CUDA kernel, eager; "
                                      "NOT vLLM's time",
            "legacy_naive rows": "fused_experts_impl's naive_block_assignment; not the bf16 serving path in 0.19",
            "GBps": "unique expert weight bytes of the hit experts / median time",
            "l2": f"weights cycled over copies so >= {args.l2_factor} x L2 ({l2} B) streams between reuses",
        },
        "shapes": {},
    }
    if args.compile_workers > 0:
        tasks = []
        for name in names:
            H, E, N, k = SHAPES[name]
            naive_any = args.legacy_naive == "auto" and any(legacy_naive_block_assignment(M, k, E) for M in tokens)
            for M in sorted(set(tokens) | {args.check_tokens}):
                tasks.append((name, H, E, N, k, M, "triton_experts", args.seed, args.device_name))
                if args.legacy_naive == "auto" and legacy_naive_block_assignment(M, k, E):
                    tasks.append((name, H, E, N, k, M, "legacy_naive", args.seed, args.device_name))
            if naive_any and 1 not in tokens:  # the startup check runs the naive path at M=1
                tasks.append((name, H, E, N, k, 1, "legacy_naive", args.seed, args.device_name))
        doc["precompile"] = precompile(tasks, args.compile_workers)
    print(TABLE_HEAD)
    for name in names:
        H, E, N, k = SHAPES[name]
        t0 = time.time()
        entry: dict[str, Any] = {"H": H, "E": E, "N": N, "top_k": k,
                                 "config_file": get_config_file_name(E, N, None),
                                 "config_file_found": get_moe_configs(E, N, None, 0, 0) is not None,
                                 "sum_impl": ("torch.sum = vLLM's at::sum_out" if k not in (2, 3, 4)
                                              else f"torch.sum stand-in for vLLM moe_sum_kernel<{k}>"),
                                 "rows": []}
        doc["shapes"][name] = entry
        layer_bytes = E * 3 * H * N * 2
        routings = {M: make_routing(name, M, E, k, H, args.seed, device) for M in tokens}
        naive = {M: args.legacy_naive == "auto" and legacy_naive_block_assignment(M, k, E) for M in tokens}
        want = 1
        for M, (_, ids, _) in routings.items():
            d = int(torch.unique(ids).numel())
            want = max(want, copies_for(d * H * N * 2, l2, args.l2_factor))
        n_pool = max(1, min(want, int(args.weight_budget_gb * 1e9 // layer_bytes)))
        entry["weight_copies_allocated"] = n_pool
        entry["weight_copies_wanted"] = want
        pool = [make_weights(E, H, N, c, args.seed, device) for c in range(n_pool)]
        try:
            check = startup_check(name, H, E, N, k, pool, args, device, any(naive.values()))
        except Exception as e:  # noqa: BLE001
            check = {"error": {"ok": False, "message": f"{type(e).__name__}: {e}"}}
        entry["startup_check"] = check
        bad = {c: v for c, v in check.items() if not v.get("ok")}
        if bad:
            print(f"ABORT {name}: startup correctness check failed vs the PyTorch reference: {bad}", flush=True)
            entry["aborted"] = "startup correctness check failed"
            del pool
            torch.cuda.empty_cache()
            continue
        for M in tokens:
            hidden, ids, wts = routings[M]
            config, source = choose_config(E, H, N, k, M)
            paths = ["triton_experts"] + (["legacy_naive"] if naive[M] else [])
            for path in paths:
                try:
                    row = bench_row(MoELayer(path, hidden, ids, wts, E, N, config), pool, l2, args, name)
                except Exception as e:  # noqa: BLE001
                    row = {"M": M, "path": path, "config": config, "error": f"{type(e).__name__}: {e}"}
                    print(f"{name:18s} {M:4d} {path}: ERROR {row['error']}", flush=True)
                else:
                    print_row(name, row)
                row["config_source"] = source
                entry["rows"].append(row)
        entry["seconds"] = time.time() - t0
        del pool
        torch.cuda.empty_cache()
    doc["seconds"] = time.time() - t_start
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"align* = PyTorch stand-in, eager (not vLLM's CUDA kernel). wrote {args.out} in {doc['seconds']:.0f} s")
    fails = [(n, r["M"], r["path"]) for n, e in doc["shapes"].items() for r in e["rows"]
             if "error" in r or (r["post_check"] is not None and not r["post_check"]["ok"])]
    aborted = [n for n, e in doc["shapes"].items() if e.get("aborted")]
    if fails or aborted:
        print(f"rows with errors or failed post-checks: {fails}; aborted shapes: {aborted}", file=sys.stderr)
        return 1
    return 0


# ==== --cpu-interpret-check ========================================================================
def cpu_interpret_check(args) -> int:
    """No GPU: the transcribed kernel under the Triton interpreter on CPU tensors at tiny shapes, every
    path and every H200 file config, against the PyTorch reference; the align stand-in against a
    brute force; the config choice for the real shapes."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("set TRITON_INTERPRET=1 (the flag sets it when given on the command line)")
    if not _DEVICE_NAME_OVERRIDE:
        _DEVICE_NAME_OVERRIDE.append("NVIDIA H200")
    device = torch.device("cpu")
    failures = 0
    t0 = time.time()

    # 1. align stand-in vs brute force
    g = torch.Generator().manual_seed(1)
    for numel_tokens, E, k, bs in [(1, 8, 2, 16), (3, 64, 6, 16), (5, 8, 2, 16), (20, 16, 4, 16), (64, 60, 4, 32),
                                   (256, 128, 8, 64), (7, 128, 8, 16)]:
        ids = torch.rand(numel_tokens, E, generator=g).argsort(dim=1)[:, :k].to(torch.int32)
        sorted_ids, expert_ids, ntpp = moe_align_block_size_torch(ids, bs, E)
        groups, total = moe_align_block_size_python(ids.tolist(), bs, E)
        expect_sorted = [t for _, grp in groups for t in grp]
        expect_blocks = [e for e, grp in groups for _ in range(len(grp) // bs)]
        numel = ids.numel()
        max_pad = numel + E * (bs - 1)
        if numel < E:
            max_pad = min(numel * bs, max_pad)
        ok = (int(ntpp.item()) == total and sorted_ids.numel() == max_pad
              and sorted_ids[:total].tolist() == expect_sorted
              and all(v == numel for v in sorted_ids[total:].tolist())
              and expert_ids.numel() == triton.cdiv(max_pad, bs)
              and expert_ids[: total // bs].tolist() == expect_blocks
              and all(v == 0 for v in expert_ids[total // bs:].tolist()))
        failures += not ok
        print(f"align M={numel_tokens:3d} E={E:3d} k={k} bs={bs:3d}: ntpp={int(ntpp.item()):5d} "
              f"len={sorted_ids.numel():5d} blocks={expert_ids.numel():4d} {'ok' if ok else 'FAIL'}")

    # 2. kernels under the interpreter vs the reference
    tiny = [("tiny-a", 96, 8, 48, 2), ("tiny-b", 64, 16, 32, 4)]
    file_configs = []
    for path in sorted(CONFIG_DIR.glob("*.json")):
        cfgs = json.loads(path.read_text())
        cfgs.pop("triton_version", None)
        for key in ("1", "16", "256"):
            file_configs.append((f"{path.name} [{key}]", dict(cfgs[key])))
    cases = []
    for tname, H, E, N, k in tiny:
        for M in (1, 5, 20):
            config, source = choose_config(E, H, N, k, M)
            cases.append((tname, H, E, N, k, M, config, source, "triton_experts"))
            if legacy_naive_block_assignment(M, k, E):
                cases.append((tname, H, E, N, k, M, config, source, "legacy_naive"))
    for label, cfg in file_configs:
        cases.append(("tiny-a", 96, 8, 48, 2, 5, cfg, label, "triton_experts"))
        cases.append(("tiny-b", 64, 16, 32, 4, 20, cfg, label, "triton_experts"))
    cases.append(("tiny-b", 64, 16, 32, 4, 1, file_configs[0][1], file_configs[0][0], "legacy_naive"))
    # The interpreter cannot run tl.dot on bfloat16 (it multiplies the raw uint16 bit patterns:
    # triton-lang/triton#11584, "not supported yet"), so the GEMM path runs in float16 here (the same
    # kernel; only the compute_type constexpr differs) and float32 for the default-config cases; bf16
    # is exercised on the GPU by the startup check and the post-check of every timed layer.
    n_default = len(cases) - 2 * len(file_configs) - 1
    for i, (tname, H, E, N, k, M, config, source, path) in enumerate(cases):
        for dt in (torch.float16, torch.float32) if i < n_default else (torch.float16,):
            w13, w2 = make_weights(E, H, N, 0, args.seed, device, dtype=dt)
            hidden, ids, wts = make_routing(tname, M, E, k, H, args.seed, device, dtype=dt)
            layer = MoELayer(path, hidden, ids, wts, E, N, config)
            got = layer.run(w13, w2)
            res = compare(got, reference_moe(hidden, w13, w2, ids, wts, N))
            failures += not res["ok"]
            c = config
            print(f"{tname} {str(dt)[6:]:7s} H={H} E={E} N={N} k={k} M={M:2d} {path:14s} BM{c['BLOCK_SIZE_M']} "
                  f"BN{c['BLOCK_SIZE_N']} BK{c['BLOCK_SIZE_K']} GM{c['GROUP_SIZE_M']} w{c['num_warps']} "
                  f"s{c['num_stages']} ntpp={int(layer.ntpp.item()):4d} rel_fro={res['rel_fro_err']:.1e} "
                  f"max_abs={res['max_abs_err']:.1e}/{res['ref_max_abs']:.1e} {'ok' if res['ok'] else 'FAIL'}"
                  f"  ({source})", flush=True)
    # the act stand-in vs the same rounding in torch: exact in float16; in bfloat16 the interpreter
    # truncates on casts (the GPU rounds to nearest), so up to a few bf16 ulps there
    for dt, tol in ((torch.float16, 0.0), (torch.bfloat16, 3 * 2 ** -7)):
        x = torch.randn(7, 2 * 100, generator=g).to(dt)
        out = torch.empty(7, 100, dtype=dt)
        silu_and_mul(out, x)
        xf, yf = x[:, :100].float(), x[:, 100:].float()
        want = ((xf / (1 + torch.exp(-xf))).to(dt).float() * yf).to(dt)
        rel = ((out.float() - want.float()).abs() / want.float().abs().clamp_min(1e-3)).max().item()
        failures += rel > tol
        print(f"silu_and_mul stand-in {str(dt)[6:]}: max rel diff vs torch {rel:.1e} (allowed {tol:.1e}) "
              f"{'ok' if rel <= tol else 'FAIL'}")

    # 3. a deliberately wrong result must fail the check
    w13, w2 = make_weights(8, 96, 48, 0, args.seed, device)
    hidden, ids, wts = make_routing("tiny-a", 5, 8, 2, 96, args.seed, device)
    bad = compare(reference_moe(hidden, w13, w2, ids, wts, 48) * 1.1, reference_moe(hidden, w13, w2, ids, wts, 48))
    print(f"negative control (output x 1.1) rejected: {not bad['ok']}")
    failures += bad["ok"]

    # 4. what vLLM 0.19 would pick for the real shapes on an H200
    print("config choice on 'NVIDIA H200' (BLOCK_SIZE_M/N/K, GROUP_SIZE_M, warps, stages; naive = the legacy rule):")
    for name, (H, E, N, k) in SHAPES.items():
        for M in [int(t) for t in args.tokens.split(",")]:
            c, source = choose_config(E, H, N, k, M)
            print(f"  {name:18s} M={M:4d} {c['BLOCK_SIZE_M']:3d}/{c['BLOCK_SIZE_N']:3d}/{c['BLOCK_SIZE_K']:3d}/"
                  f"{c['GROUP_SIZE_M']:2d} w{c['num_warps']} s{c['num_stages']} "
                  f"legacy-naive={legacy_naive_block_assignment(M, k, E)!s:5s} {source}")
    print(f"--cpu-interpret-check: {failures} failure(s), {time.time() - t0:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
