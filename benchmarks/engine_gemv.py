"""The bandwidth decode's weight matmuls reach, per shape, as an engine runs them (the input for an
engine op list: docs/engine-speed-public.md). For Llama-3-8B's projections, as transformers runs
them (q, k, v, o, gate, up, down) and as vLLM merges them (qkv, gate_up), at batch 1, 8 and 32:
torch.nn.functional.linear in bf16 replayed 200 times from a CUDA graph, timed with CUDA events;
bytes = the weight (out x in x 2) plus the activations in and out.

    python benchmarks/engine_gemv.py --out gemv.json
"""

import argparse
import json

import torch
from graph_timing import replay_ms

p = argparse.ArgumentParser()
p.add_argument("--out", required=True)
args = p.parse_args()

H, I, KV = 4096, 14336, 1024  # Llama-3-8B: hidden, MLP width, 8 kv heads x 128
SHAPES = {"q": (H, H), "k": (KV, H), "v": (KV, H), "o": (H, H), "gate": (I, H), "up": (I, H), "down": (H, I),
          "qkv (merged)": (H + 2 * KV, H), "gate_up (merged)": (2 * I, H)}
peak = {"NVIDIA H200": 4.8e12, "NVIDIA H100 80GB HBM3": 3.35e12}.get(torch.cuda.get_device_name(), float("nan"))
rows = []
for batch in (1, 8, 32):
    for name, (out_f, in_f) in SHAPES.items():
        w = torch.randn(out_f, in_f, device="cuda", dtype=torch.bfloat16)
        x = torch.randn(batch, in_f, device="cuda", dtype=torch.bfloat16)
        # cuBLAS picks its kernel on the first call; 200 calls a graph, one timed replay
        seconds = replay_ms(lambda: torch.nn.functional.linear(x, w), calls=200, timings=1, warmup=1)[0] / 1e3
        moved = 2 * (out_f * in_f + batch * (in_f + out_f))
        rows.append({"batch": batch, "shape": name, "out": out_f, "in": in_f, "us": seconds * 1e6,
                     "bytes_per_s": moved / seconds, "fraction_of_peak": moved / seconds / peak})
doc = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": str(torch.version.cuda),
       "peak_bytes_per_s": peak, "rows": rows}
with open(args.out, "w") as f:
    json.dump(doc, f, indent=1)
for r in rows:
    print(f"batch {r['batch']:3d} {r['shape']:18s} {r['us']:8.1f} us  {r['fraction_of_peak']:.3f} of peak")
