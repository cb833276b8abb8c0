"""Gated DeltaNet decode steps: the speed model against the validation rows' profiler traces.

    python benchmarks/gdn_speed_check.py

The Qwen3.5/3.6 rows of benchmarks/results/h200-qwen35.jsonl carry, from the profiler's decode
phase on the H200 (transformers 5.17, its torch path for the delta rule), the kernels launched per
step and their GPU time around the median step. This prints llmcalc's decode step (llmcalc/speed.py
forward_ops at the middle of the generation) against both. The prefill's time in those rows is
one cold forward (conv1d and cuBLAS set-up included), not comparable, and is not printed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmcalc.hardware import get_gpu  # noqa: E402
from llmcalc.memory import Workload  # noqa: E402
from llmcalc.resolve import load_card  # noqa: E402
from llmcalc.speed import efficiency_for, forward_ops, throughput  # noqa: E402


def main() -> None:
    hw = get_gpu("h200")
    eff = efficiency_for(hw)
    print("| case | kernels (llmcalc / measured) | decode kernel time ms (llmcalc / measured) | error |")
    print("|---|---:|---:|---:|")
    for line in (ROOT / "benchmarks" / "results" / "h200-qwen35.jsonl").read_text().splitlines():
        row = json.loads(line)
        t = row["measured"]["timings"]
        w = Workload(**{k: v for k, v in row["workload"].items() if k in ("mode", "dtype", "batch", "seq", "gen")})
        card = load_card(row["model"])
        step = throughput(card, w, hw, eff).decode
        kernels = sum(op.kernels for op in forward_ops(card, w, w.batch, 1, w.seq + w.gen // 2, w.batch, eff))
        err = (step.kernel_s / t["decode_step_kernel_s"] - 1) * 100
        print(f"| {row['case']} | {kernels:,} / {t['decode_kernels_per_step']:,.0f} | "
              f"{step.kernel_s * 1e3:.2f} / {t['decode_step_kernel_s'] * 1e3:.2f} | {err:+.0f}% |")


if __name__ == "__main__":
    main()
