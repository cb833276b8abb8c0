"""Gated DeltaNet's kernels as serving engines run them, timed on the GPU against llmcalc's engine op.

    PYTHONPATH=/tmp/site:. python3 benchmarks/gdn_kernels.py run --out benchmarks/results/gdn-kernels/h200.json
    python benchmarks/gdn_kernels.py report       # prints the table docs/models.md quotes

vLLM runs a Gated DeltaNet layer's delta rule with flash-linear-attention's Triton kernels (it
vendors them under vllm/model_executor/layers/fla/ops): the chunked rule for a prompt, the fused
recurrent one for a decode step. `run` times fla-core 0.6.0's `chunk_gated_delta_rule` (one
sequence of 512-8,192 tokens) and `fused_recurrent_gated_delta_rule` (1-256 sequences, one token
each, fp32 states) at the shapes of Qwen3.6-27B, Qwen3.6-35B-A3B and Qwen3.5-0.8B (TP 1), bf16
q/k/v, L2-normalised q and k in the kernel, replayed from a CUDA graph after a warm-up (the
autotuner's choice made). `report` predicts each with llmcalc's engine op (llmcalc/speed.py
_gated_delta_net_ops(engine=True): the rule's FLOPs at the bf16 rate, q/k/v/z read and the output
written once, the state read and written per chunk or step).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CARDS = ["qwen3.6-27b", "qwen3.6-35b-a3b", "qwen3.5-0.8b"]
PREFILL = [512, 2048, 8192]
DECODE = [1, 8, 64, 256]


def run(out: Path) -> None:
    import torch
    import torch.nn.functional as F
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule

    from llmcalc.resolve import load_card

    dev = torch.device("cuda")
    rows = []

    def timed(fn, reps: int = 20) -> float:
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                fn()
            call = graph.replay
            how = "graph"
        except Exception:  # a kernel that cannot be captured: eager, host time included
            call, how = fn, "eager"
        times = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        return statistics.median(times), how

    for name in CARDS:
        card = load_card(name)
        kh, vh = card.linear_key_heads, card.linear_value_heads
        dk, dv = card.linear_key_head_dim, card.linear_value_head_dim
        for tokens in PREFILL:
            q = F.normalize(torch.randn(1, tokens, kh, dk, device=dev), dim=-1).bfloat16()
            k = F.normalize(torch.randn(1, tokens, kh, dk, device=dev), dim=-1).bfloat16()
            v = torch.randn(1, tokens, vh, dv, device=dev, dtype=torch.bfloat16)
            g = F.logsigmoid(torch.randn(1, tokens, vh, device=dev)).float()
            beta = torch.rand(1, tokens, vh, device=dev, dtype=torch.bfloat16)
            h0 = torch.zeros(1, vh, dk, dv, device=dev)

            def prefill():
                return chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                              use_qk_l2norm_in_kernel=True)
            s, how = timed(prefill)
            rows.append({"card": name, "mode": "prefill", "tokens": tokens, "seconds": s, "how": how})
            print(name, "prefill", tokens, f"{s * 1e6:.1f} us", how, flush=True)
        for seqs in DECODE:
            q = F.normalize(torch.randn(seqs, 1, kh, dk, device=dev), dim=-1).bfloat16()
            k = F.normalize(torch.randn(seqs, 1, kh, dk, device=dev), dim=-1).bfloat16()
            v = torch.randn(seqs, 1, vh, dv, device=dev, dtype=torch.bfloat16)
            g = F.logsigmoid(torch.randn(seqs, 1, vh, device=dev)).float()
            beta = torch.rand(seqs, 1, vh, device=dev, dtype=torch.bfloat16)
            state = torch.randn(seqs, vh, dk, dv, device=dev) * 0.01

            def decode():
                return fused_recurrent_gated_delta_rule(q, k, v, g=g, beta=beta, initial_state=state,
                                                        output_final_state=True, use_qk_l2norm_in_kernel=True)
            s, how = timed(decode)
            rows.append({"card": name, "mode": "decode", "seqs": seqs, "seconds": s, "how": how})
            print(name, "decode", seqs, f"{s * 1e6:.1f} us", how, flush=True)
    env = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(), "fla-core": "0.6.0",
           "triton": __import__("triton").__version__}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"env": env, "rows": rows}, indent=1) + "\n")


def report(path: Path) -> None:
    from llmcalc.hardware import gpu_for_device_name
    from llmcalc.memory import Workload
    from llmcalc.resolve import load_card
    from llmcalc.speed import _gated_delta_net_ops, efficiency_for, step_time

    doc = json.loads(path.read_text())
    hw = gpu_for_device_name(doc["env"]["gpu"])
    eff = efficiency_for(hw)
    print(f"{doc['env']}")
    print("| card | step | measured us | llmcalc us | error |")
    print("|---|---|---:|---:|---:|")
    for r in doc["rows"]:
        card = load_card(r["card"])
        rows, new = (r["tokens"], r["tokens"]) if r["mode"] == "prefill" else (r["seqs"], 1)
        w = Workload(batch=rows // new, seq=max(new, 1), gen=2)
        op = next(o for o in _gated_delta_net_ops(card, w, rows, new, 2, None, 1, engine=True) if o.name == "delta_rule")
        pred = step_time([op], hw, eff).kernel_s
        what = f"prefill {r['tokens']:,} tokens" if r["mode"] == "prefill" else f"decode {r['seqs']} seqs"
        print(f"| {r['card']} | {what} | {r['seconds'] * 1e6:.1f} | {pred * 1e6:.1f} | "
              f"{(pred / r['seconds'] - 1) * 100:+.0f}% |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=("run", "report"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gdn-kernels" / "h200.json")
    args = parser.parse_args()
    run(args.out) if args.command == "run" else report(args.out)


if __name__ == "__main__":
    main()
