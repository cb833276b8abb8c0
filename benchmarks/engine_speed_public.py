"""llmcalc's decode step under a serving engine against vLLM's published speeds.

    python benchmarks/engine_speed_public.py      # rewrites docs/engine-speed-public.md

benchmarks/serve/engine-speed-logs.jsonl holds 38 public measurements a helper gathered (session 9,
benchmarks/serve/engine-speed-logs.md says where and how). Compared here: the fixed-batch latency
benchmarks (`benchmark_latency`: batch B, 32 prompt tokens, 128 generated, dummy weights), whose
mean latency is one prefill plus 128 decode steps, and the serving runs at low, known concurrency
whose median time per output token is one decode step of a batch of that size. llmcalc's figures
are its engine view (`engine_decode_step_s`, `engine_ttft_s`: vLLM's fused op list, each kernel
a fixed latency plus its roofline, launches hidden by CUDA graphs; docs/engine-speed.md), nothing
fitted to these rows. What an engine adds per step beside the GPU's kernels (its scheduler, sampling,
detokenising) is not in llmcalc's step, so a measured step above the prediction is expected;
vLLM PR #11081 timed that split for Llama-3-8B at batch 1 on an H100: 6.5 ms of forward, 7.58 ms
per token end to end.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmcalc.hardware import get_gpu  # noqa: E402
from llmcalc.memory import Workload  # noqa: E402
from llmcalc.resolve import load_card  # noqa: E402
from llmcalc.speed import efficiency_for, throughput  # noqa: E402

LOGS = ROOT / "benchmarks" / "serve" / "engine-speed-logs.jsonl"
# session 10: a helper's search for MoE decode speeds (benchmarks/serve/moe-speed-logs.md)
MOE_LOGS = ROOT / "benchmarks" / "serve" / "moe-speed-logs.jsonl"
# (line, card, gpu, TP, batch, prompt, generated, what is compared), as ROWS
MOE_ROWS: list[tuple[int, str, str, int, int, int, int, str]] = [
    (0, "mixtral-8x7b", "h200", 2, 8, 32, 128, "latency"),
    (2, "mixtral-8x7b", "h100-sxm-80gb", 2, 8, 32, 128, "latency"),
    (3, "mixtral-8x7b", "a100-sxm-80gb", 2, 8, 32, 128, "latency"),
    # the engine's "Avg generation throughput" of one request (V0 ~0.7.1, MLA off): per step
    (4, "deepseek-v2-lite", "h100-sxm-80gb", 1, 1, 128, 512, "v0rate"),
    # V1 ~0.10.1: mean time per output token, 10 requests of 2,048 + 1,024 tokens in flight
    (6, "qwen3-30b-a3b", "h100-sxm-80gb", 1, 10, 2048, 1024, "mean_tpot"),
]
# (line, card, gpu, TP, batch, prompt, generated, what is compared)
ROWS: list[tuple[int, str, str, int, int, int, int, str]] = [
    (5, "llama-3-8b", "h100-sxm-80gb", 1, 1, 32, 128, "forward"),
    (6, "llama-3.1-8b", "h200", 1, 8, 32, 128, "latency"),
    (10, "llama-3.1-8b", "h100-sxm-80gb", 1, 8, 32, 128, "latency"),
    (12, "llama-3.1-8b", "a100-sxm-80gb", 1, 8, 32, 128, "latency"),
    (7, "llama-3.1-70b", "h200", 4, 8, 32, 128, "latency"),
    (11, "llama-3.1-70b", "h100-sxm-80gb", 4, 8, 32, 128, "latency"),
    (13, "llama-3.1-70b", "a100-sxm-80gb", 4, 8, 32, 128, "latency"),
    (20, "qwen2.5-72b", "h100-sxm-80gb", 4, 1, 40, 128, "tpot"),
    (21, "qwen2.5-72b", "h100-sxm-80gb", 4, 4, 40, 128, "tpot"),
    (22, "qwen2.5-72b", "h100-sxm-80gb", 4, 16, 40, 128, "tpot"),
    # vLLM 0.21 (V1) on H100 SXM: short chat prompts, at most 128 tokens out, one and four requests
    # in flight, or (rows 15-19) the mean in flight by Little's law, rounded
    (23, "llama-3.1-8b", "h100-sxm-80gb", 1, 1, 40, 128, "tpot"),
    (24, "llama-3.1-8b", "h100-sxm-80gb", 1, 4, 40, 128, "tpot"),
    (15, "llama-3.1-8b", "h100-sxm-80gb", 1, 2, 40, 128, "tpot"),
    (16, "qwen2.5-7b", "h100-sxm-80gb", 1, 4, 40, 128, "tpot"),
    (17, "mistral-7b", "h100-sxm-80gb", 1, 4, 40, 128, "tpot"),
    (18, "gemma-2-9b", "h100-sxm-80gb", 1, 4, 40, 128, "tpot"),
    (19, "llama-3.1-70b", "h100-sxm-80gb", 4, 3, 40, 128, "tpot"),
    # vLLM 0.23 on an A100 40GB: 1,024-token prompts, one request, "~75 tokens/s" per request
    (37, "llama-3.1-8b", "a100-sxm-40gb", 1, 1, 1024, 128, "rate"),
]


def _number(log: dict[str, Any], kind: str) -> float:
    n = log["numbers"]
    if kind == "forward":
        return n["forward_median_ms_batch1_decode"]
    if kind == "latency":
        return n.get("mean_latency_ms") or n["avg_latency_ms"]
    if kind == "rate":
        return 1e3 / n["decode_tokens_per_s_per_request_approx"]
    if kind == "v0rate":
        return 1e3 / n["avg_generation_throughput_tok_per_s"]
    if kind == "mean_tpot":
        return n["mean_tpot_ms"]
    return n["tpot_p50_ms"]


# vLLM V0's host work per decode step beside the GPU forward, at batch 1 on an H100: PR #11081
# logged a 6.5 ms median forward while the same benchmark took 7.58 ms per output token.
V0_HOST_S = (7.58 - 6.5) * 1e-3


def rows(moe: bool = False) -> list[list[str]]:
    logs = [json.loads(line) for line in (MOE_LOGS if moe else LOGS).read_text().splitlines()]
    out = []
    for line, card_name, gpu_id, tp, batch, prompt, gen, kind in (MOE_ROWS if moe else ROWS):
        log, card, gpu = logs[line], load_card(card_name), get_gpu(gpu_id)
        t = throughput(card, Workload(dtype="bf16", batch=batch, seq=prompt, gen=gen), gpu, efficiency_for(gpu), tp=tp)
        step_ms = t.engine_decode_step_s * 1e3
        v0 = "V0" in log["version"] and kind in ("latency", "v0rate")
        if kind == "latency":
            predicted = t.engine_ttft_s * 1e3 + gen * step_ms
            what = f"mean latency, batch {batch}, {prompt} + {gen} tokens (ms)"
        elif kind == "forward":
            predicted, what = step_ms, f"decode forward, batch {batch} (ms)"
        elif kind == "v0rate":
            predicted, what = step_ms, f"time per output token (the engine's generation throughput), {batch} request"
        elif kind == "mean_tpot":
            predicted, what = step_ms, f"mean time per output token, {batch} in flight, {prompt} + {gen} tokens (ms)"
        elif kind == "rate":
            predicted, what = step_ms, f"time per output token, {batch} in flight, {prompt}-token prompt (ms)"
        else:
            predicted, what = step_ms, f"median time per output token, {batch} in flight (ms)"
        measured = _number(log, kind)
        with_host = (predicted + gen * V0_HOST_S * 1e3 if kind == "latency" else predicted + V0_HOST_S * 1e3) \
            if v0 else predicted
        link = f"[{line}]({log['url']})"
        out.append([link, f"{card_name}, {gpu_id}" + (f", TP {tp}" if tp > 1 else ""), log["version"][:28], what,
                    f"{predicted:.1f}", f"{measured:.1f}", f"{100 * (predicted - measured) / measured:+.1f}%",
                    f"{100 * (with_host - measured) / measured:+.1f}%" if v0 else "-"])
    return out


def main() -> None:
    table = rows()
    errors = [float(r[-2].rstrip("%")) for r in table]
    v0 = [float(r[-1].rstrip("%")) for r in table if r[-1] != "-"]
    lines = ["# Decode speed under vLLM: llmcalc against published measurements", "",
             "Generated by `python benchmarks/engine_speed_public.py` from benchmarks/serve/engine-speed-logs.jsonl "
             "(public measurements with their links; benchmarks/serve/engine-speed-logs.md says how they were "
             "found). llmcalc's engine view: vLLM's fused op list replayed from CUDA graphs, each kernel a fixed "
             "latency plus its roofline (docs/engine-speed.md), nothing fitted to these rows. Error = (llmcalc - "
             "measured) / measured. The last column adds, for vLLM V0's whole-request latencies, the host work V0 "
             "does per decode step beside the forward: 1.08 ms, measured in PR #11081 (6.5 ms median forward, "
             "7.58 ms per output token, Llama-3-8B at batch 1 on an H100).", "",
             "| log | model, GPU | vLLM | number | llmcalc | measured | error | error with V0's host time |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(r) + " |" for r in table]
    lines += ["", f"{len(table)} rows: the engine's GPU time from {min(errors):+.1f}% to {max(errors):+.1f}%; "
              f"with V0's host time on its {len(v0)} latency rows, {min(v0):+.1f}% to {max(v0):+.1f}%.", "",
              "- The GPU forward itself (row 5, vLLM's own forward timer: -5.5%) and vLLM V1's time per output "
              "token at 1-16 requests in flight (0.21-0.23, whose engine core leaves the API server, tokenising and "
              "detokenising to other processes) are the closest checks of the op list: -4% to +2% under tensor "
              "parallelism (70B and 72B on 4 H100s), -5% to -16% on one GPU (7-9B models), where the device "
              "analogue is also 8-15% above the op list at small batch (docs/engine-speed.md: small kernels "
              "costing more than charged, and gaps between kernels in the graph, ~0.3-1.2 us each).",
              "- vLLM V0's fixed-batch latencies (late 2024) also pay the host's scheduling, input preparation, "
              "sampling and detokenising between steps; charging PR #11081's 1.08 ms per step closes most of the "
              "gap. That host time was measured once, at batch 1 on an H100; it grows with the batch and is "
              "smaller on a faster host CPU, which is what is left.",
              "- The engine view times the GPU; `plan` reports it for current vLLM (V1), not for V0.",
              "- No public fixed-batch measurement at long context was found: the attention term is checked on "
              "the device only (docs/engine-speed.md).", "",
              "Before the engine op list (session 9), llmcalc's engine view was transformers' own op list with "
              "launches hidden: +15% to +55% on these rows."]
    moe = rows(moe=True)
    lines += ["", "## Routed experts", "",
              "From benchmarks/serve/moe-speed-logs.jsonl (a helper's search; benchmarks/serve/moe-speed-logs.md): "
              "vLLM's nightly latency benchmark of Mixtral-8x7B at TP 2 (the same builds as the Llama rows above), "
              "a V0 DeepSeek-Coder-V2-Lite run (the engine's own generation throughput, MLA off) and a V1 "
              "Qwen3-30B-A3B serving run at 10 requests in flight (new prompts prefilled among the decode steps).", "",
              "| log | model, GPU | vLLM | number | llmcalc | measured | error | error with V0's host time |",
              "|---|---|---|---|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(r) + " |" for r in moe]
    lines += ["", "The op list charges each expert the batch routes to one read of its weights at the dense "
              "projections' GEMV bandwidth. Where the experts are large (Mixtral's 235 MB gate_up) and a batch of 8 "
              "touches most of them, V0's latencies with its host time are within -3% to -12%. Where they are small "
              "and the batch is 1 (DeepSeek-V2-Lite: 64 routed experts of 6 MB, 6 per token, and 2 shared), vLLM "
              "took 6.5 ms a token against 2.8 charged (3.9 with V0's host time). The expert GEMMs do not explain it: "
              "vLLM's Triton fused_moe, timed on an H200 at DeepSeek-V2-Lite's shape and one token, takes 37 us a "
              "layer against 33 charged (docs/engine-moe.md), 0.1 ms over its 26 MoE layers; the MLA decode kernel, "
              "the grouped top-k routing and alignment kernels and the host remain unmeasured. "
              "The V1 Qwen3-30B-A3B row (-1.5%) mixes prefills into its decode steps, so it bounds the decode "
              "step from above rather than checking it. Small-expert MoE decode at batch 1 is where the engine "
              "view is least reliable: that log is 2x slower than predicted."]
    (ROOT / "docs" / "engine-speed-public.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[8:8 + len(table) + 3]))


if __name__ == "__main__":
    main()
