"""Cold start of `llmcalc estimate` against the interpreter floor `python -c "import typer, rich, yaml"`.

    python benchmarks/cold_start.py [--runs 21]

Goal (issue: foundation): the estimate's median within 1.5x of the floor's median.

A third command is timed for reference: a minimal typer command that prints a 9-row rich table
and does nothing else. Printing any rich table imports rich.console and rich.table, which the
floor's bare `import rich` does not; the difference between that reference and llmcalc is what
llmcalc itself costs (its modules, the card, the arithmetic, a longer table).

Every command runs once, untimed, with bytecode writing on before the timed runs: an installed
package has its .pyc files (pip compiles them), so a run that recompiles llmcalc's modules
(PYTHONDONTWRITEBYTECODE=1 in some shells) would time the compiler, not the start. The commands
are interleaved run by run so that drift in the machine's load affects them alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

TYPER_RICH_TABLE = """
import typer, rich, yaml
from rich.console import Console
from rich.table import Table
app = typer.Typer()
@app.command()
def estimate(model: str, dtype: str = "bf16", batch: int = 1) -> None:
    t = Table(title=f"{model} {dtype}")
    for c in ("component", "GiB", "share"):
        t.add_column(c)
    for i in range(9):
        t.add_row(f"row{i}", f"{i * 1.5:.2f}", f"{i}%")
    Console(highlight=False, markup=False).print(t)
app()
"""

COMMANDS = {
    "floor (import typer, rich, yaml)": [sys.executable, "-c", "import typer, rich, yaml"],
    "reference: typer command printing a rich table": [sys.executable, "-c", TYPER_RICH_TABLE, "llama-6b",
                                                       "--dtype", "int8"],
    "llmcalc estimate llama-6b --dtype int8": [sys.executable, "-m", "llmcalc", "estimate", "llama-6b",
                                               "--dtype", "int8"],
}


def medians(runs: int) -> dict[str, float]:
    for cmd in COMMANDS.values():  # warm: writes the .pyc files
        subprocess.run(cmd, check=True, capture_output=True, env=ENV)
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for _ in range(runs):
        for label, cmd in COMMANDS.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=ENV)
            times[label].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    runs = parser.parse_args().runs
    from importlib.metadata import version

    print(f"python {sys.version.split()[0]}, typer {version('typer')}, rich {version('rich')}, {runs} runs each")
    result = medians(runs)
    floor = next(iter(result.values()))
    for label, seconds in result.items():
        print(f"{label}: {seconds * 1000:.0f} ms ({seconds / floor:.2f}x the floor)")
    print("goal: llmcalc within 1.5x the floor")


if __name__ == "__main__":
    main()
