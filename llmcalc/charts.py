"""Charts: memory against batch size or context length (stacked by component, the device's
capacity as a line) and decode throughput against batch size.

The series are computed here without plotting libraries; `to_png` draws them with matplotlib
(the optional `charts` extra), `render.print_chart` draws them in the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from llmcalc.cards import ModelCard
from llmcalc.errors import EnvironmentProblem
from llmcalc.hardware import GpuSpec
from llmcalc.memory import COMPONENTS, Workload, estimate
from llmcalc.speed import calibrated_context, efficiency_for, throughput

KINDS = ("memory-batch", "memory-context", "throughput")
STACK = COMPONENTS  # stacked bottom to top in the order the estimate reports them
DEFAULT_POINTS = {"memory-batch": (1, 2, 4, 8, 16, 32, 64, 128), "throughput": (1, 2, 4, 8, 16, 32, 64, 128),
                  "memory-context": (512, 1024, 2048, 4096, 8192, 16384, 32768)}


@dataclass(frozen=True)
class Chart:
    """One chart's data: x values, and per x either memory components or decode rates."""

    kind: str
    title: str
    x_label: str
    xs: tuple[int, ...]
    memory: tuple[dict[str, int], ...] = ()  # components at the peak phase, bytes
    engine_tokens_per_s: tuple[float | None, ...] = ()  # None where it does not fit
    eager_tokens_per_s: tuple[float | None, ...] = ()
    capacity_bytes: int = 0


def build(kind: str, card: ModelCard, w: Workload, gpu: GpuSpec, points: tuple[int, ...] | None = None) -> Chart:
    xs = tuple(points or DEFAULT_POINTS[kind])
    context = calibrated_context(gpu)
    if kind == "throughput":
        eff = efficiency_for(gpu)
        engine, eager = [], []
        for b in xs:
            wb = replace(w, batch=b)
            if estimate(card, wb, context).device_total_bytes > gpu.memory_bytes:
                engine.append(None)
                eager.append(None)
                continue
            t = throughput(card, wb, gpu, eff)
            engine.append(t.engine_decode_tokens_per_s)
            eager.append(t.decode_tokens_per_s)
        return Chart(kind, f"{card.name} decode throughput on {gpu.name} (prompt {w.seq}, output {w.gen})",
                     "batch size", xs, engine_tokens_per_s=tuple(engine), eager_tokens_per_s=tuple(eager),
                     capacity_bytes=gpu.memory_bytes)
    axis = "batch" if kind == "memory-batch" else "seq"
    memory = tuple(estimate(card, replace(w, **{axis: x}), context).components for x in xs)
    label = "batch size" if axis == "batch" else "prompt tokens"
    fixed = f"prompt {w.seq}" if axis == "batch" else f"batch {w.batch}"
    return Chart(kind, f"{card.name} {w.mode} memory on {gpu.name} ({fixed}, weights {w.dtype})", label, xs,
                 memory=tuple({c: m[c] for c in STACK} for m in memory), capacity_bytes=gpu.memory_bytes)


def to_png(chart: Chart, path: str) -> None:
    """Write the chart as a PNG with matplotlib (pip install '.[charts]')."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EnvironmentProblem("PNG charts need matplotlib: pip install '.[charts]' (without --out the chart "
                                 "prints in the terminal)") from None
    fig, ax = plt.subplots(figsize=(9, 5))
    positions = range(len(chart.xs))
    if chart.kind == "throughput":
        for label, values in (("serving engine (GPU kernel time)", chart.engine_tokens_per_s),
                              ("eager generate() (wall clock)", chart.eager_tokens_per_s)):
            ax.plot([p for p, v in zip(positions, values) if v is not None], [v for v in values if v is not None],
                    marker="o", label=label)
        ax.set_ylabel("decode tokens/s (all sequences)")
    else:
        bottom = [0.0] * len(chart.xs)
        for c in STACK:
            heights = [m[c] / 2**30 for m in chart.memory]
            if any(heights):
                ax.bar(positions, heights, bottom=bottom, label=c)
                bottom = [b + h for b, h in zip(bottom, heights)]
        ax.axhline(chart.capacity_bytes / 2**30, color="black", linestyle="--", label="device memory")
        ax.set_ylabel("GiB")
    ax.set_xticks(list(positions), [f"{x:,}" for x in chart.xs])
    ax.set_xlabel(chart.x_label)
    ax.set_title(chart.title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write {path} ({exc.strerror})") from None
    finally:
        plt.close(fig)
