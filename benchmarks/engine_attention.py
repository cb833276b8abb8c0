"""Decode attention kernels on the GPU: how fast each reads the KV cache (docs/engine-speed.md).

The engine op list charges decode attention the cache's bytes at the copy bandwidth, as a serving
engine's paged decode kernel (FlashAttention 3, FlashInfer: grouped heads packed, split-KV) is
built to reach. vLLM's kernels cannot run on the device machine; PyTorch's can:

- SDPA's flash kernel with enable_gqa (the engine_step.py analogue);
- SDPA's memory-efficient kernel (grouped heads expanded first);
- FlexAttention, compiled: its decode path (flex_decoding) splits the keys and packs the grouped
  query heads of one KV head together, the scheme of the engines' decode kernels.

For each (batch, context): one decode query per sequence, Llama-3-8B's heads (32 query, 8 KV,
128 wide), bf16, a contiguous cache; one layer's attention replayed 50 times from a CUDA graph,
timed with CUDA events; bytes = K and V read once + q and the output.

    python benchmarks/engine_attention.py --out DIR
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F
from graph_timing import replay_ms
from torch.nn.attention import SDPBackend, sdpa_kernel

p = argparse.ArgumentParser()
p.add_argument("--out", required=True)
p.add_argument("--cases", default="1:4096,8:4096,32:2048,64:1024,128:2048,256:512,64:8192")
args = p.parse_args()

NH, KVH, D = 32, 8, 128
dt = torch.bfloat16
peak = {"NVIDIA H200": 4.8e12, "NVIDIA H100 80GB HBM3": 3.35e12}.get(torch.cuda.get_device_name(), float("nan"))


def main() -> None:
    from torch.nn.attention.flex_attention import flex_attention

    flex = torch.compile(flex_attention, dynamic=False)
    rows = []
    for case in args.cases.split(","):
        b, n = (int(x) for x in case.split(":"))
        q = torch.randn(b, NH, 1, D, device="cuda", dtype=dt)
        k = torch.randn(b, KVH, n, D, device="cuda", dtype=dt)
        v = torch.randn(b, KVH, n, D, device="cuda", dtype=dt)
        nbytes = 2 * b * KVH * n * D * 2 + 2 * b * NH * D * 2
        row = {"batch": b, "context": n, "bytes": nbytes}

        def flash():
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)

        def efficient():
            with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)

        def flexed():
            return flex(q, k, v, enable_gqa=True)

        for name, fn in (("sdpa_flash", flash), ("sdpa_efficient", efficient), ("flex", flexed)):
            try:
                us = statistics.median(replay_ms(fn, calls=50, timings=5)) * 1e3
                row[name] = {"us": us, "fraction_of_peak": nbytes / (us * 1e-6) / peak}
            except Exception as exc:  # a kernel that cannot take this shape
                row[name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        rows.append(row)
        print(json.dumps(row), flush=True)
        torch.cuda.empty_cache()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "engine-attention.json").write_text(json.dumps(
        {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
         "peak_bytes_per_s": peak, "heads": NH, "kv_heads": KVH, "head_dim": D, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
