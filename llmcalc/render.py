"""Dataclasses -> rich tables / JSON. Nothing else in llmcalc prints."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from llmcalc.cards import ModelCard
from llmcalc.memory import COMPONENTS, MemoryBreakdown

if TYPE_CHECKING:  # the catalog module loads only when a command names a GPU
    from llmcalc.hardware import GpuSpec

GiB = 2**30
JSON_SCHEMA_VERSION = 1


def gib(n: int | float) -> str:
    return f"{n / GiB:,.2f}"


def fit(m: MemoryBreakdown, gpu: GpuSpec) -> dict[str, Any]:
    return {
        "id": gpu.id,
        "name": gpu.name,
        "memory_bytes": gpu.memory_bytes,
        "fits": m.device_total_bytes <= gpu.memory_bytes,
        "free_bytes": gpu.memory_bytes - m.device_total_bytes,
    }


def estimate_json(m: MemoryBreakdown, card: ModelCard, gpu: GpuSpec | None) -> str:
    doc: dict[str, Any] = {
        "schema_version": JSON_SCHEMA_VERSION,
        "model": {"name": card.name, "params": m.params, "source": card.source},
        "workload": asdict(m.workload) | {"compute_dtype": m.workload.compute_dtype},
        "memory": {
            "components": {c: m.components[c] for c in COMPONENTS},
            "peak_allocated_bytes": m.peak_allocated_bytes,
            "device_total_bytes": m.device_total_bytes,
            "peak_phase": m.peak_phase,
            "phases": {p.name: p.total for p in m.phases},
        },
        "calibration": m.calibration,
        "warnings": list(m.warnings),
    }
    if gpu is not None:
        doc["gpu"] = fit(m, gpu)
    return dumps(doc)


def print_estimate(console: Console, m: MemoryBreakdown, card: ModelCard, gpu: GpuSpec | None, explain: bool) -> None:
    w = m.workload
    what = (f"{card.name} ({m.params / 1e9:.2f}B params) · {w.mode} · weights {w.dtype} · compute {w.compute_dtype}"
            f" · batch {w.batch} · seq {w.seq}" + (f" · gen {w.gen}" if w.mode == "infer" else ""))
    table = Table(title=what, title_justify="left")
    table.add_column("component")
    table.add_column("GiB", justify="right")
    table.add_column("share", justify="right")
    if explain:
        table.add_column("how", overflow="fold")
    for c in COMPONENTS:
        row = [c, gib(m.components[c]), f"{100 * m.components[c] / m.device_total_bytes:.1f}%"]
        if explain:
            row.append(m.explain.get(c, ""))
        table.add_row(*row)
    table.add_section()
    table.add_row("peak allocated", gib(m.peak_allocated_bytes), "", *([f"max over phases, set by {m.peak_phase}"] if explain else []))
    table.add_row("device total", gib(m.device_total_bytes), "100.0%", *(["peak allocated + reserve + CUDA context"] if explain else []))
    console.print(table)
    console.print("phases: " + ", ".join(f"{p.name} {gib(p.total)} GiB" for p in m.phases)
                  + f"  (peak: {m.peak_phase})")
    if gpu is not None:
        verdict = fit(m, gpu)
        word, style = ("fits", "green") if verdict["fits"] else ("does not fit", "red")
        console.print(Text.assemble(f"{gpu.name}: {gib(gpu.memory_bytes)} GiB → ", (word, style),
                                    f" ({gib(abs(verdict['free_bytes']))} GiB {'free' if verdict['fits'] else 'short'})"))


def print_models(console: Console, cards: list[ModelCard]) -> None:
    table = Table(title="model cards")
    for col, justify in (("name", "left"), ("family", "left"), ("params", "right"), ("layers", "right"),
                         ("hidden", "right"), ("heads/kv", "right"), ("vocab", "right"), ("context", "right")):
        table.add_column(col, justify=justify, no_wrap=col == "name")  # type: ignore[arg-type]
    for c in sorted(cards, key=lambda c: (c.family, c.num_params)):
        moe = f" ({c.num_experts}x{c.experts_per_token} MoE)" if c.is_moe else ""
        table.add_row(c.name, c.family + moe, f"{c.num_params:,}", str(c.num_layers), str(c.hidden_size),
                      f"{c.num_heads}/{c.kv_heads}", f"{c.vocab_size:,}", f"{c.max_position_embeddings:,}")
    console.print(table)


def models_json(cards: list[ModelCard]) -> str:
    return dumps([{"name": c.name, "family": c.family, "params": c.num_params, "source": c.source} for c in cards])


def print_gpus(console: Console, gpus: list[GpuSpec]) -> None:
    table = Table(title="GPU catalog (dense peaks)")
    for col in ("id", "name", "memory GiB", "HBM TB/s", "bf16 TFLOP/s", "fp8", "int8"):
        table.add_column(col, justify="left" if col in ("id", "name") else "right")
    for g in gpus:
        rate = lambda d: f"{g.peak_flops[d] / 1e12:g}" if d in g.peak_flops else "-"  # noqa: E731
        table.add_row(g.id, g.name, gib(g.memory_bytes), f"{g.bytes_per_s / 1e12:g}",
                      rate("bf16") if "bf16" in g.peak_flops else rate("fp16"), rate("fp8"), rate("int8"))
    console.print(table)


def dumps(doc: Any) -> str:
    import json  # lazily: the table output never needs it

    return json.dumps(doc, indent=2)


def print_profile(console: Console, doc: dict[str, Any]) -> None:
    est, meas = doc["estimate"], doc["measured"]
    table = Table(title=f"{doc['model']} on {meas['env'].get('gpu', meas['device'])}: estimate vs measured",
                  title_justify="left")
    for col in ("", "estimate GiB", "measured GiB", "error"):
        table.add_column(col, justify="left" if not col else "right")

    def row(label: str, e: int, m: int) -> None:
        err = f"{100 * (e - m) / m:+.1f}%" if m else "-"
        table.add_row(label, gib(e), gib(m) if m else "-", err)

    if meas["device"] == "cuda":
        row("weights", est["components"]["weights"], meas["weights_bytes"])
        row("cuda context", est["cuda_context_bytes"], meas["cuda_context_bytes"])
    for p in meas["phases"]:
        row(f"phase {p['name']} (peak allocated)", est["phases"].get(p["name"].split(" ")[0], 0), p["peak_allocated_bytes"])
    table.add_section()
    row(f"peak allocated (est. {est['peak_phase']}, meas. {meas['peak_phase']})", est["peak_allocated_bytes"],
        meas["peak_allocated_bytes"])
    row("peak reserved", est["peak_allocated_bytes"] + est["allocator_reserve_bytes"], meas["peak_reserved_bytes"])
    row("device total", est["device_total_bytes"], meas["device_total_bytes"])
    console.print(table)
    if meas["timings"]:
        console.print("times: " + ", ".join(f"{k} {v:.4g}" for k, v in meas["timings"].items()))
