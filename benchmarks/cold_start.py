"""Cold start of `llmcalc estimate` against interpreter floors.

    python benchmarks/cold_start.py [--runs 21]

Four commands, timed interleaved (median of --runs each):
- the issue's floor, `python -c "import typer, rich, yaml"`. `import rich` loads only the
  package's __init__, not the console and table machinery that printing any rich table needs;
- the floor of the libraries `estimate` prints with: `import typer, rich.console, rich.table,
  yaml`;
- for reference, a minimal typer command that prints a 9-row rich table and does nothing else;
- `llmcalc estimate llama-6b --dtype int8`.

Goals: the estimate within 1.5x of the floor (the foundation issue), then within 1.1x of the
floor of the libraries it prints with (issue 17), as the median of paired ratios (each round's
llmcalc time over the same round's floor). Measured against the foundation issue's literal floor
that is out of reach for any typer command that prints a rich table (rich.console and rich.table
cost ~0.3x of it to import), so both ratios are printed. The difference between the reference and
llmcalc is what llmcalc itself costs (its modules, the card, the arithmetic, a longer table).

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

LITERAL_FLOOR = "floor (import typer, rich, yaml)"
FLOOR = "floor of the output libraries (import typer, rich.console, rich.table, yaml)"
COMMANDS = {
    LITERAL_FLOOR: [sys.executable, "-c", "import typer, rich, yaml"],
    FLOOR: [sys.executable, "-c", "import typer, rich.console, rich.table, yaml"],
    "reference: typer command printing a rich table": [sys.executable, "-c", TYPER_RICH_TABLE, "llama-6b",
                                                       "--dtype", "int8"],
    "llmcalc estimate llama-6b --dtype int8": [sys.executable, "-m", "llmcalc", "estimate", "llama-6b",
                                               "--dtype", "int8"],
}


def timed(runs: int) -> dict[str, list[float]]:
    for cmd in COMMANDS.values():  # warm: writes the .pyc files (and llmcalc's disk cache)
        subprocess.run(cmd, check=True, capture_output=True, env=ENV)
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for _ in range(runs):
        for label, cmd in COMMANDS.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=ENV)
            times[label].append(time.perf_counter() - t0)
    return times


def paired(times: dict[str, list[float]], label: str, base: str) -> float:
    """Median over runs of label's time / base's time in the same round."""
    return statistics.median(a / b for a, b in zip(times[label], times[base]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    runs = parser.parse_args().runs
    from importlib.metadata import version

    print(f"python {sys.version.split()[0]}, typer {version('typer')}, rich {version('rich')}, {runs} runs each")
    times = timed(runs)
    for label, t in times.items():
        print(f"{label}: {statistics.median(t) * 1000:.0f} ms (paired: {paired(times, label, LITERAL_FLOOR):.2f}x the "
              f"issue's floor, {paired(times, label, FLOOR):.2f}x the output libraries' floor)")
    llmcalc = next(k for k in COMMANDS if k.startswith("llmcalc"))
    reference = next(k for k in COMMANDS if k.startswith("reference"))
    ratio, own = paired(times, llmcalc, FLOOR), paired(times, llmcalc, reference)
    print(f"goal (issue 17): llmcalc within 1.1x the output libraries' floor: {ratio:.2f}x, "
          f"{'met' if ratio <= 1.1 else 'missed'}; the minimal typer reference is itself "
          f"{paired(times, reference, FLOOR):.2f}x; llmcalc is {own:.2f}x the reference")

if __name__ == "__main__":
    main()
