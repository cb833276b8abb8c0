"""What a captured CUDA graph costs in device memory beyond its tensors: the driver's memory for an
instantiated graph, per graph and per kernel node.

vLLM (0.19 on) estimates its CUDA-graph memory by capturing the two largest batch sizes and
extrapolating the second one's free-memory drop to every other size (gpu_model_runner.py
profile_cudagraph_memory; benchmarks/serve/vllm-0.20-latest.md). With the graph pool shared, that
drop is mostly the driver's memory for the new graph's nodes. This script measures it directly:
it captures graphs of n small kernels into one shared pool (as vLLM's graphs share one), after a
warm-up graph, and records torch.cuda.mem_get_info's drop per graph, so
    drop(n) = per_graph + n x per_node
is fitted by least squares over n. It also captures pieces the way vLLM's PIECEWISE mode does:
k graphs of n/k nodes each.

    PYTHONPATH=. python3 benchmarks/cuda_graph_memory.py --out $OUT/cuda-graph-memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform


def main() -> None:
    import torch

    p = argparse.ArgumentParser()
    p.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "cuda-graph-memory.json"))
    args = p.parse_args()
    dev = torch.device("cuda")
    x = torch.zeros(4096, device=dev)
    a = torch.randn(256, 256, device=dev, dtype=torch.bfloat16)
    b = torch.randn(256, 256, device=dev, dtype=torch.bfloat16)
    pool = torch.cuda.graph_pool_handle()
    keep: list = []

    def body(n: int, kind: str) -> None:
        for _ in range(n):
            if kind == "gemm":
                torch.mm(a, b, out=a)
            else:
                x.add_(1.0)

    def capture(n: int, kind: str, pieces: int = 1) -> int:
        """Free-memory drop (bytes) over capturing `pieces` graphs of n / pieces kernels each."""
        torch.cuda.synchronize()
        free0, _ = torch.cuda.mem_get_info()
        per = max(n // pieces, 1)
        for _ in range(pieces):
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=pool):
                body(per, kind)
            keep.append(g)
        torch.cuda.synchronize()
        free1, _ = torch.cuda.mem_get_info()
        return free0 - free1

    s = torch.cuda.Stream()
    with torch.cuda.stream(s):  # warm up cuBLAS and the pool outside the measured graphs
        body(4, "gemm")
        body(4, "add")
    torch.cuda.synchronize()
    capture(64, "add")
    capture(64, "gemm")
    rows = []
    for kind in ("add", "gemm"):
        for n in (16, 64, 256, 1024, 4096):
            drops = [capture(n, kind) for _ in range(6)]
            rows.append({"kind": kind, "nodes": n, "pieces": 1, "drops_bytes": drops})
    for pieces in (8, 33, 81):  # vLLM's PIECEWISE: layers + 1 graphs per batch size
        for n in (400, 1200):
            drops = [capture(n, "add", pieces) for _ in range(4)]
            rows.append({"kind": "add", "nodes": n, "pieces": pieces, "drops_bytes": drops})

    def fit(sel: list[dict]) -> tuple[float, float]:
        pts = [(r["nodes"], d) for r in sel for d in r["drops_bytes"][1:]]
        n_mean = sum(n for n, _ in pts) / len(pts)
        d_mean = sum(d for _, d in pts) / len(pts)
        slope = sum((n - n_mean) * (d - d_mean) for n, d in pts) / sum((n - n_mean) ** 2 for n, _ in pts)
        return d_mean - slope * n_mean, slope

    summary = {}
    for kind in ("add", "gemm"):
        c0, c1 = fit([r for r in rows if r["kind"] == kind and r["pieces"] == 1])
        summary[kind] = {"per_graph_bytes": c0, "per_node_bytes": c1}
    out = {
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "driver": _driver(), "python": platform.python_version(), "rows": rows, "fit": summary,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    for r in rows:
        med = sorted(r["drops_bytes"][1:])[len(r["drops_bytes"][1:]) // 2]
        print(f"{r['kind']:5s} nodes={r['nodes']:5d} pieces={r['pieces']:3d} median drop {med / 2**20:8.2f} MiB "
              f"all {[round(d / 2**20, 1) for d in r['drops_bytes']]}")
    print(json.dumps(summary))


def _driver() -> str:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlSystemGetDriverVersion()
    except Exception as e:  # noqa: BLE001 - recorded, not fatal
        return f"unknown ({e})"


if __name__ == "__main__":
    main()
