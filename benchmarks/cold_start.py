"""Cold start of `llmcalc estimate` against the interpreter floor `python -c "import typer, rich, yaml"`.

    python benchmarks/cold_start.py [--runs 15]

Goal (issue: foundation): the estimate's median within 1.5x of the floor's median.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def median_seconds(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    floor = median_seconds([sys.executable, "-c", "import typer, rich, yaml"], runs)
    est = median_seconds([sys.executable, "-m", "llmcalc", "estimate", "llama-6b", "--dtype", "int8"], runs)
    print(f"floor (import typer, rich, yaml): {floor * 1000:.0f} ms")
    print(f"llmcalc estimate llama-6b --dtype int8: {est * 1000:.0f} ms")
    print(f"ratio: {est / floor:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
