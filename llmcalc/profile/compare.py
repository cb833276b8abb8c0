"""Estimate vs measurement: one record per case, shared by `llmcalc profile` and the validation
script. Pure data; no torch."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from llmcalc.memory import MemoryBreakdown, Workload

if TYPE_CHECKING:
    from llmcalc.scale import ScaledEstimate


def pct_error(estimate: int, measured: int) -> float | None:
    """Signed error of the estimate, in percent of the measurement."""
    return None if not measured else 100.0 * (estimate - measured) / measured


# The profiler measures each phase as an interval; the estimate's phases are moments. The
# measured backward runs from the loss to the last gradient, so it holds the estimate's three
# backward moments (its start, the first layer's backward, its end).
INTERVALS = {"load": ("load",), "prefill": ("prefill",), "decode": ("decode",), "forward": ("forward",),
             "backward": ("backward", "backward_layer_0", "backward_end"), "optimizer_step": ("optimizer_step",)}


def phase_intervals(est: MemoryBreakdown | ScaledEstimate) -> dict[str, int]:
    """The estimate's peak allocated over each interval the profiler measures (with the cuBLAS
    workspace, which the estimate adds to its peak and the measurement holds in every phase)."""
    phases = {p.name: p.total for p in est.phases}
    workspace = est.peak_allocated_bytes - max(phases.values(), default=0)
    return {name: max(phases[m] for m in moments if m in phases) + workspace
            for name, moments in INTERVALS.items() if any(m in phases for m in moments)}


def record(case: str, model: str, est: MemoryBreakdown | ScaledEstimate, measured: dict[str, Any]) -> dict[str, Any]:
    phases = {p.name: p.total for p in est.phases}
    est_doc = {
        "peak_allocated_bytes": est.peak_allocated_bytes,
        "device_total_bytes": est.device_total_bytes,
        "cuda_context_bytes": est.components["cuda_context"],
        # what the profiler measures as the context: before the workload loads its kernels
        "cuda_context_base_bytes": est.components["cuda_context"] - getattr(est, "kernel_modules_bytes", 0),
        "allocator_reserve_bytes": est.components["allocator_reserve"],
        "peak_phase": est.peak_phase,
        "components": est.components,
        "phases": phases,
        "phase_intervals": phase_intervals(est),
    }
    errors = {
        "peak_allocated_pct": pct_error(est.peak_allocated_bytes, measured["peak_allocated_bytes"]),
        "device_total_pct": pct_error(est.device_total_bytes, measured["device_total_bytes"]),
    }
    doc = {
        "case": case,
        "model": model,
        "workload": asdict(est.workload),
        "env": measured.get("env", {}),
        "estimate": est_doc,
        "measured": measured,
        "error": errors,
    }
    notes = outlier_notes(est.workload, measured)
    if notes:
        doc["notes"] = notes
    return doc


def outlier_notes(w: Workload, measured: dict[str, Any]) -> list[str]:
    """Where the estimate's LLM.int8 outlier columns (--int8-outliers) differ from the run's."""
    seen = measured.get("int8_outliers") or {}
    full, linears = seen.get("all_columns", 0), seen.get("linears", 0)
    if not linears or w.dtype != "int8":
        return []
    if full and w.int8_outliers == "few":
        return [f"bitsandbytes found an outlier in every input column of {full} of {linears} int8 linears "
                "and multiplied their weights in 16 bits; --int8-outliers all estimates that"]
    if not full and w.int8_outliers == "all":
        return [f"no int8 linear had an outlier in every input column ({linears} linears); "
                "--int8-outliers few estimates that"]
    return []
