"""Speed of `llmcalc plan` over the whole catalog (issue: capacity checks; goal: well under a second).

    python benchmarks/plan_speed.py [--runs 11]

Times, as medians: the planning itself in-process (every catalog GPU: fit, largest batch and
context by search, throughput, paged-KV view), the same followed by a throughput sweep of 9 batch
sizes on every GPU, and the whole command from a cold start (`python -m llmcalc plan ...`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmcalc.hardware import catalog  # noqa: E402
from llmcalc.memory import Workload  # noqa: E402
from llmcalc.planning import plan_option, rank  # noqa: E402
from llmcalc.resolve import load_card  # noqa: E402
from llmcalc.speed import efficiency_for, throughput  # noqa: E402

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def plan_all(sweep: bool) -> None:
    card = load_card("llama-3.1-8b")
    w = Workload(batch=8, seq=2048, gen=256)
    gpus = [g for g in catalog().values() if g.kind == "gpu"]
    rank([plan_option(card, w, g) for g in gpus])
    if sweep:
        for g in gpus:
            eff = efficiency_for(g)
            for b in BATCHES:
                throughput(card, Workload(batch=b, seq=2048, gen=256), g, eff)


def median(fn, runs: int) -> float:
    """Each run from empty memo caches, as a fresh `llmcalc plan` starts."""
    from llmcalc.planning import _device_total, _group_total
    from llmcalc.serving import weights_per_rank

    times = []
    for _ in range(runs):
        for memo in (_device_total, _group_total, weights_per_rank):
            memo.cache_clear()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=11)
    runs = parser.parse_args().runs
    n = sum(1 for g in catalog().values() if g.kind == "gpu")
    print(f"python {sys.version.split()[0]}, {n} catalog GPUs, llama-3.1-8b, prompt 2048 + output 256, {runs} runs")
    print(f"plan, in-process: {median(lambda: plan_all(False), runs) * 1000:.0f} ms")
    print(f"plan + sweep of {len(BATCHES)} batch sizes per GPU, in-process: "
          f"{median(lambda: plan_all(True), runs) * 1000:.0f} ms")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cmd = [sys.executable, "-m", "llmcalc", "plan", "llama-3.1-8b", "--seq", "2048", "--gen", "256", "--concurrency", "8"]
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    cold = median(lambda: subprocess.run(cmd, check=True, capture_output=True, env=env), runs)
    print(f"`llmcalc plan llama-3.1-8b --seq 2048 --gen 256 --concurrency 8`, cold start: {cold * 1000:.0f} ms")
    big = [sys.executable, "-m", "llmcalc", "plan", "llama-3.1-70b", "--seq", "2048", "--gen", "256", "--concurrency", "8"]
    cold = median(lambda: subprocess.run(big, check=True, capture_output=True, env=env), runs)
    print(f"`llmcalc plan llama-3.1-70b ...` (tensor-parallel groups searched on most GPUs), cold start: "
          f"{cold * 1000:.0f} ms")
    print("goal: well under a second")


if __name__ == "__main__":
    main()
